"""SIM reconstruction speed and memory: 2D 256 x 256 and 3D 8 x 256 x 256 on this machine.

Each measurement runs in its own process (peak memory is that run's alone).

* 2D: a cold window (estimation, Wiener, then the NSTM fit from scratch with the 2D SIM
  defaults, compilation included) and the next window warm-started from it (the vibration a
  window period later; same sample), each timed whole and scored against the truth, once with
  the cold fit started from random networks (the schedule before the Wiener start) and once
  with the defaults (scene pre-fitted to the Wiener result), each in its own process; and, in
  another process, the seconds per step of the previous defaults (full complex FFTs of the fine
  grid, motion every 8 output pixels) for the ratio to today's step.
* 3D: the defaults before issue 13's 3D schedule and today's, each in its own process: the time
  before the fit (problem, Wiener, scene pre-fit), compilation and seconds per step over a short
  fit (15 steps evaluated every 5; the first chunk holds the compilation); seconds per window =
  prep + compile + steps x seconds per step with the steps the 3D quality benchmark's vibrating
  windows took (``sim3d_motion``; the schedule's cap when it has not run with those settings).

``python -m benchmarks.cases.sim_speed run-2d`` / ``run-3d [base|default]``: re-run the 2D / 3D
rows only (the others kept).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import RESULTS, save_result

SIZES = {"2D 256 x 256": ("sim2d", 256, 1), "3D 8 x 256 x 256": ("sim3d", 256, 8)}
QUICK = {"2D 64 x 64": ("sim2d", 64, 1), "3D 4 x 32 x 32": ("sim3d", 32, 4)}
VIBRATION = "vibration:ay=0.1,ax=0.2,f=5"
FRAME_INTERVAL_S = 0.012  # sim_common's 2D windows: 9 shots every 12 ms


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _corr(win, result) -> float:
    """Mean over shots of the correlation with the band-limited truth (sim_common's score)."""
    from benchmarks.sim_common import MARGIN, band_limited_truth
    from nstm_acquire.evaluation.metrics import correlation

    m = MARGIN
    return float(
        np.mean(
            [
                correlation(result.scene[s, 0, 0][m:-m, m:-m], band_limited_truth(win, float(t))[0][m:-m, m:-m])
                for s, t in enumerate(result.times_s)
            ]
        )
    )


def _start_config(start: str):
    """The 2D SIM defaults (``"default"``); the cold start from random networks with the
    schedule that went with it before the Wiener start (``"random"``: ramp 75, at most 300
    steps); the defaults before the warm registration start (``"previous"``: evaluated every 25
    steps, patience 2 and, warm, 1 evaluations, no learning-rate warm-up, a warm fit's motion
    where the previous window's ended at 3x the scene's learning rate); or those defaults with
    the scene MLP of two hidden layers (``"two-layer"``, the step before issue 13's MLP change)."""
    from nstm_acquire.nstm.config import default_config

    config = default_config("sim2d")
    if start == "random":
        return config.with_fit(scene_start="random", start_alpha=0.0, max_steps=300, coarse_to_fine_steps=75)
    if start in ("previous", "two-layer"):
        config = config.with_fit(
            eval_every=25, patience=2, warm_patience=1, lr_warmup_steps=0, warm_motion_start="previous",
            warm_motion_lr_factor=3.0,
        )
        if start == "two-layer":
            config = config.model_copy(update={"scene": config.scene.model_copy(update={"layers": 2})})
        return config
    if start != "default":
        raise ValueError(f"start={start!r}; give 'default', 'random', 'previous' or 'two-layer'")
    return config


def measure_2d(n: int, start: str = "default") -> dict:
    """Cold window then a warm-started next window, 2D SIM defaults (``start``: see :func:`_start_config`)."""
    from benchmarks.sim_common import sim_window
    from nstm_acquire.recon.arrays import reconstruct_window
    from nstm_acquire.recon.problem import ProblemBuilder

    period_s = 9 * FRAME_INTERVAL_S
    phase = 2 * math.pi * 5.0 * period_s  # the vibration one window later
    wins = [sim_window("sim2d", n, "beads", VIBRATION), sim_window("sim2d", n, "beads", f"{VIBRATION},phase={phase:.6f}")]
    config = _start_config(start)
    unknown = wins[0].illumination.replace(k_per_um=None, phase_rad=None, modulation=None)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        builder = ProblemBuilder(wins[0].optics, unknown, wins[0].raw.shape[-2:], 1, config)
        problem = builder.problem_from_arrays(wins[0].raw, wins[0].timestamps_s, wins[0].exposure_s)
    except ValueError:  # implausible estimate (small fields): the calibrated pattern, as run_sim
        builder = ProblemBuilder(wins[0].optics, wins[0].illumination, wins[0].raw.shape[-2:], 1, config)
        problem = builder.problem_from_arrays(wins[0].raw, wins[0].timestamps_s, wins[0].exposure_s)
    prep_s = time.perf_counter() - t0
    cold = reconstruct_window(problem, config)
    cold_s, cold_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    problem = builder.problem_from_arrays(wins[1].raw, wins[1].timestamps_s, wins[1].exposure_s, 1)
    warm = reconstruct_window(
        problem, config, init_params=cold.fit.params, window=1, reference_val_loss=cold.fit.final_val_loss
    )
    warm_s, warm_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    chunk = config.fit.eval_every
    f = cold.fit
    s_per_step = (f.wall_s - f.compile_s) / max(f.steps - chunk, 1)
    return {
        "start": start,
        "scene_start": config.fit.scene_start,
        "prep_s": prep_s,
        "start_s": cold_s - prep_s - f.wall_s,  # the scene pre-fit (and rendering the window)
        "cold_s": cold_s,
        "cold_cpu_s": cold_cpu_s,
        "cold_fit_s": f.wall_s,
        "first_chunk_s": f.compile_s,
        "compile_s": max(f.compile_s - chunk * s_per_step, 0.0),
        "s_per_step": s_per_step,
        "cold_steps": f.steps,
        "cold_best_step": f.best_step,
        "cold_corr": _corr(wins[0], cold),
        "warm_s": warm_s,
        "warm_cpu_s": warm_cpu_s,
        "warm_steps": warm.fit.steps,
        "warm_stop": warm.fit.stop_reason,
        "warm_refit": warm.fit.rejected_warm_fit is not None,
        "warm_corr": _corr(wins[1], warm),
        "peak_mib": _peak_mib(),
    }


def _step_cost(problem, config) -> dict[str, float]:
    """Wall and CPU seconds per step over steps 25-75 of a fit (the first chunk compiles)."""
    from nstm_acquire.recon.arrays import reconstruct_window

    marks: dict[int, tuple[float, float]] = {}
    config = config.with_fit(max_steps=75, eval_every=25)
    reconstruct_window(problem, config, callback=lambda step, _: marks.__setitem__(step, (time.perf_counter(), time.process_time())))
    (w0, c0), (w1, c1) = marks[25], marks[75]
    return {"s_per_step": (w1 - w0) / 50, "cpu_s_per_step": (c1 - c0) / 50}


def measure_2d_steps(n: int) -> dict:
    """Seconds per step of the 2D defaults with the scene MLP of two hidden layers (``"previous"``
    here: the step before issue 13's MLP change) and of today's (one), in one process,
    alternating twice; the lower of each pair's two runs."""
    from benchmarks.sim_common import sim_window
    from nstm_acquire.nstm.config import default_config
    from nstm_acquire.recon.problem import ProblemBuilder

    win = sim_window("sim2d", n, "beads", VIBRATION)
    out: dict = {}
    for _ in range(2):
        for name, config in (("previous", _start_config("two-layer")), ("today", default_config("sim2d"))):
            builder = ProblemBuilder(win.optics, win.illumination, win.raw.shape[-2:], 1, config)
            problem = builder.problem_from_arrays(win.raw, win.timestamps_s, win.exposure_s)
            cost = _step_cost(problem, config)
            if name not in out or cost["cpu_s_per_step"] < out[name]["cpu_s_per_step"]:
                out[name] = cost
    out["peak_mib"] = _peak_mib()
    return out


def measure_3d(n: int, nz: int, steps: int, settings: str = "default") -> dict:
    """One 3D window's pieces with ``settings`` ``"base"`` (the defaults before issue 13's 3D
    schedule: ``default_config()``) or ``"default"`` (``default_config("sim3d")``): parameter
    estimation and the Wiener alone, then a fit of ``steps`` steps (evaluated every 5): *prep*
    everything before the fit (the problem with its Wiener; the scene pre-fit where the settings
    start from it), the first chunk's compilation, seconds per step over the later chunks."""
    from benchmarks.sim_common import sim_window
    from nstm_acquire.nstm.config import default_config
    from nstm_acquire.physics.sim.estimation import estimate_sim_parameters
    from nstm_acquire.physics.sim.wiener import wiener_sim_3d
    from nstm_acquire.recon.arrays import reconstruct_sim

    win = sim_window("sim3d", n, "beads", VIBRATION, n_planes=nz)
    unknown = win.illumination.replace(k_per_um=None, phase_rad=None, modulation=None)
    t0 = time.perf_counter()
    estimate_sim_parameters(win.raw, win.optics, unknown, z_step_um=win.optics.z_step_um)
    t_est = time.perf_counter() - t0
    t0 = time.perf_counter()
    wiener_sim_3d(win.raw, win.optics, win.illumination, win.optics.z_step_um)
    t_wiener = time.perf_counter() - t0
    chunk = 5
    base = default_config() if settings == "base" else default_config("sim3d")
    config = base.with_fit(max_steps=steps, eval_every=chunk)
    t0 = time.perf_counter()
    result = reconstruct_sim(win.raw, win.timestamps_s, win.exposure_s, win.optics, win.illumination, config=config)
    total = time.perf_counter() - t0
    f = result.fit
    s_per_step = (f.wall_s - f.compile_s) / max(f.steps - chunk, 1)
    return {
        "settings": settings,
        "estimate_s": t_est,
        "wiener_s": t_wiener,
        "prep_s": max(total - f.wall_s, 0.0),
        "first_chunk_s": f.compile_s,
        "compile_s": max(f.compile_s - chunk * s_per_step, 0.0),
        "s_per_step": s_per_step,
        "steps_measured": f.steps,
        "time_bins": result.info.get("time_bins"),
        "peak_mib": _peak_mib(),
    }


def _typical_steps_3d(settings: str) -> int:
    """Steps of the 3D quality benchmark's vibrating windows with ``settings`` (the most any took):
    its rows fitted with the 3D schedule (config name ending ``-sim3d``) for ``"default"``, the
    others for ``"base"``; the schedule's cap where none was run."""
    path = RESULTS / "sim3d_motion.json"
    cap = 450 if settings == "default" else 600
    if not path.exists():
        return cap
    numbers = json.loads(path.read_text())["numbers"]
    today = str(numbers.get("config", {}).get("name", "")).endswith("-sim3d")
    if today != (settings == "default"):
        return cap
    steps = [c["steps"] for c in numbers["cases"].values() if str(c.get("motion", "")).startswith("vibration")]
    return int(max(steps)) if steps else cap


def _subprocess(*args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cases.sim_speed", *args], capture_output=True, text=True, check=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _later_session(n: int) -> dict:
    """Today's defaults as a later session on the same PC runs them: the CLI, the panel and the
    chain turn on the persistent compilation cache (:mod:`nstm_acquire.nstm.compile_cache`), so a
    first session fills it (that run is not reported: it is the row above, plus the writing) and
    a later one, in a fresh process, loads the compiled programs instead of compiling them."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NSTM_ACQUIRE_CACHE_DIR": cache, "NSTM_ACQUIRE_COMPILE_CACHE": "1"}
        _subprocess("2d", str(n), "default", "cached", env=env)
        return _subprocess("2d", str(n), "default", "cached", env=env)


def run(
    quick: bool = False, only_2d: bool = False, only_3d: bool = False, only_3d_settings: tuple[str, ...] = ()
) -> dict:
    sizes = QUICK if quick else SIZES
    numbers: dict = {}
    saved = RESULTS / "sim_speed.json"
    if (only_2d or only_3d) and saved.exists():
        numbers = json.loads(saved.read_text())["numbers"]
    for label, (modality, n, nz) in sizes.items():
        if modality == "sim2d" and only_3d:
            continue
        if modality == "sim2d":
            # the previous defaults first, then today's, each in its own process
            m = {"previous": _subprocess("2d", str(n), "previous")}
            m.update(_subprocess("2d", str(n), "default"))
            m["later_session"] = _later_session(n)
            m["steps"] = _subprocess("2d-steps", str(n))
            r = m["previous"]
            print(
                f"  {label}: cold {m['cold_s']:.0f} s (previous {r['cold_s']:.0f} s), "
                f"warm {m['warm_s']:.0f} s (previous {r['warm_s']:.0f} s)",
                flush=True,
            )
        elif only_2d:
            continue
        else:
            m = {}
            for settings in ("base", "default"):  # each in its own process, the base first
                if only_3d_settings and settings not in only_3d_settings and settings in numbers.get(label, {}):
                    m[settings] = numbers[label][settings]  # kept from the saved run
                    continue
                try:
                    r = _subprocess("3d", str(n), str(nz), "15", settings)
                except subprocess.CalledProcessError as exc:  # killed for memory: -9
                    m[settings] = {"failed": f"exit status {exc.returncode}" + (
                        " (killed: out of memory)" if exc.returncode == -9 else "")}
                    print(f"  {label} {settings}: {m[settings]['failed']}", flush=True)
                    continue
                r["typical_steps"] = _typical_steps_3d(settings)
                r["window_s"] = r["prep_s"] + r["compile_s"] + r["typical_steps"] * r["s_per_step"]
                m[settings] = r
                print(f"  {label} {settings}: {r['s_per_step']:.2f} s/step, window {r['window_s']:.0f} s", flush=True)
        numbers[label] = m
    rows_2d, rows_3d = [], []
    for label, m in numbers.items():
        if label.startswith("2D") and "cold_s" in m:
            p, t = m["steps"]["previous"], m["steps"]["today"]
            for name, v in (
                ("previous defaults", m.get("previous")),
                ("today's defaults", m),
                ("today's, a later session (compile cache)", m.get("later_session")),
            ):
                if v is None:
                    continue
                rows_2d.append(
                    f"| {label} | {name} | {v['prep_s']:.1f} | {v.get('start_s', 0.0):.1f} | {v['compile_s']:.0f} "
                    f"| {p['s_per_step']:.2f} / {p['cpu_s_per_step']:.2f} "
                    f"| {t['s_per_step']:.2f} / {t['cpu_s_per_step']:.2f} ({p['cpu_s_per_step'] / t['cpu_s_per_step']:.1f}x) "
                    f"| {v['cold_steps']} ({v['cold_best_step']}) | **{v['cold_s']:.0f}** / {v['cold_cpu_s']:.0f} "
                    f"| {v['cold_corr']:.3f} "
                    f"| {v['warm_steps']} ({v['warm_stop'].replace('_', ' ')}{', refit cold' if v['warm_refit'] else ''}) "
                    f"| **{v['warm_s']:.0f}** / {v['warm_cpu_s']:.0f} | {v['warm_corr']:.3f} | {v['peak_mib'] / 1024:.1f} |"
                )
        elif label.startswith("3D") and "default" in m:
            for settings, name in (("base", "before (`default_config()`)"), ("default", "today (`default_config(\"sim3d\")`)")):
                v = m[settings]
                if "failed" in v:
                    rows_3d.append(f"| {label} | {name} | did not run: {v['failed']} |||||||| ")
                    continue
                rows_3d.append(
                    f"| {label} | {name} | {v['estimate_s']:.1f} | {v['wiener_s']:.1f} | {v['prep_s']:.1f} "
                    f"| {v['compile_s']:.0f} | {v['s_per_step']:.2f} | {v['typical_steps']} "
                    f"| **{v['window_s']:.0f}** ({v['window_s'] / 60:.0f} min) | {v['peak_mib'] / 1024:.1f} |"
                )
    md = "\n".join(
        [
            "## SIM reconstruction speed and memory",
            "",
            "`python -m benchmarks.run sim_speed` (`python -m benchmarks.cases.sim_speed run-2d`: the 2D",
            "rows only). CPU, vibrating beads, each measurement in its own process. Goals (issue 13, 2 cores):",
            "2D 256 x 256 cold window <= 30 s including compilation, warm <= 10 s, peak <= 3 GiB; 3D",
            "8 x 256 x 256 cold <= 10 min, warm <= 3 min, peak <= 8 GiB.",
            "",
            "**2D** (9 shots), defaults `default_config(\"sim2d\")`: *settings* the defaults before this",
            "change (a warm fit's motion where the last window's ended, at 3x the scene's learning rate;",
            "no learning-rate warm-up; evaluated every 25 steps) or today's (a warm fit's motion",
            "pre-fitted to a registration against the last window's scene, learning rates ramped up over",
            "10 steps, evaluated every 10; docs/model.md, \"2D SIM: warm motion from a registration\"), each in its",
            "own process, the previous first; both start the scene from the Wiener result; *a later",
            "session*: today's defaults in a fresh process whose persistent compilation cache (on in the",
            "CLI, the panel and the chain: `nstm_acquire.nstm.compile_cache`) an earlier process filled, as",
            "on a microscope PC from its second session on; *prep*",
            "pattern estimation, Wiener and forward model; *pre-fit* the scene pre-fit (and rendering",
            "the window); *compile* the first chunk less its steps; *s/step 2 x 32* the step with",
            "the scene MLP of two hidden layers (before issue 13's MLP change) and *s/step* today's,",
            "over steps 25-75, alternated twice in one process,",
            "the faster of each pair (wall seconds, and the process's CPU",
            "seconds, which other processes sharing the cores disturb less; ratio of the CPU ones); *cold* the",
            "whole first window (prep, compilation, fit, rendering); *warm (s)* the next window (the",
            "vibration one window period later) started from the first one's networks with its held-out",
            "loss as the reference, whole; *corr.* the mean correlation with the band-limited truth at",
            "every shot (sim_quality's score). The 2D rows were measured on a quiet machine (load under",
            "2, nothing else running); even CPU seconds move by about 15 % between runs, so compare rows",
            "only with their own baseline; docs/model.md (\"2D SIM speed\", \"2D SIM: a one-layer scene",
            "MLP\" and \"2D SIM: warm motion from a registration\") has the per-piece measurements.",
            "",
            "| size | settings | prep (s) | pre-fit (s) | compile (s) | s/step 2 x 32 (wall / CPU) "
            "| s/step (wall / CPU, CPU ratio) "
            "| cold steps (kept) | cold s (wall / CPU) | cold corr. | warm steps (stop) | warm s (wall / CPU) "
            "| warm corr. | peak GiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows_2d,
            "",
            "**3D** (15 shots x 8 planes = 120 frames, rendered from 60 two-frame time-bin volumes):",
            "the defaults before issue 13's 3D schedule and today's, each in its own process, the",
            "first first; *estimate* illumination-parameter estimation and *Wiener* the conventional",
            "reconstruction, each alone; *prep* everything before the fit (the problem with its Wiener, and",
            "today the scene pre-fit); *s/step* over steps 5-15 of a short fit; *steps* what the 3D quality",
            "benchmark's vibrating windows took with those settings (`sim3d_motion`, all at their cap);",
            "*window* prep + compile + steps x s/step. Peak memory: the process's maximum resident size.",
            "",
            "| size | settings | estimate (s) | Wiener (s) | prep (s) | compile (s) | s/step | steps | s/window "
            "| peak GiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows_3d,
            "",
            "The paper's live-cell 3D size (20 x 512 x 512, 15 time points; published about 40 min and",
            "40 GB on an A6000; goal here under 4 min and 20 GB on one H100) is the `sim_gpu_live` case:",
            "no GPU was lent to the session that wrote it, so it is not yet measured (see that section).",
        ]
    )
    save_result("sim_speed", numbers, md, order=45)
    return numbers


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "2d":
        if sys.argv[4:5] == ["cached"]:  # as the CLI, the panel and the chain run it
            from nstm_acquire.nstm.compile_cache import enable_compilation_cache

            enable_compilation_cache()
        print(json.dumps(measure_2d(int(sys.argv[2]), *sys.argv[3:4]), default=float))
    elif what == "2d-steps":
        print(json.dumps(measure_2d_steps(int(sys.argv[2])), default=float))
    elif what == "3d":
        print(json.dumps(measure_3d(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6]), default=float))
    elif what == "run-3d":  # the 3D rows only (the saved 2D rows kept), then the report
        from benchmarks.common import build_report

        run(only_3d=True, only_3d_settings=tuple(sys.argv[2:]))  # e.g. run-3d default: that row only
        build_report()
    elif what == "run-2d":  # the 2D rows only, then the report
        from benchmarks.common import build_report

        run(only_2d=True)
        build_report()
    else:
        raise SystemExit(f"unknown mode {what!r}; give 2d, 2d-steps, 3d, run-2d or run-3d")
