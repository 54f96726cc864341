"""The simulated microscope's clock: one time base for camera, illumination and sample."""

from __future__ import annotations

import threading
import time

__all__ = ["SimulatedClock"]


class SimulatedClock:
    """Seconds since :meth:`restart`, shared by every simulated device and the sample.

    In *realtime* mode the clock is the host's monotonic clock and :meth:`wait_until`
    sleeps, so a simulated exposure takes as long as a real one. Otherwise the clock
    runs ahead of the host clock: :meth:`wait_until` adds the time it would have slept to
    an offset instead of sleeping, so frames come as fast as the computer renders them
    while their timestamps stay physically consistent (spaced by exposure + readout).
    Real waiting done by others (an MDA's interval between windows) still advances it.
    """

    def __init__(self, realtime: bool = True) -> None:
        self.realtime = realtime
        self._lock = threading.Lock()
        self._epoch = time.perf_counter()
        self._skipped = 0.0
        self.generation = 0  # counts restarts, so devices can drop state from the old time base

    def restart(self) -> None:
        """Set time zero to now (the controller calls this when an acquisition starts)."""
        with self._lock:
            self._epoch = time.perf_counter()
            self._skipped = 0.0
            self.generation += 1

    def now(self) -> float:
        """Current time in seconds."""
        with self._lock:
            return time.perf_counter() - self._epoch + self._skipped

    def wait_until(self, t_s: float) -> None:
        """Block (realtime) or jump (fast mode) until the clock reads ``t_s``."""
        remaining = t_s - self.now()
        if remaining <= 0:
            return
        if self.realtime:
            time.sleep(remaining)
        else:
            with self._lock:
                self._skipped += remaining
