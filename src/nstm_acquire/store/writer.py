"""Streaming writer of an acquisition store (FORMAT.md, version 1).

The acquisition thread calls :meth:`StoreWriter.write_frame` once per camera frame. Each call
writes, in this order:

1. the frame's chunk of ``raw`` (one frame per chunk), as a new file (a frame is never
   overwritten, so the file needs no atomic replacement: nobody reads it before step 3);
2. its exposure in the window's chunk of ``exposure_s``;
3. its timestamp in the window's chunk of ``timestamps_s``.

So a reader that sees a finite timestamp sees the frame and its exposure (FORMAT.md). The
timing arrays are chunked one window per chunk, ``(1, S, Z)`` (uncompressed float64): the
window's first frame creates the chunk atomically (temporary file, then rename) with NaN for
the frames still to come, and every later frame overwrites only its own 8 aligned bytes in
place (``pwrite``). The cost per frame is constant, and a concurrent reader sees each value
either as NaN or as written.

Per-frame cost is kept minimal: no metadata is read or written per frame (W grows by doubling,
so the array metadata is rewritten O(log W) times in a whole acquisition), and with
``compression="none"`` (the default) the frame bytes go straight from the camera buffer to the
chunk file: an uncompressed Zarr v3 chunk with the ``bytes`` codec (little endian) is exactly
the frame's C-order little-endian bytes. With ``"zstd"`` or ``"lz4"`` the frame is written
through zarr's own codec pipeline.

Optional store fields written here (for ``docs/format.md``):

* root attribute ``ome``: OME-Zarr 0.5 ``multiscales`` naming ``raw`` as a 5D image
  (axes t, c, z, y, x; z, y, x in micrometre with scale ``(z_step_um or 1, pixel, pixel)``;
  built by :mod:`nstm_acquire.store.ome`; :meth:`StoreWriter.close` sets t in seconds, its scale
  and translation fitted to the windows' start times; the exact times are in ``timestamps_s``);
* Zarr ``dimension_names`` on every array (see :mod:`nstm_acquire.store.layout`).

Durability: a crashed process leaves a readable store (complete windows up to the last
timestamp; a frame written without its timestamp counts as not acquired). Files are not fsync'ed, so a power cut may lose
the frames still in the operating system's cache.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

from nstm_acquire.store.layout import (
    BACKGROUND,
    BACKGROUND_DIMENSIONS,
    EXPOSURE,
    PSF,
    PSF_DIMENSIONS,
    RAW,
    RAW_DIMENSIONS,
    RAW_DTYPES,
    ROOT_ATTRIBUTE_KEY,
    TIMESTAMPS,
    TIMING_DIMENSIONS,
    StoreAttributes,
    StoreError,
    to_json,
    validate_attributes,
)
from nstm_acquire.store.ome import raw_image_attributes

__all__ = ["StoreWriter"]

Compression = Literal["none", "zstd", "lz4"]

_tmp_counter = itertools.count()


def _atomic_write(path: Path, data: np.ndarray) -> None:
    """Write the bytes of the C-contiguous array ``data`` to ``path`` by rename."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{next(_tmp_counter)}.partial")
    try:
        with open(tmp, "wb") as f:
            f.write(data.data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_new(path: Path, data: np.ndarray) -> None:
    """Write the bytes of ``data`` to a new file ``path`` (not atomic: see write_frame)."""
    with open(path, "wb") as f:
        f.write(data.data)


def _write_in_place(path: Path, offset: int, data: np.ndarray) -> None:
    """Overwrite ``data.nbytes`` bytes of the existing file ``path`` at ``offset``."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data.tobytes(), offset)
    finally:
        os.close(fd)


def _check_counts(name: str, attrs: StoreAttributes, n_shots: int, n_planes: int) -> None:
    """S must be what the illumination describes; Z >= 1, and 1 unless the modality is 3D."""
    expected_shots = attrs.n_shots
    if int(n_shots) != expected_shots:
        raise StoreError(
            name,
            "n_shots",
            f"= {n_shots} does not match the illumination attributes, which describe "
            f"{expected_shots} shots (pass n_shots={expected_shots})",
        )
    if int(n_planes) < 1:
        raise StoreError(name, "n_planes", f"= {n_planes} must be >= 1")
    if attrs.modality != "sim3d" and int(n_planes) != 1:
        raise StoreError(
            name,
            "n_planes",
            f"= {n_planes} but modality {attrs.modality!r} is 2D (pass n_planes=1, or use "
            "modality 'sim3d' for z stacks)",
        )


def _checked_frame_shape(name: str, frame_shape: tuple[int, int]) -> tuple[int, int]:
    """``(Y, X)`` as ints, both >= 1."""
    if len(frame_shape) != 2 or any(int(n) < 1 for n in frame_shape):
        raise StoreError(
            name, "frame_shape", f"= {tuple(frame_shape)} must be (Y, X) with positive sizes"
        )
    return int(frame_shape[0]), int(frame_shape[1])


def _checked_dtype(name: str, dtype: str | np.dtype) -> np.dtype:
    """The little-endian form of an allowed ``raw`` dtype (uint16 or float32)."""
    if str(np.dtype(dtype)) not in RAW_DTYPES:
        raise StoreError(
            name, "dtype", f"= {np.dtype(dtype)} is not allowed (use uint16 or float32)"
        )
    return np.dtype(dtype).newbyteorder("<")


def _clear_for_new_store(path: Path, overwrite: bool) -> None:
    """Make room for a new store at ``path``: refuse, or remove an earlier Zarr store."""
    name = str(path)
    if not path.exists():
        return
    if not overwrite:
        raise StoreError(
            name,
            "path",
            "already exists (choose a new name, or pass overwrite=True to replace it)",
        )
    if path.is_dir() and (path / "zarr.json").is_file():
        shutil.rmtree(path)
    elif path.is_dir() and not any(path.iterdir()):
        path.rmdir()
    else:
        raise StoreError(
            name,
            "path",
            "exists and is not a Zarr store, so overwrite=True will not delete it "
            "(remove it yourself or choose another name)",
        )


def _raw_compressors(compression: Compression) -> Any:
    """zarr ``compressors`` of ``raw``: Zstandard level 1, Blosc-LZ4 with shuffle, or none."""
    if compression == "zstd":
        return [ZstdCodec(level=1)]
    if compression == "lz4":
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    return None


def _create_arrays(
    group: zarr.Group,
    shape: tuple[int, int, int, int, int],
    dtype: np.dtype,
    compression: Compression,
) -> dict[str, zarr.Array]:
    """``raw`` (one frame per chunk) and the timing arrays (one window per chunk).

    ``shape`` is ``(W, S, Z, Y, X)`` with W the initial capacity. Every array is created with
    ``write_empty_chunks=True`` (the writer relies on a chunk file per written chunk).
    """
    W, S, Z, Y, X = shape
    keys: dict[str, Any] = {"name": "default", "separator": "/"}
    arrays = {
        RAW: group.create_array(
            RAW,
            shape=(W, S, Z, Y, X),
            chunks=(1, 1, 1, Y, X),
            dtype=dtype,
            fill_value=0,
            serializer=BytesCodec(endian="little"),
            compressors=_raw_compressors(compression),
            chunk_key_encoding=keys,
            dimension_names=RAW_DIMENSIONS,
            config={"write_empty_chunks": True},
        )
    }
    for array_name in (TIMESTAMPS, EXPOSURE):
        arrays[array_name] = group.create_array(
            array_name,
            shape=(W, S, Z),
            chunks=(1, S, Z),
            dtype="<f8",
            fill_value=float("nan"),
            serializer=BytesCodec(endian="little"),
            compressors=None,
            chunk_key_encoding=keys,
            dimension_names=TIMING_DIMENSIONS,
            config={"write_empty_chunks": True},
        )
    return arrays


class StoreWriter:
    """Writes one acquisition store frame by frame. Create it with :meth:`create`.

    Thread-safe: every public method holds one lock, so a GUI thread may call
    :meth:`update_acquisition` while the acquisition thread writes frames.
    """

    def __init__(
        self,
        path: Path,
        group: zarr.Group,
        arrays: dict[str, zarr.Array],
        attrs: StoreAttributes,
        n_shots: int,
        n_planes: int,
        frame_shape: tuple[int, int],
        dtype: np.dtype,
        capacity: int,
        compression: Compression,
    ) -> None:
        self._path = path
        self._name = str(path)
        self._group = group
        self._attrs = attrs
        self._n_shots = n_shots
        self._n_planes = n_planes
        self._frame_shape = frame_shape
        self._dtype = dtype
        self._compression = compression
        # the arrays as created: they carry the runtime config write_empty_chunks=True
        self._raw = arrays[RAW]
        self._timestamps = arrays[TIMESTAMPS]
        self._exposure = arrays[EXPOSURE]
        self._capacity = capacity
        self._ts_cache = np.full((capacity, n_shots, n_planes), np.nan, dtype="<f8")
        self._exp_cache = np.full((capacity, n_shots, n_planes), np.nan, dtype="<f8")
        self._n_windows_written = 0
        self._frames_written = 0
        self._last_dir: dict[str, Path] = {}  # per array: the chunk directory made last
        self._lock = threading.Lock()
        self._closed = False
        self._direct_raw = compression == "none"
        self._timing_files: set[tuple[str, int]] = set()
        self._check_chunk_keys()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        attrs: StoreAttributes | dict[str, Any],
        n_shots: int,
        n_planes: int,
        frame_shape: tuple[int, int],
        dtype: str | np.dtype = "uint16",
        n_windows_hint: int = 1,
        compression: Compression = "none",
        overwrite: bool = False,
    ) -> StoreWriter:
        """Create the Zarr v3 directory store at ``path`` and return its writer.

        Parameters
        ----------
        path
            Directory of the new store (conventionally ``NAME.zarr``).
        attrs
            The ``nstm_acquire`` root attributes (validated): a :class:`StoreAttributes`, or
            its dict form, whose ``illumination`` may be the physics object
            (:class:`~nstm_acquire.physics.dpc.illumination.DpcIllumination` /
            :class:`~nstm_acquire.physics.sim.illumination.SimIllumination`, serialised once
            here) or its FORMAT.md dict.
        n_shots
            S, shots per plane and window; must equal what ``attrs.illumination`` implies.
        n_planes
            Z, planes per window; 1 for ``dpc`` and ``sim2d``.
        frame_shape
            ``(Y, X)`` camera frame shape in pixels.
        dtype
            ``"uint16"`` or ``"float32"``: dtype of ``raw``.
        n_windows_hint
            Expected number of windows W; the arrays start with this many and double when a
            later window arrives, and are trimmed to the windows written by :meth:`close`.
        compression
            ``"none"`` (fastest), ``"zstd"`` (Zstandard level 1) or ``"lz4"`` (Blosc-LZ4 with
            byte shuffle) for ``raw``.
        overwrite
            Replace an existing store at ``path`` (only if it is a Zarr store).
        """
        path = Path(path)
        name = str(path)
        attrs = validate_attributes(attrs, name)
        _check_counts(name, attrs, n_shots, n_planes)
        frame_shape = _checked_frame_shape(name, frame_shape)
        dtype = _checked_dtype(name, dtype)
        if compression not in ("none", "zstd", "lz4"):
            raise StoreError(
                name, "compression", f"= {compression!r} is not one of 'none', 'zstd', 'lz4'"
            )
        if int(n_windows_hint) < 1:
            raise StoreError(name, "n_windows_hint", f"= {n_windows_hint} must be >= 1")
        capacity = int(n_windows_hint)
        _clear_for_new_store(path, overwrite)
        root_attrs = {
            ROOT_ATTRIBUTE_KEY: attrs.to_store(),
            "ome": raw_image_attributes(path.name or RAW, attrs.optics.pixel_size_um, attrs.optics.z_step_um),
        }
        group = zarr.create_group(store=str(path), zarr_format=3, attributes=root_attrs)
        S, Z = int(n_shots), int(n_planes)
        arrays = _create_arrays(group, (capacity, S, Z, *frame_shape), dtype, compression)
        return cls(path, group, arrays, attrs, S, Z, frame_shape, dtype, capacity, compression)

    def _check_chunk_keys(self) -> None:
        """Make sure the chunk file names this writer builds are zarr's own."""
        for array, coords, key in (
            (self._raw, (3, 1, 0, 0, 0), "c/3/1/0/0/0"),
            (self._timestamps, (3, 0, 0), "c/3/0/0"),
        ):
            if array.metadata.encode_chunk_key(coords) != key:  # pragma: no cover - zarr change
                raise RuntimeError(
                    f"zarr encodes chunk {coords} as {array.metadata.encode_chunk_key(coords)!r}, "
                    f"expected {key!r}; nstm_acquire.store.writer needs updating"
                )

    # ------------------------------------------------------------------ properties
    @property
    def path(self) -> Path:
        """Directory of the store."""
        return self._path

    @property
    def attrs(self) -> StoreAttributes:
        """The validated ``nstm_acquire`` attributes (with acquisition updates)."""
        return self._attrs

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
    def dtype(self) -> np.dtype:
        """dtype of ``raw``."""
        return self._dtype

    @property
    def n_windows(self) -> int:
        """Windows touched so far: 1 + the highest window index with a frame."""
        return self._n_windows_written

    @property
    def frames_written(self) -> int:
        """Number of frames written."""
        return self._frames_written

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # ------------------------------------------------------------------ writing
    def _error(self, field: str, problem: str) -> StoreError:
        return StoreError(self._name, field, problem)

    def _grow(self, w: int) -> None:
        """Grow W so that window ``w`` fits: doubling keeps metadata rewrites rare."""
        new_capacity = max(w + 1, 2 * self._capacity)
        S, Z, (Y, X) = self._n_shots, self._n_planes, self._frame_shape
        # raw first, timestamps last: a reader taking the smallest W never sees a
        # timestamp row without its frames.
        self._raw.resize((new_capacity, S, Z, Y, X))
        self._exposure.resize((new_capacity, S, Z))
        self._timestamps.resize((new_capacity, S, Z))
        pad = np.full((new_capacity - self._capacity, S, Z), np.nan, dtype="<f8")
        self._ts_cache = np.concatenate([self._ts_cache, pad])
        self._exp_cache = np.concatenate([self._exp_cache, pad.copy()])
        self._capacity = new_capacity

    def _chunk_path(self, array_name: str, key: str) -> Path:
        path = self._path / array_name / key
        parent = path.parent
        if self._last_dir.get(array_name) != parent:  # timing chunks reuse it for a window
            parent.mkdir(parents=True, exist_ok=True)
            self._last_dir[array_name] = parent
        return path

    def write_frame(
        self,
        w: int,
        s: int,
        z: int,
        image: np.ndarray,
        timestamp_s: float,
        exposure_s: float,
    ) -> None:
        """Store the frame of window ``w``, shot ``s``, plane ``z``.

        Parameters
        ----------
        w, s, z
            Window (grows without bound), shot ``0..S-1``, plane ``0..Z-1``.
        image
            ``(Y, X)`` frame; its dtype must cast safely to the store's (uint16 -> float32 is
            fine, float64 -> uint16 is not).
        timestamp_s
            Exposure start, s since acquisition start (finite).
        exposure_s
            Exposure duration, s (finite, >= 0).

        Raises
        ------
        StoreError
            Bad index, shape, dtype or time; a frame written twice; a closed writer.
        """
        with self._lock:
            if self._closed:
                raise self._error("write_frame", "called after close() (create a new store)")
            w, s, z = int(w), int(s), int(z)
            if w < 0:
                raise self._error("frame index w", f"= {w} must be >= 0")
            if not 0 <= s < self._n_shots:
                raise self._error(
                    "frame index s",
                    f"= {s} is out of range (0..{self._n_shots - 1}, S = {self._n_shots})",
                )
            if not 0 <= z < self._n_planes:
                raise self._error(
                    "frame index z",
                    f"= {z} is out of range (0..{self._n_planes - 1}, Z = {self._n_planes})",
                )
            image = np.asarray(image)
            if image.shape != self._frame_shape:
                raise self._error(
                    "frame image",
                    f"has shape {image.shape}, expected {self._frame_shape} (Y, X)",
                )
            if not np.can_cast(image.dtype, self._dtype, casting="safe"):
                raise self._error(
                    "frame image",
                    f"has dtype {image.dtype}, which does not cast safely to the store's "
                    f"{self._dtype.name} (convert it first)",
                )
            timestamp_s = float(timestamp_s)
            exposure_s = float(exposure_s)
            if not math.isfinite(timestamp_s):
                raise self._error("timestamp_s", f"= {timestamp_s} must be finite (seconds)")
            if not (math.isfinite(exposure_s) and exposure_s >= 0):
                raise self._error("exposure_s", f"= {exposure_s} must be finite and >= 0 (seconds)")
            if w >= self._capacity:
                self._grow(w)
            elif math.isfinite(self._ts_cache[w, s, z]):
                raise self._error(
                    "frame (w, s, z)",
                    f"= ({w}, {s}, {z}) was already written (a frame is never overwritten; "
                    "check the acquisition's window/shot/plane counter)",
                )

            # 1. the frame (written in place: a frame is never overwritten, and readers only
            #    read frames whose timestamp is finite, which is written after it)
            frame = np.ascontiguousarray(image, dtype=self._dtype)
            if self._direct_raw:
                _write_new(self._chunk_path(RAW, f"c/{w}/{s}/{z}/0/0"), frame)
            else:
                self._raw[w, s, z] = frame
            # 2. its exposure, 3. its timestamp (a finite timestamp means: frame present)
            self._exp_cache[w, s, z] = exposure_s
            self._write_timing(EXPOSURE, self._exp_cache, w, s, z)
            self._ts_cache[w, s, z] = timestamp_s
            self._write_timing(TIMESTAMPS, self._ts_cache, w, s, z)

            self._frames_written += 1
            self._n_windows_written = max(self._n_windows_written, w + 1)

    def _write_timing(self, array_name: str, cache: np.ndarray, w: int, s: int, z: int) -> None:
        """Put one float64 of window ``w``'s timing chunk on disk.

        The window's first frame writes the whole (S, Z) chunk atomically (temporary file and
        rename); later frames overwrite just their 8 aligned bytes in place, so the per-frame
        cost stays constant and a concurrent reader sees either NaN or the value.
        """
        key = (array_name, w)
        path = self._chunk_path(array_name, f"c/{w}/0/0")
        if key not in self._timing_files:
            _atomic_write(path, cache[w])
            self._timing_files.add(key)
            return
        _write_in_place(path, 8 * (s * self._n_planes + z), cache[w, s, z : z + 1])

    def write_background(self, background: np.ndarray) -> None:
        """Store the sample-free frames ``background`` (S, Z, Y, X), in camera counts.

        Written as float32, one frame per chunk; replaces an earlier background.
        """
        with self._lock:
            if self._closed:
                raise self._error("write_background", "called after close()")
            background = np.asarray(background)
            expected = (self._n_shots, self._n_planes, *self._frame_shape)
            if background.shape != expected:
                raise self._error(
                    "background", f"has shape {background.shape}, expected {expected} (S, Z, Y, X)"
                )
            if not np.issubdtype(background.dtype, np.number) or np.iscomplexobj(background):
                raise self._error("background", f"has dtype {background.dtype}; give real numbers")
            if not np.all(np.isfinite(background)):
                raise self._error("background", "contains NaN or inf (give finite counts)")
            S, Z, Y, X = expected
            self._replace_float32_array(BACKGROUND, background, (1, 1, Y, X), BACKGROUND_DIMENSIONS)

    def write_psf(self, psf: np.ndarray) -> None:
        """Store the lensless camera's point spread function ``psf`` ``(C, Hp, Wp)`` (float32).

        C = 1 (shared) or one per colour channel of a ``rolling_shutter`` store; non-negative,
        finite, each channel with a positive sum (any scale: the reconstruction normalises it).
        One chunk per channel; replaces an earlier PSF. Optional field (``docs/format.md``).
        """
        with self._lock:
            if self._closed:
                raise self._error("write_psf", "called after close()")
            psf = np.asarray(psf)
            channels = getattr(self._attrs.illumination, "n_channels", 1)
            if psf.ndim != 3 or psf.shape[0] not in (1, channels) or min(psf.shape) < 1:
                raise self._error(
                    "psf", f"has shape {psf.shape}; give (C, Hp, Wp) with C = 1 or {channels} (one per colour)"
                )
            if not np.issubdtype(psf.dtype, np.number) or np.iscomplexobj(psf):
                raise self._error("psf", f"has dtype {psf.dtype}; give real intensities")
            if not np.all(np.isfinite(psf)) or np.any(psf < 0) or np.any(psf.sum(axis=(1, 2)) <= 0):
                raise self._error("psf", "must be finite and non-negative with a positive sum per channel")
            C, Hp, Wp = psf.shape
            self._replace_float32_array(PSF, psf, (1, Hp, Wp), PSF_DIMENSIONS)

    def _replace_float32_array(
        self, name: str, values: np.ndarray, chunks: tuple[int, ...], dimension_names: tuple[str, ...]
    ) -> None:
        """Write ``values`` as the uncompressed float32 root array ``name`` (replacing an earlier
        one), chunked by ``chunks``; the caller holds the lock and has checked the values."""
        array = self._group.create_array(
            name,
            shape=values.shape,
            chunks=chunks,
            dtype="<f4",
            fill_value=0.0,
            compressors=None,
            dimension_names=dimension_names,
            overwrite=True,
        )
        array[...] = values.astype(np.float32)

    def update_acquisition(self, **fields: Any) -> None:
        """Merge ``fields`` into the ``acquisition`` attribute object and save it.

        Values are converted to JSON (numpy scalars/arrays to numbers/lists, NaN to null).
        Rewrites only the root group's ``zarr.json``; call it rarely (not per frame).
        """
        with self._lock:
            acquisition = {**self._attrs.acquisition, **to_json(fields)}
            self._attrs = self._attrs.model_copy(update={"acquisition": acquisition})
            self._group.attrs.update({ROOT_ATTRIBUTE_KEY: self._attrs.to_store()})

    def close(self) -> None:
        """Trim W to the windows written (1 + highest window index) and stop writing.

        Safe to call twice. A store whose writer is never closed (crash) stays readable: it
        just keeps some trailing windows without frames.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            n = self._n_windows_written
            if n < self._capacity:
                S, Z, (Y, X) = self._n_shots, self._n_planes, self._frame_shape
                # reverse order of _grow: timestamps first, raw last
                self._timestamps.resize((n, S, Z))
                self._exposure.resize((n, S, Z))
                self._raw.resize((n, S, Z, Y, X))
                self._capacity = n
            # the OME t axis in seconds, now that the windows' times are known
            optics = self._attrs.optics
            ome = raw_image_attributes(
                self._path.name or RAW, optics.pixel_size_um, optics.z_step_um, self._ts_cache[:n] if n else None
            )
            self._group.attrs.update({"ome": ome})

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"StoreWriter({self._name!r}, modality={self._attrs.modality!r}, "
            f"frames_written={self._frames_written}, n_windows={self._n_windows_written})"
        )
