"""SIM quality against ground truth: NSTM (each modality's defaults) vs Wiener, 2D 256 x 256 and 3D 8 x 128 x 128.

Windows of the simulated microscope's SIM optics (NA 1.4 oil, emission 0.52 µm, 80 nm camera
pixels; pattern at the configured k), noisy, with the pattern estimated from each window
(falling back to the calibrated pattern where the estimate is implausible, as the CLI does).
Scores against the truth apodised to the SIM passband (``evaluation.metrics.sim_truth``) at every
shot time; beads also:
ghost peaks (maxima more than 0.1 µm from any bead, per shot) and resolved pairs.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from benchmarks.common import FIGURES, RESULTS, machine, save_result
from benchmarks.sim_common import band_limited_truth, run_sim, score, sim_window
from nstm_acquire.evaluation.figures import comparison_figure
from nstm_acquire.nstm.config import default_config

CASES_2D = {
    "static beads": ("beads", "static"),
    "vibrating beads": ("beads", "vibration:ay=0.1,ax=0.2,f=5"),
    "moving filaments": ("filaments", "translation:vx=1.5,vy=-1+swirl:omega=1.0,radius=6"),
}
CASES_3D = {
    "3D moving beads": ("beads", "translation:vx=0.6,vy=0.3"),
}


def _zoom(image: np.ndarray, centre: tuple[int, int] | None = None, size: int = 160) -> np.ndarray:
    """``size`` x ``size`` output pixels (6.4 µm) around ``centre`` (default the middle)."""
    ny, nx = image.shape
    if min(ny, nx) <= size:
        return image
    cy, cx = centre if centre is not None else (ny // 2, nx // 2)
    y0 = int(np.clip(cy - size // 2, 0, ny - size))
    x0 = int(np.clip(cx - size // 2, 0, nx - size))
    return image[y0 : y0 + size, x0 : x0 + size]


def _figure(name: str, win, result) -> str:
    z0 = result.scene.shape[2] // 2
    three_d = win.raw.shape[1] > 1
    raw = win.raw[:, z0].astype(np.float64).mean(axis=0) if three_d else win.raw[0, z0]  # 3D: widefield of the plane
    raw = np.kron(raw, np.ones((2, 2), raw.dtype))
    centre = None
    phantom = win.sample.phantom
    if getattr(phantom, "pairs", None):  # centre the view on the first bead pair at shot 0
        i, j, _ = phantom.pairs[0]
        mid = 0.5 * (phantom.positions_um[i, -2:] + phantom.positions_um[j, -2:])
        at = win.sample.positions_at(float(result.times_s[0]), mid[None])[0]
        centre = tuple(int(round(v / (win.optics.pixel_size_um / 2))) for v in at)
    path = FIGURES / f"sim_{name.replace(' ', '_')}.png"
    comparison_figure(
        path,
        [
            (f"raw widefield, plane {z0}" if three_d else "raw shot 0", _zoom(raw, centre)),
            ("Wiener", _zoom(result.conventional[0, z0], centre)),
            ("NSTM, shot 0", _zoom(result.scene[0, 0, z0], centre)),
            ("truth (SIM band, apodised), shot 0", _zoom(band_limited_truth(win, float(result.times_s[0]))[z0], centre)),
        ],
        shared_range=[],
        pixel_size_um=win.optics.pixel_size_um / 2,
        title=f"SIM, {name}",
    )
    return path.name


def _row(name: str, c: dict) -> str:
    beads = "pairs_total" in c
    ghosts = (
        f"{c['ghosts_per_shot_wiener']:.1f} / **{c['ghosts_per_shot_nstm']:.1f}**"
        if beads and c["modality"] == "sim2d"
        else "-"
    )
    pairs = f"{c['resolved_pairs_wiener']} / **{c['resolved_pairs_nstm']}** of {c['pairs_total']}" if beads else "-"
    return (
        f"| {name} | {c['size']} | `{c['motion']}` | {c['wiener_corr']:.3f} | **{c['nstm_corr']:.3f}** "
        f"({c['nstm_corr_worst']:.3f}) | {ghosts} | {pairs} | {c['pattern']} | {c['steps']} ({c['best_step']}) "
        f"| {c['wall_s']:.0f} |"
    )


def run(quick: bool = False, only: list[str] | None = None) -> dict:
    """Run every case (or those named in ``only``, keeping the saved results of the others)."""
    n2, n3, nz = (64, 32, 6) if quick else (256, 128, 8)
    configs = {m: default_config(m) for m in ("sim2d", "sim3d")}  # each modality's defaults
    numbers: dict = {
        "size_2d": n2,
        "size_3d": [nz, n3, n3],
        "config": {m: c.model_dump(mode="json") for m, c in configs.items()},
        "cases": {},
    }
    saved = RESULTS / "sim_quality.json"
    if only and saved.exists():
        numbers["cases"] = json.loads(saved.read_text())["numbers"]["cases"]
    cases = [(k, "sim2d", *v) for k, v in CASES_2D.items()] + [(k, "sim3d", *v) for k, v in CASES_3D.items()]
    for name, modality, kind, motion in cases:
        if only and name not in only:
            continue
        n = n3 if modality == "sim3d" else n2
        win = sim_window(modality, n, kind, motion, n_planes=nz if modality == "sim3d" else 1)
        result, info = run_sim(win, configs[modality])
        sc = score(win, result)
        size = f"{nz} x {n} x {n}" if modality == "sim3d" else f"{n} x {n}"
        figure = _figure(name, win, result)
        numbers["cases"][name] = {
            "modality": modality, "motion": motion, "size": size, "figure": figure, "commit": machine().get("git"),
            **sc, **info,
        }
        print(f"  {name}: Wiener {sc['wiener_corr']:.3f}, NSTM {sc['nstm_corr']:.3f}, {info['wall_s']:.0f} s", flush=True)
    order = [name for name, *_ in cases if name in numbers["cases"]]
    rows = [_row(name, numbers["cases"][name]) for name in order]
    made_at = [f"{name} {numbers['cases'][name].get('commit')}" for name in order]
    fig_rows = [f"![{name}](figures/{numbers['cases'][name]['figure']})" for name in order]
    md = "\n".join(
        [
            "## SIM quality against ground truth (NSTM defaults vs Wiener)",
            "",
            "`python -m benchmarks.run sim_quality`. The simulated microscope's SIM optics (NA 1.4 oil,",
            "emission 0.52 µm, 80 nm camera pixels, output grid 40 nm), noisy frames (about 300-400",
            "photo-electrons at the brightest pixels), pattern estimated from each window (the",
            "calibrated pattern where the estimate is implausible). 2D: 3 x 3 shots 12 ms apart",
            "(10 ms exposures); 3D: 3 x 5 shots, each a stack of planes 125 nm apart, 4 ms per frame.",
            "*Corr.*: correlation with the truth apodised to the SIM passband as the Wiener result is",
            "(`evaluation.metrics.sim_truth`; 3D also axially) at each shot time",
            "(mean over shots, worst in brackets; the Wiener result is one image per window), 8 output",
            "pixels of border excluded. *Ghosts*: local maxima over a quarter of the bright level",
            "farther than 0.1 µm from any bead, per shot (Wiener / NSTM). *Pairs*: bead pairs",
            "(2D: 190 nm beads 0.2, 0.25, 0.3 µm apart; 3D: 100 nm beads 0.16, 0.2, 0.25 µm apart) with a",
            "dip below 0.8 between two peaks each over a quarter of the bright level, summed over shots",
            "(Wiener / NSTM; Wiener ghosts can fake a dip, so read it with the ghost count). Steps:",
            "run (kept). Wall: whole window including estimation, Wiener and compilation.",
            "",
            "| case | size | motion | Wiener corr. | NSTM corr. | ghosts/shot | resolved pairs | pattern | steps | wall (s) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Commit each row was made at (cases can be re-run one by one): " + "; ".join(made_at) + ".",
            "",
            "Figures (6.4 µm around the first bead pair, else the field's centre: raw shot 0 shown on",
            "the output grid (3D: the widefield mean of all shots), Wiener, NSTM at shot 0, truth in the",
            "apodised SIM band at shot 0; each panel its own display range; 3D: the central plane):",
            "",
            *fig_rows,
        ]
    )
    save_result("sim_quality", numbers, md, order=40)
    return numbers


if __name__ == "__main__":
    # python -m benchmarks.cases.sim_quality "vibrating beads" ...: re-run some cases only
    run(only=sys.argv[1:] or None)
    from benchmarks.common import build_report

    build_report()
