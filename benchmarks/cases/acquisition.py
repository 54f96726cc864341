"""Acquisition throughput into the store, against writing the same frames straight to Zarr.

The simulated camera replays a bank of pre-rendered 16-bit frames as fast as it can (0.1 ms
exposure, no readout time), so the pipeline -- pymmcore-plus MDA with a hardware-triggered
burst, the relay thread, the controller's timestamping and the store writer -- is the
bottleneck. The baseline writes the same frames in the same order with plain ``zarr`` calls into
an array of the same chunking (one chunk per frame, no compression), in the same run and to the
same disk.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from benchmarks.common import save_result
from nstm_acquire.acquire.controller import AcquisitionController
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.hardware.microscope import open_microscope
from nstm_acquire.hardware.simulated.setup import simulated_config


def _pipeline(shape: tuple[int, int], n_frames: int, workdir: Path) -> tuple[dict, list[np.ndarray]]:
    cfg = simulated_config(
        frame_shape=shape,
        realtime=False,
        replay_frames=8,
        timing={"readout_ms": 0.0, "pattern_switch_ms": 0.0, "jitter_ms": 0.0, "exposure_subsamples": 1},
    )
    scope = open_microscope(cfg)
    try:
        scope.prepare("dpc")
        scope.world.render(0.0, 1e-4)  # build the replay bank before timing
        bank = list(scope.world._replay)
        plan = AcquisitionPlan(modality="dpc", n_windows=n_frames // 4, exposure_ms=0.1)
        controller = AcquisitionController(scope, plan, workdir / "pipeline.zarr", background=False)
        stamps: list[float] = []
        controller.events.frame_stored.connect(lambda *a: stamps.append(time.perf_counter()))
        t0 = time.perf_counter()
        summary = controller.run()
        total = time.perf_counter() - t0
    finally:
        scope.close()
    n = summary.frames_written
    steady = (n - 1) / (stamps[-1] - stamps[0])
    return {
        "frames": n,
        "frames_expected": summary.frames_expected,
        "dropped": summary.frames_expected - n,
        "hardware_triggered": summary.frames_hardware_triggered,
        "fps": steady,
        "fps_including_setup": n / total,
    }, bank


def _direct(shape: tuple[int, int], n_frames: int, bank: list[np.ndarray], workdir: Path, check_empty: bool) -> float:
    w = n_frames // 4
    arr = zarr.create_array(
        str(workdir / f"direct_{check_empty}.zarr"),
        shape=(w, 4, 1, *shape),
        chunks=(1, 1, 1, *shape),
        dtype="uint16",
        compressors=None,
        fill_value=0,
        config={"write_empty_chunks": not check_empty},
    )
    t0 = time.perf_counter()
    for i in range(w * 4):
        arr[i // 4, i % 4, 0] = bank[i % len(bank)]
    return w * 4 / (time.perf_counter() - t0)


def run(quick: bool = False) -> dict:
    cases = [((512, 512), 200 if quick else 800), ((2048, 2048), 40 if quick else 160)]
    rows = []
    numbers = {}
    for shape, n in cases:
        workdir = Path(tempfile.mkdtemp(prefix="nstm-bench-"))
        try:
            pipe, bank = _pipeline(shape, n, workdir)
            direct_fast = _direct(shape, n, bank, workdir, check_empty=False)
            direct_default = _direct(shape, n, bank, workdir, check_empty=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        mb = shape[0] * shape[1] * 2 / 1e6
        best_direct = max(direct_fast, direct_default)
        key = f"{shape[0]}x{shape[1]}"
        numbers[key] = {
            **pipe,
            "mb_per_s": pipe["fps"] * mb,
            "direct_fps_write_empty_chunks": direct_fast,
            "direct_fps_zarr_default": direct_default,
            "ratio_to_best_direct": pipe["fps"] / best_direct,
        }
        rows.append(
            f"| {key} uint16 | {n} | {pipe['fps']:.0f} fps, {pipe['fps'] * mb:.0f} MB/s | "
            f"{direct_fast:.0f} fps, {direct_fast * mb:.0f} MB/s | {direct_default:.0f} fps | "
            f"{100 * pipe['fps'] / best_direct:.0f} % | {pipe['dropped']} |"
        )
    md = "\n".join(
        [
            "## Acquisition throughput into the store",
            "",
            "`python -m benchmarks.run acquisition`. Simulated camera replaying pre-rendered frames",
            "(0.1 ms exposure, no readout), one hardware-triggered DPC burst, frames through the MDA,",
            "the controller (timestamps) and the store writer, to the machine's temp disk. *Direct*:",
            "the same frames, same order, same chunking (one frame per chunk, uncompressed), written",
            "with plain `zarr` array assignment in the same run (with `write_empty_chunks` on, zarr's",
            "fastest setting, and with zarr's default). Goal: at least 90 % of the best direct write,",
            "0 dropped frames.",
            "",
            "| frames | count | pipeline (steady state) | direct zarr, write_empty_chunks | direct zarr, default | pipeline / best direct | dropped |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    save_result("acquisition", numbers, md, order=10)
    return numbers
