"""How a rolling-shutter lensless store's shots map onto camera frames and colour channels.

A colour frame does not fit the store's ``raw`` ``(W, S, Z, Y, X)`` as one array, so each colour
plane is a shot: shot ``s = frame * n_channels + channel`` of a window is colour ``channel`` of
frame ``frame``, and all colour planes of a frame carry that frame's timestamp (exposure start
of its first row) and exposure. This object is the store's ``illumination`` for modality
``rolling_shutter`` (``docs/format.md``): the lensless camera has no illumination to describe,
only this shot layout.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_CHANNELS", "LenslessShots"]

DEFAULT_CHANNELS = ("red", "green", "blue")
"""Colour channels of a demosaiced colour sensor, in shot order."""


class LenslessShots(BaseModel):
    """Frames per window and colour channels per frame of a rolling-shutter store.

    Attributes
    ----------
    frames_per_window
        Camera frames in one window (>= 1); the reconstruction fits a window's frames together.
    channels
        Names of the colour planes of every frame, in shot order (default red, green, blue).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames_per_window: int = Field(ge=1, le=10_000, description="camera frames per window")
    channels: tuple[str, ...] = Field(default=DEFAULT_CHANNELS, min_length=1, max_length=4)

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or any(not name.strip() for name in value):
            raise ValueError("must be distinct, non-empty channel names (e.g. ['red', 'green', 'blue'])")
        return value

    @property
    def n_channels(self) -> int:
        """Colour planes per frame, C."""
        return len(self.channels)

    @property
    def n_shots(self) -> int:
        """Shots per window: ``frames_per_window * n_channels``."""
        return self.frames_per_window * self.n_channels

    def shot(self, frame: int, channel: int) -> int:
        """The shot index of colour ``channel`` of frame ``frame`` in a window."""
        if not (0 <= frame < self.frames_per_window and 0 <= channel < self.n_channels):
            raise ValueError(
                f"frame {frame}, channel {channel} out of range ({self.frames_per_window} frames of "
                f"{self.n_channels} channels)"
            )
        return frame * self.n_channels + channel

    def frames_of(self, shots: np.ndarray) -> np.ndarray:
        """A window's shots ``(S, ...)`` as frames ``(F, C, ...)`` (a reshape, no copy)."""
        a = np.asarray(shots)
        if a.shape[0] != self.n_shots:
            raise ValueError(f"{a.shape[0]} shots given; a window has {self.n_shots} ({self.frames_per_window} x {self.n_channels})")
        return a.reshape(self.frames_per_window, self.n_channels, *a.shape[1:])

    def to_store(self) -> dict[str, object]:
        """The JSON object of the store's ``illumination``."""
        return {"frames_per_window": int(self.frames_per_window), "channels": list(self.channels)}
