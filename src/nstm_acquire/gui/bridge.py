"""Carry a live session's psygnal signals, emitted on worker threads, to the Qt (GUI) thread.

A :class:`~nstm_acquire.acquire.session.LiveSession` emits from the acquisition thread (and
pymmcore-plus's relay thread), the reconstruction thread and its own thread. Qt widgets may only
be touched from the GUI thread, so :class:`SignalBridge` re-emits every session signal as a Qt
signal of the same name; the panel connects those with ``Qt.ConnectionType.QueuedConnection``,
which posts each call to the GUI thread's event loop. The forwarding functions do nothing but
emit (they never block the emitting thread), and after :meth:`SignalBridge.detach` nothing more
is forwarded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal

__all__ = ["SignalBridge"]


class SignalBridge(QObject):
    """Qt re-emission of the signals of a :class:`~nstm_acquire.acquire.session.SessionSignals`.

    Every signal keeps its name and arguments (see the session's documentation); dictionaries
    are copied so the GUI never shares one with the emitting thread.
    """

    frame_stored = pyqtSignal(int, int, int, float)
    window_complete = pyqtSignal(int)
    pause_changed = pyqtSignal(bool)
    acquisition_finished = pyqtSignal(object)
    preview_ready = pyqtSignal(int, object)
    window_started = pyqtSignal(int)
    progress = pyqtSignal(int, int, object)
    window_done = pyqtSignal(int, object)
    window_skipped = pyqtSignal(int)
    lag_changed = pyqtSignal(int, float)
    warning = pyqtSignal(str)
    error = pyqtSignal(str, str)
    finished = pyqtSignal(object)

    NAMES = (
        "frame_stored", "window_complete", "pause_changed", "acquisition_finished", "preview_ready",
        "window_started", "progress", "window_done", "window_skipped", "lag_changed", "warning",
        "error", "finished",
    )  # fmt: skip
    """The session signals forwarded."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._connections: list[tuple[Any, Callable[..., None]]] = []
        self._lock = threading.Lock()
        self._active = False

    # ------------------------------------------------------------------ public
    def attach(self, session: Any) -> None:
        """Forward every signal of ``session.events`` (detaching from any earlier session)."""
        self.detach()
        with self._lock:
            self._active = True
        for name in self.NAMES:
            self._link(getattr(session.events, name), self._forwarder(getattr(self, name)))

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
    def _forwarder(self, qt_signal: Any) -> Callable[..., None]:
        def forward(*args: Any) -> None:
            self._emit(qt_signal, *(dict(a) if isinstance(a, dict) else a for a in args))

        return forward

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
