"""Row timing of a rolling-shutter sensor: when each sensor row's shutter is open.

A rolling-shutter sCMOS opens its rows one readout slot after another: slot ``s`` opens
``s * row_time_s`` after the frame starts (the first slot opening) and stays open for
``exposure_s``. The readout direction maps rows to slots:

* ``"top_to_bottom"``: row ``r`` (array axis y, index 0 at the top) is slot ``r``;
* ``"bottom_to_top"``: row ``r`` is slot ``n_rows - 1 - r``;
* ``"centre_out"``: the two halves are read together from the centre outwards (many sCMOS
  cameras); row ``r`` is slot ``floor(|r - (n_rows - 1) / 2|)``.

A frame therefore spans ``(n_slots - 1) * row_time_s + exposure_s`` seconds (the published
colour sCMOS: 27.52 µs per row, 1,320 µs exposure, about 1,080 rows: 31.0 ms).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ReadoutDirection", "RollingShutterReadout", "RowTiming"]

ReadoutDirection = Literal["top_to_bottom", "bottom_to_top", "centre_out"]


@dataclasses.dataclass(frozen=True)
class RowTiming:
    """A rolling-shutter sensor's row timing.

    Attributes
    ----------
    n_rows
        Sensor rows (array axis y).
    row_time_s
        Time between the opening of consecutive readout slots (line interval), seconds (> 0).
    exposure_s
        How long each row's shutter is open, seconds (> 0).
    direction
        Readout direction (module docstring).
    """

    n_rows: int
    row_time_s: float
    exposure_s: float
    direction: ReadoutDirection = "top_to_bottom"

    def __post_init__(self) -> None:
        if int(self.n_rows) != self.n_rows or self.n_rows < 1:
            raise ValueError(f"n_rows={self.n_rows} must be a positive integer (sensor rows)")
        for name in ("row_time_s", "exposure_s"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be a positive number of seconds")
        if self.direction not in get_args(ReadoutDirection):
            raise ValueError(
                f"direction={self.direction!r} is not a readout direction; use one of {get_args(ReadoutDirection)}"
            )

    def slots(self) -> np.ndarray:
        """``(n_rows,)`` int: the readout slot of every row."""
        r = np.arange(self.n_rows)
        if self.direction == "top_to_bottom":
            return r
        if self.direction == "bottom_to_top":
            return self.n_rows - 1 - r
        return np.floor(np.abs(r - (self.n_rows - 1) / 2.0)).astype(np.int64)

    @property
    def n_slots(self) -> int:
        """Distinct readout slots (``n_rows``, or about half of it for ``"centre_out"``)."""
        return int(self.slots().max()) + 1

    @property
    def frame_span_s(self) -> float:
        """Seconds from the first row opening to the last row closing."""
        return (self.n_slots - 1) * self.row_time_s + self.exposure_s

    def open_offsets_s(self) -> np.ndarray:
        """``(n_rows,)`` seconds from the frame start to each row's shutter opening."""
        return self.slots().astype(np.float64) * self.row_time_s

    def intervals_s(self, frame_start_s: float | np.ndarray = 0.0) -> np.ndarray:
        """Open intervals ``[open, close)`` of every row, seconds on the acquisition clock.

        ``frame_start_s`` scalar -> ``(n_rows, 2)``; ``(F,)`` frame starts -> ``(F, n_rows, 2)``.
        """
        start = np.asarray(frame_start_s, np.float64)
        opened = start[..., None] + self.open_offsets_s()
        return np.stack([opened, opened + self.exposure_s], axis=-1)


class RollingShutterReadout(BaseModel):
    """How a rolling-shutter camera reads its rows (the store's ``camera.rolling_shutter``).

    The one schema of this concept: the hardware configuration's ``camera.rolling_shutter``,
    the store attribute ``camera.rolling_shutter`` (``docs/format.md``) and the reconstruction
    all use it. With a frame's exposure and row count it gives the :class:`RowTiming`.

    Attributes
    ----------
    row_time_s
        Line interval: seconds between the openings of consecutive readout slots (> 0).
    direction
        ``"top_to_bottom"``, ``"bottom_to_top"`` or ``"centre_out"`` (module docstring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    row_time_s: float = Field(gt=0, description="line interval, s between consecutive readout slots")
    direction: ReadoutDirection = "top_to_bottom"

    @field_validator("row_time_s")
    @classmethod
    def _finite_short(cls, value: float) -> float:
        if not (math.isfinite(value) and value < 1.0):
            raise ValueError(
                "must be a finite line interval below 1 s (seconds per row, e.g. 2.752e-05 for 27.52 µs)"
            )
        return value

    def row_timing(self, n_rows: int, exposure_s: float) -> RowTiming:
        """The :class:`RowTiming` of a frame of ``n_rows`` rows, each open ``exposure_s`` seconds."""
        return RowTiming(int(n_rows), float(self.row_time_s), float(exposure_s), self.direction)

    def to_store(self) -> dict[str, float | str]:
        """The JSON object of ``camera.rolling_shutter``."""
        return {"row_time_s": float(self.row_time_s), "direction": str(self.direction)}
