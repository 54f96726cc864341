"""The MDA ``frameReady`` handler: every frame into the store with its time, windows counted.

:class:`FrameHandler` is given to ``core.mda.run(sequence, output=[handler])``; pymmcore-plus
calls :meth:`FrameHandler.frameReady` on its relay thread, in acquisition order. For each frame
it resolves the exposure start (:class:`~nstm_acquire.acquire.timing.FrameTimer`), writes frame and
timestamp (:class:`~nstm_acquire.store.StoreWriter`), counts the frame in the run's
:class:`~nstm_acquire.acquire.controller.AcquisitionSummary` and emits ``frame_stored`` and, when
its window is full, ``window_complete``. A frame that cannot be stored stops the run (``on_fault``);
the frames before it stay readable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from nstm_acquire._logger import logger as _package_logger
from nstm_acquire.acquire.timing import FrameTime, FrameTimer

if TYPE_CHECKING:
    from psygnal import SignalGroup

    from nstm_acquire.acquire.controller import AcquisitionSummary
    from nstm_acquire.store import StoreWriter

__all__ = ["FrameHandler"]

logger = _package_logger.getChild("acquire")


class FrameHandler:
    """Writes the frames of one run (an MDA output handler).

    Parameters
    ----------
    writer
        The open store of the run.
    timer
        The run's frame clock, started at the run's time zero.
    summary
        The run's summary; its frame, window and fallback counts are kept here.
    events
        The controller's signals (``frame_stored``, ``window_complete``).
    frames_per_window
        Frames that make a window complete (shots x planes).
    default_exposure_ms
        The exposure (ms) when neither the camera nor the event says (the core's current one).
    report
        Records an error message (the controller's summary and ``error`` signal).
    on_fault
        Called once when a frame could not be stored (the controller cancels the MDA).
    """

    def __init__(
        self,
        writer: StoreWriter,
        timer: FrameTimer,
        summary: AcquisitionSummary,
        events: SignalGroup,
        frames_per_window: int,
        default_exposure_ms: Callable[[], float],
        report: Callable[[str], None],
        on_fault: Callable[[], None],
    ) -> None:
        self.writer = writer
        self.timer = timer
        self.summary = summary
        self.events = events
        self.frames_per_window = int(frames_per_window)
        self._default_exposure_ms = default_exposure_ms
        self._report = report
        self._on_fault = on_fault
        self._lock = threading.Lock()
        self._frames_in_window: dict[int, int] = {}
        self.failed = False
        self.fault: BaseException | None = None
        """The exception that stopped the run (a frame that could not be stored), or None."""
        self.last_time: FrameTime | None = None
        """The time of the last frame stored (exposure start and duration, s)."""

    def frameReady(self, img: np.ndarray, event: Any, meta: Mapping[str, Any]) -> None:  # noqa: N802 - MDA protocol
        """Write one frame (pymmcore-plus's relay thread, in acquisition order); never raises."""
        if self.failed:
            return
        try:
            w = int(event.index.get("t", 0))
            s = int(event.index.get("c", 0))
            z = int(event.index.get("z", 0))
            t_s = self._store(img, event, meta, w, s, z)
        except Exception as err:  # never let the relay thread die silently
            # verdict and message first: the controller may read them as soon as the MDA ends
            self.failed = True
            self.fault = err
            self._report(f"frame {dict(event.index)} could not be stored: {err}")
            self._on_fault()
            logger.exception("frame %s could not be stored", str(dict(event.index)))
            return
        with self._lock:
            self.summary.frames_written += 1
            self.summary.frames_hardware_triggered += bool(meta.get("hardware_triggered"))
            n = self._frames_in_window.get(w, 0) + 1
            self._frames_in_window[w] = n
        self._emit(self.events.frame_stored, w, s, z, t_s)
        if n == self.frames_per_window:
            self.summary.windows_complete += 1
            logger.debug("window %d complete (%d frames)", w, n)
            self._emit(self.events.window_complete, w)

    def _store(self, img: np.ndarray, event: Any, meta: Mapping[str, Any], w: int, s: int, z: int) -> float:
        """Resolve the frame's time, write frame and timestamp; returns the exposure start (s)."""
        requested = event.exposure if event.exposure is not None else meta.get("exposure_ms")
        frame_time = self.timer.resolve(meta, self._default_exposure_ms if requested is None else float(requested))
        if frame_time.fallback:
            self.summary.frames_host_clock_fallback = self.timer.host_clock_fallbacks
            if self.timer.host_clock_fallbacks == 1:  # say so once; the count goes in the store
                logger.warning("frame %s has no camera timestamp %r", dict(event.index), self.timer.source.key)
                self._report(
                    f"frame {dict(event.index)} has no camera timestamp {self.timer.source.key!r}; using the "
                    "host clock for such frames (see acquisition.frames_host_clock_fallback)"
                )
        img = np.asarray(img)
        if img.dtype != self.writer.dtype:
            if not np.can_cast(img.dtype, self.writer.dtype, casting="safe"):
                raise TypeError(
                    f"camera frames are {img.dtype} but the store holds {self.writer.dtype}; "
                    "set camera.pixel_type to match the camera"
                )
            img = img.astype(self.writer.dtype)
        self.writer.write_frame(w, s, z, img, frame_time.t_s, frame_time.exposure_s)
        self.last_time = frame_time
        return frame_time.t_s

    def _emit(self, signal: Any, *args: Any) -> None:
        """Emit to the listeners; a listener's fault is logged and reported, the frames go on."""
        try:
            signal.emit(*args)
        except Exception as err:  # noqa: BLE001 - a listener must not stop the store
            logger.exception("a listener of %s%s failed", signal.name, args)
            self._report(f"a listener of {signal.name} failed: {err}")

