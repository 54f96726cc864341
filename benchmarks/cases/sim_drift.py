"""2D SIM with a drift of several pattern periods within one window: the fit from zero motion
(before) against the fit whose motion starts from a registration of the shots' low band.

Windows of the simulated microscope's 2D SIM optics (NA 1.4 oil, emission 0.52 µm, 80 nm camera
pixels, pattern at 0.85 of the cut-off: a period of about 0.22 µm), 128 x 128 camera pixels,
noisy, 190 nm beads drifting at a constant velocity (direction 1:2 in y:x) by 2 to 16 pattern
periods between the first and the last of the nine shots (12 ms apart, 10 ms exposures). The
calibrated (true) pattern is used, so only the motion differs between the two fits (the
estimate from a drifting window is implausible from about 8 periods on). Both fits use
``default_config("sim2d")`` (Wiener start at ``start_alpha`` 0.5, at most 150 steps), one with
``fit.motion_start="zero"``, one with ``"registration"`` (today's default: a fast drift also
rendered at several times across each exposure, ``fit.exposure_blur_px``), and one from the
registration rendering every shot at its exposure midpoint. Each frame integrates the sample
at 16 instants across its exposure (a continuous blur). Also the vibrating beads of the SIM
quality benchmark (at 128 x 128): the registration start must leave them as they are.

    python -m benchmarks.run sim_drift            # every case
    python -m benchmarks.cases.sim_drift          # the same, then rebuild the report
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from benchmarks.common import FIGURES, machine, save_result
from benchmarks.sim_common import band_limited_truth, score, sim_window
from nstm_acquire.evaluation.figures import comparison_figure
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.world import sim_illumination_from_config
from nstm_acquire.nstm.config import default_config
from nstm_acquire.recon.arrays import WindowResult, reconstruct_sim

SIZE = 128
# drift between the first and the last shot, in pattern periods
DRIFT_PERIODS = (2, 4, 8, 12, 16)
DIRECTION = np.array([1.0, 2.0]) / np.sqrt(5.0)  # (y, x)
VIBRATION = "vibration:ay=0.1,ax=0.2,f=5"  # the SIM quality benchmark's vibrating beads
EXPOSURE_INSTANTS = 16  # each frame averages the sample at this many times across its exposure


def pattern_period_um() -> float:
    """The simulated microscope's 2D SIM pattern period, µm (the first orientation's)."""
    cfg = simulated_config().sim2d
    ill = sim_illumination_from_config(cfg, False)
    return float(1.0 / np.hypot(*np.asarray(ill.k_per_um)[0]))


def drift_spec(periods: float, period_um: float, span_s: float) -> str:
    """A translation along :data:`DIRECTION` of ``periods`` pattern periods over ``span_s`` seconds."""
    v = DIRECTION * periods * period_um / span_s
    return f"translation:vx={v[1]:.3f},vy={v[0]:.3f}"


def _fit(win: Any, start: str) -> tuple[WindowResult, dict[str, Any]]:
    """``start`` "zero", "registration" (today's default) or "midpoint" (from the registration,
    every shot rendered at its exposure midpoint only)."""
    config = default_config("sim2d")
    if start == "midpoint":
        config = config.with_fit(exposure_blur_px=None)
    else:
        config = config.with_fit(motion_start=start)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the estimate of a drifting window disagrees with the true pattern
        warnings.simplefilter("ignore", UserWarning)
        result = reconstruct_sim(win.raw, win.timestamps_s, win.exposure_s, win.optics, win.illumination, config=config)
    wall = time.perf_counter() - t0
    sc = score(win, result)
    found = result.info.get("motion_start", {})
    out = {
        "nstm_corr": sc["nstm_corr"],
        "nstm_corr_worst": sc["nstm_corr_worst"],
        "wiener_corr": sc["wiener_corr"],
        "ghosts_per_shot_nstm": sc.get("ghosts_per_shot_nstm"),
        "resolved_pairs_nstm": sc.get("resolved_pairs_nstm"),
        "pairs_total": sc.get("pairs_total"),
        "steps": result.fit.steps,
        "wall_s": wall,
        "registered": found.get("registered"),
        "prefit": found.get("prefit"),
        "shot_shift_px": found.get("shot_shift_px"),
        "largest_px": found.get("largest_px"),
        "exposure_samples": (result.info.get("exposure_samples") or {}).get("samples", 1),
    }
    return result, out


def _true_shifts_px(win: Any, velocity_um_per_s: np.ndarray) -> np.ndarray:
    mid = (win.timestamps_s + 0.5 * win.exposure_s)[:, 0]
    return np.outer(mid - mid.mean(), velocity_um_per_s) / win.optics.pixel_size_um


def _figure(name: str, win: Any, results: dict[str, WindowResult]) -> str:
    t0 = float(results["zero"].times_s[0])
    raw = np.kron(win.raw[0, 0].astype(np.float64), np.ones((2, 2)))
    path = FIGURES / f"sim_drift_{name.replace(' ', '_')}.png"
    comparison_figure(
        path,
        [
            ("raw shot 0", raw),
            ("Wiener", results["zero"].conventional[0, 0]),
            ("NSTM from zero motion, shot 0", results["zero"].scene[0, 0, 0]),
            ("NSTM from registration, shot 0", results["registration"].scene[0, 0, 0]),
            ("truth (SIM band, apodised), shot 0", band_limited_truth(win, t0)[0]),
        ],
        shared_range=[],
        pixel_size_um=win.optics.pixel_size_um / 2,
        title=f"2D SIM, {name}",
    )
    return path.name


def run(quick: bool = False) -> dict:
    n = 64 if quick else SIZE
    period = pattern_period_um()
    span_s = 8 * 0.012  # first to last shot midpoint (sim_common.sim_window: 12 ms apart)
    cases: list[tuple[str, str, np.ndarray | None, float | None]] = [("vibrating beads", VIBRATION, None, None)]
    for p in DRIFT_PERIODS[:2] + DRIFT_PERIODS[-1:] if quick else DRIFT_PERIODS:
        spec = drift_spec(p, period, span_s)
        cases.append((f"drift {p} periods", spec, DIRECTION * p * period / span_s, p * period))
    numbers: dict[str, Any] = {
        "size": n, "period_um": period, "commit": machine().get("git"), "cases": {}, "exposure_instants": EXPOSURE_INSTANTS,
    }
    hardest = None
    for name, spec, velocity, travel_um in cases:
        win = sim_window("sim2d", n, "beads", spec, exposure_instants=EXPOSURE_INSTANTS)
        results, runs = {}, {}
        for start in ("zero", "midpoint", "registration"):
            results[start], runs[start] = _fit(win, start)
        case: dict[str, Any] = {"motion": spec, "travel_um": travel_um, **{f"from_{k}": v for k, v in runs.items()}}
        if velocity is not None and runs["registration"]["shot_shift_px"] is not None:
            err = np.abs(np.asarray(runs["registration"]["shot_shift_px"]) - _true_shifts_px(win, velocity))
            case["registration_error_px"] = float(err.max())
            case["largest_deviation_px"] = float(2 * np.max(np.abs(_true_shifts_px(win, velocity))))
        numbers["cases"][name] = case
        hardest = (name, win, results)
        print(
            f"  {name}: Wiener {runs['zero']['wiener_corr']:.3f}, from zero {runs['zero']['nstm_corr']:.3f}, "
            f"from registration {runs['midpoint']['nstm_corr']:.3f} (midpoint), {runs['registration']['nstm_corr']:.3f}",
            flush=True,
        )
    assert hardest is not None
    numbers["figure"] = _figure(hardest[0], hardest[1], hardest[2])
    save_result("sim_drift", numbers, markdown(numbers), order=41)
    return numbers


def _cell(r: dict[str, Any]) -> str:
    return f"{r['nstm_corr']:.3f} ({r['nstm_corr_worst']:.3f})"


def _marked(r: dict[str, Any] | None, best: float) -> str:
    """``r``'s cell, in bold when it is the row's best; "-" for a fit the run did not make."""
    if r is None:
        return "-"
    return f"**{_cell(r)}**" if r["nstm_corr"] == best else _cell(r)


def markdown(numbers: dict[str, Any]) -> str:
    rows = []
    for name, c in numbers["cases"].items():
        z, r = c["from_zero"], c["from_registration"]
        mid = c.get("from_midpoint")
        travel = f"{c['travel_um']:.2f}" if c.get("travel_um") is not None else "-"
        dev = f"{c['largest_deviation_px']:.1f}" if "largest_deviation_px" in c else "-"
        err = f"{c['registration_error_px']:.2f}" if "registration_error_px" in c else "-"
        start = "pre-fitted" if r["prefit"] else ("below the gate" if r["registered"] else "not registered")
        best = max(x["nstm_corr"] for x in (z, r, mid) if x is not None)
        rows.append(
            f"| {name} | `{c['motion']}` | {travel} | {dev} | {z['wiener_corr']:.3f} | {_marked(z, best)} | {_marked(mid, best)} "
            f"| {r.get('exposure_samples', 1)}: {_marked(r, best)} "
            f"| {err} | {start} | {z['steps']} / {r['steps']} | {z['wall_s']:.0f} / {r['wall_s']:.0f} |"
        )
    n = numbers["size"]
    return "\n".join(
        [
            "## SIM 2D drift within a window (registration-initialised motion)",
            "",
            "`python -m benchmarks.run sim_drift` (issue 16; docs/model.md, \"SIM 2D: registration of the",
            f"shots' low band\"). {n} x {n} camera pixels of the simulated 2D SIM optics (80 nm pixels, output",
            "grid 40 nm), noisy, 190 nm beads drifting at a constant velocity (1:2 in y:x); pattern period",
            f"{numbers['period_um']:.3f} µm, true pattern. Nine shots 12 ms apart (10 ms exposures), each frame",
            f"the mean of the sample at {numbers.get('exposure_instants', 3)} times across its exposure. Every fit",
            "`default_config(\"sim2d\")` (Wiener start), motion from zero, or from the registration with every",
            "shot rendered at its exposure midpoint (*midpoint*), or as today's default: from the registration,",
            "and where it finds the sample moving more than 6 output pixels within one exposure, every shot",
            "rendered at `ceil(blur / 6)` times across it (*samples*: how many; docs/model.md, \"Large motion:",
            "the blur within an exposure\").",
            "*Travel*: between the first and last shot's midpoints. *Largest*: the largest displacement of",
            "a shot from the window's mean position, output pixels. *Corr.*: correlation with the truth",
            "apodised to the SIM passband at each shot time, mean (worst shot), 8 output pixels of border",
            "excluded. *Reg. error*: largest error of a shot's registered shift, camera pixels.",
            "*Start*: what the registration start did (the gate: a registered motion below 12 output pixels",
            "is left to the fit from zero). Steps and wall: from zero / from registration (wall includes",
            "the Wiener, the pre-fits and compilation; 2 shared cores).",
            "",
            "| case | motion | travel (µm) | largest (px) | Wiener corr. | NSTM from zero | from registration, "
            "midpoint | from registration: samples, corr. | reg. error (px) | start | steps | wall (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Made at commit {numbers.get('commit')}. Figure (the largest drift; each panel its own range):",
            "",
            f"![sim drift](figures/{numbers['figure']})",
        ]
    )


if __name__ == "__main__":
    run()
    from benchmarks.common import build_report

    build_report()
