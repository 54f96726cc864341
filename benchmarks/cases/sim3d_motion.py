"""3D SIM under motion, both plane orders: NSTM (every frame at its own time) vs the 3D Wiener.

Independent simulations through ``simulate_sim_window`` (the simulated microscope's sim3d optics
and three-beam pattern; 100 nm beads with close pairs, 6 planes x 64 x 64 px, 3 x 5 shots per
plane, 4 ms per frame, noisy), each acquired ``plane_major`` (every shot of a plane, plane after
plane: the acquisition's default) and ``pattern_major`` (each (orientation, phase) stack in a
row). Cases: static, lateral drift (4 x 2 camera pixels over the window), vibration. Scores:
correlation with the apodised truth in the SIM passband (``benchmarks.sim_common.score``) at
each shot's time, the NSTM's density brought into that band first (:func:`in_sim_band`: the
truth's own filter; the Wiener's output already is in it) and also as fitted; seconds per
window (estimation, Wiener, compilation and fit).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np

from benchmarks.common import FIGURES, RESULTS, machine, save_result
from benchmarks.sim_common import MARGIN, band_limited_truth, run_sim, score
from nstm_acquire.evaluation.figures import comparison_figure
from nstm_acquire.evaluation.metrics import crop, sim_truth
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import SimulatedSimWindow, simulate_sim_window
from nstm_acquire.hardware.simulated.world import sim_illumination_from_config
from nstm_acquire.nstm.config import default_config
from nstm_acquire.recon.arrays import WindowResult

FRAME_S, EXPOSURE_S = 0.004, 0.003


def motions(window_s: float) -> dict[str, Any]:
    """The motion cases, scaled to the window: drift 4 x 2 camera pixels (80 nm) per window."""
    return {
        "static": "static",
        "drift": f"translation:vx={0.32 / window_s:.4g},vy={0.16 / window_s:.4g}",
        "vibration": "vibration:ay=0.15,ax=0.25,f=3",
    }


def window(n: int, nz: int, motion: Any, plane_order: str, seed: int = 1) -> SimulatedSimWindow:
    """One noisy 3D window of beads with close pairs in ``plane_order``."""
    sim = simulated_config().sim3d
    assert sim is not None
    ill = sim_illumination_from_config(sim, True)
    optics = sim.optics
    field = (n * optics.pixel_size_um, n * optics.pixel_size_um)
    phantom = BeadPhantom(
        field, n_beads=int(1.0 * field[0] * field[1]), diameter_um=0.1, seed=seed,
        pair_separations_um=(0.16, 0.2, 0.25), n_pairs_each=2, z_range_um=(-0.3, 0.3),
    )
    return simulate_sim_window(
        optics, ill, phantom, motion, (n, n), n_planes=nz, z_step_um=optics.z_step_um,
        frame_interval_s=FRAME_S, exposure_s=EXPOSURE_S, photons=400.0, seed=seed, plane_order=plane_order,
    )


def in_sim_band(win: SimulatedSimWindow, result: WindowResult) -> WindowResult:
    """``result`` with every NSTM volume filtered by the truth's apodised SIM passband
    (:func:`~nstm_acquire.evaluation.metrics.sim_truth`), so it is compared with the truth in the
    same band: the NSTM density has detail beyond the passband (it is sharper than the
    band-limited truth), which the truth by construction lacks."""
    px, dz = win.optics.pixel_size_um / 2, win.optics.z_step_um
    band = np.stack([sim_truth(v[0], px, win.optics, win.illumination, dz) for v in result.scene])
    return dataclasses.replace(result, scene=band[:, None].astype(np.float32))


def _figure(name: str, win: SimulatedSimWindow, result: WindowResult, band: WindowResult) -> str:
    z0 = result.scene.shape[2] // 2
    wide = np.kron(win.raw.astype(np.float64).mean(axis=0), np.ones((1, 2, 2)))  # (Z, Y', X')
    truth = band_limited_truth(win, float(result.times_s[0]))
    volumes = [
        ("raw widefield", wide),
        ("Wiener", result.conventional[0]),
        ("NSTM in the SIM band, shot 0", band.scene[0, 0]),
        ("NSTM as fitted, shot 0", result.scene[0, 0]),
        ("truth (SIM band, apodised), shot 0", truth),
    ]
    panels = [(f"{label}, plane {z0}", crop(v[z0], MARGIN)) for label, v in volumes]
    panels += [(f"{label.split(',')[0]}, max over planes", crop(v.max(axis=0), MARGIN)) for label, v in volumes]
    path = FIGURES / f"sim3d_motion_{name.replace(' ', '_').replace(',', '')}.png"
    comparison_figure(
        path,
        panels,
        shared_range=[],
        pixel_size_um=win.optics.pixel_size_um / 2,
        title=f"3D SIM, {name} ({MARGIN} output px of border cropped, as scored)",
        ncols=len(volumes),
        floor=0.0,
    )
    return path.name


def run(quick: bool = False, only: list[str] | None = None) -> dict:
    """Every (motion, plane order) case, or those named in ``only`` (others' results kept)."""
    n, nz = (32, 4) if quick else (64, 6)
    config = default_config("sim3d")  # as the reconstructor fits 3D SIM (docs/model.md, "3D SIM speed")
    sim = simulated_config().sim3d
    assert sim is not None
    window_s = 15 * nz * FRAME_S
    numbers: dict = {"size": [nz, n, n], "config": config.model_dump(mode="json"), "cases": {}}
    saved = RESULTS / "sim3d_motion.json"
    if only and saved.exists():
        old = json.loads(saved.read_text())["numbers"]
        numbers["cases"] = old["cases"]
        for c in numbers["cases"].values():  # results saved before sizes were kept per case
            c.setdefault("size", old.get("size", [nz, n, n]))
    names = []
    full = "" if quick else ", full size"  # quick and full-size results are kept side by side
    for kind, motion in motions(window_s).items():
        for order in ("plane_major", "pattern_major"):
            base = f"{kind}, {order}"
            names += [base, f"{base}, full size"]
            name = base + full
            if only and base not in only:
                continue
            win = window(n, nz, motion, order)
            result, info = run_sim(win, config)
            sc = score(win, result)
            band = in_sim_band(win, result)
            sb = score(win, band)
            numbers["cases"][name] = {
                "motion": motion, "plane_order": order, "figure": _figure(name, win, result, band), "size": [nz, n, n],
                "time_bins": result.info.get("time_bins"),
                "commit": machine().get("git"), **sc, **info,
                "nstm_band_corr": sb["nstm_corr"], "nstm_band_corr_worst": sb["nstm_corr_worst"],
                "resolved_pairs_nstm_band": sb["resolved_pairs_nstm"],
                "load_average_1min": os.getloadavg()[0],  # other jobs on the machine slow the wall time
            }
            print(
                f"  {name}: Wiener {sc['wiener_corr']:.3f}, NSTM in band {sb['nstm_corr']:.3f}, "
                f"as fitted {sc['nstm_corr']:.3f}, {info['wall_s']:.0f} s",
                flush=True,
            )
    rows = []
    for name in names:
        if name not in numbers["cases"]:
            continue
        c = numbers["cases"][name]
        pairs = (
            f"{c['resolved_pairs_wiener']} / **{c['resolved_pairs_nstm_band']}** / "
            f"{c['resolved_pairs_nstm']} of {c['pairs_total']}"
        )
        size = "x".join(str(v) for v in c["size"])
        rows.append(
            f"| {name.removesuffix(', full size')} | {size} | `{c['motion']}` | {c['wiener_corr']:.3f} "
            f"| **{c['nstm_band_corr']:.3f}** ({c['nstm_band_corr_worst']:.3f}) "
            f"| {c['nstm_corr']:.3f} ({c['nstm_corr_worst']:.3f}) "
            f"| {pairs} | {c['pattern']} | {c['time_bins']} | {c['steps']} ({c['best_step']}) | {c['wall_s']:.0f} |"
        )
    figs = [f"![{name}](figures/{numbers['cases'][name]['figure']})" for name in names if name in numbers["cases"]]
    md = "\n".join(
        [
            "## 3D SIM under motion, both plane orders (NSTM vs Wiener)",
            "",
            "`python -m benchmarks.run sim3d_motion` (6 planes x 64 x 64 px; `--quick`: 4 x 32 x 32; the size",
            "of each row in its *size* column, planes x y x x) of the simulated microscope's",
            "sim3d optics (NA 1.4 oil, 80 nm pixels, planes 125 nm apart), 3 x 5 three-beam shots per plane,",
            "100 nm beads (pairs 0.16, 0.2, 0.25 µm apart), about 400 photo-electrons at the brightest pixels,",
            "4 ms per frame. `plane_major`: every shot of a plane, plane after plane (the default order);",
            "`pattern_major`: each (orientation, phase) stack in a row. The NSTM predicts every frame from",
            "the volume of its time bin (docs/model.md, *3D SIM: every plane at its own time*). *Corr.*:",
            "correlation with the apodised truth in the SIM passband at each shot's time (mean, worst in",
            "brackets), 8 output pixels of border excluded. The truth is the density filtered by the",
            "Wiener's own apodised passband, so the Wiener is scored as it comes out; the NSTM density",
            "has detail beyond that band (it is sharper than the truth) and is scored *in the SIM band*",
            "(filtered by the truth's filter first) and *as fitted* (docs/model.md, *Scoring 3D SIM*).",
            "*Pairs*: resolved bead pairs in the central plane summed over shots (Wiener / NSTM in band /",
            "NSTM as fitted). *Bins*: volumes per window. Wall: seconds per window (estimation, Wiener,",
            "compilation and fit), taken under a 1-minute load average of "
            + "/".join(
                f"{numbers['cases'][k]['load_average_1min']:.0f}" if numbers["cases"][k].get("load_average_1min") is not None
                else "?" for k in names if k in numbers["cases"]
            )
            + f" at the end of the cases on {os.cpu_count()} cores (other jobs running"
            + ("; ?: not recorded, the first runs had 14-16" if any(
                numbers["cases"][k].get("load_average_1min") is None for k in names if k in numbers["cases"]) else "")
            + "). 3D SIM defaults (`default_config(\"sim3d\")`: the scene started from the Wiener volume, at"
            " most 450 steps; docs/model.md, *3D SIM speed*).",
            "",
            "| case | size | motion | Wiener corr. | NSTM corr., in SIM band | NSTM corr., as fitted | resolved pairs "
            "| pattern | bins | steps (best) | wall (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Figures (top: the central plane; bottom: maximum over the planes; raw widefield (mean of the",
            "shots), Wiener, NSTM in the SIM band and as fitted at shot 0, truth at shot 0; each panel",
            "its own grey range from 0):",
            "",
            *figs,
        ]
    )
    save_result("sim3d_motion", numbers, md, order=42)
    return numbers


if __name__ == "__main__":
    # python -m benchmarks.cases.sim3d_motion "drift, plane_major" ...: re-run some cases only
    run(only=sys.argv[1:] or None)
    from benchmarks.common import build_report

    build_report()
