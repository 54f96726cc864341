"""Trust report calibration: does the per-window verdict separate bad DPC windows from good ones?

The DPC quality cases (small motions, and a 24-px translation / 14-px swirl), plus deliberately
broken fits (motion network frozen at zero; scene networks scrambled after the fit). Each window
is fitted as the reconstructor fits it (``default_config("dpc")``, the motion started from a
registration of the shots where they moved 12 px or more) and gets the trust report the chain stores (:func:`nstm_acquire.recon.trust.assess_window`), scored against the truth as in
``dpc_quality``: a window is *bad* when its NSTM phase correlation is below the conventional
one or below 0.9.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from benchmarks.cases.dpc_quality import SWEEP
from benchmarks.common import save_result
from benchmarks.dpc_common import MOTIONS, Scorer, problem, registered_start, window
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import build_model, fit, render_scenes
from nstm_acquire.recon.trust import TrustThresholds, assess_window

BAD_CORR = 0.9  # a window is "far from the truth" below this phase correlation
# and "worse than the conventional one" below it by more than this (issue 13's quality tolerance;
# set after a static 2D SIM window scored 0.993 against the Wiener result's 0.997)
WORSE_BY = 0.01
# the large motions of the first calibration (dpc_quality's sweep has them as "translation 24 px"
# and between "swirl 8 px" and "swirl 16 px")
LARGE = {"large translation": "translation:vx=250,vy=100", "large swirl": "swirl:omega=15,radius=16"}


def _scrambled(result, seed: int = 0):
    """The fit with its scene networks' parameters replaced by noise of the same spread."""
    rng = np.random.default_rng(seed)
    scene = jax.tree_util.tree_map(
        lambda a: (3 * np.std(a) * rng.standard_normal(a.shape)).astype(a.dtype) if a.size > 1 else a,
        result.params["scene"],
    )
    return dataclasses.replace(result, params={**result.params, "scene": scene})


def _case(name: str, motion: str, n: int, config, broken: str | None = None, seed: int = 0) -> dict:
    win = window(n, motion, seed=seed)
    fwd, data, conv = problem(win)
    model = build_model(config, (n, n), 2)
    t0 = time.perf_counter()
    start, _, data = registered_start(config, win)
    res = fit(model, fwd, data, start_params=start)
    if broken == "scrambled":
        res = _scrambled(res)
    sc, mo = render_scenes(res, win.midpoints_s)
    score = Scorer(win)
    corr = score.scenes(sc)
    conv_corr = float(np.mean([score.phase(conv[1], k) for k in range(len(sc))]))
    cam = simulated_config(frame_shape=(n, n)).camera
    report, rmap = assess_window(
        forward=fwd, fit_result=res, measurements=data.measurements, times_s=data.times_s, shots=data.shots,
        weights=None, counts_per_unit=win.background, counts_offset_units=1.0,
        gain_e_per_adu=cam.gain_e_per_adu or 0.5,
        read_noise_e=cam.read_noise_e if cam.read_noise_e is not None else 1.5,
        motion_px=mo[:, :, None], scene=sc[:, :, None], conventional=conv[:, None], channel=1,
        pixel_size_um=win.optics.pixel_size_um,
        band_per_um=(0.1 * win.optics.cutoff_per_um, 0.5 * win.optics.cutoff_per_um),
    )  # fmt: skip
    true_px = float(np.abs(win.truth_displacement_px - win.truth_displacement_px.mean(0)).max())
    return {
        "case": name, "motion": motion, "broken": broken, "seed": seed,
        **_scored(corr, conv_corr, report, rmap, time.perf_counter() - t0, true_px),
    }


def _scored(corr: float, conv_corr: float, report: dict, rmap: np.ndarray, wall_s: float, true_px: float) -> dict:
    """A benchmark row's scores: the truth's judgement (``bad``) beside the trust report's numbers."""
    return {
        "corr": corr, "conventional": conv_corr, "bad": corr < conv_corr - WORSE_BY or corr < BAD_CORR,
        "verdict": report["verdict"], "reasons": report["reasons"],
        "heldout_noise_ratio": report["heldout_noise_ratio"], "folded_fraction": report["folded_fraction"],
        "max_displacement_px": report["max_displacement_px"], "lowfreq_correlation": report["lowfreq_correlation"],
        "lowfreq_motion_periods": report["lowfreq_motion_periods"],
        "residual_map_max": float(np.nanmax(rmap)), "wall_s": wall_s, "true_motion_px": true_px,
    }  # fmt: skip


def run(quick: bool = False) -> dict:
    n = 64 if quick else 128
    config = default_config("dpc")
    frozen = config.with_fit(lr_motion=1e-12, motion_start="zero")  # no motion at all: a failed fit
    cases = [(name, m, config, None) for name, m in MOTIONS.items()]
    cases += [(name, m, config, None) for name, m in LARGE.items()]
    cases += [
        ("translation, motion frozen", MOTIONS["translation"], frozen, None),
        ("large translation, motion frozen", LARGE["large translation"], frozen, None),
        ("static, scene scrambled", MOTIONS["static"], config, "scrambled"),
    ]
    cases = [(*c, 0) for c in cases] + [  # another sample and noise (seed 7), and a large shear
        ("translation (seed 7)", MOTIONS["translation"], config, None, 7),
        ("swirl (seed 7)", MOTIONS["swirl"], config, None, 7),
        ("large swirl (seed 7)", LARGE["large swirl"], config, None, 7),
        ("large shear (seed 7)", "shear:rate=6", config, None, 7),
    ]
    # not used to choose the thresholds (run after they were fixed): seed 11
    validation = [
        ("rotation (seed 11)", MOTIONS["rotation"], config, None, 11),
        ("large shear (seed 11)", "shear:rate=6", config, None, 11),
        ("large translation (seed 11)", LARGE["large translation"], config, None, 11),
        ("large swirl, motion frozen (seed 11)", LARGE["large swirl"], frozen, None, 11),
        # the motions today's DPC default does not recover (dpc_quality's sweep), added after the
        # registration start and the 4-cell motion grid made the large motions above good
        ("swirl 24 px", SWEEP["swirl 24 px"], config, None, 0),
        ("swirl 32 px", SWEEP["swirl 32 px"], config, None, 0),
        ("shear 32 px", SWEEP["shear 32 px"], config, None, 0),
    ]
    if quick:
        cases = [c for c in cases if not c[0].startswith("large")]
        validation = validation[:1]
    rows_out = []
    for i, (name, motion, cfg, broken, seed) in enumerate(cases + validation):
        row = _case(name, motion, n, cfg, broken, seed=seed)
        row["calibration"] = i < len(cases)
        _print(row)
        rows_out.append(row)
    th = TrustThresholds()
    numbers = {"size": n, "thresholds": dataclasses.asdict(th), "cases": rows_out}
    numbers["sim_size"], numbers["sim_cases"] = _sim_rows(quick)
    numbers["sim3d_cases"] = _sim3d_rows(quick)
    numbers["separated"] = all(
        (r["verdict"] != "ok") == r["bad"] for r in rows_out + numbers["sim_cases"] + numbers["sim3d_cases"]
    )
    save_result("trust", numbers, markdown(numbers), order=25)
    return numbers


def _print(row: dict) -> None:
    print(f"[trust] {row['case']}: corr {row['corr']:.3f} conv {row['conventional']:.3f} -> {row['verdict']} "
          f"(r {row['heldout_noise_ratio']:.2f}, fold {row['folded_fraction']:.3g}, "
          f"disp {row['max_displacement_px']:.1f}, lf {row['lowfreq_correlation']:.2f})", flush=True)  # fmt: skip


# 2D SIM (sim_quality's and sim_drift's windows, 2x finer output pixels): good fits, the drifts the
# fit from zero loses (sim_drift: 12 and 16 pattern periods), and a fit with its motion frozen
def _sim_cases() -> list[tuple[str, str, str, str]]:
    from benchmarks.cases.sim_drift import drift_spec, pattern_period_um

    period, span_s = pattern_period_um(), 8 * 0.012
    drift = {p: drift_spec(p, period, span_s) for p in (4, 12, 16)}
    return [
        ("static beads", "beads", "static", "registration"),
        ("vibrating beads", "beads", "vibration:ay=0.1,ax=0.2,f=5", "registration"),
        ("moving filaments", "filaments", "translation:vx=1.5,vy=-1+swirl:omega=1.0,radius=6", "registration"),
        ("drift 4 periods", "beads", drift[4], "registration"),
        ("drift 12 periods", "beads", drift[12], "registration"),
        ("drift 16 periods", "beads", drift[16], "registration"),
        ("drift 12 periods, motion from zero", "beads", drift[12], "zero"),
        ("drift 16 periods, motion from zero", "beads", drift[16], "zero"),
        ("drift 4 periods, motion frozen", "beads", drift[4], "frozen"),
    ]


def _sim_rows(quick: bool) -> tuple[int, list[dict]]:
    n = 64 if quick else 128
    cases = _sim_cases()
    rows = []
    for name, kind, motion, start in cases[:2] + cases[-1:] if quick else cases:
        row = _sim_case(name, kind, motion, start, n)
        row["calibration"] = False  # run after the thresholds were fixed on DPC
        _print(row)
        rows.append(row)
    return n, rows


def _sim_case(name: str, kind: str, motion: str, start: str, n: int) -> dict:
    """One 2D SIM window fitted as the reconstructor fits it (``default_config("sim2d")``; motion
    from zero or frozen when ``start`` says so), scored against the band-limited truth
    (``sim_common.score``) and given the trust report the chain stores."""
    import warnings

    from benchmarks.sim_common import score, sim_window
    from nstm_acquire.hardware.simulated.noise import CameraNoise
    from nstm_acquire.recon.arrays import reconstruct_window
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.recon.trust import window_trust

    config = default_config("sim2d")
    if start == "zero":
        config = config.with_fit(motion_start="zero")
    elif start == "frozen":
        config = config.with_fit(motion_start="zero", lr_motion=1e-12)
    win = sim_window("sim2d", n, kind, motion)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the pattern estimate of a drifting window disagrees with the true one
        warnings.simplefilter("ignore", UserWarning)
        builder = ProblemBuilder(win.optics, win.illumination, win.raw.shape[-2:], 1, config)
        prob = builder.problem_from_arrays(win.raw, win.timestamps_s, win.exposure_s)
        result = reconstruct_window(prob, config)
    sc = score(win, result)
    # sim_window's frames are photo-electrons (counts less the offset, times the gain): 1 e per unit
    report, rmap = window_trust(prob, result, win.raw, win.optics.cutoff_per_um, 1.0, CameraNoise().read_noise_e)
    true_px = _true_motion_px(win, n)
    return {
        "case": name, "motion": motion, "start": start,
        **_scored(float(sc["nstm_corr"]), float(sc["wiener_corr"]), report, rmap, time.perf_counter() - t0, true_px),
    }


def _true_motion_px(win, n: int) -> float:
    """The largest deviation of points across an n x n SIM window's field from their mean
    position over its frames, in output pixels (2x finer than the camera's)."""
    side = n * win.optics.pixel_size_um
    grid = np.stack(np.meshgrid(*(np.linspace(0.1 * side, 0.9 * side, 5),) * 2, indexing="ij"), -1).reshape(-1, 2)
    mids = (win.timestamps_s + 0.5 * win.exposure_s).reshape(-1)  # every frame (of every plane)
    where = np.stack([win.sample.positions_at(float(t), grid) for t in mids])
    return float(np.abs(where - where.mean(0)).max() / (win.optics.pixel_size_um / 2))


def _sim3d_cases() -> list[tuple[str, str, str, str]]:
    """(name, motion, plane order, start) of the 3D SIM rows: sim3d_motion's windows, a drift 4x
    larger, and fits with the motion frozen (``start`` "frozen") or from zero (the default)."""
    from benchmarks.cases.sim3d_motion import FRAME_S, motions

    m = motions(15 * SIM3D_SIZE[0] * FRAME_S)
    vx, vy = (float(v.split("=")[1]) for v in m["drift"].removeprefix("translation:").split(","))
    large = f"translation:vx={4 * vx:.4g},vy={4 * vy:.4g}"
    return [
        ("static", m["static"], "plane_major", "zero"),
        ("drift", m["drift"], "plane_major", "zero"),
        ("vibration", m["vibration"], "plane_major", "zero"),
        ("vibration, pattern major", m["vibration"], "pattern_major", "zero"),
        ("drift x4", large, "plane_major", "zero"),
        ("drift, motion frozen", m["drift"], "plane_major", "frozen"),
        ("drift x4, motion frozen", large, "plane_major", "frozen"),
    ]


#: (planes, rows, columns) camera pixels of the 3D SIM rows (sim3d_motion's small windows)
SIM3D_SIZE = (4, 32, 32)


def _sim3d_rows(quick: bool) -> list[dict]:
    cases = _sim3d_cases()
    rows = []
    for name, motion, order, start in cases[:1] + cases[-2:-1] if quick else cases:
        row = _sim3d_case(name, motion, order, start)
        # the thresholds are DPC's, but the low-frequency check's axial projection was chosen on
        # these rows (docs/trust.md, "3D SIM"): not out of sample
        row["calibration"] = True
        _print(row)
        rows.append(row)
    return rows


def _sim3d_case(name: str, motion: str, order: str, start: str) -> dict:
    """One 3D SIM window fitted as the reconstructor fits it (``default_config("sim3d")``; the
    motion frozen when ``start`` says so), scored as sim3d_motion scores it (the NSTM brought into
    the truth's SIM band) and given the trust report the chain stores."""
    import warnings

    from benchmarks.cases.sim3d_motion import in_sim_band, window
    from benchmarks.sim_common import score
    from nstm_acquire.hardware.simulated.noise import CameraNoise
    from nstm_acquire.recon.arrays import reconstruct_window
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.recon.trust import window_trust

    config = default_config("sim3d")
    if start == "frozen":
        config = config.with_fit(lr_motion=1e-12)
    nz, n, _ = SIM3D_SIZE
    win = window(n, nz, motion, order)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the pattern estimate of a moving window disagrees with the true one
        warnings.simplefilter("ignore", UserWarning)
        builder = ProblemBuilder(win.optics, win.illumination, win.raw.shape[-2:], nz, config)
        prob = builder.problem_from_arrays(win.raw, win.timestamps_s, win.exposure_s)
        result = reconstruct_window(prob, config)
    sc = score(win, in_sim_band(win, result))
    report, rmap = window_trust(prob, result, win.raw, win.optics.cutoff_per_um, 1.0, CameraNoise().read_noise_e)
    true_px = _true_motion_px(win, n)
    return {
        "case": name, "motion": motion, "plane_order": order, "start": start,
        **_scored(float(sc["nstm_corr"]), float(sc["wiener_corr"]), report, rmap, time.perf_counter() - t0, true_px),
    }


def _rows_md(rows_out: list[dict], th: TrustThresholds) -> list[str]:
    return [
        f"| {r['case']}{'' if r['calibration'] else ' *'} | {r['true_motion_px']:.1f} | {r['corr']:.3f} | {r['conventional']:.3f} | "
        f"{'bad' if r['bad'] else 'good'} | **{r['verdict']}** | {r['heldout_noise_ratio']:.2f} | "
        f"{100 * r['folded_fraction']:.2g} | {r['max_displacement_px']:.1f} | {r['lowfreq_correlation']:.2f}"
        f"{' (not judged)' if r.get('lowfreq_motion_periods', 0.0) > th.lowfreq_max_motion_periods else ''} | "
        f"{'; '.join(r['reasons']) or '-'} |"
        for r in rows_out
    ]


HEADER = [
    "| case | true motion (px) | NSTM corr | conventional | truth says | verdict | residual | folded % "
    "| disp. (px) | LF corr. | reasons |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]


def markdown(numbers: dict) -> str:
    """The report section from a run's numbers (so it can be rebuilt from the saved JSON)."""
    n = numbers["size"]
    th = TrustThresholds(**numbers["thresholds"])
    dpc, sim = numbers["cases"], numbers.get("sim_cases", [])
    separated = all((r["verdict"] != "ok") == r["bad"] for r in dpc)
    separated_new = all((r["verdict"] != "ok") == r["bad"] for r in dpc if not r["calibration"])
    sim_separated = all((r["verdict"] != "ok") == r["bad"] for r in sim)
    md = "\n".join(
        [
            "## Trust report (per-window verdict against the truth)",
            "",
            f"`python -m benchmarks.run trust`. The DPC quality windows ({n} x {n}, `default_config(\"dpc\")`),",
            "and deliberately broken fits (motion network frozen at zero; scene networks replaced by noise after the fit).",
            f"*Bad*: NSTM phase correlation below the conventional one by more than {WORSE_BY} or below {BAD_CORR}. *Residual*: held-out",
            "RMS residual / Poisson-Gaussian sigma of the camera model (1 = down to the noise). *Folded*: % of",
            "(time, pixel) samples with Jacobian <= 0. *Disp.*: largest displacement about the window mean (px).",
            "*LF corr.*: window-mean NSTM phase vs conventional, 0.1-0.5 NA/λ. Thresholds (docs/trust.md):",
            f"residual > {th.residual_doubtful:g} doubtful, > {th.residual_untrusted:g} untrusted; folded >",
            f"{100 * th.folded_doubtful:g}% doubtful, > {100 * th.folded_untrusted:g}% untrusted; displacement >",
            f"{100 * th.displacement_doubtful:g}% of the field doubtful; LF corr. < {th.lowfreq_doubtful:g} doubtful,",
            f"< {th.lowfreq_untrusted:g} untrusted, judged only where the motion within the window spans at most",
            f"{th.lowfreq_max_motion_periods:g} period of the band's highest frequency (beyond that the conventional",
            "result is itself smeared in the band).",
            "",
            *HEADER,
            *_rows_md(dpc, th),
            "",
            "Cases marked * were run only after the thresholds were fixed (another sample and noise):",
            "the check out of sample. The thresholds were chosen from the unmarked rows (in three rounds:",
            "docs/trust.md), so their separation there is by construction; the margins are what matters.",
            "",
            f"Verdict separates bad from good windows on every case: **{'yes' if separated else 'no'}**"
            f" (out of sample: **{'yes' if separated_new else 'no'}**).",
            "",
            *(_sim_md(numbers["sim_size"], sim, th, sim_separated) if sim else []),
            *(_sim3d_md(numbers["sim3d_cases"], th) if numbers.get("sim3d_cases") else []),
        ]
    )
    return md


def _sim3d_md(rows: list[dict], th: TrustThresholds) -> list[str]:
    separated = all((r["verdict"] != "ok") == r["bad"] for r in rows)
    nz, n, _ = SIM3D_SIZE
    return [
        "",
        f"**3D SIM** ({nz} planes x {n} x {n} camera pixels, 15 shots per plane, `default_config(\"sim3d\")`;",
        "DPC's thresholds, the low-frequency check on the volumes' axial projections, a choice made on",
        "these rows, so they are not out of sample; docs/trust.md): sim3d_motion's small windows (static,",
        "a drift of 4 x 2 camera pixels per window, vibration; plane major unless named), a drift 4x",
        "larger, and fits with the motion frozen. *NSTM corr* and *conventional*: correlation of the",
        "NSTM density brought into the truth's SIM band (sim3d_motion's score) and of the 3D Wiener",
        "result with the band-limited truth, mean over the shots. *True motion*, *disp.*: lateral output",
        "pixels (2x finer than the camera's).",
        "",
        *HEADER,
        *_rows_md(rows, th),
        "",
        f"Verdict separates bad from good 3D SIM windows: **{'yes' if separated else 'no'}**.",
    ]


def refresh_sim3d() -> None:
    """Run only the 3D SIM rows and rebuild the report section; the other rows are kept."""
    _refresh(lambda numbers: numbers.__setitem__("sim3d_cases", _sim3d_rows(False)))


def _sim_md(n: int, sim: list[dict], th: TrustThresholds, separated: bool) -> list[str]:
    return [
        f"**2D SIM** ({n} x {n} camera pixels, `default_config(\"sim2d\")`; the same thresholds, chosen on DPC,",
        "so every row is out of sample): sim_quality's windows, sim_drift's drifts of 4, 12 and 16 pattern",
        "periods (the fit from zero loses the last two), and a fit with the motion frozen. *NSTM corr* and",
        "*conventional*: correlation of the NSTM density and of the Wiener result with the truth band-limited",
        "to the SIM passband, mean over the 9 shots (sim_quality's score). *True motion*, *disp.*: output pixels",
        "(2x finer than the camera's). *LF corr.*: 0.2-1 NA/λ of the incoherent band.",
        "",
        *HEADER,
        *_rows_md(sim, th),
        "",
        f"Verdict separates bad from good 2D SIM windows: **{'yes' if separated else 'no'}**.",
    ]


def refresh_sim() -> None:
    """Re-run only the 2D SIM rows of the saved result and rebuild its report section."""

    def rerun(numbers: dict) -> None:
        numbers["sim_size"], numbers["sim_cases"] = _sim_rows(False)

    _refresh(rerun)


def _refresh(rerun) -> None:
    """Load the saved result, let ``rerun`` replace some of its rows, and save it with its report."""
    import json

    from benchmarks.common import RESULTS

    numbers = json.loads((RESULTS / "trust.json").read_text())["numbers"]
    rerun(numbers)
    numbers["separated"] = all(
        (r["verdict"] != "ok") == r["bad"]
        for r in numbers["cases"] + numbers["sim_cases"] + numbers.get("sim3d_cases", [])
    )
    save_result("trust", numbers, markdown(numbers), order=25)
