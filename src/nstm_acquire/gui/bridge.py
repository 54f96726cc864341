"""Carry psygnal signals emitted on worker threads to the Qt (GUI) thread.

The acquisition controller emits from its acquisition thread (and pymmcore-plus's relay
thread), the reconstruction worker from its own thread. Qt widgets may only be touched from
the GUI thread, so :class:`SignalBridge` re-emits every psygnal signal as a Qt signal; the
panel connects those with ``Qt.ConnectionType.QueuedConnection``, which posts each call to the
GUI thread's event loop. The forwarding functions do nothing but emit (they never block the
emitting thread), and after :meth:`SignalBridge.detach` nothing more is forwarded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

__all__ = ["SignalBridge"]


class SignalBridge(QObject):
    """Qt re-emission of an acquisition's and a reconstruction's psygnal signals.

    ``window_complete`` carries the wall-clock time (``time.time()``, s) at which the
    acquisition announced the window, so the GUI can compute the reconstruction lag.
    """

    # acquisition controller (nstm_acquire.acquire.controller.ControllerSignals)
    frame_stored = pyqtSignal(int, int, int, float)
    window_complete = pyqtSignal(int, float)
    acquisition_finished = pyqtSignal(object)
    acquisition_error = pyqtSignal(str)
    # pymmcore-plus MDA runner
    pause_toggled = pyqtSignal(bool)
    # reconstruction worker (nstm_acquire.recon.worker.WorkerSignals)
    preview_ready = pyqtSignal(int, object)
    window_started = pyqtSignal(int)
    progress = pyqtSignal(int, int, object)
    window_done = pyqtSignal(int, object)
    window_skipped = pyqtSignal(int)
    reconstruction_error = pyqtSignal(str)
    reconstruction_finished = pyqtSignal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._connections: list[tuple[Any, Callable[..., None]]] = []
        self._lock = threading.Lock()
        self._active = False

    # ------------------------------------------------------------------ public
    def attach(self, controller: Any, worker: Any, mda: Any | None = None) -> None:
        """Forward ``controller.events``, ``worker.events`` and (optionally) ``mda.events``."""
        self.detach()
        with self._lock:
            self._active = True
        ce, we = controller.events, worker.events
        self._link(ce.frame_stored, lambda w, s, z, t: self._emit(self.frame_stored, w, s, z, t))
        self._link(ce.window_complete, lambda w: self._emit(self.window_complete, w, time.time()))
        self._link(ce.finished, lambda summary: self._emit(self.acquisition_finished, summary))
        self._link(ce.error, lambda msg: self._emit(self.acquisition_error, str(msg)))
        self._link(we.preview_ready, lambda w, conv: self._emit(self.preview_ready, w, conv))
        self._link(we.window_started, lambda w: self._emit(self.window_started, w))
        self._link(we.progress, lambda w, step, m: self._emit(self.progress, w, step, dict(m)))
        self._link(we.window_done, lambda w, result: self._emit(self.window_done, w, result))
        self._link(we.window_skipped, lambda w: self._emit(self.window_skipped, w))
        self._link(we.error, lambda msg: self._emit(self.reconstruction_error, str(msg)))
        self._link(we.finished, lambda: self._emit(self.reconstruction_finished))
        if mda is not None:
            self._link(mda.events.sequencePauseToggled, lambda p: self._emit(self.pause_toggled, bool(p)))

    def detach(self) -> None:
        """Stop forwarding and disconnect from every psygnal signal attached."""
        with self._lock:
            self._active = False
            connections, self._connections = self._connections, []
        for signal, callback in connections:
            try:
                signal.disconnect(callback)
            except Exception:  # noqa: BLE001 - already gone (e.g. the emitter was deleted)
                pass

    @property
    def attached(self) -> bool:
        return self._active

    # ----------------------------------------------------------------- helpers
    def _link(self, signal: Any, callback: Callable[..., None]) -> None:
        signal.connect(callback)
        self._connections.append((signal, callback))

    def _emit(self, qt_signal: Any, *args: Any) -> None:
        """Emit on whatever thread calls this; never raise into the emitting thread."""
        if not self._active:
            return
        try:
            qt_signal.emit(*args)
        except RuntimeError:  # the bridge's C++ object is gone (window closed)
            self._active = False
