"""Acquisition under load: 10,000+ frames while the near-live reconstruction falls behind.

Two runs of the same simulated DPC acquisition (64 x 64 frames replayed from a pre-rendered
bank, 1 ms exposure, hardware-triggered back to back, ``--fast`` timing):

* **acquisition only**: the resident memory (RSS) of the process is sampled every 50 ms; its
  growth per frame after the first 20 % of the run is the acquisition path's leak, if any;
* **with reconstruction** (policy ``all``, the CPU-sized fit below): the worker cannot keep up,
  so complete windows queue; the queue holds window indices only, so memory must stay bounded
  while the lag grows, and no frame may be dropped.

Reported: frames expected / written / dropped, frames per second, RSS at 20 % and at the end of
the acquisition, growth per frame, the peak reconstruction backlog (windows waiting) and how many
windows were reconstructed when the acquisition ended.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import save_result
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.acquire.session import LiveSession
from nstm_acquire.hardware.microscope import open_microscope
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.nstm.config import default_config
from nstm_acquire.store import StoreReader

SHAPE = (64, 64)


def _rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``), bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def _run(n_frames: int, reconstruct: bool, workdir: Path) -> dict[str, Any]:
    cfg = simulated_config(
        frame_shape=SHAPE,
        realtime=False,
        replay_frames=16,
        timing={"readout_ms": 0.0, "pattern_switch_ms": 0.0, "jitter_ms": 0.0, "exposure_subsamples": 1},
    )
    scope = open_microscope(cfg)
    store = workdir / ("load_recon.zarr" if reconstruct else "load.zarr")
    plan = AcquisitionPlan(modality="dpc", n_windows=n_frames // 4, exposure_ms=1.0)
    nstm = default_config().with_fit(max_steps=30, warm_max_steps=30) if reconstruct else None
    if reconstruct:  # compile the fit first (same shapes), so memory growth is the run's own
        warm = AcquisitionPlan(modality="dpc", n_windows=2, exposure_ms=1.0)
        LiveSession(scope, warm, workdir / "warmup.zarr", nstm, log_file=False).run()
    session = LiveSession(scope, plan, store, nstm, reconstruct=reconstruct, log_file=False)
    samples: list[tuple[int, int, int]] = []  # (frames stored, rss bytes, windows waiting)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            samples.append((session.frames, _rss_bytes(), session.waiting))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        session.start()
        sampler.start()
        t0 = time.perf_counter()
        while not session.acquisition_done:
            time.sleep(0.05)
        acq_s = time.perf_counter() - t0
        at_acq_end = (len(session.done), session.waiting, _rss_bytes())
        session.cancel()  # the reconstruction backlog is not waited for
        session.wait()
    finally:
        stop.set()
        sampler.join()
        scope.close()
    summary = session.summary
    reader = StoreReader(store)
    complete = len(reader.complete_windows())
    after_warmup = [s for s in samples if s[0] >= 0.2 * n_frames]
    first, last = after_warmup[0], after_warmup[-1]
    growth = (last[1] - first[1]) / max(last[0] - first[0], 1)
    return {
        "frames_expected": summary.frames_expected,
        "frames_written": summary.frames_written,
        "dropped": summary.frames_expected - summary.frames_written,
        "complete_windows_in_store": complete,
        "status": summary.status,
        "fps": summary.frames_written / acq_s,
        "rss_at_20pct_mb": first[1] / 1e6,
        "rss_peak_mb": max(s[1] for s in samples) / 1e6,
        "rss_end_mb": at_acq_end[2] / 1e6,
        "rss_growth_bytes_per_frame": growth,
        "peak_backlog_windows": max((s[2] for s in samples), default=0),
        "reconstructed_at_acquisition_end": at_acq_end[0],
    }


def run(quick: bool = False) -> dict:
    n_frames = 2000 if quick else 12000
    workdir = Path(tempfile.mkdtemp(prefix="nstm-load-"))
    try:
        numbers = {
            "acquisition_only": _run(n_frames, False, workdir),
            "with_reconstruction": _run(n_frames, True, workdir),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for name, r in numbers.items():
        rows.append(
            f"| {name.replace('_', ' ')} | {r['frames_expected']} | {r['frames_written']} | {r['dropped']} | "
            f"{r['fps']:.0f} | {r['rss_at_20pct_mb']:.0f} / {r['rss_peak_mb']:.0f} / {r['rss_end_mb']:.0f} | "
            f"{r['rss_growth_bytes_per_frame'] / 1024:.2f} | {r['peak_backlog_windows']} | "
            f"{r['reconstructed_at_acquisition_end']} |"
        )
    md = "\n".join(
        [
            "## Acquisition under load (reconstruction falling behind)",
            "",
            "`python -m benchmarks.run acquisition_load`. Simulated DPC, 64 x 64 frames replayed, 1 ms",
            "exposure, back to back, one process. *With reconstruction*: the near-live worker (policy",
            "`all`, 30 fit steps per window, compiled by a 2-window warm-up run first) runs beside the",
            "acquisition and falls behind; the queue holds window indices only. RSS sampled every 50 ms; growth per frame measured after the first 20 %",
            "of the frames. Goal: 0 dropped frames, memory that does not grow with the run.",
            "",
            "| run | frames expected | written | dropped | frames/s | RSS MB at 20 % / peak / end | growth KiB/frame | peak backlog (windows) | reconstructed by acquisition end |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    save_result("acquisition_load", numbers, md, order=11)
    return numbers
