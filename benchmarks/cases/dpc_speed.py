"""DPC reconstruction speed and memory at 128, 256 and 512 pixels square.

Each size runs in its own process (so peak memory is that size's alone):

* cold fit of one window with the defaults: compilation, seconds/step, steps, wall, quality;
* the same fit again (compiled: what every later cold window costs in a session);
* a warm-started fit of the next window from the first one's networks;
* steps and seconds for the defaults to reach a fixed quality (phase corr. 0.97);
* the published configuration's compilation and seconds per step (50 steps, separate process).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchmarks.common import RESULTS, save_result
from benchmarks.dpc_common import MOTIONS, public, registered_start, run_nstm, warm_start, window
from nstm_acquire.nstm.config import default_config, published_config

SIZES = [128, 256, 512]
TARGET = 0.97


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_defaults(n: int) -> dict:
    """DPC's defaults (``default_config("dpc")``), each cold fit started as the reconstructor
    starts it (:func:`~benchmarks.dpc_common.registered_start`), the warm one from the cold
    fit's networks as a chain does."""
    config = default_config("dpc")
    motion = MOTIONS["translation"]

    def cold_fit(win, cfg=config, **kw):
        start, _, data = registered_start(cfg, win)
        return {**run_nstm(cfg, win, start_params=start, data=data, **kw), "_data": data}

    win1 = window(n, motion)
    cold = cold_fit(win1)
    again = cold_fit(window(n, motion, noise_seed=3))
    t_next = float(win1.timestamps_s[-1] + win1.exposure_s[-1] + 0.0025)
    win2 = window(n, motion, t_start_s=t_next, noise_seed=5)
    samples = cold["_data"].times_s.shape[1]
    t0 = time.perf_counter()
    init, warm_info, data2 = warm_start(config, win2, cold["_params"], samples)
    warm_start_s = time.perf_counter() - t0
    warm = run_nstm(config, win2, init_params=init, reference_val_loss=cold["val_loss"], data=data2)
    warm["start_s"], warm["warm_motion_start"] = warm_start_s, warm_info
    curve = cold_fit(win1, config.with_fit(patience=1000, max_steps=400), monitor_every=True)
    reach = next((h["step"] for h in curve["history"] if h.get("corr", 0) >= TARGET), None)
    warm_curve = run_nstm(config.with_fit(warm_patience=1000), win2, init_params=init, monitor_every=True, data=data2)
    warm_reach = next((h["step"] for h in warm_curve["history"] if h.get("corr", 0) >= cold["corr"] - 0.005), None)
    return {
        "cold": public(cold),
        "cold_compiled": public(again),
        "warm": public(warm),
        "steps_to_target": reach,
        "seconds_to_target": None if reach is None else reach * again["s_per_step"],
        "warm_steps_to_cold_quality": warm_reach,
        "peak_mib": _peak_mib(),
    }


def measure_published(n: int) -> dict:
    win = window(n, MOTIONS["translation"])
    t0 = time.perf_counter()
    res = run_nstm(published_config().with_fit(max_steps=50, eval_every=25), win)
    return {
        "compile_s": res["compile_s"],
        "s_per_step": res["s_per_step"],
        "wall_50_steps_s": time.perf_counter() - t0,
        "estimated_5000_steps_min": (res["s_per_step"] * 5000 + res["compile_s"]) / 60,
        "peak_mib": _peak_mib(),
    }


def _stop(fit: dict) -> str:
    """How a warm fit ended, in a table cell."""
    if fit.get("rejected_warm_fit"):
        return "refit cold"
    return {"reached_reference": "reached reference", "converged": "patience"}.get(fit["stop"], fit["stop"])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _subprocess(kind: str, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cases.dpc_speed", kind, str(n)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _measure(n: int) -> dict:
    return {"defaults": _subprocess("defaults", n), "published": _subprocess("published", n)}


def _row(n: str, numbers: dict) -> str:
    d, p = numbers["defaults"], numbers["published"]
    c, a, w = d["cold"], d["cold_compiled"], d["warm"]
    return (
        f"| {n}x{n} | {c['compile_s']:.1f} | {a['s_per_step'] * 1000:.0f} | {c['steps']} ({c['best_step']}) | "
        f"{c['wall_s']:.1f} | {a['wall_s']:.1f} | {c['corr']:.3f} | {w['steps']} ({_stop(w)}) | {w['wall_s'] + w['start_s']:.1f} | "
        f"{w['corr']:.3f} | {d['steps_to_target'] or '-'} | {_seconds(d['seconds_to_target'])} | "
        f"{d['warm_steps_to_cold_quality'] or '-'} | "
        f"{d['peak_mib']:.0f} | {p['s_per_step'] * 1000:.0f} | {p['estimated_5000_steps_min']:.0f} min | "
        f"{p['peak_mib']:.0f} |"
    )


def _save(numbers: dict) -> None:
    rows = [_row(n, numbers[n]) for n in sorted(numbers, key=int)]
    md = "\n".join(
        [
            "## DPC reconstruction speed and memory",
            "",
            "`python -m benchmarks.run dpc_speed`. One four-shot window of the translating cell sample",
            "(2.9 px within the window), DPC's defaults (`default_config(\"dpc\")`, each cold fit started as the",
            "reconstructor starts it), CPU. *Cold*: first fit in a fresh",
            "process (compilation included; the persistent compilation cache is off here); *compiled*:",
            "another window in the same session; *warm*: the next window started from the previous",
            "one's networks as the reconstructor starts it (DPC: its motion moved by how far the sample",
            "travelled since, docs/model.md) and given its held-out loss as the reference (how it stopped:",
            "*reached reference*, within 2 % of that loss; *patience*; *refit cold*, the warm result",
            "rejected); *warm fit* includes that start.",
            f"*To {TARGET}*: steps (and seconds of steps) for the phase correlation to reach {TARGET};",
            "*warm to cold*: steps for the warm fit to come within 0.005 of the cold result. Peak",
            "memory: the process's maximum resident size. Published: the published configuration's",
            "time per step (50 steps measured) and the time its 5000-step schedule takes. Goals",
            "(issue 4): 256 x 256 warm window under 10 s, cold under 60 s; (issue 13) 512 x 512 warm window",
            "at most 10 s; on 2 CPU cores.",
            "",
            f"| size | compile (s) | ms/step | cold steps (kept) | cold fit (s) | compiled fit (s) | cold corr | warm steps (stop) | warm fit (s) | warm corr | steps to {TARGET} | s to {TARGET} | warm steps to cold quality | peak MiB | published ms/step | published 5000 steps | published peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    save_result("dpc_speed", numbers, md, order=25)


def run(quick: bool = False) -> dict:
    numbers = {str(n): _measure(n) for n in ([64, 128] if quick else SIZES)}
    _save(numbers)
    return numbers


def refresh(sizes: list[int]) -> None:
    """Re-measure ``sizes`` alone (each in its own processes, as :func:`run`) and keep the saved
    numbers of the others (``python -c "from benchmarks.cases.dpc_speed import refresh; refresh([512])"``)."""
    numbers = json.loads((RESULTS / "dpc_speed.json").read_text())["numbers"]
    numbers.update({str(n): _measure(n) for n in sizes})
    _save(numbers)


if __name__ == "__main__":
    kind, size = sys.argv[1], int(sys.argv[2])
    result = measure_defaults(size) if kind == "defaults" else measure_published(size)
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(json.dumps(result, default=float))
