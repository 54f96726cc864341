"""OME-Zarr (NGFF) 0.5 attributes for the store's images: pure functions of shapes, sizes and times.

Nothing here reads or writes a store: the writers call these functions and put the result under
the group attribute ``"ome"`` (NGFF 0.5 keeps all of its metadata under that key).

Images of one acquisition store (``docs/format.md``, "OME-Zarr"):

=====================  ===================================  ==========================================
group                  ``multiscales`` (in order)           axes
=====================  ===================================  ==========================================
root                   ``raw``                              t (window, s), c (shot), z, y, x (µm)
``recon/<name>``       ``scene``, ``conventional``,         t (render time / window, s), c (channel
                       ``motion``                           or displacement component), z, y, x (µm)
=====================  ===================================  ==========================================

Every image has one resolution level (``datasets`` of length 1) with a ``scale`` transformation
``(time step s, 1, z step µm, pixel µm, pixel µm)`` and, where times are known, a ``translation``
whose t is the first time (s). Time points need not be evenly spaced (windows can have gaps);
the scale and translation are the straight line that best fits the times (:func:`time_axis`), and
the exact times stay in ``timestamps_s`` / ``times_s``. ``omero`` names the channels of the group's first image (the scene's channels:
DPC absorption and phase in rad, SIM density), with display windows from the data written so far.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "NGFF_VERSION",
    "axes",
    "channel_label",
    "display_ranges",
    "image_attributes",
    "merge_ranges",
    "multiscale",
    "omero",
    "raw_image_attributes",
    "recon_image_attributes",
    "time_axis",
]

NGFF_VERSION = "0.5"

# default display colours (RGB hex, as omero wants them) by channel name; others are white
_COLOURS = {"absorption": "FFFFFF", "phase_rad": "FFFFFF", "density": "00FF00"}


def axes(channel_name: str = "c", time_in_seconds: bool = True) -> list[dict[str, str]]:
    """The five NGFF axes ``t, c, z, y, x``: t a time axis (unit ``"second"`` when the scale is a
    time step in seconds, else no unit: an index), the channel axis named ``channel_name``, and
    z, y, x space axes in micrometre."""
    t: dict[str, str] = {"name": "t", "type": "time"}
    if time_in_seconds:
        t["unit"] = "second"
    return [
        t,
        {"name": channel_name, "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]


def time_axis(
    times_s: Sequence[float] | np.ndarray, index: Sequence[int] | np.ndarray | None = None
) -> tuple[float | None, float | None]:
    """``(step s, origin s)`` of the line ``t = origin + step * i`` that fits (least squares) the
    finite ``times_s`` at their indices ``index`` (default 0, 1, ...), rounded to the nanosecond:
    the only time axis an NGFF scale and translation can describe. With one known time the step
    is 1 s (any step describes a single time point) and the origin puts it at its time.
    ``(None, None)`` without a finite time, or when the fitted step is not positive."""
    times = np.asarray(times_s, dtype=np.float64).ravel()
    i = np.arange(times.size, dtype=np.float64) if index is None else np.asarray(index, np.float64).ravel()
    if i.shape != times.shape:
        raise ValueError(f"index has {i.size} entries; give one per time ({times.size})")
    keep = np.isfinite(times)
    i, times = i[keep], times[keep]
    if times.size == 0:
        return None, None
    if np.unique(i).size < 2:
        return 1.0, round(float(times.mean() - i[0]), 9)
    step, origin = (round(float(v), 9) for v in np.polyfit(i, times, 1))  # to the nanosecond
    if not (math.isfinite(step) and step > 0):
        return None, None
    return step, origin


def _positive(value: float | None, field: str, unit: str) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{field}={value} must be a positive {unit} or None")
    return value


def multiscale(
    path: str,
    name: str,
    pixel_size_um: float,
    z_step_um: float | None = None,
    time_step_s: float | None = None,
    time_origin_s: float | None = None,
    channel_name: str = "c",
) -> dict[str, Any]:
    """One NGFF 0.5 ``multiscales`` entry: the 5D array at ``path`` (relative to its group).

    Parameters
    ----------
    path, name
        The array's path in the group, and the image's name.
    pixel_size_um
        y and x scale, µm per pixel.
    z_step_um
        z scale, µm per plane (None: 1 µm, for a single plane).
    time_step_s
        t scale, s per time point; None when fewer than two times are known (t is then an index
        without unit).
    time_origin_s
        Time of the first time point, s: written as the t of a ``translation``.
    channel_name
        Name of the channel axis (``"c"``; the motion's displacement axis is ``"d"``).
    """
    pixel = _positive(pixel_size_um, "pixel_size_um", "size in µm")
    if pixel is None:
        raise ValueError("pixel_size_um=None must be a positive size in µm")
    z = _positive(z_step_um, "z_step_um", "spacing in µm") or 1.0
    dt = _positive(time_step_s, "time_step_s", "time step in s")
    transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [dt or 1.0, 1.0, z, pixel, pixel]}]
    if dt is not None and time_origin_s is not None and math.isfinite(time_origin_s):
        transforms.append({"type": "translation", "translation": [float(time_origin_s), 0.0, 0.0, 0.0, 0.0]})
    return {
        "name": str(name),
        "axes": axes(channel_name, time_in_seconds=dt is not None),
        "datasets": [{"path": str(path), "coordinateTransformations": transforms}],
    }


def channel_label(name: str) -> str:
    """Display label of a stored channel name: a trailing unit suffix becomes a bracket
    (``"phase_rad"`` -> ``"phase (rad)"``); other names are kept."""
    for suffix, unit in (("_rad", "rad"), ("_um", "µm"), ("_s", "s")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return f"{name[: -len(suffix)]} ({unit})"
    return name


def omero(
    channel_names: Sequence[str],
    ranges: Sequence[tuple[float, float] | None] | None = None,
) -> dict[str, Any]:
    """The ``omero`` block: one channel per name, labelled with :func:`channel_label`, a colour
    and a display ``window`` from ``ranges`` (per channel ``(min, max)`` of the data, or None:
    0 to 1 until data are known)."""
    if ranges is not None and len(ranges) != len(channel_names):
        raise ValueError(f"ranges has {len(ranges)} entries; give one per channel ({len(channel_names)})")
    channels = []
    for i, name in enumerate(channel_names):
        bounds = ranges[i] if ranges is not None else None
        low, high = (0.0, 1.0) if bounds is None else (float(bounds[0]), float(bounds[1]))
        if not (math.isfinite(low) and math.isfinite(high)) or high < low:
            low, high = 0.0, 1.0
        if high == low:
            high = low + 1.0
        channels.append(
            {
                "label": channel_label(str(name)),
                "color": _COLOURS.get(str(name), "FFFFFF"),
                "active": True,
                "window": {"min": low, "max": high, "start": low, "end": high},
            }
        )
    return {"channels": channels}


def image_attributes(
    multiscales: Sequence[dict[str, Any]], omero_block: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The value of a group's ``"ome"`` attribute: version 0.5, the images, and ``omero``."""
    if not multiscales:
        raise ValueError("multiscales is empty; give at least one image (see multiscale())")
    attrs: dict[str, Any] = {"version": NGFF_VERSION, "multiscales": list(multiscales)}
    if omero_block is not None:
        attrs["omero"] = omero_block
    return attrs


def display_ranges(images: np.ndarray, channel_axis: int = 1) -> list[tuple[float, float] | None]:
    """Per channel ``(0.5th, 99.5th percentile)`` of the finite values of ``images`` (any shape,
    channels along ``channel_axis``), or None for a channel with no finite value."""
    images = np.moveaxis(np.asarray(images, dtype=np.float32), channel_axis, 0)
    ranges: list[tuple[float, float] | None] = []
    for channel in images:
        finite = channel[np.isfinite(channel)]
        ranges.append(None if finite.size == 0 else tuple(float(v) for v in np.percentile(finite, [0.5, 99.5])))
    return ranges


def merge_ranges(
    old: Sequence[tuple[float, float] | None] | None, new: Sequence[tuple[float, float] | None]
) -> list[tuple[float, float] | None]:
    """The union of two per-channel display ranges (None = nothing known for that channel)."""
    if old is None:
        return list(new)
    merged: list[tuple[float, float] | None] = []
    for a, b in zip(old, new, strict=True):
        if a is None or b is None:
            merged.append(a or b)
        else:
            merged.append((min(a[0], b[0]), max(a[1], b[1])))
    return merged


def _window_means(times_s: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(windows, mean time of each) of the windows >= 0 with a finite time."""
    ws, ts = [], []
    for w in np.unique(window[window >= 0]):
        t = times_s[(window == w) & np.isfinite(times_s)]
        if t.size:
            ws.append(int(w))
            ts.append(float(t.mean()))
    return np.asarray(ws, dtype=np.int64), np.asarray(ts, dtype=np.float64)


def raw_image_attributes(
    name: str,
    pixel_size_um: float,
    z_step_um: float | None = None,
    timestamps_s: np.ndarray | None = None,
) -> dict[str, Any]:
    """The root group's ``ome`` attribute: ``raw`` (W, S, Z, Y, X) as a 5D image whose t is the
    window (scale and translation: :func:`time_axis` of the windows' start times, from
    ``timestamps_s`` (W, S, Z); without times t is an index) and c the shot."""
    step = origin = None
    if timestamps_s is not None:
        times = np.asarray(timestamps_s, dtype=np.float64)
        if times.ndim != 3:
            raise ValueError(f"timestamps_s has shape {times.shape}; give (W, S, Z)")
        flat = times.reshape(times.shape[0], -1)
        known = np.isfinite(flat).any(axis=1)
        starts = np.full(times.shape[0], np.nan)
        starts[known] = np.nanmin(flat[known], axis=1)
        step, origin = time_axis(starts)
    return image_attributes([multiscale("raw", name, pixel_size_um, z_step_um, step, origin)])


def recon_image_attributes(
    name: str,
    channel_names: Sequence[str],
    pixel_size_um: float,
    z_step_um: float | None = None,
    times_s: np.ndarray | None = None,
    window: np.ndarray | None = None,
    ranges: Sequence[tuple[float, float] | None] | None = None,
) -> dict[str, Any]:
    """The ``recon/<name>`` group's ``ome`` attribute: ``scene`` (T, C, Z, Y', X'),
    ``conventional`` (W, C, Z, Y', X') and ``motion`` (T, D, Z, Y', X'), in that order, and
    ``omero`` naming the scene's channels with display ``ranges``.

    ``times_s`` and ``window`` (T,) are the render times (s) and their windows: the scene's and
    motion's t axis is :func:`time_axis` of the render times, the conventional result's that of
    each window's mean render time against the window index.
    """
    step = origin = w_step = w_origin = None
    if times_s is not None and np.size(times_s):
        times = np.asarray(times_s, dtype=np.float64)
        step, origin = time_axis(times)
        if window is not None:
            w_step, w_origin = time_axis(*_window_means(times, np.asarray(window))[::-1])
    images = [
        multiscale("scene", f"{name}/scene", pixel_size_um, z_step_um, step, origin),
        multiscale("conventional", f"{name}/conventional", pixel_size_um, z_step_um, w_step, w_origin),
        multiscale("motion", f"{name}/motion", pixel_size_um, z_step_um, step, origin, channel_name="d"),
    ]
    return image_attributes(images, omero(list(channel_names), ranges))
