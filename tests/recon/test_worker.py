"""Near-live reconstruction: windows are reconstructed while the acquisition goes on."""

import datetime as dt

import numpy as np
import pytest

from nstm_acquire.acquire.controller import AcquisitionController
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.acquire.session import LiveSession
from nstm_acquire.nstm.config import default_config
from nstm_acquire.recon.worker import ReconstructionWorker
from nstm_acquire.store import ReconReader, StoreReader

SHAPE = (32, 32)


def live_config():
    return default_config().with_fit(max_steps=50, coarse_to_fine_steps=25, warm_max_steps=25)


def _precompile(fast_sim, open_scope, tmp_path):
    """Reconstruct one window of the same shape first, so the live test measures fitting,
    not the one-time compilation (the package keeps it in a persistent cache across sessions)."""
    scope = open_scope(fast_sim(frame_shape=SHAPE))
    AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=1), tmp_path / "warm.zarr").run()
    from nstm_acquire.recon.chain import StoreReconstructor

    StoreReconstructor(tmp_path / "warm.zarr", live_config()).run()


def _t(text):
    return dt.datetime.fromisoformat(text)


def test_windows_are_reconstructed_while_later_ones_are_acquired(fast_sim, open_scope, tmp_path):
    _precompile(fast_sim, open_scope, tmp_path)
    scope = open_scope(fast_sim(frame_shape=SHAPE, realtime=True, motion={"dpc": "translation:vx=20"}))
    plan = AcquisitionPlan(modality="dpc", n_windows=4, window_interval_s=0.8, exposure_ms=5.0)
    store = tmp_path / "live.zarr"
    session = LiveSession(scope, plan, store, live_config(), policy="all")
    controller, worker = session.controller, session.worker
    previews = []
    worker.events.preview_ready.connect(lambda w, conv: previews.append((w, conv.shape)))
    session.run()

    assert controller.summary.status == "completed"
    assert controller.summary.frames_written == 16 and controller.summary.frames_missing == 0
    assert worker.done == [0, 1, 2, 3] and worker.skipped == []
    assert [w for w, _ in previews] == [0, 1, 2, 3] and previews[0][1] == (2, 1, *SHAPE)
    recon = ReconReader(store)
    assert recon.windows_done() == [0, 1, 2, 3]
    info = recon.windows_info()
    # the first window's NSTM result was written before the last window had been acquired
    assert _t(info[0]["reconstruction_end_utc"]) < _t(info[3]["window_complete_utc"])
    # every later window starts from its predecessor; the simulated clock runs in real time, so on a
    # loaded machine a late frame can stretch a window's motion and its warm fit may end far above
    # the reference and be refitted from scratch (recorded in rejected_warm_fit): also a warm start.
    # A window flagged implausible is never a warm-start reference (recon/chain.py): the next one
    # fits cold, without a reference, and becomes the reference.
    keys = ("warm_start", "rejected_warm_fit", "status", "implausible", "failure", "final_val_loss", "stop_reason")
    why = [{k: info[w].get(k) for k in keys} for w in range(4)]
    assert info[0]["warm_start"] is False and info[0]["reference_val_loss"] is None, why
    reference = info[0]["final_val_loss"]
    for w in (1, 2, 3):
        if info[w - 1].get("implausible"):
            assert info[w]["warm_start"] is False and info[w]["rejected_warm_fit"] is None, why
            assert info[w]["reference_val_loss"] is None, why
            reference = info[w]["final_val_loss"]
            continue
        assert info[w]["warm_start"] or info[w]["rejected_warm_fit"] is not None, why
        # measured against the last cold fit, not against its warm predecessor
        assert info[w]["reference_val_loss"] == reference, why
        if not info[w]["warm_start"]:  # refitted from scratch: the new reference
            reference = info[w]["final_val_loss"]
    # one render time per shot, at the exposure midpoints
    reader = StoreReader(store)
    np.testing.assert_allclose(recon.times_s(2), reader.window(2).midpoints_s[:, 0])


def test_policy_newest_skips_windows_it_cannot_keep_up_with(tmp_path):
    """The worker is busy while windows pile up: with policy 'newest' it takes the last one."""
    worker = ReconstructionWorker(tmp_path / "none.zarr", live_config(), policy="newest")
    handled = []
    worker._reconstruct = lambda w: (handled.append(w), worker.done.append(w))  # no store needed
    for w in range(5):
        worker.submit(w)
    worker.close_input()
    worker.start()
    assert worker.join(10)
    assert handled == [4]
    assert worker.skipped == [0, 1, 2, 3]
    assert worker.waiting == 0


def test_policy_all_keeps_every_window_in_order(tmp_path):
    worker = ReconstructionWorker(tmp_path / "none.zarr", live_config(), policy="all")
    handled = []
    worker._reconstruct = lambda w: (handled.append(w), worker.done.append(w))
    for w in range(5):
        worker.submit(w)
    worker.close_input()
    worker.start()
    assert worker.join(10)
    assert handled == [0, 1, 2, 3, 4] and worker.skipped == []


def test_a_failing_window_is_reported_and_the_worker_goes_on(tmp_path):
    worker = ReconstructionWorker(tmp_path / "missing.zarr", live_config())
    errors = []
    worker.events.error.connect(errors.append)
    worker.submit(0)
    worker.close_input()
    worker.start()
    assert worker.join(30)
    assert errors and "missing.zarr" in errors[0]
    assert worker.skipped == [0]


def test_bad_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="policy"):
        ReconstructionWorker(tmp_path / "x.zarr", policy="sometimes")


def test_a_fault_in_the_worker_thread_is_logged_with_its_traceback(tmp_path, caplog):
    import logging

    worker = ReconstructionWorker(tmp_path / "none.zarr", live_config())
    errors, finished = [], []
    worker.events.error.connect(errors.append)
    worker.events.finished.connect(lambda: finished.append(True))

    def broken():
        raise RuntimeError("queue broke")

    worker._next = broken
    with caplog.at_level(logging.ERROR, logger="nstm_acquire"):
        worker.start()
        assert worker.join(10)
    assert errors == ["reconstruction stopped: RuntimeError: queue broke"] and finished == [True]
    (record,) = [r for r in caplog.records if r.getMessage() == "reconstruction thread stopped"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_a_failed_fit_is_reported_and_listed_as_failed_not_done(tmp_path):
    """The chain marks a diverged window failed; the worker says so (one error line) and goes on."""
    from types import SimpleNamespace

    worker = ReconstructionWorker(tmp_path / "x.zarr", live_config())
    outcomes = {0: {"status": "final"}, 1: {"status": "failed", "failure": "the fit diverged (non-finite values)"}}
    worker._rec = SimpleNamespace(
        reconstruct=lambda w, **kw: SimpleNamespace(info=outcomes[w], fit=SimpleNamespace(summary=lambda: "ok"))
    )
    errors = []
    worker.events.error.connect(errors.append)
    for w in (0, 1):
        worker.submit(w)
        worker._reconstruct(w)
    assert worker.done == [0] and worker.failed == [1] and worker.skipped == []
    assert errors == ["window 1 failed (not final): the fit diverged (non-finite values)"]
    assert worker.waiting == 0
