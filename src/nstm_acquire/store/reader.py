"""Reader of an acquisition store (FORMAT.md, version 1), safe while a writer is running.

:class:`StoreReader` opens a store read-only, validates its attributes and arrays (every
problem is one :class:`~nstm_acquire.store.layout.StoreError` line naming the store, the field
and the fix) and hands out complete windows.

A window is complete when all its ``timestamps_s`` are finite. The writer stores each frame
before its timestamp (see :mod:`nstm_acquire.store.writer`), so a window that reads as complete
has all its frames, even while the acquisition is still running or after it crashed. Read
order here follows from that: timestamps first, then frames.

Arrays are returned as float32 with ``camera.offset_adu`` subtracted, axes ``(S, Z, Y, X)``
for one window (S shots, Z planes); times are seconds on the ``timestamps_s`` clock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from nstm_acquire.physics.optics import Optics
from nstm_acquire.store.layout import (
    BACKGROUND,
    EXPOSURE,
    RAW,
    RAW_DTYPES,
    ROOT_ATTRIBUTE_KEY,
    TIMESTAMPS,
    StoreAttributes,
    StoreError,
    acquired_frames,
    validate_attributes,
    window_is_complete,
    window_is_partial,
)

__all__ = ["StoreReader", "WindowData", "open_zarr_group"]


@dataclass(frozen=True)
class WindowData:
    """One complete window of frames.

    Attributes
    ----------
    index
        Window index w.
    raw
        float32 ``(S, Z, Y, X)`` frames in camera counts minus ``camera.offset_adu``.
    timestamps_s
        float64 ``(S, Z)`` exposure start of every frame, s since acquisition start.
    exposure_s
        float64 ``(S, Z)`` exposure duration of every frame, s.
    """

    index: int
    raw: np.ndarray
    timestamps_s: np.ndarray
    exposure_s: np.ndarray

    @property
    def midpoints_s(self) -> np.ndarray:
        """``(S, Z)`` exposure midpoints, s (the default render times of FORMAT.md)."""
        return self.timestamps_s + 0.5 * self.exposure_s


def open_zarr_group(
    path: str | os.PathLike[str], mode: Literal["r", "r+", "a"] = "r"
) -> zarr.Group:
    """Open the Zarr v3 group at ``path``; StoreError if it is not one.

    ``mode`` is zarr's (``"r"`` read-only, ``"r+"``/``"a"`` read-write); the group must exist.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise StoreError(name, "path", "does not exist (give the directory of a NAME.zarr store)")
    if not path.is_dir():
        raise StoreError(name, "path", "is a file, not a Zarr store directory")
    meta_file = path / "zarr.json"
    if not meta_file.is_file():
        if (path / ".zgroup").is_file() or (path / ".zarray").is_file():
            problem = "is a Zarr v2 store (.zgroup); nstm-acquire stores are Zarr v3 (zarr.json)"
        else:
            problem = "is not a Zarr store (no zarr.json; give the directory of a NAME.zarr store)"
        raise StoreError(name, "path", problem)
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StoreError(name, "zarr.json", f"cannot be read as JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        fmt = meta.get("zarr_format") if isinstance(meta, dict) else None
        raise StoreError(
            name, "zarr.json", f"has zarr_format = {fmt!r} (nstm-acquire stores are Zarr v3)"
        )
    if meta.get("node_type") != "group":
        raise StoreError(
            name,
            "zarr.json",
            f"describes a {meta.get('node_type')!r}, not a group (open the store root)",
        )
    return zarr.open_group(str(path), mode=mode, zarr_format=3)


def _stats(name: str, values: np.ndarray) -> dict[str, float | int | None]:
    """``{name}_n``, and ``{name}_mean_s``/``_min_s``/``_max_s``/``_std_s`` (None if no values)."""
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, float | int | None] = {f"{name}_n": int(values.size)}
    for stat, func in (("mean", np.mean), ("min", np.min), ("max", np.max), ("std", np.std)):
        out[f"{name}_{stat}_s"] = float(func(values)) if values.size else None
    return out


class StoreReader:
    """Read-only view of an acquisition store; use :meth:`refresh` to follow a running writer.

    Parameters
    ----------
    path
        Directory of the store (``NAME.zarr``).

    Raises
    ------
    StoreError
        Not a Zarr v3 store, invalid ``nstm_acquire`` attributes, missing or inconsistent arrays.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._name = str(path)
        self._group = open_zarr_group(self._path, mode="r")
        self._attrs = validate_attributes(self._group.attrs.get(ROOT_ATTRIBUTE_KEY), self._name)
        self._n_shots = self._attrs.n_shots
        self._n_leading_complete = 0  # windows 0..n-1 are known complete (they stay so)
        self.refresh()

    # ------------------------------------------------------------------ metadata
    def _array(self, name: str, what: str) -> zarr.Array:
        try:
            node = self._group[name]
        except KeyError:
            raise StoreError(self._name, f"array {name}", f"is missing ({what})") from None
        if not isinstance(node, zarr.Array):
            raise StoreError(self._name, f"array {name}", "is a group, not an array")
        return node

    def refresh(self) -> None:
        """Re-read the array metadata (W grows while a writer is running) and re-validate."""
        raw = self._array(RAW, "the (W, S, Z, Y, X) camera frames")
        ts = self._array(TIMESTAMPS, "the (W, S, Z) exposure start times")
        exp = self._array(EXPOSURE, "the (W, S, Z) exposure durations")
        if raw.ndim != 5:
            raise StoreError(
                self._name, "array raw", f"has {raw.ndim} dimensions, expected 5 (W, S, Z, Y, X)"
            )
        if str(raw.dtype) not in RAW_DTYPES:
            raise StoreError(
                self._name, "array raw", f"has dtype {raw.dtype} (use uint16 or float32)"
            )
        _, S, Z, Y, X = raw.shape
        if S != self._n_shots:
            raise StoreError(
                self._name,
                "array raw",
                f"has S = {S} shots but the illumination attributes describe {self._n_shots} "
                "(the attributes and the array must agree)",
            )
        if self._attrs.modality != "sim3d" and Z != 1:
            raise StoreError(
                self._name,
                "array raw",
                f"has Z = {Z} planes but modality {self._attrs.modality!r} is 2D (Z must be 1)",
            )
        for name, array in ((TIMESTAMPS, ts), (EXPOSURE, exp)):
            if array.ndim != 3 or tuple(array.shape[1:]) != (S, Z):
                raise StoreError(
                    self._name,
                    f"array {name}",
                    f"has shape {tuple(array.shape)}, expected (W, {S}, {Z}) to match raw",
                )
            if array.dtype != np.float64:
                raise StoreError(
                    self._name, f"array {name}", f"has dtype {array.dtype} (use float64)"
                )
        self._raw, self._timestamps, self._exposure = raw, ts, exp
        # The writer grows raw first and timestamps last (and shrinks in reverse order).
        self._n_windows = int(min(raw.shape[0], ts.shape[0], exp.shape[0]))
        self._frame_shape = (int(Y), int(X))
        self._n_planes = int(Z)

    @property
    def path(self) -> Path:
        """Directory of the store."""
        return self._path

    @property
    def group(self) -> zarr.Group:
        """The root zarr group (read-only)."""
        return self._group

    @property
    def attrs(self) -> StoreAttributes:
        """The validated ``nstm_acquire`` attributes."""
        return self._attrs

    @property
    def modality(self) -> str:
        """``"dpc"``, ``"sim2d"`` or ``"sim3d"``."""
        return self._attrs.modality

    @property
    def optics(self) -> Optics:
        """Optics of the acquisition."""
        return self._attrs.optics

    @property
    def n_shots(self) -> int:
        """S, shots per plane and window."""
        return self._n_shots

    @property
    def n_planes(self) -> int:
        """Z, planes per window."""
        return self._n_planes

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(Y, X) frame shape, pixels."""
        return self._frame_shape

    @property
    def frames_per_window(self) -> int:
        """S * Z, the frames of a complete window."""
        return self._n_shots * self._n_planes

    @property
    def n_windows(self) -> int:
        """W as of the last :meth:`refresh` (includes windows not yet or never acquired)."""
        return self._n_windows

    @property
    def dtype(self) -> np.dtype:
        """dtype of ``raw`` on disk."""
        return np.dtype(self._raw.dtype)

    # ------------------------------------------------------------------ timing
    def timestamps_s(self, refresh: bool = False) -> np.ndarray:
        """All exposure starts, float64 ``(W, S, Z)``, s; NaN where not (yet) acquired."""
        if refresh:
            self.refresh()
        return np.asarray(self._timestamps[: self._n_windows], dtype=np.float64)

    def exposures_s(self, refresh: bool = False) -> np.ndarray:
        """All exposure durations, float64 ``(W, S, Z)``, s; NaN where not (yet) acquired."""
        if refresh:
            self.refresh()
        return np.asarray(self._exposure[: self._n_windows], dtype=np.float64)

    def complete_windows(self, refresh: bool = True) -> list[int]:
        """Windows whose timestamps are all finite (all their frames are stored), ascending.

        ``refresh=True`` first re-reads the array shapes, to see windows a running writer added.
        """
        counts = self._acquired_frames(refresh)
        return [int(w) for w in np.flatnonzero(window_is_complete(counts, self.frames_per_window))]

    def partial_windows(self, refresh: bool = True) -> list[int]:
        """Windows with some but not all frames (being acquired, or cut off by a crash)."""
        counts = self._acquired_frames(refresh)
        return [int(w) for w in np.flatnonzero(window_is_partial(counts, self.frames_per_window))]

    def require_complete(self, windows: Sequence[int] | None = None) -> list[int]:
        """``windows`` (default: every complete window, ascending), checked to be complete.

        Raises ``ValueError`` naming the incomplete ones and the complete ones.
        """
        complete = self.complete_windows()
        todo = list(complete if windows is None else windows)
        missing = [w for w in todo if w not in complete]
        if missing:
            raise ValueError(f"{self._path}: windows {missing} are not complete (complete: {complete})")
        return todo

    def _acquired_frames(self, refresh: bool) -> np.ndarray:
        """Acquired frames of every window, int ``(W,)`` (:func:`~nstm_acquire.store.layout.acquired_frames`).

        Frames are never overwritten, so a complete window stays complete: the timestamps of
        the leading run of complete windows are not read again, which keeps polling cheap.
        """
        if refresh:
            self.refresh()
        n_windows, per_window = self._n_windows, self.frames_per_window
        start = min(self._n_leading_complete, n_windows)
        counts = np.full(n_windows, per_window, dtype=np.int64)
        if start < n_windows:
            counts[start:] = acquired_frames(np.asarray(self._timestamps[start:n_windows]))
        complete = window_is_complete(counts, per_window)
        k = start
        while k < n_windows and complete[k]:
            k += 1
        self._n_leading_complete = k
        return counts

    # ------------------------------------------------------------------ data
    def _offset(self) -> float:
        return float(self._attrs.camera.offset_adu)

    def _check_window_index(self, w: int) -> int:
        w = int(w)
        if not 0 <= w < self._n_windows:
            self.refresh()
        if not 0 <= w < self._n_windows:
            raise StoreError(
                self._name,
                f"window {w}",
                f"is out of range (the store has windows 0..{self._n_windows - 1})",
            )
        return w

    def window(self, w: int) -> WindowData:
        """The frames and times of the complete window ``w``.

        Raises
        ------
        StoreError
            ``w`` out of range, or the window is incomplete (some frames not acquired).
        """
        w = self._check_window_index(w)
        timestamps = np.asarray(self._timestamps[w], dtype=np.float64)  # read times first
        acquired = int(acquired_frames(timestamps[None])[0])
        if not window_is_complete(acquired, self.frames_per_window):
            missing = self.frames_per_window - acquired
            raise StoreError(
                self._name,
                f"window {w}",
                f"is incomplete ({missing} of {timestamps.size} frames not acquired; "
                "use complete_windows() to pick windows)",
            )
        exposure = np.asarray(self._exposure[w], dtype=np.float64)
        raw = np.asarray(self._raw[w]).astype(np.float32)
        offset = self._offset()
        if offset:
            raw -= np.float32(offset)
        return WindowData(index=w, raw=raw, timestamps_s=timestamps, exposure_s=exposure)

    def frame(self, w: int, s: int, z: int = 0) -> np.ndarray:
        """One acquired frame, float32 ``(Y, X)`` minus the offset (e.g. for a live view).

        Raises StoreError if it is out of range or not acquired yet.
        """
        w = self._check_window_index(w)
        if not (0 <= s < self._n_shots and 0 <= z < self._n_planes):
            raise StoreError(
                self._name,
                f"frame ({w}, {s}, {z})",
                f"is out of range (S = {self._n_shots}, Z = {self._n_planes})",
            )
        if not np.isfinite(self._timestamps[w, s, z]):
            raise StoreError(self._name, f"frame ({w}, {s}, {z})", "is not acquired yet")
        frame = np.asarray(self._raw[w, s, z]).astype(np.float32)
        offset = self._offset()
        if offset:
            frame -= np.float32(offset)
        return frame

    def background(self) -> np.ndarray | None:
        """The sample-free frames, float32 ``(S, Z, Y, X)`` minus the offset, or None."""
        if BACKGROUND not in self._group:
            return None
        array = self._array(BACKGROUND, "the sample-free frames")
        expected = (self._n_shots, self._n_planes, *self._frame_shape)
        if tuple(array.shape) != expected:
            raise StoreError(
                self._name,
                "array background",
                f"has shape {tuple(array.shape)}, expected {expected} (S, Z, Y, X) to match raw",
            )
        background = np.asarray(array[...]).astype(np.float32)
        offset = self._offset()
        if offset:
            background -= np.float32(offset)
        return background

    def timing_summary(self, refresh: bool = True) -> dict[str, Any]:
        """Timing statistics of the acquired frames, seconds on the ``timestamps_s`` clock.

        Returns a flat dict:

        * ``frames_acquired`` (frames with a finite timestamp), ``frames_per_window`` (S·Z),
          ``complete_windows`` (count), ``partial_windows`` (list of window indices);
        * ``duration_s``: last minus first exposure start;
        * for ``frame_interval`` (differences of the sorted exposure starts of all frames),
          ``window_period`` (differences of the first exposure start of successive complete
          windows) and ``exposure`` (exposure durations): ``<name>_n`` (number of values) and
          ``<name>_mean_s``, ``<name>_min_s``, ``<name>_max_s``, ``<name>_std_s``.

        A statistic without values (e.g. one frame only) is None.
        """
        ts = self.timestamps_s(refresh=refresh)
        exp = self.exposures_s()[: ts.shape[0]]
        finite = np.isfinite(ts)
        per_window = self.frames_per_window
        counts = acquired_frames(ts)
        complete = window_is_complete(counts, per_window)
        partial = window_is_partial(counts, per_window)
        starts = np.sort(ts[finite])
        window_starts = ts[complete].reshape(int(complete.sum()), per_window).min(axis=1)
        return {
            "frames_acquired": int(finite.sum()),
            "frames_per_window": int(per_window),
            "complete_windows": int(complete.sum()),
            "partial_windows": [int(w) for w in np.flatnonzero(partial)],
            "duration_s": float(starts[-1] - starts[0]) if starts.size else None,
            **_stats("frame_interval", np.diff(starts)),
            **_stats("window_period", np.diff(window_starts)),
            **_stats("exposure", exp[finite]),
        }

    def __repr__(self) -> str:
        return (
            f"StoreReader({self._name!r}, modality={self.modality!r}, W={self._n_windows}, "
            f"S={self._n_shots}, Z={self._n_planes}, frame_shape={self._frame_shape})"
        )
