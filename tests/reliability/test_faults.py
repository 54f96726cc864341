"""Faults during an acquisition (issue 14, finding 6): kill -9, Ctrl-C, SIGTERM, a full disk, a
camera that fails, a device that times out. After each, the store says how the run ended
(``StoreReader.run_end``), exactly what is there (``timing_summary``), and every complete
window reads back whole.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.acquire.session import LiveSession
from nstm_acquire.store import StoreReader

FRAMES_PER_WINDOW = 4  # DPC
BACKGROUND_FRAMES = 4  # the simulated DPC run snaps one sample-free frame per shot first


def assert_store_says_what_is_there(store: Path, frames_written: int) -> StoreReader:
    """Counts agree with the run, W is trimmed to the frames, every complete window reads."""
    reader = StoreReader(store)
    summary = reader.timing_summary()
    assert summary["frames_acquired"] == frames_written
    complete = reader.complete_windows()
    assert summary["complete_windows"] == len(complete) == frames_written // FRAMES_PER_WINDOW
    assert complete == list(range(len(complete)))
    assert summary["partial_windows"] == ([len(complete)] if frames_written % FRAMES_PER_WINDOW else [])
    assert summary["damaged_windows"] == {}
    for w in complete:
        data = reader.window(w)
        assert np.all(np.isfinite(data.timestamps_s)) and data.raw.std() > 0
    return reader


# ------------------------------------------------------------------ signals
def _long_run_args(store: Path) -> list[str]:
    """400 windows, one every 50 ms (20 s): long enough to be signalled after window 2."""
    return ["acquire", "--shape", "32", "32", "--windows", "400", "--interval", "0.05", "--fast", "--out", str(store)]


def _when_window_2_is_complete(store: Path, action, timeout_s: float = 60.0) -> threading.Thread:
    """Run ``action()`` on a thread as soon as the store has 3 windows' timing chunks."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (store / "timestamps_s" / "c" / "3").exists():
                action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_kill_9_leaves_a_readable_store_that_says_it_was_killed(tmp_path):
    store = tmp_path / "kill9.zarr"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "nstm_acquire.cli", *_long_run_args(store)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    _when_window_2_is_complete(store, proc.kill).join()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    reader = StoreReader(store)
    status, detail = reader.run_end()
    assert status == "killed" and "killed or crashed" in detail
    summary = reader.timing_summary()
    complete = reader.complete_windows()
    assert len(complete) >= 3 and complete == list(range(len(complete)))
    assert summary["partial_windows"] in ([], [len(complete)])
    assert summary["damaged_windows"] == {}
    for w in complete:
        reader.window(w)


@pytest.mark.parametrize(
    ("sig", "reason"), [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated by SIGTERM")], ids=["SIGINT", "SIGTERM"]
)
def test_sigint_and_sigterm_cancel_cleanly(run_cli, tmp_path, sig, reason):
    store = tmp_path / "signalled.zarr"
    watcher = _when_window_2_is_complete(store, lambda: os.kill(os.getpid(), sig))
    code, err, out = run_cli(*_long_run_args(store))
    watcher.join()
    assert code == 130, err
    assert not any("Traceback" in line for line in err)
    reader = StoreReader(store)
    assert reader.run_end() == ("canceled", reason)
    written = reader.attrs.acquisition["frames_written"]
    assert 12 <= written < 1600
    reader = assert_store_says_what_is_there(store, written)
    assert reader.n_windows == reader.timing_summary()["windows_with_frames"]  # W trimmed
    assert f"{written}/1600 frames" in out


# ------------------------------------------------------------------ in-process faults
def _session(scope, store: Path, n_windows: int) -> LiveSession:
    plan = AcquisitionPlan(modality="dpc", n_windows=n_windows, exposure_ms=4.0)
    return LiveSession(scope, plan, store, reconstruct=False, log_file=False)


def test_full_disk_ends_the_run_as_disk_full(fast_sim, open_scope, tmp_path, monkeypatch):
    import nstm_acquire.store.writer as writer_module

    real_write = writer_module._write_new
    calls = {"n": 0}

    def write_until_full(path, data):
        calls["n"] += 1
        if calls["n"] > 9:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    monkeypatch.setattr(writer_module, "_write_new", write_until_full)
    store = tmp_path / "full.zarr"
    summary = _session(open_scope(fast_sim()), store, 50).run()
    assert summary.status == "disk_full" and summary.frames_written == 9
    assert calls["n"] == 10  # the run stopped at the first failed frame
    status, detail = StoreReader(store).run_end()
    assert status == "disk_full" and "No space left on device" in detail and "\n" not in detail
    assert_store_says_what_is_there(store, 9)


def test_camera_failing_after_n_frames_stops_the_run_with_its_text(fast_sim, open_scope, tmp_path):
    config = fast_sim(faults={"camera_error_after_frames": BACKGROUND_FRAMES + 10, "camera_error_message": "sensor overheated"})
    store = tmp_path / "cam.zarr"
    t0 = time.perf_counter()
    summary = _session(open_scope(config), store, 200).run()
    assert time.perf_counter() - t0 < 20  # stopped: did not try the 190 remaining windows
    assert summary.status == "camera_error" and summary.frames_written == 10
    status, detail = StoreReader(store).run_end()
    assert status == "camera_error" and "sensor overheated (after 14 frames)" in detail
    assert_store_says_what_is_there(store, 10)


def test_camera_error_exit_code_and_one_line_on_the_command_line(run_cli, write_config, tmp_path):
    from nstm_acquire.hardware.config import default_config_path

    text = default_config_path().read_text().replace("  seed: 0", "  seed: 0\n  faults: {camera_error_after_frames: 9}")
    config = write_config("faulty.yaml", text)
    store = tmp_path / "cli.zarr"
    code, err, _ = run_cli("acquire", "--config", config, "--shape", 32, 32, "--windows", 100, "--fast", "--out", store)
    assert code == 1
    camera_lines = [line for line in err if "simulated sensor readout failure" in line]
    assert camera_lines, err
    assert StoreReader(store).run_end()[0] == "camera_error"
    assert_store_says_what_is_there(store, 5)


def test_device_timeout_stops_the_run(fast_sim, open_scope, tmp_path):
    config = fast_sim(faults={"camera_stall_after_frames": BACKGROUND_FRAMES + 6, "camera_stall_s": 2})
    scope = open_scope(config)
    scope.core.mda.engine.timeout_base = 0.3  # carried over to the run's engine
    store = tmp_path / "stall.zarr"
    summary = _session(scope, store, 100).run()
    assert summary.status == "camera_error" and summary.frames_written == 6
    status, detail = StoreReader(store).run_end()
    assert status == "camera_error" and detail.startswith("camera timeout: ") and "timed out" in detail
    assert_store_says_what_is_there(store, 6)
