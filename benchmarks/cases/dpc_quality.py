"""DPC quality against ground truth: NSTM (defaults) vs conventional, five motions, ablation.

A 128 x 128 (64 µm) simulated cell culture moves during one four-shot window (30 ms exposures,
2.5 ms between shots). Scores: correlation of the phase with the truth at each shot time
(frequencies DPC cannot see, below 0.1 NA/λ, removed; 8-pixel border left out), and the mean
end-point error of the motion where the sample has structure. Ablation: the same fit with
coarse-to-fine switched off (every level from the first step).
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import FIGURES, save_result
from benchmarks.dpc_common import MOTIONS, public, run_nstm, window
from nstm_acquire.evaluation.figures import comparison_figure
from nstm_acquire.evaluation.metrics import highpass
from nstm_acquire.nstm.config import default_config
from nstm_acquire.physics.dpc.forward import dpc_normalise


def _figure(name: str, win, res, spec: str) -> str:
    px, cut = win.optics.pixel_size_um, 0.1 * win.optics.cutoff_per_um
    hp = lambda a: highpass(a, px, cut)  # noqa: E731
    y = dpc_normalise(win.raw, win.background)
    motion = res["_motion"][0] - res["_motion"][-1]  # content moves from shot 0 to shot 3 by -this
    path = FIGURES / f"dpc_{name.replace(' ', '_')}.png"
    comparison_figure(
        path,
        [
            ("raw shot 0 (image/bg - 1)", y[0]),
            ("conventional phase", hp(res["_conventional"][1])),
            ("NSTM phase, shot 0", hp(res["_scene"][0, 1])),
            ("truth phase, shot 0", hp(win.truth_scene[0, 1])),
            ("NSTM motion, shot 0 to 3", np.hypot(*motion)),
        ],
        motion=-motion,
        motion_on=4,
        shared_range=[1, 2, 3],
        pixel_size_um=px,
        title=f"DPC, {name} ({spec})",
        cmap="gray",
    )
    return path.name


LARGE = {
    "large translation": "translation:vx=250,vy=100",
    "large swirl": "swirl:omega=15,radius=16",
}


def run(quick: bool = False) -> dict:
    n = 64 if quick else 128
    config = default_config()
    ablation = config.with_fit(coarse_to_fine_steps=1)
    numbers: dict = {"size": n, "config": config.model_dump(mode="json"), "cases": {}}
    rows, fig_rows = [], []
    for name, motion in {**MOTIONS, **({} if quick else LARGE)}.items():
        win = window(n, motion)
        res = run_nstm(config, win)
        abl = run_nstm(ablation, win)
        numbers["cases"][name] = {"default": public(res), "no_coarse_to_fine": public(abl)}
        fig = _figure(name, win, res, motion)
        rows.append(
            f"| {name} | {res['true_motion_px']:.1f} | {res['conventional']:.3f} | **{res['corr']:.3f}** "
            f"({min(res['corr_per_shot']):.3f}) | {res['epe_px']:.2f} | {abl['corr']:.3f} | {abl['epe_px']:.2f} | "
            f"{res['steps']} ({res['best_step']}) | {res['wall_s']:.1f} |"
        )
        fig_rows.append(f"![{name}](figures/{fig})")
    md = "\n".join(
        [
            "## DPC quality against ground truth (NSTM defaults vs conventional)",
            "",
            f"`python -m benchmarks.run dpc_quality`. {n} x {n} pixels (0.5 µm), simulated cells moving",
            "during one four-shot window (30 ms exposures). *Phase corr.*: correlation with the true",
            "phase at each shot time after removing what DPC cannot see (below 0.1 NA/λ), 8-pixel",
            "border excluded; mean over the 4 shots (worst shot in brackets). *EPE*: mean end-point",
            "error of the motion (pixels) where the sample has structure, relative to the window",
            "mean. *No c2f*: the same fit with every hash level on from the first step. Steps: run",
            "(kept, by held-out loss). Wall: whole fit including compilation.",
            "",
            "| motion | true motion (px) | conventional | NSTM | NSTM EPE (px) | no c2f | no c2f EPE | steps | wall (s) |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Coarse-to-fine matters once the motion within a window is large: without it the large",
            "translation (24 px) is not recovered at all (the fit locks onto a wrong alignment), as the",
            "published paper reports; for motions of a few pixels it makes no difference here.",
            "",
            "Figures (raw shot, conventional phase, NSTM phase and truth at the first shot, all",
            "high-passed as scored; last panel: NSTM motion from shot 0 to shot 3, arrows show where",
            "the content moves):",
            "",
            *fig_rows,
        ]
    )
    save_result("dpc_quality", numbers, md, order=20)
    return numbers
