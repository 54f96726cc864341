"""The demo's summary figure: raw vs conventional vs NSTM vs ground truth for one window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nstm_acquire.evaluation.figures import comparison_figure, robust_limits
from nstm_acquire.evaluation.metrics import correlation, crop, highpass, sim_truth
from nstm_acquire.physics.dpc.forward import dpc_normalise
from nstm_acquire.store import ReconReader, StoreReader

__all__ = ["demo_figure", "focus_plane", "rolling_shutter_figure"]

_MARGIN = 8  # output pixels of border left out of the printed correlations


def demo_figure(
    store: str | Path,
    world: Any,
    modality: str,
    path: str | Path,
    name: str = "nstm",
    z_centre_um: float = 0.0,
) -> Path | None:
    """Save a PNG of the last reconstructed window; returns its path (None if nothing to show).

    Panels: the raw data, the conventional reconstruction, the NSTM at the first render time
    with the motion across the window as arrows, and the simulated truth at that time.
    DPC: the first shot, and the phase with the frequencies DPC cannot see removed (as it is
    scored). SIM: the widefield image (mean of all shots) and the truth filtered by the SIM
    passband with the Wiener reconstruction's apodisation (:func:`sim_truth`, so a bead is a
    bead). 3D: the plane of best focus of the widefield stack (:func:`focus_plane`; the truth's
    planes are centred on ``z_centre_um`` µm, the acquisition's ``--z-centre``) in every panel, shown
    in its stack's display range (so a plane holding only the faint axial tails of beads in
    other planes looks dark, as it is), and a second row of maximum projections over the
    acquired planes, where every bead in the stack shows. The NSTM is shown twice: filtered
    by the truth's apodised passband (as the Wiener result and the truth are; the density it fits
    is sharper than that band) and as fitted. The title gives each result's correlation with
    that truth (8 output pixels of border left out; 3D: the plane, and the whole stack).
    """
    opened = _last_window(store, name)
    if opened is None:
        return None
    reader, recon, w = opened
    scene, motion, times = recon.scene(w), recon.motion(w), recon.times_s(w)
    conv = recon.conventional(w)
    data = reader.window(w)
    optics = reader.optics
    px = float(recon.pixel_size_um)
    u = int(round(optics.pixel_size_um / px))
    drift = motion[0, -2:, 0] - motion[-1, -2:, 0]  # content moves by -this from first to last shot
    m = _MARGIN

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return correlation(crop(a, m), crop(b, m))

    def fine(a: np.ndarray) -> np.ndarray:  # a camera frame on the output grid (u x u per pixel)
        return np.kron(a, np.ones((u, u), a.dtype)) if u > 1 else a

    if modality == "dpc":
        bg = reader.background()
        raw = dpc_normalise(data.raw[:, 0], None if bg is None else bg[:, 0])[0]
        cut = 0.1 * optics.cutoff_per_um
        show = lambda a: highpass(a, px, cut)  # noqa: E731
        nstm_img, conv_img = show(scene[0, 1, 0]), show(conv[1, 0])
        truth_img = None
        if world is not None:
            _, phi = world.scene("dpc").sample.on_grid(float(times[0]), reader.frame_shape, optics.pixel_size_um)
            truth_img = show(phi)
        title = f"DPC, window {w}: phase (rad, high-passed)"
        if truth_img is not None:
            title += (
                f" - corr. with truth: conventional {corr(conv_img, truth_img):.3f}, "
                f"NSTM {corr(nstm_img, truth_img):.3f}"
            )
        return comparison_figure(
            path,
            [
                ("raw, first shot", fine(raw)),
                ("conventional", conv_img),
                ("NSTM, first shot + motion", nstm_img),
                ("truth, first shot", truth_img),
            ],
            motion=-np.asarray(drift),
            motion_on=2,
            shared_range=[1, 2, 3] if truth_img is not None else [1, 2],  # radians
            pixel_size_um=px,
            title=title,
        )

    nz = scene.shape[2]
    wide = data.raw.astype(np.float64).mean(axis=0)  # (Z, Y, X) widefield: the mean of all shots
    zc = focus_plane(wide)
    ill = _sim_illumination(world, modality, reader)
    truth = None
    if world is not None:
        truth = _sim_truth(world, modality, reader, float(times[0]), nz, px, z_centre_um)
    # the NSTM density is sharper than the passband: shown (and scored) also in the truth's band
    band = None if ill is None else sim_truth(scene[0, 0], px, optics, ill, optics.z_step_um if nz > 1 else None)
    plane = f", plane {zc} of {nz} (best focus)" if nz > 1 else ""
    title = f"{modality.upper()}, window {w}: fluorescence{plane}"
    if truth is not None:
        title += (
            f" - corr. with truth{' (plane / stack)' if nz > 1 else ''}: "
            f"Wiener {corr(conv[0, zc], truth[zc]):.3f}"
            + (f" / {corr(conv[0], truth):.3f}" if nz > 1 else "")
        )
        if band is not None:
            title += f", NSTM in band {corr(band[zc], truth[zc]):.3f}" + (
                f" / {corr(band, truth):.3f}" if nz > 1 else ""
            )
        title += f", as fitted {corr(scene[0, 0, zc], truth[zc]):.3f}" + (
            f" / {corr(scene[0, 0], truth):.3f}" if nz > 1 else ""
        )
    panels: list[tuple[str, np.ndarray | None]] = [
        ("raw, widefield (all shots)", fine(wide[zc])),
        ("conventional (Wiener)", conv[0, zc]),
        ("NSTM in SIM band, first shot + motion", None if band is None else band[zc]),
        ("NSTM as fitted, first shot", scene[0, 0, zc]),
        ("truth (SIM band, apodised), first shot", None if truth is None else truth[zc]),
    ]
    if nz > 1:  # every bead of the stack: maximum projections over the acquired planes
        panels += [
            ("widefield, max over planes", fine(wide.max(axis=0))),
            ("Wiener, max over planes", conv[0].max(axis=0)),
            ("NSTM in band, max over planes", None if band is None else band.max(axis=0)),
            ("NSTM as fitted, max over planes", scene[0, 0].max(axis=0)),
            ("truth, max over planes", None if truth is None else truth.max(axis=0)),
        ]
    limits = None
    if nz > 1:  # a plane in its stack's range: a plane with only other planes' axial tails looks dark
        limits = {}
        for i in range(5):
            top = panels[5 + i][1]
            if top is not None:
                _, hi = robust_limits([top])
                limits[i] = limits[5 + i] = (0.0, max(hi, 1e-6))
    return comparison_figure(
        path,
        panels,
        limits=limits,
        motion=-np.asarray(drift),
        motion_on=2,
        # SIM panels get their own range: the truth is a density in its own units and Wiener
        # ringing would set the range of the NSTM panel
        shared_range=[],
        pixel_size_um=px,
        title=title,
        ncols=5,
        floor=0.0,  # densities: negative lobes (ringing) black
    )


def _last_window(store: str | Path, name: str) -> tuple[StoreReader, ReconReader, int] | None:
    """The store, its reconstruction ``recon/<name>`` and the last window done (None: none yet)."""
    recon = ReconReader(store, name)
    done = recon.windows_done()
    return None if not done else (StoreReader(store), recon, done[-1])


def rolling_shutter_figure(store: str | Path, path: str | Path, name: str = "nstm") -> Path | None:
    """Save a PNG of the last reconstructed window of a ``rolling_shutter`` store.

    Panels (colour, each scaled to its own 99.5th percentile): the first raw frame (the caustic
    pattern the diffuser makes: no image to a human eye), the static deconvolution, the NSTM
    video at its first and last time, and the simulated truth at those times (rebuilt from the
    store's ``acquisition.hardware_config_dump``; left out for a store without one). The title
    gives the PSNR of each against the truth, after the one brightness gain that fits best (the
    store's units are counts), mean over the window's time points. None if nothing to show.
    """
    from nstm_acquire.hardware.config import parse_hardware_config
    from nstm_acquire.hardware.simulated.lensless_camera import lensless_truth

    opened = _last_window(store, name)
    if opened is None:
        return None
    reader, recon, w = opened
    video, times = recon.scene(w)[:, :, 0], recon.times_s(w)  # (T, 3, Y, X)
    static = recon.conventional(w)[:, 0]  # (3, Y, X)
    raw = reader.window(w).raw[:3, 0].astype(np.float64)  # the first frame's colour planes
    dump = reader.attrs.acquisition.get("hardware_config_dump") if reader.attrs.acquisition else None
    truth = None
    if dump and (dump.get("simulation") or {}) and dump.get("rolling_shutter"):
        scene = lensless_truth(parse_hardware_config(dump)).scene
        truth = np.stack([scene.render(float(t)) for t in times])

    def rgb(a: np.ndarray) -> np.ndarray:  # (3, Y, X) -> (Y, X, 3) in [0, 1]
        a = np.moveaxis(np.clip(a, 0, None), 0, -1)
        return np.clip(a / max(float(np.percentile(a, 99.5)), 1e-12), 0, 1)

    def psnr(x: np.ndarray, ref: np.ndarray) -> float:
        gain = float(np.sum(x * ref) / max(float(np.sum(x * x)), 1e-30))
        mse = float(np.mean((gain * x - ref) ** 2))
        return 10 * np.log10(float(ref.max()) ** 2 / max(mse, 1e-30))

    title = f"Rolling-shutter lensless video, window {w} ({len(times)} time points)"
    if truth is not None:
        nstm_db = np.mean([psnr(video[i], truth[i]) for i in range(len(times))])
        static_db = np.mean([psnr(static, truth[i]) for i in range(len(times))])
        title += f" - PSNR vs truth: static deconvolution {static_db:.1f} dB, NSTM {nstm_db:.1f} dB"
    last = len(times) - 1
    panels: list[tuple[str, np.ndarray | None]] = [
        ("raw, first frame (caustics)", rgb(raw)),
        ("static deconvolution", rgb(static)),
        ("NSTM, first time", rgb(video[0])),
        (f"NSTM, {1e3 * (times[last] - times[0]):.2f} ms later", rgb(video[last])),
        ("truth, first time", None if truth is None else rgb(truth[0])),
        ("truth, last time", None if truth is None else rgb(truth[last])),
    ]
    return comparison_figure(path, panels, shared_range=[], title=title, ncols=6)


def focus_plane(stack: np.ndarray) -> int:
    """The plane of best focus of a ``(Z, Y, X)`` widefield stack: the one whose brightest
    structures stand highest above its median (in focus, a bead's light is concentrated)"""
    peaks = np.percentile(stack.reshape(stack.shape[0], -1), 99.9, axis=1)
    return int(np.argmax(peaks - np.median(stack.reshape(stack.shape[0], -1), axis=1)))


def _sim_illumination(world: Any, modality: str, reader: Any) -> Any:
    """The stored SIM pattern, or the simulated world's (true) one when the store has no
    ``k_per_um``; None when neither is known (no band to filter by)."""
    from nstm_acquire.physics.sim.illumination import SimIllumination

    ill = SimIllumination.from_store(reader.attrs.illumination, modality=modality)
    if ill.k_per_um is None:
        ill = None if world is None else world.scene(modality).illumination
    return ill


def _sim_truth(
    world: Any, modality: str, reader: Any, t_s: float, n_planes: int, px: float, z_centre_um: float
) -> np.ndarray:
    """The simulated density at ``t_s`` on the output grid, apodised to the SIM passband (:func:`sim_truth`).

    ``(Z, Y', X')``: 2D ``Z = 1``; 3D the ``n_planes`` focal planes ``optics.z_step_um`` apart,
    centred on ``z_centre_um``. The density is sampled on planes a quarter of that spacing
    apart (at most 50 nm) over the stack and 1 µm beyond, so that beads between the acquired
    planes are in it, filtered in 3D, then the acquired planes are taken.
    """
    optics = reader.optics
    u = int(round(optics.pixel_size_um / px))
    sample = world.scene(modality).sample
    ill = _sim_illumination(world, modality, reader)
    if modality != "sim3d":
        density = sample.on_grid(t_s, reader.frame_shape, optics.pixel_size_um, upsample=u)
        return sim_truth(density, px, optics, ill)[None]
    step = float(optics.z_step_um or 0.25)
    sub = max(1, int(np.ceil(step / 0.05)))  # fine planes per acquired plane spacing
    fine_dz = step / sub
    beyond = int(np.ceil(1.0 / fine_dz))
    index = beyond + sub * np.arange(n_planes)  # the acquired planes among the fine ones
    z = z_centre_um + ((np.arange(2 * beyond + sub * (n_planes - 1) + 1) - beyond) / sub - (n_planes - 1) / 2) * step
    density = sample.on_grid(t_s, reader.frame_shape, optics.pixel_size_um, upsample=u, z_um=z)
    return sim_truth(density, px, optics, ill, fine_dz)[index]
