"""Shared pieces of the SIM benchmark cases: simulated windows of the simulated microscope's SIM
optics, and scoring against the ground truth band-limited to the SIM passband."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from nstm_acquire.evaluation.metrics import correlation, resolved_pairs, sim_truth, spurious_peaks
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom, FilamentPhantom
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import SimulatedSimWindow, simulate_sim_window
from nstm_acquire.hardware.simulated.world import sim_illumination_from_config
from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.recon.arrays import WindowResult, reconstruct_sim

MARGIN = 8  # output pixels left out of every score


def sim_window(
    modality: str, n: int, phantom_kind: str, motion: Any, n_planes: int = 1, seed: int = 1, exposure_instants: int = 3
) -> SimulatedSimWindow:
    """A window of the simulated microscope's ``sim2d``/``sim3d`` optics and pattern (true values),
    each frame the mean of the sample at ``exposure_instants`` times across its exposure."""
    cfg = simulated_config()
    sim = cfg.sim3d if modality == "sim3d" else cfg.sim2d
    ill = sim_illumination_from_config(sim, modality == "sim3d")
    optics = sim.optics
    field = (n * optics.pixel_size_um, n * optics.pixel_size_um)
    z_range = (-0.4, 0.4) if modality == "sim3d" else None
    if phantom_kind == "beads":
        area = field[0] * field[1]
        # 2D: 190 nm beads as in the paper, pairs from just above their size; 3D: 100 nm beads
        seps = (0.2, 0.25, 0.3) if modality == "sim2d" else (0.16, 0.2, 0.25)
        phantom: Any = BeadPhantom(
            field, n_beads=int(0.25 * area), diameter_um=0.19 if modality == "sim2d" else 0.1, seed=seed,
            pair_separations_um=seps, n_pairs_each=max(1, int(area // 100)), z_range_um=z_range,
        )
    else:
        phantom = FilamentPhantom(field, n_filaments=max(4, n // 24), seed=seed)
    if modality == "sim3d":
        return simulate_sim_window(
            optics, ill, phantom, motion, (n, n), n_planes=n_planes, z_step_um=optics.z_step_um,
            frame_interval_s=0.004, exposure_s=0.003, photons=400.0, seed=seed, exposure_subsamples=exposure_instants,
        )
    return simulate_sim_window(
        optics, ill, phantom, motion, (n, n), frame_interval_s=0.012, exposure_s=0.01, seed=seed,
        exposure_subsamples=exposure_instants,
    )


def band_limited_truth(win: SimulatedSimWindow, t_s: float) -> np.ndarray:
    """The true density at ``t_s`` on the output grid (2x finer), apodised and band-limited to the
    SIM passband as the Wiener reconstruction is (:func:`~nstm_acquire.evaluation.metrics.sim_truth`:
    laterally to ``2NA/λ + |k|``, 3D also axially, z zero-padded); ``(Z, Y', X')``."""
    n = win.raw.shape[-1]
    px = win.optics.pixel_size_um / 2
    z = win.planes_um if win.raw.shape[1] > 1 else None
    density = win.sample.on_grid(t_s, (n, n), win.optics.pixel_size_um, upsample=2, z_um=z)
    density = density[None] if density.ndim == 2 else density
    return sim_truth(density, px, win.optics, win.illumination, win.optics.z_step_um)


def _crop(a: np.ndarray) -> np.ndarray:
    return a[..., MARGIN:-MARGIN, MARGIN:-MARGIN]


def score(win: SimulatedSimWindow, result: WindowResult) -> dict[str, Any]:
    """Correlation with the band-limited truth at every shot time (NSTM at that time, Wiener
    the same image for all), and for beads: ghost peaks and resolved pairs (in-focus plane)."""
    px = win.optics.pixel_size_um / 2
    conv = result.conventional[0]  # (Z, Y', X')
    nstm_corr, wiener_corr = [], []
    ghosts = {"nstm": 0, "wiener": 0}
    pairs = {"nstm": 0, "wiener": 0, "total": 0}
    phantom = win.sample.phantom
    is_beads = isinstance(phantom, BeadPhantom)
    z0 = conv.shape[0] // 2
    for s, t in enumerate(result.times_s):
        truth = band_limited_truth(win, float(t))
        nstm_corr.append(correlation(_crop(result.scene[s, 0]), _crop(truth)))
        wiener_corr.append(correlation(_crop(conv), _crop(truth)))
        if is_beads:
            pos = phantom.positions_um
            if pos.shape[1] == 3:  # 3D: the beads within half a plane of the central plane
                near = np.abs(pos[:, 0] - win.planes_um[z0]) < 0.5 * win.optics.z_step_um
                pos = pos[near][:, 1:]
                pair_list = [(i, j) for i, j, _ in phantom.pairs if near[i] and near[j]]
                index = {k: m for m, k in enumerate(np.flatnonzero(near))}
                pair_list = [(index[i], index[j]) for i, j in pair_list]
            else:
                pair_list = [(i, j) for i, j, _ in phantom.pairs]
            where = win.sample.positions_at(float(t), pos)
            pts = [(where[i], where[j]) for i, j in pair_list]
            for name, img in (("nstm", result.scene[s, 0, z0]), ("wiener", conv[z0])):
                if pos.shape[0] and conv.shape[0] == 1:  # ghosts: 2D only (3D beads off-plane show as blobs)
                    ghosts[name] += spurious_peaks(img, px, where, margin=MARGIN)
                pairs[name] += resolved_pairs(img, px, pts)
            pairs["total"] += len(pts)
    out: dict[str, Any] = {
        "nstm_corr": float(np.mean(nstm_corr)),
        "nstm_corr_worst": float(np.min(nstm_corr)),
        "wiener_corr": float(np.mean(wiener_corr)),
    }
    if is_beads:
        n_shots = len(result.times_s)
        out.update(
            {
                "ghosts_per_shot_nstm": ghosts["nstm"] / n_shots,
                "ghosts_per_shot_wiener": ghosts["wiener"] / n_shots,
                "resolved_pairs_nstm": pairs["nstm"],
                "resolved_pairs_wiener": pairs["wiener"],
                "pairs_total": pairs["total"],
                "n_beads": int(len(phantom.positions_um)),
            }
        )
    return out


def run_sim(win: SimulatedSimWindow, config: NSTMConfig) -> tuple[WindowResult, dict[str, Any]]:
    """Reconstruct a window with its pattern estimated (fallback to the truth where implausible)."""
    t0 = time.perf_counter()
    unknown = win.illumination.replace(k_per_um=None, phase_rad=None, modulation=None)
    try:
        result = reconstruct_sim(win.raw, win.timestamps_s, win.exposure_s, win.optics, unknown, config=config)
        source = "estimated"
    except ValueError:  # implausible estimate and nothing configured: the calibrated pattern
        result = reconstruct_sim(win.raw, win.timestamps_s, win.exposure_s, win.optics, win.illumination, config=config)
        source = "configured (estimate implausible)"
    wall = time.perf_counter() - t0
    f = result.fit
    info = {
        "pattern": source,
        "steps": f.steps,
        "best_step": f.best_step,
        "stop": f.stop_reason,
        "wall_s": wall,
        "compile_s": f.compile_s,
        "s_per_step": (f.wall_s - f.compile_s) / max(f.steps - config.fit.eval_every, 1),
    }
    return result, info
