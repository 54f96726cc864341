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
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.rolling_shutter.timing import RowTiming
from nstm_acquire.store.layout import (
    BACKGROUND,
    EXPOSURE,
    PSF,
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
    writer_state,
)

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_PSF_SIDE_FACTOR",
    "StoreReader",
    "WindowData",
    "memory_limit_bytes",
    "open_zarr_group",
    "read_metadata_file",
]

MAX_METADATA_BYTES = 8 * 2**20
"""Largest ``zarr.json`` read (8 MiB): a store's attributes are a few kB; more is refused."""

MAX_PSF_SIDE_FACTOR = 4
"""A stored ``psf`` may be at most this many times the frame along each axis (larger is refused
before anything is read: the lensless PSF is about the sensor's size)."""

MAX_PLAUSIBLE_TIME_S = 1.0e7
"""Timestamps beyond this (about 116 days after the acquisition started) are flagged."""


def memory_limit_bytes() -> int:
    """The most one read of a store may allocate: a quarter of the physical memory (>= 256 MiB).

    Checked against the shapes a store declares *before* anything is read, so a ``zarr.json``
    claiming a huge array is refused with one line instead of exhausting the memory.
    """
    try:
        total = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 16 * 2**30
    return max(total // 4, 256 * 2**20)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def read_metadata_file(path: Path, store: str, field: str) -> Any:
    """The JSON document of a store's metadata file ``path``, read with limits.

    The file must be a regular file (not a symbolic link, device or folder) of at most
    :data:`MAX_METADATA_BYTES`, UTF-8 JSON nested at most a few hundred levels. Every problem is
    one :class:`StoreError` naming ``field``; the message never quotes the file's content.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise StoreError(store, field, "is missing (the store is incomplete or not a Zarr v3 store)") from None
    except OSError as err:
        raise StoreError(store, field, f"cannot be read ({err.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        raise StoreError(store, field, "is a symbolic link (a store holds regular files only; copy the file in)")
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(store, field, "is not a regular file")
    if info.st_size > MAX_METADATA_BYTES:
        raise StoreError(
            store,
            field,
            f"has {info.st_size} bytes, more than the {MAX_METADATA_BYTES} bytes a store's metadata "
            "may have (the file is damaged or not an nstm-acquire store)",
        )
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_METADATA_BYTES + 1).decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError:
        raise StoreError(store, field, "is not UTF-8 text (the file is damaged)") from None
    except json.JSONDecodeError as err:
        raise StoreError(
            store, field, f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    except RecursionError:
        raise StoreError(store, field, "is nested too deeply to be store metadata (refused)") from None
    except (OSError, ValueError) as err:
        raise StoreError(store, field, f"cannot be read as JSON ({type(err).__name__})") from None


def _plain_bytes(array: zarr.Array) -> bool:
    """Whether ``array``'s chunks are its values' little-endian bytes (no filter, no compressor)."""
    serializer = array.serializer
    endian = getattr(getattr(serializer, "endian", None), "value", "little")
    return (
        type(serializer).__name__ == "BytesCodec"
        and endian in ("little", None)
        and not array.compressors
        and not array.filters
    )


def _inside(path: Path, root_real: str) -> bool:
    """Whether ``path`` resolves (symbolic links followed) to a place inside ``root_real``."""
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real + os.sep)


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
    if not os.path.lexists(meta_file):
        if (path / ".zgroup").is_file() or (path / ".zarray").is_file():
            problem = "is a Zarr v2 store (.zgroup); nstm-acquire stores are Zarr v3 (zarr.json)"
        else:
            problem = "is not a Zarr store (no zarr.json; give the directory of a NAME.zarr store)"
        raise StoreError(name, "path", problem)
    meta = read_metadata_file(meta_file, name, "zarr.json")
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
    for which, func in (("mean", np.mean), ("min", np.min), ("max", np.max), ("std", np.std)):
        out[f"{name}_{which}_s"] = float(func(values)) if values.size else None
    return out


def _timing_problems(ts: np.ndarray, exp: np.ndarray, complete: np.ndarray) -> list[str]:
    """The checks of :meth:`StoreReader.timing_problems` on ``(W, S, Z)`` times."""
    problems: list[str] = []
    finite = np.isfinite(ts)

    def first(mask: np.ndarray) -> str:
        w, s, z = (int(i) for i in np.argwhere(mask)[0])
        return f"frame ({w}, {s}, {z})"

    negative = finite & (ts < 0)
    if negative.any():
        problems.append(
            f"{int(negative.sum())} frames have negative timestamps_s (first: {first(negative)}); "
            "times are seconds since the acquisition started"
        )
    huge = finite & (np.abs(ts) > MAX_PLAUSIBLE_TIME_S)
    if huge.any():
        problems.append(
            f"{int(huge.sum())} frames have timestamps_s beyond {MAX_PLAUSIBLE_TIME_S:.0e} s "
            f"(first: {first(huge)}); the clock or its unit is wrong"
        )
    bad_exp = finite & ~(np.isfinite(exp) & (exp >= 0))
    if bad_exp.any():
        problems.append(
            f"{int(bad_exp.sum())} acquired frames have a negative or missing exposure_s "
            f"(first: {first(bad_exp)})"
        )
    if complete.any():
        idx = np.flatnonzero(complete)
        starts = ts[idx].reshape(idx.size, -1).min(axis=1)
        back = np.flatnonzero(np.diff(starts) < 0)
        if back.size:
            w = int(idx[back[0] + 1])
            problems.append(
                f"{back.size} complete windows start before the window before them (first: window {w}); "
                "timestamps_s decrease"
            )
    return problems


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
        self._damaged: dict[int, str] = {}
        self._root_real = os.path.realpath(self._path)
        self.refresh()

    # ------------------------------------------------------------------ metadata
    def _array(self, name: str, what: str) -> zarr.Array:
        folder = self._path / name
        if not os.path.lexists(folder):
            raise StoreError(self._name, f"array {name}", f"is missing ({what})")
        if os.path.islink(folder) or not folder.is_dir():
            raise StoreError(
                self._name, f"array {name}", "is not a folder of the store (symbolic links are not followed)"
            )
        read_metadata_file(folder / "zarr.json", self._name, f"array {name} (zarr.json)")
        try:
            node = self._group[name]
        except KeyError:
            raise StoreError(self._name, f"array {name}", f"is missing ({what})") from None
        except Exception as err:  # noqa: BLE001 - zarr rejects its metadata: one line
            raise StoreError(
                self._name, f"array {name}", f"has metadata zarr cannot open ({type(err).__name__})"
            ) from None
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
        n_windows = int(min(raw.shape[0], ts.shape[0], exp.shape[0]))
        self._check_sizes(raw, n_windows, S, Z, Y, X)
        self._raw, self._timestamps, self._exposure = raw, ts, exp
        # The writer grows raw first and timestamps last (and shrinks in reverse order).
        self._n_windows = n_windows
        self._frame_shape = (int(Y), int(X))
        self._n_planes = int(Z)
        self._raw_plain = _plain_bytes(raw)
        self._timing_plain = all(
            _plain_bytes(a) and tuple(a.chunks) == (1, S, Z) for a in (ts, exp)
        )

    def _check_sizes(self, raw: zarr.Array, n_windows: int, S: int, Z: int, Y: int, X: int) -> None:
        """Refuse shapes whose reads would not fit in memory, and chunks other than one frame."""
        limit = memory_limit_bytes()
        window_bytes = S * Z * Y * X * 4  # one window as float32
        if window_bytes > limit:
            raise StoreError(
                self._name,
                "array raw",
                f"declares windows of {S} x {Z} frames of {Y} x {X} pixels ({_gib(window_bytes)} per "
                f"window), more than the memory limit of {_gib(limit)} (the store is damaged, or "
                "too large for this computer)",
            )
        timing_bytes = 2 * 8 * n_windows * S * Z
        if timing_bytes > limit:
            raise StoreError(
                self._name,
                "array timestamps_s",
                f"declares {n_windows} windows x {S * Z} frames ({_gib(timing_bytes)} of times), more "
                f"than the memory limit of {_gib(limit)} (the store is damaged)",
            )
        chunks = tuple(int(c) for c in raw.chunks)
        if chunks != (1, 1, 1, Y, X) or type(raw.serializer).__name__ != "BytesCodec":
            raise StoreError(
                self._name,
                "array raw",
                f"is chunked {chunks}, not one frame per chunk (1, 1, 1, {Y}, {X}) as FORMAT.md requires",
            )

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
        return self._timing_rows(TIMESTAMPS, 0, self._n_windows)

    def exposures_s(self, refresh: bool = False) -> np.ndarray:
        """All exposure durations, float64 ``(W, S, Z)``, s; NaN where not (yet) acquired."""
        if refresh:
            self.refresh()
        return self._timing_rows(EXPOSURE, 0, self._n_windows)

    def complete_windows(self, refresh: bool = True) -> list[int]:
        """Windows whose frames are all acquired, ascending.

        A frame counts as acquired when its timestamp is finite *and* its chunk file is present,
        a regular file, and of the size the frame needs (:meth:`damaged_windows` says which
        windows lose frames that way).

        ``refresh=True`` first re-reads the array shapes, to see windows a running writer added.
        """
        counts = self._acquired_frames(refresh)
        return [int(w) for w in np.flatnonzero(window_is_complete(counts, self.frames_per_window))]

    def damaged_windows(self, refresh: bool = True) -> dict[int, str]:
        """Windows with a frame whose timestamp is there but whose chunk file is missing,
        not a regular file, or of the wrong size: ``{w: "<file> <problem>"}`` (first problem).

        Such a window counts as incomplete (:meth:`complete_windows`); its other frames stay
        readable with :meth:`frame`.
        """
        self._acquired_frames(refresh)
        return dict(sorted(self._damaged.items()))

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
        self._damaged = {w: why for w, why in self._damaged.items() if w < start}
        if start < n_windows:
            ts = self._timing_rows(TIMESTAMPS, start, n_windows)
            counts[start:] = acquired_frames(ts)
            for i, w in enumerate(range(start, n_windows)):
                if counts[w] == 0:
                    continue
                for s, z in zip(*np.nonzero(np.isfinite(ts[i])), strict=True):
                    issue = self._chunk_issue(int(w), int(s), int(z))
                    if issue is not None:
                        counts[w] -= 1
                        self._damaged.setdefault(int(w), issue)
        complete = window_is_complete(counts, per_window)
        k = start
        while k < n_windows and complete[k]:
            k += 1
        self._n_leading_complete = k
        return counts

    # ------------------------------------------------------------------ files
    def _chunk_path(self, array: zarr.Array, name: str, coords: tuple[int, ...]) -> Path:
        return self._path / name / array.metadata.encode_chunk_key(coords)

    def _chunk_issue(self, w: int, s: int, z: int, resolve: bool = False) -> str | None:
        """What is wrong with the chunk file of frame ``(w, s, z)``, or None (one phrase).

        Checked without reading it: present, a regular file (not a link, device or folder), and
        the frame's size (uncompressed), or at most a little more than it (compressed).
        ``resolve`` also checks that the file's folders do not lead out of the store.
        """
        path = self._chunk_path(self._raw, RAW, (w, s, z, 0, 0))
        rel = path.relative_to(self._path).as_posix()
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return f"chunk file {rel} of frame ({w}, {s}, {z}) is missing (its timestamp is there)"
        except OSError as err:
            return f"chunk file {rel} cannot be read ({err.strerror})"
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            return f"chunk file {rel} is {kind} (not read)"
        Y, X = self._frame_shape
        frame_bytes = Y * X * np.dtype(self._raw.dtype).itemsize
        if self._raw_plain and info.st_size != frame_bytes:
            return f"chunk file {rel} has {info.st_size} bytes, expected {frame_bytes} (truncated or damaged)"
        if not self._raw_plain and not 0 < info.st_size <= frame_bytes + frame_bytes // 8 + 4096:
            return f"chunk file {rel} has {info.st_size} bytes, implausible for a {Y} x {X} frame (damaged)"
        if resolve and not _inside(path, self._root_real):
            return f"chunk file {rel} lies outside the store (a folder is a symbolic link; not read)"
        return None

    def _timing_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """``timestamps_s`` or ``exposure_s`` of windows ``start..stop-1``, float64 ``(n, S, Z)``.

        Stores in this implementation's layout (one uncompressed chunk per window) are read
        file by file with their sizes checked; a missing chunk is NaN (not acquired). Other
        layouts go through zarr.
        """
        array = self._timestamps if name == TIMESTAMPS else self._exposure
        if not self._timing_plain:
            return np.asarray(array[start:stop], dtype=np.float64)
        S, Z = self._n_shots, self._n_planes
        out = np.full((stop - start, S, Z), np.nan, dtype=np.float64)
        expected = S * Z * 8
        for i, w in enumerate(range(start, stop)):
            path = self._chunk_path(array, name, (w, 0, 0))
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            rel = path.relative_to(self._path).as_posix()
            if not stat.S_ISREG(info.st_mode) or info.st_size != expected:
                # the frames of a window whose times are unreadable do not count as acquired
                self._damaged.setdefault(w, f"chunk file {rel} is not a regular file of {expected} bytes")
                continue
            with open(path, "rb") as f:
                out[i] = np.frombuffer(f.read(expected), dtype="<f8").reshape(S, Z)
        return out

    def _read_frames(self, w: int, s: slice | int, z: slice | int, refusal: str = "cannot be read") -> np.ndarray:
        """``raw[w, s, z]`` after checking every chunk file it reads; StoreError names the file."""
        shots = range(self._n_shots)[s] if isinstance(s, slice) else [s]
        planes = range(self._n_planes)[z] if isinstance(z, slice) else [z]
        for si in shots:
            for zi in planes:
                issue = self._chunk_issue(w, si, zi, resolve=True)
                if issue is not None:
                    raise StoreError(self._name, f"window {w}", f"{refusal}: {issue}")
        try:
            return np.asarray(self._raw[w, s, z])
        except Exception as err:  # noqa: BLE001 - a chunk that does not decode: one line
            raise StoreError(
                self._name,
                f"window {w}",
                f"cannot be read: a chunk of raw does not decode ({type(err).__name__}; the file is damaged)",
            ) from None

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
        timestamps = self._timing_rows(TIMESTAMPS, w, w + 1)[0]  # read times first
        acquired = int(acquired_frames(timestamps[None])[0])
        if not window_is_complete(acquired, self.frames_per_window):
            missing = self.frames_per_window - acquired
            raise StoreError(
                self._name,
                f"window {w}",
                f"is incomplete ({missing} of {timestamps.size} frames not acquired; "
                "use complete_windows() to pick windows)",
            )
        exposure = self._timing_rows(EXPOSURE, w, w + 1)[0]
        raw = self._read_frames(w, slice(None), slice(None), "is incomplete").astype(np.float32)
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
        if not np.isfinite(self._timing_rows(TIMESTAMPS, w, w + 1)[0, s, z]):
            raise StoreError(self._name, f"frame ({w}, {s}, {z})", "is not acquired yet")
        frame = self._read_frames(w, s, z).astype(np.float32)
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
        for si in range(self._n_shots):
            for zi in range(self._n_planes):
                path = self._chunk_path(array, BACKGROUND, (si, zi, 0, 0))
                if os.path.lexists(path) and (os.path.islink(path) or not path.is_file() or not _inside(path, self._root_real)):
                    raise StoreError(
                        self._name, "array background", f"chunk {path.relative_to(self._path).as_posix()} is not a regular file of the store (not read)"
                    )
        try:
            background = np.asarray(array[...]).astype(np.float32)
        except Exception as err:  # noqa: BLE001 - a chunk that does not decode: one line
            raise StoreError(
                self._name, "array background", f"cannot be read ({type(err).__name__}; a chunk is damaged)"
            ) from None
        offset = self._offset()
        if offset:
            background -= np.float32(offset)
        return background

    def row_timing(self, exposure_s: float) -> RowTiming | None:
        """The row timing of a frame exposed ``exposure_s`` seconds, or None for a global shutter.

        From ``camera.rolling_shutter`` (line interval and readout direction; absent: the camera
        exposes all rows together) and the frame's rows (``Y``). Row ``r`` opens
        ``RowTiming.open_offsets_s()[r]`` after the frame's timestamp (its first row opening).

        Raises
        ------
        StoreError
            ``exposure_s`` is not a positive number of seconds.
        """
        readout = self._attrs.camera.rolling_shutter
        if readout is None:
            return None
        exposure = float(exposure_s)
        if not (np.isfinite(exposure) and exposure > 0):
            raise StoreError(
                self._name,
                "array exposure_s",
                f"gives an exposure of {exposure_s!r} s; a rolling-shutter frame needs a positive exposure "
                "(rewrite exposure_s with the camera's exposure)",
            )
        return readout.row_timing(self._frame_shape[0], exposure)

    def psf(self) -> np.ndarray | None:
        """The stored point spread function ``psf``, float32 ``(C, Hp, Wp)``, or None.

        Written by lensless (``rolling_shutter``) acquisitions: one PSF per colour channel (or
        one shared, C = 1), in the frames' orientation. Its declared shape is checked before it
        is read: 3 dimensions, C = 1 or the store's channels, each side at most
        :data:`MAX_PSF_SIDE_FACTOR` times the frame's, within the memory limit; its chunk files
        must be regular files of the store.
        """
        if PSF not in self._group:
            return None
        array = self._array(PSF, "the lensless camera's point spread function")
        shape = tuple(int(n) for n in array.shape)
        channels = getattr(self._attrs.illumination, "n_channels", None)
        allowed_c = (1,) if channels is None else (1, int(channels))
        if len(shape) != 3 or shape[0] not in allowed_c or min(shape) < 1:
            raise StoreError(
                self._name,
                "array psf",
                f"has shape {shape}; write it as (C, Hp, Wp) with C in {allowed_c} (one PSF per colour "
                "channel, or one shared)",
            )
        limit_y, limit_x = (MAX_PSF_SIDE_FACTOR * n for n in self._frame_shape)
        if shape[1] > limit_y or shape[2] > limit_x:
            raise StoreError(
                self._name,
                "array psf",
                f"has {shape[1]} x {shape[2]} pixels, more than {MAX_PSF_SIDE_FACTOR} x the {self._frame_shape[0]}"
                f" x {self._frame_shape[1]} frame (crop the PSF to at most {limit_y} x {limit_x}; the store may be damaged)",
            )
        n_bytes = 4 * shape[0] * shape[1] * shape[2]
        if n_bytes > memory_limit_bytes():
            raise StoreError(self._name, "array psf", f"declares {_gib(n_bytes)}, more than the memory limit (damaged)")
        if str(array.dtype) not in ("float32", "float64"):
            raise StoreError(self._name, "array psf", f"has dtype {array.dtype} (write it as float32)")
        folder = self._path / PSF
        chunk_bytes = int(np.prod(array.chunks)) * np.dtype(array.dtype).itemsize
        for path in folder.rglob("*"):
            rel = path.relative_to(self._path).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()) or not _inside(path, self._root_real):
                raise StoreError(self._name, "array psf", f"file {rel} is not a regular file of the store (not read)")
            if path.is_file() and path.name != "zarr.json" and path.stat().st_size > chunk_bytes + chunk_bytes // 8 + 4096:
                raise StoreError(
                    self._name, "array psf", f"chunk file {rel} has {path.stat().st_size} bytes, more than a chunk of "
                    f"{chunk_bytes} bytes (damaged; not read)"
                )
        try:
            psf = np.asarray(array[...], dtype=np.float32)
        except Exception as err:  # noqa: BLE001 - a chunk that does not decode: one line
            raise StoreError(self._name, "array psf", f"cannot be read ({type(err).__name__}; a chunk is damaged)") from None
        if not np.all(np.isfinite(psf)) or np.any(psf < 0) or np.any(psf.sum(axis=(1, 2)) <= 0):
            raise StoreError(
                self._name,
                "array psf",
                "must be finite, non-negative, with a positive sum per channel (an intensity PSF; rewrite it)",
            )
        return psf

    def timing_summary(self, refresh: bool = True) -> dict[str, Any]:
        """Timing statistics of the acquired frames, seconds on the ``timestamps_s`` clock.

        Returns a flat dict:

        * ``frames_acquired`` (frames with a finite timestamp and a sound chunk file),
          ``frames_per_window`` (S·Z), ``complete_windows`` (count), ``partial_windows`` (list
          of window indices), ``damaged_windows`` (``{w: problem}``, :meth:`damaged_windows`),
          ``windows_with_frames`` (1 + the last window holding a frame: W trimmed);
        * ``duration_s``: last minus first exposure start;
        * for ``frame_interval`` (differences of the sorted exposure starts of all frames),
          ``window_period`` (differences of the first exposure start of successive complete
          windows) and ``exposure`` (exposure durations): ``<name>_n`` (number of values) and
          ``<name>_mean_s``, ``<name>_min_s``, ``<name>_max_s``, ``<name>_std_s``;
        * ``timing_problems``: :meth:`timing_problems`.

        A statistic without values (e.g. one frame only) is None.
        """
        counts = self._acquired_frames(refresh)
        ts = self.timestamps_s()
        exp = self.exposures_s()[: ts.shape[0]]
        finite = np.isfinite(ts)
        per_window = self.frames_per_window
        complete = window_is_complete(counts, per_window)
        partial = window_is_partial(counts, per_window)
        starts = np.sort(ts[finite])
        window_starts = ts[complete].reshape(int(complete.sum()), per_window).min(axis=1)
        with_frames = np.flatnonzero(counts > 0)
        return {
            "frames_acquired": int(counts.sum()),
            "frames_per_window": int(per_window),
            "complete_windows": int(complete.sum()),
            "partial_windows": [int(w) for w in np.flatnonzero(partial)],
            "damaged_windows": dict(sorted(self._damaged.items())),
            "windows_with_frames": int(with_frames[-1]) + 1 if with_frames.size else 0,
            "duration_s": float(starts[-1] - starts[0]) if starts.size else None,
            **_stats("frame_interval", np.diff(starts)),
            **_stats("window_period", np.diff(window_starts)),
            **_stats("exposure", exp[finite]),
            "timing_problems": _timing_problems(ts, exp, complete),
        }

    def timing_problems(self, refresh: bool = True) -> list[str]:
        """What is implausible in the stored times, one line each (empty: nothing).

        Flags negative or non-finite-but-acquired exposures, negative timestamps, timestamps
        beyond :data:`MAX_PLAUSIBLE_TIME_S`, and complete windows that start before the window
        before them. Front ends show them as warnings (``nstm-acquire info``).
        """
        counts = self._acquired_frames(refresh)
        ts = self.timestamps_s()
        exp = self.exposures_s()[: ts.shape[0]]
        return _timing_problems(ts, exp, window_is_complete(counts, self.frames_per_window))

    def run_end(self) -> tuple[str, str]:
        """How the acquisition that wrote this store ended: ``(status, one-line detail)``.

        ``status`` is the stored ``acquisition.status`` (:data:`~nstm_acquire.store.layout.RUN_STATUSES`),
        except that a store still marked ``running`` whose writing process is gone from this
        host reads as ``"killed"``; ``"unknown"`` when the store does not say (another program
        wrote it). ``detail`` is the last recorded error (the camera's own text for
        ``camera_error``), or a sentence for ``killed``/``running``/``unknown``.
        """
        acq = self._attrs.acquisition or {}
        status = acq.get("status")
        errors = acq.get("errors")
        last_error = " ".join(str(errors[-1]).split()) if isinstance(errors, list) and errors else ""
        if not isinstance(status, str):
            return "unknown", "the store does not record how its acquisition ended (written by another program?)"
        if status != "running":
            return status, last_error
        state = writer_state(acq)
        pid = acq.get("writer_pid")
        if state == "gone":
            return "killed", (
                f"the acquiring process (pid {pid}) is gone without recording an end (killed or crashed); "
                "the complete windows are usable"
            )
        if state == "alive":
            return "running", f"the acquisition is still running (pid {pid})"
        return "running", (
            "marked running; its process cannot be checked from this host (if it is not running, "
            "it was killed: the complete windows are usable)"
        )

    def __repr__(self) -> str:
        return (
            f"StoreReader({self._name!r}, modality={self.modality!r}, W={self._n_windows}, "
            f"S={self._n_shots}, Z={self._n_planes}, frame_shape={self._frame_shape})"
        )
