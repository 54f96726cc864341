"""Frame times: each frame's exposure start on the acquisition clock, from what the frame carries.

The acquisition clock counts seconds from the run's time zero (host ``perf_counter`` taken just
before the MDA starts). :class:`FrameTimer` resolves one frame at a time, in order of preference
(``docs/timing.md``):

1. the camera's hardware timestamp (``TimestampSource.key`` in the frame's camera metadata), in
   its unit, either already on the acquisition clock (the simulated camera's clock is restarted at
   time zero) or mapped onto it by the offset between the two clocks at the first such frame;
2. else the host clock just before the snap was requested (``nstm_snap_call_s``, single snaps);
3. else the runner's ``runner_time_ms`` at buffer arrival minus the exposure (hardware-triggered
   bursts), put on the acquisition clock through the runner's time zero (``nstm_runner_t0_s``);
4. else the host clock now, minus the exposure.

A frame without the expected hardware timestamp falls back to the host clock and is counted
(:attr:`FrameTimer.host_clock_fallbacks`). Pure: no core, no store; ``now`` can be injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nstm_acquire.hardware.camera import TimestampSource

__all__ = ["FrameTime", "FrameTimer", "finite_float"]

HARDWARE_EXPOSURE_KEY = "HardwareExposure-s"
"""Camera metadata key of the exposure actually taken (seconds), where the camera reports it."""


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float; None for None, ``""``, non-numbers, NaN and infinities."""
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


@dataclass(frozen=True)
class FrameTime:
    """When one frame was exposed.

    Attributes
    ----------
    t_s
        Exposure start, seconds on the acquisition clock.
    exposure_s
        Exposure duration, seconds.
    host_clock
        True when the time comes from the host clock (no hardware timestamp used).
    fallback
        True when a hardware timestamp was expected but missing, so the host clock was used.
    """

    t_s: float
    exposure_s: float
    host_clock: bool
    fallback: bool = False


class FrameTimer:
    """Resolves frames' exposure starts onto the acquisition clock (see the module docstring).

    Parameters
    ----------
    source
        Where hardware timestamps are (:meth:`Microscope.timestamp_source`).
    now
        The host clock in seconds (default ``time.perf_counter``); frame metadata's host times
        (``nstm_snap_call_s``, ``nstm_runner_t0_s``) are on this clock.
    """

    def __init__(self, source: TimestampSource, now: Callable[[], float] = time.perf_counter) -> None:
        self.source = source
        self._now = now
        self.t0_s = 0.0
        self.host_clock_fallbacks = 0
        self._offset_s: float | None = None

    def start(self, t0_s: float | None = None) -> float:
        """Set time zero (host clock, default now) and forget the previous clock offset; returns it."""
        self.t0_s = self._now() if t0_s is None else float(t0_s)
        self._offset_s = None
        return self.t0_s

    @property
    def offset_s(self) -> float | None:
        """Acquisition clock minus camera clock (s), fixed at the first hardware-timed frame; None before."""
        return self._offset_s

    def resolve(
        self, meta: Mapping[str, Any], exposure_ms: float | Callable[[], float] | None = None
    ) -> FrameTime:
        """The exposure start and duration of the frame whose MDA metadata is ``meta``.

        ``exposure_ms`` is the requested exposure (ms), or a function giving it (called only when
        needed), used when the camera does not report the exposure it took (``HardwareExposure-s``).
        """
        cam_md = meta.get("camera_metadata") or {}
        exposure_s = finite_float(cam_md.get(HARDWARE_EXPOSURE_KEY))
        if exposure_s is None:
            requested = exposure_ms() if callable(exposure_ms) else exposure_ms
            if requested is None:
                raise ValueError("exposure_ms: the camera reports no exposure; give the requested one (ms)")
            exposure_s = float(requested) / 1000.0
        host = self._host_time(meta, exposure_s)
        key = self.source.key
        hw = finite_float(cam_md.get(key)) if key else None
        if hw is None:
            fallback = key is not None
            self.host_clock_fallbacks += fallback
            return FrameTime(host, exposure_s, host_clock=True, fallback=fallback)
        hw *= self.source.seconds_per_unit
        if self.source.on_acquisition_clock:
            return FrameTime(hw, exposure_s, host_clock=False)
        if self._offset_s is None:  # map the camera clock onto ours at the first frame
            self._offset_s = host - hw
        return FrameTime(hw + self._offset_s, exposure_s, host_clock=False)

    def _host_time(self, meta: Mapping[str, Any], exposure_s: float) -> float:
        """The host clock's estimate of the exposure start, on the acquisition clock (s)."""
        if (t_call := meta.get("nstm_snap_call_s")) is not None:
            return float(t_call) - self.t0_s
        runner_ms = meta.get("runner_time_ms")
        runner_t0 = meta.get("nstm_runner_t0_s") or self.t0_s
        if runner_ms is None:
            return self._now() - self.t0_s - exposure_s
        return float(runner_ms) / 1000.0 + (float(runner_t0) - self.t0_s) - exposure_s
