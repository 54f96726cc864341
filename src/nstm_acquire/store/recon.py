"""Reconstruction output: the group ``recon/<name>`` (FORMAT.md), in the acquisition store or
in a separate output store.

Arrays (axis order in brackets; T = render times of all windows, ordered by window, and by
time within a window; W = windows; C channels; D = 2 (dy, dx) or 3 (dz, dy, dx)):

================  ======================  ====================================================
``scene``         (T, C, Z, Y', X')       float32 scene at each render time (DPC: μ, φ in rad)
``times_s``       (T,)                    float64 time each slice shows, s (acquisition clock)
``window``        (T,)                    int32 window of each slice (-1 = not written)
``motion``        (T, D, Z, Y', X')       float32 displacement in output pixels:
                                          scene(x, t) = template(x + motion(x, t))
``conventional``  (W, C, Z, Y', X')       float32 static reconstruction per window (NaN = none)
================  ======================  ====================================================

Group attributes: ``method``, ``pixel_size_um`` (output grid), ``config`` (all
hyper-parameters), ``windows`` (per window index, as a string key: whatever the reconstructor
reports, e.g. ``steps``, ``final_loss``, ``wall_time_s``, ``warm_start``, ``illumination``,
``timing``; plus the bookkeeping fields below).

Optional fields added by this implementation (for ``docs/format.md``):

* ``windows[w]`` also holds ``status`` (``"preview"``: only ``conventional`` is written;
  ``"final"``: scene, motion and times too; ``"failed"``: the fit diverged or exploded, its
  scene is not written and ``failure`` says why in one line), ``t_start`` and ``n_times``
  (the slices ``scene[t_start : t_start + n_times]`` belong to window w) and
  ``has_conventional``;
* attributes ``z_step_um`` (output grid, or null for 2D), ``channels`` (channel names, or
  null), ``motion_units`` = ``"output pixels"``;
* attribute ``ome``: OME-Zarr 0.5 ``multiscales`` naming ``scene``, ``conventional`` and
  ``motion`` as 5D images (t in seconds, z/y/x in micrometre) and ``omero`` naming the channels,
  refreshed with every window (built by :mod:`nstm_acquire.store.ome`); the ``recon`` group's
  attribute ``nstm_acquire.images`` lists the reconstruction groups;
* ``dimension_names`` on every array; non-finite numbers in ``windows``/``config`` are
  stored as null (JSON has no NaN).

Safety next to a running acquisition: this module writes only below ``recon/`` (its own
arrays and its own ``zarr.json`` files) and never rewrites the root group's attributes, so
the acquisition writer and a reconstruction writer can work on one store at the same time.
Within the recon group, a reader that sees a window in ``windows_done()`` sees its slices:
arrays are written before the attributes that announce them.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from nstm_acquire.store.layout import (
    RECON_CONVENTIONAL,
    RECON_GROUP,
    RECON_MOTION,
    RECON_SCENE,
    RECON_TIMES,
    RECON_WINDOW,
    StoreError,
    to_json,
)
from nstm_acquire.store.ome import display_ranges, merge_ranges, recon_image_attributes
from nstm_acquire.store.reader import open_zarr_group

__all__ = ["ReconWriter", "ReconReader"]

_IMAGE_DIMS = ("t", "c", "z", "y", "x")
_MOTION_DIMS = ("t", "d", "z", "y", "x")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"name={name!r} must be a non-empty group name without '/' (e.g. 'nstm')")
    return name


def _root_group(store: str | os.PathLike[str] | zarr.Group, create: bool) -> tuple[zarr.Group, str]:
    if isinstance(store, zarr.Group):
        return store, str(store.store_path)
    path = Path(store)
    if not path.exists() and create:
        return zarr.create_group(store=str(path), zarr_format=3), str(path)
    return open_zarr_group(path, mode="r+" if create else "r"), str(path)


def _locked(method):
    """Run a ReconWriter method under its lock (preview and final may come from two threads)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class ReconWriter:
    """Writes the reconstruction group ``recon/<name>`` window by window.

    Parameters
    ----------
    store_path_or_group
        The acquisition store (or an output store; created if the path does not exist), or an
        open writable zarr group to put ``recon/<name>`` in.
    name
        Group name under ``recon/``.
    scene_shape
        Required: ``(C, Z, Y', X')`` of one scene slice: channels, planes, output-grid pixels.
    motion_dims
        Required: D, 2 for (dy, dx) or 3 for (dz, dy, dx).
    pixel_size_um
        Required: output grid pixel size, µm.
    overwrite
        Replace an existing ``recon/<name>``.
    method
        Attribute ``method`` (e.g. ``"nstm"``).
    z_step_um
        Output grid plane spacing, µm (3D), for the OME scale.
    channel_names
        Optional channel names, e.g. ``["absorption", "phase_rad"]``.
    resume
        An existing ``recon/<name>`` is continued instead of refused: its windows stay, new
        ones are added (and a window written again replaces its earlier result). Its scene
        shape, motion dims and channels must match (else :class:`StoreError`).
        ``overwrite`` wins over ``resume``.
    """

    def __init__(
        self,
        store_path_or_group: str | os.PathLike[str] | zarr.Group,
        name: str = "nstm",
        scene_shape: tuple[int, int, int, int] | None = None,
        motion_dims: int | None = None,
        pixel_size_um: float | None = None,
        overwrite: bool = False,
        method: str = "nstm",
        z_step_um: float | None = None,
        channel_names: list[str] | None = None,
        resume: bool = False,
    ) -> None:
        name = _check_name(name)
        for arg, value in (
            ("scene_shape", scene_shape),
            ("motion_dims", motion_dims),
            ("pixel_size_um", pixel_size_um),
        ):
            if value is None:
                raise ValueError(f"ReconWriter needs {arg} (see the class docstring)")
        scene_shape = tuple(int(n) for n in scene_shape)
        if len(scene_shape) != 4 or min(scene_shape) < 1:
            raise ValueError(f"scene_shape={scene_shape} must be (C, Z, Y', X') with sizes >= 1")
        if int(motion_dims) not in (2, 3):
            raise ValueError(f"motion_dims={motion_dims} must be 2 (dy, dx) or 3 (dz, dy, dx)")
        if not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
            raise ValueError(f"pixel_size_um={pixel_size_um} must be a positive size in µm")
        if z_step_um is not None and not (math.isfinite(z_step_um) and z_step_um > 0):
            raise ValueError(f"z_step_um={z_step_um} must be a positive spacing in µm or None")
        if channel_names is not None and len(channel_names) != scene_shape[0]:
            raise ValueError(
                f"channel_names has {len(channel_names)} names; give one per channel "
                f"(C = {scene_shape[0]})"
            )
        root, store_name = _root_group(store_path_or_group, create=True)
        self._name = f"{store_name}/{RECON_GROUP}/{name}"
        self._store_name = store_name
        if RECON_GROUP in root:
            parent = root[RECON_GROUP]
            if not isinstance(parent, zarr.Group):
                raise StoreError(store_name, RECON_GROUP, "is an array, expected a group")
        else:
            parent = root.create_group(RECON_GROUP)
        listed = dict(parent.attrs).get("nstm_acquire", {}).get("images", [])
        parent.attrs.update({"nstm_acquire": {"images": sorted({*listed, name})}})
        existing = None
        if name in parent:
            if overwrite:
                del parent[name]
            elif resume:
                existing = parent[name]
            else:
                raise StoreError(
                    store_name,
                    f"group {RECON_GROUP}/{name}",
                    "already exists (pass overwrite=True to replace it, resume=True to continue it, "
                    "or choose another name)",
                )

        C, Z, Y, X = scene_shape
        D = int(motion_dims)
        self._scene_shape = (C, Z, Y, X)
        self._motion_dims = D
        self._attrs: dict[str, Any] = {
            "method": str(method),
            "pixel_size_um": float(pixel_size_um),
            "z_step_um": None if z_step_um is None else float(z_step_um),
            "channels": None if channel_names is None else [str(c) for c in channel_names],
            "motion_units": "output pixels",
            "config": {},
            "windows": {},
            "ome": recon_image_attributes(
                name, channel_names or [f"channel {c}" for c in range(C)], pixel_size_um, z_step_um
            ),
        }
        self._lock = threading.Lock()
        names = [str(c) for c in channel_names] if channel_names else [f"channel {c}" for c in range(C)]
        self._ome_args = (name, names, pixel_size_um, z_step_um)
        self._ranges: list | None = None  # per-channel display range of the scene written so far
        if existing is not None:
            self._reopen(existing)
            return
        group = parent.create_group(name, attributes=self._attrs)
        plane = (1, 1, 1, Y, X)
        nan = float("nan")
        self._scene = group.create_array(
            RECON_SCENE,
            shape=(0, C, Z, Y, X),
            chunks=plane,
            dtype="<f4",
            fill_value=nan,
            compressors=None,
            dimension_names=_IMAGE_DIMS,
        )
        self._motion = group.create_array(
            RECON_MOTION,
            shape=(0, D, Z, Y, X),
            chunks=plane,
            dtype="<f4",
            fill_value=nan,
            compressors=None,
            dimension_names=_MOTION_DIMS,
        )
        self._times = group.create_array(
            RECON_TIMES,
            shape=(0,),
            chunks=(1024,),
            dtype="<f8",
            fill_value=nan,
            compressors=None,
            dimension_names=("t",),
        )
        self._window = group.create_array(
            RECON_WINDOW,
            shape=(0,),
            chunks=(1024,),
            dtype="<i4",
            fill_value=-1,
            compressors=None,
            dimension_names=("t",),
        )
        self._conventional = group.create_array(
            RECON_CONVENTIONAL,
            shape=(0, C, Z, Y, X),
            chunks=plane,
            dtype="<f4",
            fill_value=nan,
            compressors=None,
            dimension_names=_IMAGE_DIMS,
        )
        self._group = group
        self._segments: dict[int, tuple[int, int]] = {}  # window -> (t_start, n_times)
        self._n_times = 0

    def _reopen(self, group: Any) -> None:
        """Continue the existing group ``group`` (``resume=True``): check that it holds the
        same kind of result, then take over its arrays and its windows' bookkeeping."""
        where = self._name.removeprefix(f"{self._store_name}/")
        if not isinstance(group, zarr.Group):
            raise StoreError(self._store_name, where, "is an array, expected a group")
        attrs = dict(group.attrs)
        arrays = {}
        for key in (RECON_SCENE, RECON_MOTION, RECON_TIMES, RECON_WINDOW, RECON_CONVENTIONAL):
            if key not in group or not isinstance(group[key], zarr.Array):
                raise StoreError(
                    self._store_name, f"{where}/{key}", "is missing, so it cannot be resumed (use overwrite)"
                )
            arrays[key] = group[key]
        C, Z, Y, X = self._scene_shape
        found = tuple(arrays[RECON_SCENE].shape[1:])
        found_d = arrays[RECON_MOTION].shape[1]
        if found != (C, Z, Y, X) or found_d != self._motion_dims or attrs.get("channels") != self._attrs["channels"]:
            raise StoreError(
                self._store_name,
                where,
                f"holds scenes of shape {found} with {found_d}-D motion and channels {attrs.get('channels')}, "
                f"not {(C, Z, Y, X)}, {self._motion_dims}-D, {self._attrs['channels']}: it cannot be resumed "
                "(overwrite it, or choose another name)",
            )
        windows = attrs.get("windows") if isinstance(attrs.get("windows"), dict) else {}
        self._segments = {}
        for key, entry in windows.items():
            if isinstance(entry, dict) and entry.get("status") == "final":
                self._segments[int(key)] = (int(entry["t_start"]), int(entry["n_times"]))
        self._n_times = max((t0 + m for t0, m in self._segments.values()), default=0)
        if self._n_times != arrays[RECON_SCENE].shape[0]:
            # slices beyond the announced windows (a run stopped between the arrays and the
            # attributes that announce them): cut them off
            self._resize_arrays(arrays, self._n_times)
        self._attrs.update({k: attrs[k] for k in ("config", "model") if k in attrs})
        self._attrs["windows"] = {str(k): dict(v) for k, v in windows.items() if isinstance(v, dict)}
        self._group = group
        self._scene, self._motion = arrays[RECON_SCENE], arrays[RECON_MOTION]
        self._times, self._window = arrays[RECON_TIMES], arrays[RECON_WINDOW]
        self._conventional = arrays[RECON_CONVENTIONAL]

    def _resize_arrays(self, arrays: dict[str, Any], n: int) -> None:
        C, Z, Y, X = self._scene_shape
        arrays[RECON_SCENE].resize((n, C, Z, Y, X))
        arrays[RECON_MOTION].resize((n, self._motion_dims, Z, Y, X))
        arrays[RECON_TIMES].resize((n,))
        arrays[RECON_WINDOW].resize((n,))

    # ------------------------------------------------------------------ helpers
    @property
    def group(self) -> zarr.Group:
        """The ``recon/<name>`` group."""
        return self._group

    @property
    def n_times(self) -> int:
        """T, render times written so far."""
        return self._n_times

    def _save_attrs(self, *keys: str) -> None:
        self._group.attrs.update({k: self._attrs[k] for k in keys})

    def _check_volume(
        self, array: np.ndarray, what: str, lead: tuple[int, ...], rest: tuple[int, ...]
    ) -> np.ndarray:
        array = np.asarray(array)
        expected = (*lead, *rest)
        if array.shape != expected:
            raise ValueError(f"{what} has shape {array.shape}, expected {expected}")
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise ValueError(f"{what} has dtype {array.dtype}; give real numbers")
        return array.astype(np.float32, copy=False)

    def _resize_t(self, n: int) -> None:
        C, Z, Y, X = self._scene_shape
        self._scene.resize((n, C, Z, Y, X))
        self._motion.resize((n, self._motion_dims, Z, Y, X))
        self._times.resize((n,))
        self._window.resize((n,))

    def _window_info(self, w: int) -> dict[str, Any]:
        return dict(self._attrs["windows"].get(str(w), {}))

    # ------------------------------------------------------------------ writing
    @_locked
    def write_window(
        self,
        w: int,
        scene: np.ndarray,
        times_s: np.ndarray,
        motion: np.ndarray,
        conventional: np.ndarray | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Store the reconstruction of window ``w``.

        Parameters
        ----------
        w
            Window index (>= 0). Writing a window again replaces it.
        scene
            ``(Tw, C, Z, Y', X')`` scene at the window's render times.
        times_s
            ``(Tw,)`` render times, s, finite and non-decreasing.
        motion
            ``(Tw, D, Z, Y', X')`` displacement in output pixels.
        conventional
            ``(C, Z, Y', X')`` static reconstruction of the window, or None to keep an
            earlier one (see :meth:`write_conventional`).
        info
            Per-window facts (steps, final loss, wall time, warm start, estimated
            illumination, timing...), merged into ``windows[w]``; values are made JSON.

        Slices stay ordered by window: a window after the last one is appended; an earlier or
        re-written window of another length moves the later windows' slices.
        """
        w = int(w)
        if w < 0:
            raise ValueError(f"w={w} must be a window index >= 0")
        C, Z, Y, X = self._scene_shape
        times_s = np.asarray(times_s, dtype=np.float64)
        if times_s.ndim != 1 or times_s.size < 1:
            raise ValueError(f"times_s has shape {times_s.shape}; give (Tw,) with Tw >= 1")
        n = times_s.size
        if not np.all(np.isfinite(times_s)):
            raise ValueError("times_s contains NaN or inf; give finite times in seconds")
        if np.any(np.diff(times_s) < 0):
            raise ValueError(
                "times_s must be non-decreasing within a window (sort scene, motion and "
                "times_s with np.argsort(times_s))"
            )
        scene = self._check_volume(scene, "scene", (n,), (C, Z, Y, X))
        motion = self._check_volume(motion, "motion", (n,), (self._motion_dims, Z, Y, X))

        old = self._segments.get(w)
        in_place = old is not None and old[1] == n
        if in_place:
            start, tail = old[0], []
        else:
            later = sorted(v for v in self._segments if v > w)
            if old is not None:
                start = old[0]
            elif later:
                start = self._segments[later[0]][0]
            else:
                start = self._n_times
            tail = later
        # keep the later windows' slices in memory before anything moves
        saved = []
        for v in tail:
            t0, m = self._segments[v]
            saved.append(
                (v, self._scene[t0 : t0 + m], self._motion[t0 : t0 + m], self._times[t0 : t0 + m])
            )
        if not in_place:
            new_total = start + n + sum(item[1].shape[0] for item in saved)
            if new_total != self._n_times:
                self._resize_t(new_total)
        # this window, then the moved ones
        self._scene[start : start + n] = scene
        self._motion[start : start + n] = motion
        self._times[start : start + n] = times_s
        self._window[start : start + n] = np.full(n, w, dtype=np.int32)
        self._segments[w] = (start, n)
        t = start + n
        for v, v_scene, v_motion, v_times in saved:
            m = v_scene.shape[0]
            self._scene[t : t + m] = v_scene
            self._motion[t : t + m] = v_motion
            self._times[t : t + m] = v_times
            self._window[t : t + m] = np.full(m, v, dtype=np.int32)
            self._segments[v] = (t, m)
            t += m
        self._n_times = max(t0 + m for t0, m in self._segments.values())
        if conventional is not None:
            self._write_conventional_array(w, conventional)
        # announce last
        windows = self._attrs["windows"]
        entry = {**self._window_info(w), **to_json(info or {})}
        entry.pop("failure", None)
        entry.update(status="final", t_start=start, n_times=n)
        if conventional is not None:
            entry["has_conventional"] = True
        windows[str(w)] = entry
        for v, _, _, _ in saved:
            windows[str(v)] = {**windows[str(v)], "t_start": self._segments[v][0]}
        self._ranges = merge_ranges(self._ranges, display_ranges(scene))
        n_t = self._n_times
        self._attrs["ome"] = recon_image_attributes(*self._ome_args, self._times[:n_t], self._window[:n_t], self._ranges)
        self._save_attrs("windows", "ome")

    def _write_conventional_array(self, w: int, conventional: np.ndarray) -> None:
        conventional = self._check_volume(conventional, "conventional", (), self._scene_shape)
        if w >= self._conventional.shape[0]:
            self._conventional.resize((w + 1, *self._scene_shape))
        self._conventional[w] = conventional

    @_locked
    def write_conventional(
        self, w: int, conventional: np.ndarray, info: dict[str, Any] | None = None
    ) -> None:
        """Store the static reconstruction ``(C, Z, Y', X')`` of window ``w`` (a preview).

        The window is marked ``status="preview"`` unless its NSTM result is already written.
        """
        w = int(w)
        if w < 0:
            raise ValueError(f"w={w} must be a window index >= 0")
        self._write_conventional_array(w, conventional)
        entry = {**self._window_info(w), **to_json(info or {})}
        entry.setdefault("status", "preview")
        entry["has_conventional"] = True
        self._attrs["windows"][str(w)] = entry
        self._save_attrs("windows")

    @_locked
    def mark_failed(self, w: int, reason: str, info: dict[str, Any] | None = None) -> None:
        """Record that window ``w``'s NSTM fit failed: ``status="failed"`` and ``failure`` (one
        line: why), with ``info`` merged as in :meth:`write_window`. No scene is written; a
        conventional result already written stays. Readers do not count the window as done.
        """
        w = int(w)
        if w < 0:
            raise ValueError(f"w={w} must be a window index >= 0")
        reason = " ".join(str(reason).split())
        if not reason:
            raise ValueError("reason is empty; say in one line why the fit failed")
        entry = {**self._window_info(w), **to_json(info or {})}
        entry.update(status="failed", failure=reason)
        self._attrs["windows"][str(w)] = entry
        self._save_attrs("windows")

    @_locked
    def write_network(self, w: int, flat: np.ndarray) -> None:
        """Store window ``w``'s fitted network parameters, flattened to one float32 vector.

        Optional array ``network/<w>`` (nstm-acquire extension): with the group's ``config`` it
        lets a later session render the scene at any time and follow points through the motion
        (``nstm-acquire render`` / ``trajectory``). Replaces an earlier vector of that window.
        """
        flat = np.ascontiguousarray(np.asarray(flat, dtype=np.float32).ravel())
        net = self._group.require_group("network")
        key = str(int(w))
        if key in net:
            del net[key]
        arr = net.create_array(key, shape=flat.shape, chunks=flat.shape, dtype="<f4", compressors=None)
        arr[:] = flat

    @_locked
    def write_trust_map(self, w: int, residual_map: np.ndarray) -> None:
        """Store window ``w``'s trust residual map (optional array ``trust_residual/<w>``,
        nstm-acquire extension): float32 ``(Yb, Xb)``, the RMS of the held-out residual over the
        camera model's predicted noise sigma per block of pixels (1 = down to the noise, NaN =
        no held-out pixel; docs/trust.md). Replaces an earlier map of that window."""
        rmap = np.ascontiguousarray(np.asarray(residual_map, dtype=np.float32))
        if rmap.ndim != 2 or rmap.size == 0:
            raise ValueError(f"residual_map has shape {rmap.shape}; give a (Yb, Xb) map")
        group = self._group.require_group("trust_residual")
        key = str(int(w))
        if key in group:
            del group[key]
        arr = group.create_array(key, shape=rmap.shape, chunks=rmap.shape, dtype="<f4", fill_value=float("nan"),
                                 compressors=None, dimension_names=("yb", "xb"))  # fmt: skip
        arr[:] = rmap

    @_locked
    def set_config(self, config: dict[str, Any]) -> None:
        """Store the full reconstruction configuration (every hyper-parameter) as ``config``."""
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        self._attrs["config"] = to_json(config)
        self._save_attrs("config")

    @_locked
    def set_attributes(self, **fields: Any) -> None:
        """Store further group attributes (e.g. ``method``); not ``windows`` or ``ome``."""
        for key in fields:
            if key in ("windows", "ome"):
                raise ValueError(f"attribute {key!r} is managed by ReconWriter; use write_window")
        self._attrs.update(to_json(fields))
        self._save_attrs(*fields)


class ReconReader:
    """Reads ``recon/<name>`` of a store (or output store).

    Every accessor that takes ``w`` returns that window's slices (``scene``, ``motion``,
    ``times_s``: ``(Tw, ...)``; ``conventional``: ``(C, Z, Y', X')``); with ``w=None`` it returns
    all announced slices (``(T, ...)``, ordered by window).
    """

    def __init__(self, path: str | os.PathLike[str] | zarr.Group, name: str = "nstm") -> None:
        self._root, self._store_name = _root_group(path, create=False)
        self._rel = f"{RECON_GROUP}/{_check_name(name)}"
        self.refresh()

    def refresh(self) -> None:
        """Re-read the group's attributes (to follow a running ReconWriter)."""
        try:
            group = self._root[self._rel]
        except KeyError:
            raise StoreError(
                self._store_name,
                f"group {self._rel}",
                "is missing (reconstruct first: nstm-acquire reconstruct STORE)",
            ) from None
        if not isinstance(group, zarr.Group):
            raise StoreError(self._store_name, self._rel, "is an array, expected a group")
        self._group = group  # looked up anew: its attributes are read from disk
        self._attrs = dict(self._group.attrs)
        for key in ("method", "pixel_size_um", "windows"):
            if key not in self._attrs:
                raise StoreError(
                    self._store_name, f"{self._rel} attribute {key}", "is missing (FORMAT.md)"
                )

    @property
    def attrs(self) -> dict[str, Any]:
        """All group attributes (as of the last refresh)."""
        return self._attrs

    @property
    def method(self) -> str:
        """Reconstruction method name."""
        return str(self._attrs["method"])

    @property
    def pixel_size_um(self) -> float:
        """Output grid pixel size, µm."""
        return float(self._attrs["pixel_size_um"])

    @property
    def config(self) -> dict[str, Any]:
        """Full reconstruction configuration."""
        return dict(self._attrs.get("config", {}))

    def network(self, w: int) -> np.ndarray | None:
        """Window ``w``'s flattened network parameters (see ``ReconWriter.write_network``), or None."""
        if "network" not in self._group or str(int(w)) not in self._group["network"]:
            return None
        return np.asarray(self._group["network"][str(int(w))][:])

    def trust_map(self, w: int) -> np.ndarray | None:
        """Window ``w``'s trust residual map ``(Yb, Xb)`` (see ``ReconWriter.write_trust_map``), or None."""
        if "trust_residual" not in self._group or str(int(w)) not in self._group["trust_residual"]:
            return None
        return np.asarray(self._group["trust_residual"][str(int(w))][:])

    def trust(self, w: int) -> dict[str, Any] | None:
        """Window ``w``'s trust report (``windows[w]["trust"]``: ``verdict``, ``reasons``, the
        numbers), or None when the window has none."""
        entry = self.windows_info().get(int(w), {}).get("trust")
        return dict(entry) if isinstance(entry, dict) else None

    def windows_info(self) -> dict[int, dict[str, Any]]:
        """Per-window attributes, keyed by window index."""
        return {int(k): dict(v) for k, v in self._attrs["windows"].items()}

    def windows_done(self, refresh: bool = True) -> list[int]:
        """Windows whose final (NSTM) result is written, ascending."""
        if refresh:
            self.refresh()
        return sorted(w for w, v in self.windows_info().items() if v.get("status") == "final")

    def windows_failed(self, refresh: bool = True) -> dict[int, str]:
        """Windows whose NSTM fit failed, with the one-line reason, ascending."""
        if refresh:
            self.refresh()
        info = self.windows_info()
        return {w: str(info[w].get("failure", "")) for w in sorted(info) if info[w].get("status") == "failed"}

    def windows_preview(self, refresh: bool = True) -> list[int]:
        """Windows with a conventional reconstruction written (preview or final), ascending."""
        if refresh:
            self.refresh()
        return sorted(w for w, v in self.windows_info().items() if v.get("has_conventional"))

    def _slice(self, w: int | None) -> slice:
        info = self.windows_info()
        if w is None:
            ends = [
                v["t_start"] + v["n_times"] for v in info.values() if v.get("status") == "final"
            ]
            return slice(0, max(ends, default=0))
        entry = info.get(int(w))
        if entry is None or entry.get("status") != "final":
            raise StoreError(
                self._store_name,
                f"{self._rel} window {w}",
                f"has no final reconstruction (done: {self.windows_done(refresh=False)})",
            )
        return slice(entry["t_start"], entry["t_start"] + entry["n_times"])

    def scene(self, w: int | None = None) -> np.ndarray:
        """float32 ``(T or Tw, C, Z, Y', X')`` scene slices."""
        return np.asarray(self._group[RECON_SCENE][self._slice(w)])

    def motion(self, w: int | None = None) -> np.ndarray:
        """float32 ``(T or Tw, D, Z, Y', X')`` displacement, output pixels."""
        return np.asarray(self._group[RECON_MOTION][self._slice(w)])

    def times_s(self, w: int | None = None) -> np.ndarray:
        """float64 ``(T or Tw,)`` render times, s."""
        return np.asarray(self._group[RECON_TIMES][self._slice(w)])

    def window(self) -> np.ndarray:
        """int32 ``(T,)`` window index of every slice."""
        return np.asarray(self._group[RECON_WINDOW][self._slice(None)])

    def conventional(self, w: int | None = None) -> np.ndarray:
        """float32 ``(C, Z, Y', X')`` for window ``w``, or ``(W, C, Z, Y', X')`` (NaN = none)."""
        array = self._group[RECON_CONVENTIONAL]
        if w is None:
            return np.asarray(array[...])
        w = int(w)
        if not 0 <= w < array.shape[0]:
            raise StoreError(
                self._store_name,
                f"{self._rel} window {w}",
                f"has no conventional reconstruction (windows 0..{array.shape[0] - 1} stored)",
            )
        return np.asarray(array[w])
