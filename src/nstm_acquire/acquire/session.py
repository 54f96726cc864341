"""Acquire and reconstruct at once: one :class:`LiveSession` wires the acquisition to the worker.

A session owns an :class:`~nstm_acquire.acquire.controller.AcquisitionController` (frames ->
store, on the acquisition thread) and, unless ``reconstruct=False``, a
:class:`~nstm_acquire.recon.worker.ReconstructionWorker` (complete windows -> reconstruction,
on its own thread). The controller's ``window_complete(w)`` only queues ``w`` for the worker:
the acquisition never waits for the reconstruction. A third, small thread notices the end of
the acquisition, lets the worker finish the windows its policy keeps and then ends the session.

The command line (``nstm-acquire run``, ``demo``, ``acquire``), the panel and the tests all run
acquisitions through this class::

    session = LiveSession(microscope, plan, "runs/cells.zarr", nstm_config)
    session.events.window_done.connect(lambda w, result: print(w, result.fit.summary()))
    summary = session.run()  # start() + wait(); Ctrl-C cancels cleanly

Every run writes the package's log records to ``<store>.log`` beside the store
(:func:`log_path_for`): the run's settings, each window, and every exception from the
acquisition and reconstruction threads with its traceback.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psygnal import Signal, SignalGroup

from nstm_acquire._logger import log_to_file, logger, remove_log_file
from nstm_acquire.acquire.controller import AcquisitionController, AcquisitionSummary
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.recon.worker import Policy, ReconstructionWorker

__all__ = ["LiveSession", "SessionSignals", "Terminated", "log_path_for"]

_log = logger.getChild("acquire.session")

PAUSE_NOTE = (
    "pause requested, but frames keep coming: pymmcore-plus pauses only between events, "
    "and back-to-back windows on sequenceable hardware are one hardware-triggered "
    "sequence, which can be stopped but not paused. A window interval > 0 makes each "
    "window its own event."
)
"""The warning given when a requested pause cannot take effect (see :meth:`LiveSession.set_paused`)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while :meth:`LiveSession.wait` ran: handled like Ctrl-C (a clean cancel)."""


@contextmanager
def _sigterm_cancels() -> Iterator[None]:
    """In the main thread, make SIGTERM raise :class:`Terminated` instead of killing at once.

    Only while the default handler is installed (a host application's own handler is left
    alone); the previous handler comes back after the block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, AttributeError):  # pragma: no cover - no SIGTERM on this platform
        yield
        return
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_path_for(store: str | Path) -> Path:
    """The log file of the run writing ``store``: ``NAME.log`` beside ``NAME.zarr``."""
    store = Path(store)
    return store.with_suffix(".log") if store.suffix == ".zarr" else store.with_name(store.name + ".log")


def _relay(signal: Any) -> Any:
    """A slot re-emitting its arguments on ``signal``.

    A bare ``SignalInstance.emit`` is not connected directly: psygnal 0.16 probes its number of
    arguments by calling it (with dummy values) while connecting, which would emit once.
    """

    def relay(*args: Any) -> None:
        signal.emit(*args)

    return relay


class SessionSignals(SignalGroup):
    """Signals of a :class:`LiveSession` (psygnal; emitted on the thread named with each).

    Acquisition thread:

    * ``frame_stored(w, s, z, t_s)``: frame (window, shot, plane) and its exposure start (s
      since the acquisition started) are in the store;
    * ``window_complete(w)``: every frame of window ``w`` is in the store; emitted before the
      window is queued for reconstruction, so it always precedes ``window_done(w)``;
    * ``pause_changed(bool)``: the MDA runner was asked to pause (True) or resume (False);
    * ``acquisition_finished(summary)``: the acquisition ended (store closed) with this
      :class:`~nstm_acquire.acquire.controller.AcquisitionSummary`; reconstruction may go on.

    Reconstruction thread (only with ``reconstruct=True``):

    * ``preview_ready(w, conventional)``: the conventional reconstruction, ``(C, Z, Y, X)``;
    * ``window_started(w)``, ``progress(w, step, metrics)`` (``metrics["loss"]``, ...);
    * ``window_done(w, result)``: a :class:`~nstm_acquire.recon.arrays.WindowResult`;
    * ``window_skipped(w)``: policy ``"newest"`` left it out, or it failed;
    * ``lag_changed(waiting, lag_s)``: windows not yet reconstructed and how long the oldest
      has waited, s.

    Either thread:

    * ``warning(message)``: something the user should know that is not a failure (a pause
      that cannot take effect);
    * ``error(source, message)``: ``source`` is ``"acquisition"`` or ``"reconstruction"``;
      ``message`` is one line, the traceback is in the log;
    * ``finished(summary)``: acquisition and reconstruction have both ended (emitted once, from
      the session's own thread, after every other signal of the run).
    """

    frame_stored = Signal(int, int, int, float)
    window_complete = Signal(int)
    pause_changed = Signal(bool)
    acquisition_finished = Signal(object)
    preview_ready = Signal(int, object)
    window_started = Signal(int)
    progress = Signal(int, int, dict)
    window_done = Signal(int, object)
    window_skipped = Signal(int)
    lag_changed = Signal(int, float)
    warning = Signal(str)
    error = Signal(str, str)
    finished = Signal(object)


class LiveSession:
    """One acquisition, reconstructed window by window while it runs.

    Parameters
    ----------
    microscope
        An opened :class:`~nstm_acquire.hardware.microscope.Microscope` (not closed here).
    plan
        What to acquire (modality, windows, interval, exposure, planes).
    store
        The new Zarr store, ``NAME.zarr``; the log goes to :func:`log_path_for` ``(store)``.
    nstm_config
        NSTM configuration of the reconstruction (default
        :func:`~nstm_acquire.nstm.config.default_config`).
    policy
        ``"all"`` (every window, in order) or ``"newest"`` (skip windows the worker cannot keep
        up with); see :mod:`nstm_acquire.recon.worker`.
    warm_start
        Start each window's fit from the previous window's networks.
    sim_parameters
        SIM: how the pattern parameters are chosen (``"configured"``: the store's values where
        present, checked against the estimate (default); ``"fallback"``, ``"error"``,
        ``"estimate"``; :class:`~nstm_acquire.recon.chain.StoreReconstructor`).
    overwrite
        Replace an existing store.
    reconstruct
        False: acquisition only (no worker; the reconstruction signals never fire).
    name
        Reconstruction group ``recon/<name>`` in the store.
    background, compression
        Passed to the :class:`~nstm_acquire.acquire.controller.AcquisitionController`.
    log_file
        Write ``<store>.log`` (False: log only to the handlers the application set up).

    Attributes
    ----------
    events
        The :class:`SessionSignals`.
    controller, worker
        The :class:`~nstm_acquire.acquire.controller.AcquisitionController` and the
        :class:`~nstm_acquire.recon.worker.ReconstructionWorker` (None without reconstruction).
    frames
        Frames stored so far.
    complete
        Windows complete in the store, in the order they completed.
    errors
        ``"<source>: <message>"`` of every error reported, in order.
    log_path
        The run's log file (None with ``log_file=False``).
    """

    def __init__(
        self,
        microscope: Any,
        plan: AcquisitionPlan,
        store: str | Path,
        nstm_config: Any | None = None,
        *,
        policy: Policy = "all",
        warm_start: bool = True,
        sim_parameters: str = "configured",
        overwrite: bool = False,
        reconstruct: bool = True,
        name: str = "nstm",
        background: bool | None = None,
        compression: str = "none",
        log_file: bool = True,
    ) -> None:
        self.microscope = microscope
        self.plan = plan
        self.store = Path(store)
        self.log_path: Path | None = log_path_for(self.store) if log_file else None
        self.events = SessionSignals()
        self.worker: ReconstructionWorker | None = None
        if reconstruct:
            self.worker = ReconstructionWorker(
                self.store, nstm_config, policy=policy, name=name, warm_start=warm_start,
                sim_parameters=sim_parameters,
            )  # fmt: skip
        self.controller = AcquisitionController(
            microscope, plan, self.store, overwrite=overwrite, background=background, compression=compression
        )
        self.frames = 0
        self.complete: list[int] = []
        self.errors: list[str] = []
        self._links: list[tuple[Any, Any]] = []
        self._log_handler: logging.Handler | None = None
        self._lock = threading.Lock()
        self._acquisition_ended = threading.Event()
        self._reconstruction_ended = threading.Event()
        self._done = threading.Event()
        self._started = False
        self._acq_reported = False
        self._cancel_requested = False
        self._pause_requested = False
        self._pause_frames = 0
        self._pause_time = 0.0
        self._pause_noted = False
        self._supervisor: threading.Thread | None = None

    # ------------------------------------------------------------------ state
    @property
    def summary(self) -> AcquisitionSummary:
        """The acquisition's summary (status ``"running"`` until it ends)."""
        return self.controller.summary

    @property
    def reconstructing(self) -> bool:
        """Whether this session reconstructs (``reconstruct=True``)."""
        return self.worker is not None

    @property
    def started(self) -> bool:
        """:meth:`start` has been called."""
        return self._started

    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until acquisition and reconstruction have both ended."""
        return self._started and not self._done.is_set()

    @property
    def acquisition_done(self) -> bool:
        """The acquisition has ended (completed, canceled, incomplete or failed); store closed."""
        return self._acquisition_ended.is_set()

    @property
    def reconstruction_done(self) -> bool:
        """The worker has ended (or there is none and the acquisition has ended)."""
        return self._reconstruction_ended.is_set()

    @property
    def cancel_requested(self) -> bool:
        """:meth:`cancel` has been called."""
        return self._cancel_requested

    @property
    def pause_requested(self) -> bool:
        """A pause was asked for (:meth:`set_paused`) and not taken back."""
        return self._pause_requested

    @property
    def is_paused(self) -> bool:
        """The MDA runner holds between events right now."""
        try:
            return bool(self.microscope.core.mda.is_paused())
        except Exception:  # noqa: BLE001 - a runner without it
            return False

    @property
    def done(self) -> list[int]:
        """Windows reconstructed, in the order they finished."""
        return list(self.worker.done) if self.worker is not None else []

    @property
    def skipped(self) -> list[int]:
        """Windows not reconstructed: left out by policy ``"newest"``, or failed."""
        return list(self.worker.skipped) if self.worker is not None else []

    @property
    def failed(self) -> list[int]:
        """Windows whose reconstruction raised (also in :attr:`skipped`; traceback in the log) or
        whose fit diverged or exploded (stored with ``status="failed"``, reported as an error)."""
        return list(self.worker.failed) if self.worker is not None else []

    @property
    def waiting(self) -> int:
        """Complete windows neither reconstructed nor skipped yet (the one being fitted included)."""
        return self.worker.waiting if self.worker is not None else 0

    def lag_s(self) -> float:
        """How long the oldest complete window not yet reconstructed has waited, s."""
        return self.worker.lag_s() if self.worker is not None else 0.0

    def phase(self) -> str:
        """One word for the state of the run, for status displays.

        ``"ready"`` (not started), ``"running"``, ``"pause requested"``, ``"paused"``,
        ``"canceling"`` (acquisition still running), ``"reconstructing"`` (acquisition ended,
        worker busy), ``"ended"``.
        """
        if not self._started:
            return "ready"
        if self._done.is_set():
            return "ended"
        if not self.acquisition_done:
            if self._cancel_requested:
                return "canceling"
            if self._pause_requested:
                return "paused" if self.is_paused else "pause requested"
            return "running"
        return "reconstructing" if not self.reconstruction_done else "ended"

    # ---------------------------------------------------------------- control
    def start(self) -> LiveSession:
        """Start the worker, the acquisition and the session's own thread; returns at once."""
        if self._started:
            raise RuntimeError("this session has already been started; make a new LiveSession per run")
        self._started = True
        self._open_log()
        self._connect()
        p = self.plan
        _log.info(
            "run started: %s, %d windows (interval %.3f s, exposure %s ms, %d planes) -> %s; %s",
            p.modality, p.n_windows, p.window_interval_s, p.exposure_ms, p.n_planes, self.store,
            f"reconstruction policy {self.worker.policy}" if self.worker is not None else "no reconstruction",
        )  # fmt: skip
        if self.worker is not None:
            self.worker.start()
        self.controller.start()
        self._supervisor = threading.Thread(target=self._supervise, name="nstm-session", daemon=True)
        self._supervisor.start()
        return self

    def wait(self, timeout: float | None = None, poll_s: float = 0.2) -> bool:
        """Wait until acquisition and reconstruction have ended; True if they have.

        Ctrl-C (KeyboardInterrupt) cancels the acquisition, stops the worker, waits for both
        threads (the store is closed with status ``canceled``, finished windows stay) and
        re-raises. In the main thread SIGTERM does the same (raising :class:`Terminated`, a
        KeyboardInterrupt), and the store records "terminated by SIGTERM".
        """
        if not self._started:
            raise RuntimeError("the session has not been started: call start() first")
        deadline = None if timeout is None else time.monotonic() + timeout
        # polled with sleeps, not Event.wait: a Ctrl-C landing inside Event.wait's lock handling
        # can leave the event's lock held, and the thread that sets the event then blocks forever
        # (seen as a hung test run, once)
        try:
            with _sigterm_cancels():
                while not self._done.is_set():  # short sleeps: Ctrl-C is noticed within poll_s
                    left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
                    if deadline is not None and left <= 0:
                        return False
                    time.sleep(left)
        except KeyboardInterrupt as err:
            reason = "terminated by SIGTERM" if isinstance(err, Terminated) else "interrupted (Ctrl-C)"
            _log.warning("%s: canceling the acquisition and stopping the reconstruction", reason)
            self.cancel(reason)
            with _sigterm_cancels():  # a second SIGTERM must not kill the closing store
                while not self._done.is_set():
                    time.sleep(poll_s)
            raise
        return True

    def run(self) -> AcquisitionSummary:
        """:meth:`start`, then :meth:`wait`; returns the acquisition summary."""
        self.start()
        self.wait()
        return self.summary

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the acquisition (after the current event) and stop the reconstruction.

        Returns at once. Frames acquired so far and windows already reconstructed stay in the
        store; the window being fitted ends at its next evaluation. ``reason`` is recorded in
        the store's ``acquisition.errors``.
        """
        if not self._started or self._cancel_requested:
            return
        self._cancel_requested = True
        _log.info("cancel requested")
        if not self.acquisition_done:
            try:
                self.controller.cancel(reason)
            except Exception as err:  # noqa: BLE001 - reported, the worker still stops
                _log.exception("canceling the acquisition failed")
                self._error("acquisition", f"cancel: {err}")
        if self.worker is not None:
            self.worker.stop()

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume (False) the acquisition between events; reconstruction goes on.

        pymmcore-plus pauses only between MDA events, and can lose a request made while it waits
        for the next timed event: while frames keep coming the request is repeated. A
        hardware-triggered sequence (back-to-back windows on sequenceable hardware) cannot be
        paused; when frames keep coming the session says so once (``warning``).
        """
        if not self._started or self.acquisition_done:
            return
        self.controller.set_paused(bool(paused))
        with self._lock:
            self._pause_requested = bool(paused)
            self._pause_frames = self.frames
            self._pause_time = time.monotonic()
            self._pause_noted = False
        _log.info("pause requested" if paused else "resume requested")

    def pause(self) -> None:
        """Same as ``set_paused(True)``."""
        self.set_paused(True)

    def resume(self) -> None:
        """Same as ``set_paused(False)``."""
        self.set_paused(False)

    # ------------------------------------------------------------ internals
    def _open_log(self) -> None:
        if self.log_path is None:
            return
        try:
            self._log_handler = log_to_file(self.log_path)
        except OSError as err:  # the store cannot go there either: the acquisition reports it
            _log.warning("no log file %s: %s", self.log_path, err)

    def _link(self, signal: Any, slot: Any) -> None:
        signal.connect(slot)
        self._links.append((signal, slot))

    def _connect(self) -> None:
        ce, se = self.controller.events, self.events
        self._link(ce.frame_stored, self._on_frame_stored)
        self._link(ce.window_complete, self._on_window_complete)
        self._link(ce.finished, self._on_acquisition_finished)
        self._link(ce.error, self._on_acquisition_error)
        mda = getattr(getattr(self.microscope, "core", None), "mda", None)
        if mda is not None:
            self._link(mda.events.sequencePauseToggled, lambda p: se.pause_changed.emit(bool(p)))
        w = self.worker
        if w is None:
            return
        we = w.events
        for name in ("preview_ready", "window_started", "progress", "window_done", "window_skipped", "lag_changed"):
            self._link(getattr(we, name), _relay(getattr(se, name)))
        self._link(we.error, lambda msg: self._error("reconstruction", str(msg)))

    def _disconnect(self) -> None:
        links, self._links = self._links, []
        for sig, slot in links:
            try:
                sig.disconnect(slot)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _error(self, source: str, message: str) -> None:
        self.errors.append(f"{source}: {message}")
        self.events.error.emit(source, message)

    def _on_frame_stored(self, w: int, s: int, z: int, t_s: float) -> None:
        with self._lock:
            self.frames += 1
        self.events.frame_stored.emit(w, s, z, t_s)
        if self._pause_requested:
            self._repeat_pause()

    def _repeat_pause(self) -> None:
        """A frame arrived while a pause is requested: ask again, or say why it cannot happen."""
        if self.is_paused:
            return
        try:
            self.controller.set_paused(True)
        except Exception:  # noqa: BLE001 - the acquisition goes on
            _log.exception("repeating the pause request failed")
        setup = self.controller.setup
        frames_per_window = (setup.n_shots if setup is not None else 1) * self.plan.n_planes
        with self._lock:
            note = (
                not self._pause_noted
                and time.monotonic() - self._pause_time > 1.0
                and self.frames > self._pause_frames + 2 * frames_per_window
            )
            self._pause_noted = self._pause_noted or note
        if note:
            _log.warning(PAUSE_NOTE)
            self.events.warning.emit(PAUSE_NOTE)

    def _on_window_complete(self, w: int) -> None:
        self.complete.append(w)
        _log.debug("window %d complete", w)
        self.events.window_complete.emit(w)
        if self.worker is not None:
            self.worker.submit(w)

    def _on_acquisition_error(self, message: str) -> None:
        # the controller logs its errors (with their tracebacks) itself
        _log.debug("acquisition error reported: %s", message)
        self._error("acquisition", str(message))

    def _on_acquisition_finished(self, summary: Any) -> None:
        with self._lock:
            if self._acq_reported:
                return
            self._acq_reported = True
        s = self.summary
        _log.debug(
            "acquisition %s: %d/%d frames, %d complete windows in %.2f s",
            s.status, s.frames_written, s.frames_expected, s.windows_complete, s.duration_s,
        )  # fmt: skip
        self._acquisition_ended.set()
        if self.worker is not None:
            self.worker.close_input()  # the queued windows are finished, then the worker ends
        self.events.acquisition_finished.emit(summary)

    def _supervise(self) -> None:
        """The session's thread: wait for the acquisition, then the worker; then end the run."""
        try:
            while not self._acquisition_ended.wait(0.2):
                if self.controller.wait(0) and not self.controller.is_running:
                    break  # the acquisition thread ended without announcing it
            if not self._acquisition_ended.is_set():
                _log.error("the acquisition thread ended without reporting its end")
                self._on_acquisition_finished(self.summary)
            if self.worker is not None:
                self.worker.close_input()
                while not self.worker.join(0.5):
                    pass
        except Exception:  # noqa: BLE001 - logged; the run is still ended below
            _log.exception("live session supervision failed")
        finally:
            self._reconstruction_ended.set()
            self._end()

    def _end(self) -> None:
        summary = self.summary
        if summary.status == "running":  # the acquisition thread died without a verdict
            summary.status = "failed"
        self._disconnect()
        _log.info(
            "run ended: acquisition %s, %d of %d complete windows reconstructed%s",
            summary.status, len(self.done), len(self.complete),
            f", {len(self.skipped)} skipped" if self.skipped else "",
        )  # fmt: skip
        if self._log_handler is not None:
            remove_log_file(self._log_handler)
            self._log_handler = None
        try:
            self.events.finished.emit(summary)
        finally:
            self._done.set()
