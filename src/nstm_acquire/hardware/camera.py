"""What a microscope tells an acquisition about its camera's clock.

:class:`TimestampSource` is reported by
:meth:`~nstm_acquire.hardware.microscope.Microscope.timestamp_source`, so that the acquisition
layer times frames without knowing whether the microscope is real or simulated. No pymmcore-plus
here: the frame-time resolver and its tests import it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["TIMESTAMP_UNIT_S", "TimestampSource"]

TIMESTAMP_UNIT_S: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
"""Seconds per unit of a camera timestamp (``hardware_timestamp_unit``)."""


@dataclass(frozen=True)
class TimestampSource:
    """Where a frame's exposure start comes from (see ``docs/timing.md``).

    Attributes
    ----------
    key
        The camera metadata key (and camera property, for single snaps) holding the exposure
        start on the camera's clock; None: no hardware timestamp, the host clock is used.
    unit
        Unit of the value under ``key``: ``"s"``, ``"ms"`` or ``"us"``.
    on_acquisition_clock
        True when the value under ``key`` already counts from the acquisition start (the
        camera's clock was restarted by :meth:`Microscope.acquisition_started`); False: it is
        mapped onto the acquisition clock by its offset at the first frame.
    description
        One line for the store's ``acquisition.timestamp_source`` and the run summary.
    """

    key: str | None
    unit: Literal["s", "ms", "us"] = "s"
    on_acquisition_clock: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.unit not in TIMESTAMP_UNIT_S:
            raise ValueError(f"unit={self.unit!r}: use one of {sorted(TIMESTAMP_UNIT_S)}")

    @property
    def seconds_per_unit(self) -> float:
        """Seconds per unit of the value under ``key``."""
        return TIMESTAMP_UNIT_S[self.unit]
