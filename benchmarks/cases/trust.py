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
    start, _ = registered_start(config, win)
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
    bad = corr < conv_corr or corr < BAD_CORR
    return {
        "case": name, "motion": motion, "broken": broken, "seed": seed, "corr": corr, "conventional": conv_corr,
        "bad": bad, "verdict": report["verdict"], "reasons": report["reasons"],
        "heldout_noise_ratio": report["heldout_noise_ratio"], "folded_fraction": report["folded_fraction"],
        "max_displacement_px": report["max_displacement_px"], "lowfreq_correlation": report["lowfreq_correlation"],
        "lowfreq_motion_periods": report["lowfreq_motion_periods"],
        "residual_map_max": float(np.nanmax(rmap)), "wall_s": time.perf_counter() - t0,
        "true_motion_px": float(np.abs(win.truth_displacement_px - win.truth_displacement_px.mean(0)).max()),
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
        print(f"[trust] {name}: corr {row['corr']:.3f} conv {row['conventional']:.3f} -> {row['verdict']} "
              f"(r {row['heldout_noise_ratio']:.2f}, fold {row['folded_fraction']:.3g}, "
              f"disp {row['max_displacement_px']:.1f}, lf {row['lowfreq_correlation']:.2f})", flush=True)  # fmt: skip
        rows_out.append(row)
    separated = all((r["verdict"] != "ok") == r["bad"] for r in rows_out)
    separated_new = all((r["verdict"] != "ok") == r["bad"] for r in rows_out if not r["calibration"])
    th = TrustThresholds()
    rows = [
        f"| {r['case']}{'' if r['calibration'] else ' *'} | {r['true_motion_px']:.1f} | {r['corr']:.3f} | {r['conventional']:.3f} | "
        f"{'bad' if r['bad'] else 'good'} | **{r['verdict']}** | {r['heldout_noise_ratio']:.2f} | "
        f"{100 * r['folded_fraction']:.2g} | {r['max_displacement_px']:.1f} | {r['lowfreq_correlation']:.2f}"
        f"{' (not judged)' if r['lowfreq_motion_periods'] > th.lowfreq_max_motion_periods else ''} | "
        f"{'; '.join(r['reasons']) or '-'} |"
        for r in rows_out
    ]
    md = "\n".join(
        [
            "## Trust report (per-window verdict against the truth)",
            "",
            f"`python -m benchmarks.run trust`. The DPC quality windows ({n} x {n}, `default_config(\"dpc\")`),",
            "and deliberately broken fits (motion network frozen at zero; scene networks replaced by noise after the fit).",
            f"*Bad*: NSTM phase correlation below the conventional one or below {BAD_CORR}. *Residual*: held-out",
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
            "| case | true motion (px) | NSTM corr | conventional | truth says | verdict | residual | folded % "
            "| disp. (px) | LF corr. | reasons |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Cases marked * were run only after the thresholds were fixed (another sample and noise):",
            "the check out of sample. The thresholds were chosen from the unmarked rows (in two rounds:",
            "docs/trust.md), so their separation there is by construction; the margins are what matters.",
            "",
            f"Verdict separates bad from good windows on every case: **{'yes' if separated else 'no'}**"
            f" (out of sample: **{'yes' if separated_new else 'no'}**).",
        ]
    )
    numbers = {"size": n, "thresholds": dataclasses.asdict(th), "separated": separated, "cases": rows_out}
    save_result("trust", numbers, md, order=25)
    return numbers
