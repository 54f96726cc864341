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

from benchmarks.cases.dpc_quality import SWEEP, SWEEP_INSTANTS
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
    # each frame averages the sample at SWEEP_INSTANTS times across its exposure (near-continuous
    # blur, as dpc_quality's sweep simulates it)
    win = window(n, motion, seed=seed, exposure_instants=SWEEP_INSTANTS)
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


def _scored(
    corr: float, conv_corr: float, report: dict, rmap: np.ndarray, wall_s: float, true_px: float,
    bad: bool | None = None,
) -> dict:
    """A benchmark row's scores: the truth's judgement (``bad``: by default worse than the
    conventional result by more than WORSE_BY, or below BAD_CORR) beside the trust report's numbers."""
    if bad is None:
        bad = corr < conv_corr - WORSE_BY or corr < BAD_CORR
    return {
        "corr": corr, "conventional": conv_corr, "bad": bool(bad),
        "verdict": report["verdict"], "reasons": report["reasons"],
        "heldout_noise_ratio": report["heldout_noise_ratio"], "folded_fraction": report["folded_fraction"],
        "folded_signal_fraction": report.get("folded_signal_fraction"),
        "max_signal_displacement_px": report.get("max_signal_displacement_px"),
        "max_displacement_px": report["max_displacement_px"], "lowfreq_correlation": report["lowfreq_correlation"],
        "lowfreq_motion_periods": report["lowfreq_motion_periods"],
        "residual_map_max": float(np.nanmax(rmap)), "wall_s": wall_s, "true_motion_px": true_px,
    }  # fmt: skip


def _dpc_rows(quick: bool) -> tuple[int, list[dict]]:
    """The DPC block: ``(size, rows)``."""
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
    return n, rows_out


def run(quick: bool = False) -> dict:
    n, rows_out = _dpc_rows(quick)
    th = TrustThresholds()
    numbers = {
        "size": n, "thresholds": dataclasses.asdict(th), "cases": rows_out, "dpc_exposure_instants": SWEEP_INSTANTS,
    }  # fmt: skip
    numbers["sim_size"], numbers["sim_cases"] = _sim_rows(quick)
    numbers["sim3d_cases"] = _sim3d_rows(quick)
    numbers["lensless_cases"] = _lensless_rows(quick)
    numbers["separated"] = _separated(numbers)
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

    from benchmarks.cases.sim_drift import EXPOSURE_INSTANTS
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
    # each frame a continuous blur (sim_drift's 16 instants per exposure), not 3 sharp copies
    win = sim_window("sim2d", n, kind, motion, exposure_instants=EXPOSURE_INSTANTS)
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
        f"{100 * _judged(r, 'folded_signal_fraction', 'folded_fraction'):.2g} | "
        f"{_judged(r, 'max_signal_displacement_px', 'max_displacement_px'):.1f} | {r['lowfreq_correlation']:.2f}"
        f"{' (not judged)' if r.get('lowfreq_motion_periods', 0.0) > th.lowfreq_max_motion_periods else ''} | "
        f"{'; '.join(r['reasons']) or '-'} |"
        for r in rows_out
    ]


def _judged(row: dict, key: str, older: str) -> float:
    """A row's signal-weighted number where it has one (rows run before it: the whole field's)."""
    value = row.get(key)
    return float(row[older] if value is None else value)


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
            "and deliberately broken fits (motion network frozen at zero; scene networks replaced by noise after the fit);",
            f"each frame averages the sample at {numbers.get('dpc_exposure_instants', 3)} instants across its 30 ms exposure.",
            f"*Bad*: NSTM phase correlation below the conventional one by more than {WORSE_BY} or below {BAD_CORR}. *Residual*: held-out",
            "RMS residual / Poisson-Gaussian sigma of the camera model (1 = down to the noise). *Folded*: % of",
            "(time, pixel) samples with Jacobian <= 0. *Disp.*: largest displacement about the window mean (px).",
            "*LF corr.*: window-mean NSTM phase vs conventional, 0.1-0.5 NA/λ. Thresholds (docs/trust.md):",
            f"residual > {th.residual_doubtful:g} doubtful, > {th.residual_untrusted:g} untrusted; folded >",
            f"{100 * th.folded_doubtful:g}% doubtful, > {100 * th.folded_untrusted:g}% untrusted; displacement:",
            (
                "reported, not judged;"
                if th.displacement_doubtful is None
                else f"> {100 * th.displacement_doubtful:g}% of the field doubtful;"
            )
            + f" LF corr. < {th.lowfreq_doubtful:g} doubtful,",
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
            *(_lensless_md(numbers["lensless_cases"], th) if numbers.get("lensless_cases") else []),
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


def refresh_dpc() -> None:
    """Re-run only the DPC rows and rebuild the report section; the other rows are kept."""

    def rerun(numbers: dict) -> None:
        numbers["size"], numbers["cases"] = _dpc_rows(False)
        numbers["dpc_exposure_instants"] = SWEEP_INSTANTS

    _refresh(rerun)


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
    _rejudge(numbers)
    numbers["separated"] = _separated(numbers)
    save_result("trust", numbers, markdown(numbers), order=25)


def _rejudge(numbers: dict) -> None:
    """Bring the saved result to today's thresholds, refusing when a kept row's verdict would
    change under them (that row must be re-run, not relabelled)."""
    from nstm_acquire.recon.trust import verdict

    th = TrustThresholds()
    keys = ("heldout_noise_ratio", "folded_fraction", "folded_signal_fraction", "max_displacement_px",
            "max_signal_displacement_px", "lowfreq_correlation", "lowfreq_motion_periods")  # fmt: skip
    for key in ("cases", "sim_cases", "sim3d_cases", "lensless_cases"):
        for r in numbers.get(key, []):
            # the displacement, judged before as a fraction of the field, is not judged today
            label, _ = verdict({k: r[k] for k in keys if r.get(k) is not None}, th)
            if label != r["verdict"]:
                raise RuntimeError(f"{key} / {r['case']}: {r['verdict']} then, {label} under today's thresholds: re-run it")
    numbers["thresholds"] = dataclasses.asdict(th)


def _separated(numbers: dict) -> bool:
    """Whether every row's verdict is ``ok`` exactly where the truth calls its window good."""
    rows = [r for key in ("cases", "sim_cases", "sim3d_cases", "lensless_cases") for r in numbers.get(key, [])]
    return all((r["verdict"] != "ok") == r["bad"] for r in rows)


# Rolling-shutter lensless video (the rolling_shutter benchmark's camera and objects): good fits at
# three speeds and two samples, fits with the motion frozen, and one with its scene scrambled
LENSLESS_SIZE = 32


def _lensless_cases() -> list[tuple[str, float, int, str | None, int]]:
    """(name, object speed in px per row time, scene seed, broken, sensor side in px) of the
    lensless rows."""
    n = LENSLESS_SIZE
    return [
        ("slow", 0.03, 1, None, n),
        ("moderate", 0.1, 1, None, n),
        ("fast", 0.15, 1, None, n),
        ("moderate (seed 2)", 0.1, 2, None, n),
        ("fast (seed 2)", 0.15, 2, None, n),
        ("moderate, motion frozen", 0.1, 1, "frozen", n),
        ("fast, motion frozen", 0.15, 1, "frozen", n),
        ("moderate, scene scrambled", 0.1, 1, "scrambled", n),
        # the demo's sensor size, added after the rows above were seen
        ("moderate, 24 x 24", 0.1, 1, None, 24),
        ("fast, 24 x 24", 0.15, 1, None, 24),
    ]


def _lensless_rows(quick: bool) -> list[dict]:
    cases = _lensless_cases()
    rows = []
    for name, speed, seed, broken, n in [cases[-2], cases[5][:4] + (24,)] if quick else cases:
        row = _lensless_case(name, speed, seed, broken, n)
        # the thresholds are DPC's, but the signal floor and the unjudged displacement were chosen
        # on these rows (docs/trust.md, "Lensless"): not out of sample
        row["calibration"] = True
        _print(row)
        rows.append(row)
    return rows


def _lensless_case(name: str, speed_px_per_row: float, seed: int, broken: str | None, n: int) -> dict:
    """One lensless window (3 frames, RGB) fitted as the chain fits it
    (``rolling_shutter_config()``, the motion frozen or the scene scrambled when ``broken`` says
    so), scored as the rolling_shutter benchmark scores it (mean PSNR over the window's time
    points against the truth; the conventional result each frame's static deconvolution) and
    given the trust report the chain stores. Bad: the NSTM's PSNR below the static deconvolution's,
    or its correlation with the truth below BAD_CORR (far from the truth, as for DPC)."""
    from benchmarks.cases.rolling_shutter import ROW_TIME_S, _psnr
    from nstm_acquire.hardware.simulated.lensless import (
        LenslessCamera,
        MovingRgbScene,
        caustic_psf,
        simulate_lensless_video,
    )
    from nstm_acquire.physics.optics import Optics
    from nstm_acquire.physics.rolling_shutter import LenslessShots, RowTiming, tikhonov_deconvolution
    from nstm_acquire.recon.arrays import reconstruct_window
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.recon.rolling_shutter import rolling_shutter_config
    from nstm_acquire.recon.trust import window_trust

    n_frames, exposure_rows = 3, n // 4
    cam = LenslessCamera((n, n), ROW_TIME_S, exposure_rows * ROW_TIME_S, photons=2e4)
    scene = MovingRgbScene.random(
        (n, n), 3, speed_px_per_s=speed_px_per_row / ROW_TIME_S, duration_s=n_frames * cam.span_s(), seed=seed
    )
    video = simulate_lensless_video(cam, scene, caustic_psf((n, n), seed=0), n_frames, steps_per_row=2, seed=seed)
    config = rolling_shutter_config()
    if broken == "frozen":
        config = config.with_fit(lr_motion=1e-12)
    shots = LenslessShots(frames_per_window=n_frames)
    timing = RowTiming(n, ROW_TIME_S, exposure_rows * ROW_TIME_S)
    builder = ProblemBuilder(
        Optics(wavelength_um=0.53, na_detection=0.1, pixel_size_um=1.0), shots, (n, n), 1, config,
        lensless_psf=video.psf, lensless_timing=timing,
    )  # fmt: skip
    counts = (video.frames * cam.photons).reshape(n_frames * 3, 1, n, n)  # photo-electrons: gain 1 e/ADU
    starts = np.repeat(video.frame_starts_s, 3)[:, None]
    t0 = time.perf_counter()
    prob = builder.problem_from_arrays(counts, starts, np.full_like(starts, cam.exposure_s))
    result = reconstruct_window(prob, config)
    if broken == "scrambled":
        result = dataclasses.replace(result, fit=_scrambled(result.fit))
        sc, _ = render_scenes(result.fit, result.times_s)
        result = dataclasses.replace(result, scene=sc[:, :, None])
    report, rmap = window_trust(prob, result, counts, 1.0, 1.0, cam.read_noise_e)
    wall = time.perf_counter() - t0
    truth = np.stack([scene.render(t) for t in result.times_s])  # (T, C, Y, X)
    peak = float(truth.max())
    nstm = result.scene[:, :, 0] * prob.info["scale_counts"] / cam.photons
    static = tikhonov_deconvolution(video.frames, prob.forward.conv, reg=1e-3)  # (F, C, Y, X)
    frame = np.clip(np.searchsorted(video.frame_starts_s, result.times_s, side="right") - 1, 0, n_frames - 1)
    psnr = float(np.mean([_psnr(nstm[i], truth[i], peak) for i in range(len(truth))]))
    # far from the truth, as for DPC: correlation with the truth below BAD_CORR (mean over time points)
    corr = float(np.mean([np.corrcoef(nstm[i].ravel(), truth[i].ravel())[0, 1] for i in range(len(truth))]))
    psnr_static = float(np.mean([_psnr(static[frame[i]], truth[i], peak) for i in range(len(truth))]))
    path = scene.positions_yx(result.times_s)
    true_px = float(np.abs(path - path.mean(0)).max())
    shape = _worst_object_corr(nstm, truth, path)
    return {
        "case": name, "speed_px_per_row": speed_px_per_row, "seed": seed, "broken": broken,
        "truth_corr": corr,
        "worst_object_corr": shape,
        **_scored(psnr, psnr_static, report, rmap, wall, true_px, bad=psnr < psnr_static or corr < BAD_CORR),
    }


def _worst_object_corr(video: np.ndarray, truth: np.ndarray, path_yx: np.ndarray, half: int = 3) -> float:
    """The worst correlation, over objects and time points, of the reconstruction with the truth
    in a (2 half + 1)-pixel square around each object's true centre (all colours): an object
    streaked or stretched scores low even where the whole frame still correlates well."""
    worst = 1.0
    h, w = truth.shape[-2:]
    for t in range(truth.shape[0]):
        for cy, cx in np.rint(path_yx[t]).astype(int):
            y0, y1 = max(cy - half, 0), min(cy + half + 1, h)
            x0, x1 = max(cx - half, 0), min(cx + half + 1, w)
            a, b = video[t, :, y0:y1, x0:x1].ravel(), truth[t, :, y0:y1, x0:x1].ravel()
            worst = min(worst, float(np.corrcoef(a, b)[0, 1]))
    return worst


def _lensless_md(rows: list[dict], th: TrustThresholds) -> list[str]:
    separated = all((r["verdict"] != "ok") == r["bad"] for r in rows)
    lines = [
        "",
        f"**Rolling-shutter lensless video** ({LENSLESS_SIZE} x {LENSLESS_SIZE} RGB, and 24 x 24 where named, 3 frames; the rolling_shutter",
        "benchmark's camera and objects at 0.03, 0.1 and 0.15 px per row time, two samples;",
        "`rolling_shutter_config()`, as the chain fits a lensless store; DPC's thresholds; the signal floor",
        "and the displacement no longer judged were chosen on these rows, docs/trust.md): fits with the motion",
        "frozen and one with its scene scrambled. *NSTM* and *conventional*:",
        "mean PSNR (dB) over the window's time points against the truth, the conventional result each",
        "frame's static deconvolution; *bad*: the NSTM below it, or its correlation with the truth (mean over",
        f"the time points, in brackets after the PSNR) below {BAD_CORR}, as for DPC; after it, the worst object: the",
        "lowest correlation with the truth, over objects and time points, in a 7 x 7 px square around an object's",
        "true centre (reported, not part of *bad*). *True motion*, *disp.*: pixels, *disp.* and",
        "*folded* where the scene has signal (`signal_weight`: at least a fifth of its strongest). *LF corr.*:",
        "window-mean scene against the static deconvolution of the window, all colours summed, 0.025-0.125",
        "cycles per pixel.",
        "",
        HEADER[0].replace("NSTM corr", "NSTM PSNR").replace("conventional", "conventional PSNR"),
        HEADER[1],
    ]
    for r in rows:
        line = _rows_md([r], th)[0]
        cells = line.split(" | ")
        cells[2] = f"{r['corr']:.2f} ({r.get('truth_corr', float('nan')):.3f}; {r.get('worst_object_corr', float('nan')):.2f})"
        cells[3] = f"{r['conventional']:.2f}"
        lines.append(" | ".join(cells))
    return [*lines, "", f"Verdict separates bad from good lensless windows: **{'yes' if separated else 'no'}**."]


def refresh_lensless() -> None:
    """Run only the lensless rows and rebuild the report section; the other rows are kept."""
    _refresh(lambda numbers: numbers.__setitem__("lensless_cases", _lensless_rows(False)))
