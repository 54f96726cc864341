"""Near-live reconstruction: every completed window is reconstructed while acquisition goes on.

:class:`ReconstructionWorker` runs in its own thread. The acquisition controller's
``window_complete(w)`` only puts the index ``w`` into a queue (:meth:`submit` never blocks),
so a slow or failed reconstruction never delays or loses a frame: frames are in the store
before the window is announced, and the worker reads them from there.

For each window the worker writes the conventional reconstruction at once (the preview, within
a second) and then fits the NSTM, warm-started from the previous window's networks.

When it falls behind (reconstruction slower than acquisition), the ``policy`` decides:

* ``"all"``: every window is reconstructed, in order; the lag grows while acquisition is
  faster, memory does not (the queue holds window indices, the data stay on disk);
* ``"newest"``: when the worker is free it takes the newest complete window and skips the older
  waiting ones (they are listed in ``skipped`` and can be reconstructed afterwards with
  ``nstm-acquire reconstruct``); the lag stays bounded by one window's reconstruction time.

Signals (``worker.events``, psygnal, emitted from the worker thread): ``preview_ready(w,
conventional)``, ``window_started(w)``, ``progress(w, step, metrics)``, ``window_done(w,
result)``, ``window_skipped(w)``, ``lag_changed(waiting, lag_s)``, ``error(message)``,
``finished()``.

A window that fails (bad data, unreadable frames, anything raised while reconstructing it:
:class:`~nstm_acquire.recon.chain.WindowFailure`) is recorded in the store as failed with the
reason, logged (the package logger, :mod:`nstm_acquire._logger`), reported through ``error``
(``"window w failed (not reconstructed): reason"``) and listed in ``failed``; the worker goes on
with the next window, which fits from scratch.
A window whose fit diverged or exploded (:func:`~nstm_acquire.recon.chain.fit_failure`) is
stored with ``status="failed"``, reported through ``error`` (``"window w failed (not final):
reason"``) and listed in ``failed`` (not ``done``); the next window fits from scratch.
An exception that ends the thread itself is logged the same way. Most programs do not use the
worker directly but through :class:`~nstm_acquire.acquire.session.LiveSession`.
"""

from __future__ import annotations

import datetime as _dt
import queue
import threading
import time
from pathlib import Path
from typing import Any, Literal

from psygnal import Signal, SignalGroup

from nstm_acquire._logger import logger
from nstm_acquire.nstm.config import NSTMConfig

__all__ = ["ReconstructionWorker", "WorkerSignals"]

Policy = Literal["all", "newest"]
_STOP = object()
_log = logger.getChild("recon.worker")


def _utc(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat()


class WorkerSignals(SignalGroup):
    """Signals of a :class:`ReconstructionWorker`, all emitted from the worker thread.

    ``preview_ready(w, conventional)``: the conventional reconstruction of window ``w``,
    ``(C, Z, Y, X)`` on the output grid; ``window_started(w)``; ``progress(w, step, metrics)``
    (``metrics["loss"]`` and friends); ``window_done(w, result)`` (a
    :class:`~nstm_acquire.recon.arrays.WindowResult`); ``window_skipped(w)`` (policy
    ``"newest"``, or a failed window); ``lag_changed(waiting, lag_s)`` (windows not yet
    reconstructed, and how long the oldest has waited, s); ``error(message)`` (one line; the
    traceback is in the log); ``finished()`` (the thread ends).
    """

    preview_ready = Signal(int, object)
    window_started = Signal(int)
    progress = Signal(int, int, dict)
    window_done = Signal(int, object)
    window_skipped = Signal(int)
    lag_changed = Signal(int, float)
    error = Signal(str)
    finished = Signal()


class ReconstructionWorker:
    """Reconstruct windows of a store as they complete.

    Parameters
    ----------
    store
        The acquisition store being written (it may not exist yet when the worker is made).
    config
        NSTM configuration (default: :func:`~nstm_acquire.nstm.config.default_config` of the store's modality).
    policy
        ``"all"`` or ``"newest"`` (see the module docstring).
    name
        Output group ``recon/<name>`` inside the store.
    warm_start
        Start each window from the previous reconstructed window's networks.
    sim_parameters
        SIM: how the illumination pattern is chosen (:class:`~nstm_acquire.recon.chain.StoreReconstructor`).
    """

    def __init__(
        self,
        store: str | Path,
        config: NSTMConfig | None = None,
        policy: Policy = "all",
        name: str = "nstm",
        warm_start: bool = True,
        sim_parameters: str = "configured",
    ) -> None:
        if policy not in ("all", "newest"):
            raise ValueError(f"policy={policy!r} must be 'all' or 'newest'")
        self.store = Path(store)
        self.config = config  # None: the store's modality's default_config(modality), chosen by the chain
        self.policy = policy
        self.name = name
        self.warm_start = warm_start
        self.sim_parameters = sim_parameters
        self.events = WorkerSignals()
        self.done: list[int] = []
        self.skipped: list[int] = []
        self.failed: list[int] = []
        self.results: dict[int, Any] = {}
        self._queue: queue.Queue = queue.Queue()
        self._submitted: dict[int, float] = {}
        self._thread: threading.Thread | None = None
        self._stop_now = threading.Event()
        self._rec: Any = None
        self.current: int | None = None

    # ---------------------------------------------------------------- control
    def start(self) -> ReconstructionWorker:
        """Start the worker thread; returns the worker."""
        self._thread = threading.Thread(target=self._loop, name="nstm-reconstruction", daemon=True)
        self._thread.start()
        return self

    def submit(self, w: int) -> None:
        """Window ``w`` is complete in the store (called from the acquisition thread)."""
        self._submitted[int(w)] = time.time()
        self._queue.put(int(w))
        self._emit_lag()

    def close_input(self) -> None:
        """No more windows will come: finish the queued ones (policy permitting), then stop."""
        self._queue.put(_STOP)

    def stop(self) -> None:
        """Stop as soon as possible (the window being fitted ends at its next evaluation)."""
        self._stop_now.set()
        self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True if it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def waiting(self) -> int:
        """Windows submitted and neither reconstructed nor skipped yet (including the current one)."""
        return len(set(self._submitted) - set(self.done) - set(self.skipped) - set(self.failed))

    def lag_s(self) -> float:
        """How long the oldest window not yet reconstructed has been waiting, seconds."""
        finished = set(self.done) | set(self.skipped) | set(self.failed)
        pending = [t for w, t in list(self._submitted.items()) if w not in finished]
        return time.time() - min(pending) if pending else 0.0

    # ----------------------------------------------------------------- thread
    def _emit_lag(self) -> None:
        self.events.lag_changed.emit(self.waiting, self.lag_s())

    def _next(self) -> int | None:
        """The next window to reconstruct; None once the input is closed or the worker stopped."""
        item = self._queue.get()
        if item is _STOP:
            return None
        if self.policy == "all":
            return int(item)
        newest = int(item)
        stop_seen = False
        while True:  # policy "newest": drain what is waiting, keep the last
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is _STOP:
                stop_seen = True
                continue
            self._skip(newest)
            newest = int(more)
        if stop_seen:
            self._queue.put(_STOP)
        return newest

    def _skip(self, w: int) -> None:
        _log.info("window %d skipped", w)
        self.skipped.append(w)
        self.events.window_skipped.emit(w)

    def _loop(self) -> None:
        _log.debug("reconstruction thread started (policy %s, store %s)", self.policy, self.store)
        try:
            while not self._stop_now.is_set():
                w = self._next()
                if w is None:
                    break
                self._reconstruct(w)
        except Exception as err:  # noqa: BLE001 - reported, never raised into the acquisition
            _log.exception("reconstruction thread stopped")
            self.events.error.emit(f"reconstruction stopped: {type(err).__name__}: {err}")
        finally:
            self.current = None
            _log.debug("reconstruction thread ended: %d done, %d skipped", len(self.done), len(self.skipped))
            self.events.finished.emit()

    def _reconstruct(self, w: int) -> None:
        from nstm_acquire.recon.chain import StoreReconstructor

        self.current = w
        started = time.time()
        self.events.window_started.emit(w)
        try:
            if self._rec is None:  # opened at the first window: the store exists by then
                self._rec = StoreReconstructor(
                    self.store,
                    self.config,
                    name=self.name,
                    overwrite=True,
                    warm_start=self.warm_start,
                    sim_parameters=self.sim_parameters,
                )
            result = self._rec.reconstruct(
                w,
                callback=lambda step, m: self.events.progress.emit(w, step, m),
                should_stop=self._stop_now.is_set,
                on_preview=lambda ww, conv: self.events.preview_ready.emit(ww, conv),
                extra_info={
                    "window_complete_utc": _utc(self._submitted.get(w, started)),
                    "reconstruction_start_utc": _utc(started),
                },
            )
        except Exception as err:  # noqa: BLE001 - one bad window does not stop the others
            from nstm_acquire.recon.chain import WindowFailure

            if isinstance(err, WindowFailure):  # recorded in the store by the reconstructor
                _log.warning("window %d failed: %s", w, err.reason)
                message = f"window {w} failed (not reconstructed): {err.reason}"
            else:
                _log.exception("window %d could not be reconstructed", w)
                message = f"window {w}: {type(err).__name__}: {' '.join(str(err).split())}"
            self.failed.append(w)
            self.events.error.emit(message)
            self._skip(w)
            return
        self.results[w] = result
        failure = result.info.get("failure") if result.info.get("status") == "failed" else None
        if failure:  # diverged or exploded (recon.chain.fit_failure): stored as failed, not final
            _log.warning("window %d failed: %s", w, failure)
            self.failed.append(w)
            self.events.error.emit(f"window {w} failed (not final): {failure}")
            self._emit_lag()
            return
        fit = getattr(result, "fit", None)
        trust = (result.info.get("trust") or {}) if isinstance(getattr(result, "info", None), dict) else {}
        _log.info("window %d reconstructed in %.1f s%s; trust: %s", w, time.time() - started,
                  f": {fit.summary()}" if fit is not None else "",
                  " ".join([str(trust.get("verdict", "not computed")), *(trust.get("reasons") or [])]))
        self.done.append(w)
        self.events.window_done.emit(w, result)
        self._emit_lag()
