"""Near-live 2D SIM: does the reconstruction keep up with one window every 10 s?

The simulated microscope (real time: exposures and the 10 s window interval take their real
duration) acquires 2D SIM windows of vibrating beads through the same
:class:`~nstm_acquire.acquire.session.LiveSession` that ``nstm-acquire run`` and the panel use,
with the default sim2d reconstruction (warm starts, policy ``all``: every window, in order).
Per window: when it was complete in the store, when its reconstruction was done, and the lag
between them. Keeping up means the lag stays bounded: it does not grow from window to window.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, save_result
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.acquire.session import LiveSession
from nstm_acquire.hardware.microscope import open_microscope
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.nstm.config import default_config


def live_run(shape: tuple[int, int], n_windows: int, interval_s: float, workdir: Path) -> dict:
    """One real-time sim2d run; per-window completion and reconstruction times (s since start)."""
    cfg = simulated_config(frame_shape=shape, realtime=True)
    scope = open_microscope(cfg)
    complete: dict[int, float] = {}
    done: dict[int, float] = {}
    steps: dict[int, int] = {}
    warm: dict[int, bool] = {}
    lock = threading.Lock()
    t0 = time.perf_counter()
    try:
        plan = AcquisitionPlan(modality="sim2d", n_windows=n_windows, window_interval_s=interval_s)
        session = LiveSession(
            scope, plan, workdir / "live.zarr", default_config("sim2d"), overwrite=True, log_file=False
        )

        def on_complete(w: int) -> None:
            with lock:
                complete[w] = time.perf_counter() - t0

        def on_done(w: int, result) -> None:
            with lock:
                done[w] = time.perf_counter() - t0
                steps[w] = int(result.info.get("steps", 0))
                warm[w] = bool(result.info.get("warm_start", False))

        session.events.window_complete.connect(on_complete)
        session.events.window_done.connect(on_done)
        t0 = time.perf_counter()
        session.run()
        failed = list(session.failed)
    finally:
        scope.close()
    rows = []
    for w in sorted(complete):
        lag = done[w] - complete[w] if w in done else None
        rows.append({"window": w, "complete_s": complete[w], "done_s": done.get(w), "lag_s": lag,
                     "steps": steps.get(w), "warm": warm.get(w)})  # fmt: skip
    return {"rows": rows, "failed": failed, "wall_s": time.perf_counter() - t0}


def run(quick: bool = False) -> None:
    shape, n_windows, interval_s = ((64, 64), 3, 5.0) if quick else ((128, 128), 10, 10.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = live_run(shape, n_windows, interval_s, Path(tmp))
    rows = out["rows"]
    lags = np.array([r["lag_s"] for r in rows if r["lag_s"] is not None], dtype=float)
    half = len(lags) // 2
    # bounded: the second half's lags no larger than the first half's (beyond 20 % or 2 s)
    growth = float(lags[half:].mean() - lags[:half].mean()) if half else float("nan")
    keeps_up = bool(len(lags) == n_windows and growth <= max(2.0, 0.2 * float(lags[:half].mean())))
    m = machine()
    lines = [
        "## Near-live 2D SIM: keeping up with one window every 10 s",
        "",
        f"`python -m benchmarks.run sim2d_live`{' --quick' if quick else ''}. The simulated microscope in real "
        f"time acquires {n_windows} 2D SIM windows ({shape[0]} x {shape[1]} px, 9 shots, vibrating beads) "
        f"one every {interval_s:g} s through `LiveSession` (what `nstm-acquire run --modality sim2d` and the "
        "panel use), reconstructed with the default sim2d settings (warm starts, every window in order). "
        "*Complete*: when the window's last frame was in the store; *done*: when its reconstruction was; "
        "lag = done - complete (s since the run started). The first window compiles the fit, the first "
        "warm one the warm start's motion pre-fit (a few seconds each); from then on a window costs its steps.",
        "",
        "| window | complete (s) | done (s) | lag (s) | steps | warm |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lag = "-" if r["lag_s"] is None else f"{r['lag_s']:.1f}"
        done = "-" if r["done_s"] is None else f"{r['done_s']:.1f}"
        lines.append(f"| {r['window']} | {r['complete_s']:.1f} | {done} | {lag} | {r['steps']} | {r['warm']} |")
    lines += [
        "",
        f"Lag, mean of the first half of the windows {lags[:half].mean():.1f} s, of the second half "
        f"{lags[half:].mean():.1f} s (growth {growth:+.1f} s): "
        + ("**keeps up** (the lag stays bounded)." if keeps_up else "**falls behind** (the lag grows)."),
    ]
    save_result(
        "sim2d_live",
        {"shape": shape, "n_windows": n_windows, "interval_s": interval_s, "rows": rows, "failed": out["failed"],
         "lag_growth_s": growth, "keeps_up": keeps_up, "machine": m, "quick": quick},
        "\n".join(lines),
        order=47,
    )
