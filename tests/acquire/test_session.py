"""LiveSession: acquisition and near-live reconstruction wired once, on the small simulated microscope.

32 x 32 DPC windows and the shortest NSTM fit (one evaluation period): the first fit in the
process compiles the model (10-20 s on 2 CPU cores), later ones take a fraction of a second.
"""

from __future__ import annotations

import _thread
import logging
import threading

import numpy as np
import pytest

from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.acquire.session import LiveSession, log_path_for
from nstm_acquire.nstm.config import default_config
from nstm_acquire.store import ReconReader, StoreReader


def tiny_nstm():
    """What ``--steps 10`` gives on the command line (so the CLI test reuses the compiled fit)."""
    return default_config().with_fit(max_steps=10, warm_max_steps=10)


def _record(session):
    """Every signal of the session, in the order received: (name, first argument)."""
    seen: list[tuple[str, object]] = []
    lock = threading.Lock()

    def recorder(name):
        def slot(*args):
            with lock:
                seen.append((name, args[0] if args else None))

        return slot

    for name in ("frame_stored", "window_complete", "acquisition_finished", "preview_ready", "window_started",
                 "window_done", "window_skipped", "error", "finished"):  # fmt: skip
        getattr(session.events, name).connect(recorder(name))
    return seen


def test_log_file_goes_beside_the_store(tmp_path):
    assert log_path_for(tmp_path / "cells.zarr") == tmp_path / "cells.log"
    assert log_path_for(tmp_path / "cells") == tmp_path / "cells.log"


def test_a_session_acquires_and_reconstructs_every_window_in_order(fast_sim, open_scope, tmp_path):
    scope = open_scope(fast_sim())
    store = tmp_path / "live.zarr"
    session = LiveSession(scope, AcquisitionPlan(modality="dpc", n_windows=3, exposure_ms=4.0), store, tiny_nstm())
    seen = _record(session)
    summary = session.run()

    assert summary.status == "completed"
    assert summary.frames_written == 12 and session.frames == 12
    assert sum(1 for name, _ in seen if name == "frame_stored") == 12
    assert session.done == [0, 1, 2] and session.skipped == [] and session.failed == []
    assert session.waiting == 0 and session.lag_s() == 0.0
    assert not session.is_running and session.phase() == "ended"
    assert ReconReader(store).windows_done() == [0, 1, 2]
    names = [name for name, _ in seen]
    for w in range(3):
        assert seen.index(("window_complete", w)) < seen.index(("window_started", w)) < seen.index(("window_done", w))
        assert seen.index(("preview_ready", w)) < seen.index(("window_done", w))
    assert names.count("acquisition_finished") == 1 and names.count("finished") == 1
    assert names[-1] == "finished" and "error" not in names
    log = log_path_for(store).read_text()
    assert "run started: dpc, 3 windows" in log and str(store) in log
    assert "window 2 reconstructed" in log and "run ended: acquisition completed" in log


def test_acquisition_only_session(fast_sim, open_scope, tmp_path):
    scope = open_scope(fast_sim())
    session = LiveSession(scope, AcquisitionPlan(modality="dpc", n_windows=2), tmp_path / "a.zarr", reconstruct=False)
    seen = _record(session)
    summary = session.run()
    assert summary.status == "completed" and summary.frames_written == 8
    assert [w for name, w in seen if name == "window_complete"] == [0, 1]
    assert session.done == [] and session.worker is None
    assert not (tmp_path / "a.zarr" / "recon").exists()
    assert "no reconstruction" in log_path_for(tmp_path / "a.zarr").read_text()


def _slow_fit(session, fitted):
    """Replace the worker's fit by one that runs until the worker is stopped (no compilation)."""
    worker = session.worker

    def reconstruct(w):
        fitted.append(w)
        worker._stop_now.wait(30)

    worker._reconstruct = reconstruct


def test_cancel_mid_run_keeps_the_frames_acquired_so_far(fast_sim, open_scope, tmp_path):
    scope = open_scope(fast_sim(realtime=True))
    store = tmp_path / "canceled.zarr"
    session = LiveSession(scope, AcquisitionPlan(modality="dpc", n_windows=200), store, tiny_nstm())
    fitted: list[int] = []
    _slow_fit(session, fitted)
    session.events.frame_stored.connect(lambda w, s, z, t: session.cancel() if w >= 1 else None)
    summary = session.run()
    assert session.wait(0)
    assert summary.status == "canceled"
    assert 4 <= summary.frames_written < summary.frames_expected == 800
    assert fitted == [0] and session.done == []  # the fit in progress ended at the stop
    reader = StoreReader(store)
    assert reader.timing_summary()["frames_acquired"] == summary.frames_written
    assert 0 in reader.complete_windows()
    assert reader.frame(0, 3, 0).shape == (32, 32) and reader.frame(0, 3, 0).max() > 0


def test_ctrl_c_cancels_and_reraises(fast_sim, open_scope, tmp_path):
    scope = open_scope(fast_sim(realtime=True))
    session = LiveSession(scope, AcquisitionPlan(modality="dpc", n_windows=200), tmp_path / "c.zarr", tiny_nstm())
    _slow_fit(session, [])
    once = threading.Event()

    def interrupt(w, s, z, t):
        if w >= 1 and not once.is_set():
            once.set()
            _thread.interrupt_main()  # KeyboardInterrupt in the main thread, inside wait()

    session.events.frame_stored.connect(interrupt)
    with pytest.raises(KeyboardInterrupt):
        session.run()
    assert not session.is_running  # both threads had ended before the interrupt was re-raised
    assert session.summary.status == "canceled"
    assert session.worker.join(0)


def test_a_failing_window_is_logged_with_its_traceback(fast_sim, open_scope, tmp_path, monkeypatch, caplog):
    from nstm_acquire.recon.chain import StoreReconstructor

    def broken(self, w, **kw):
        raise RuntimeError(f"simulated fault in window {w}")

    monkeypatch.setattr(StoreReconstructor, "reconstruct", broken)
    scope = open_scope(fast_sim())
    store = tmp_path / "broken.zarr"
    session = LiveSession(scope, AcquisitionPlan(modality="dpc", n_windows=2), store, tiny_nstm())
    errors: list[tuple[str, str]] = []
    session.events.error.connect(lambda source, message: errors.append((source, message)))
    with caplog.at_level(logging.INFO, logger="nstm_acquire"):
        summary = session.run()
    assert summary.status == "completed"  # the acquisition never depends on the reconstruction
    assert session.failed == [0, 1] and session.skipped == [0, 1] and session.done == []
    assert errors == [
        ("reconstruction", "window 0: RuntimeError: simulated fault in window 0"),
        ("reconstruction", "window 1: RuntimeError: simulated fault in window 1"),
    ]
    records = [r for r in caplog.records if r.getMessage() == "window 0 could not be reconstructed"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None and records[0].exc_info[0] is RuntimeError
    log = log_path_for(store).read_text()
    assert "Traceback (most recent call last)" in log and "simulated fault in window 1" in log
    assert np.isfinite(StoreReader(store).timestamps_s()).all()


def test_cli_run_and_acquire_go_through_a_live_session(tmp_path, capsys):
    from nstm_acquire.cli import main

    store = tmp_path / "cli.zarr"
    small = ["--fast", "--shape", "32", "32", "--windows", "2", "--out", str(store)]
    assert main(["run", *small, "--steps", "10"]) == 0
    assert "8/8 frames, 2 windows acquired (completed), 2 reconstructed" in capsys.readouterr().out
    assert ReconReader(store).windows_done() == [0, 1]
    assert "run started: dpc, 2 windows" in log_path_for(store).read_text()

    # an existing store is a user error found before anything is created: one line, exit 2
    assert main(["acquire", *small]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    # a user error in the main thread: one line; --debug (before the command) prints the traceback first
    bad = ["acquire", "--planes", "3", "--out", str(tmp_path / "x.zarr")]
    line = "nstm-acquire: --planes 3: only --modality sim3d acquires several planes"
    assert main(bad) == 2
    assert capsys.readouterr().err.strip() == line
    assert main(["--debug", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1] == line
