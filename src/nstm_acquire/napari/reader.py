"""napari reader: an nstm-acquire store (``NAME.zarr``, FORMAT.md) as named layers with physical units.

:func:`get_reader` claims a path that is a store of this format (or a folder inside one, e.g.
``NAME.zarr/recon/nstm``) and returns :func:`read_store`, which returns napari ``LayerData``
tuples ``(data, kwargs, layer_type)``, bottom layer first:

* ``raw``: the camera frames as one image layer ``(t, shot, z, y, x)``: the shots are a slider,
  not colour channels; hidden at first;
* per reconstruction ``recon/<name>`` and per channel: ``<name> conventional <channel>``
  (the static reconstruction of each window, hidden at first) and ``<name> <channel>`` (the
  scene at every render time), e.g. ``nstm phase (rad)``, ``nstm absorption``, ``nstm density``;
  a colour video (channels red, green, blue: ``rolling_shutter``) as three layers with the red,
  green and blue colormaps, blended additively and all shown;
* ``<name> motion``: the content's displacement since the first render time as a vectors layer,
  on a grid about 12 arrows across, arrows magnified (the factor is in the layer's metadata).

Every layer has the same five axes ``(t, shot, z, y, x)`` (a singleton shot axis where there is
none, so napari lines the layers up), the scale and translation of the store's OME-Zarr
metadata (t in seconds, z/y/x in µm), and ``axis_labels``/``units``. Arrays are read lazily
(dask) except the subsampled motion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nstm_acquire.gui.images import arrow_field, arrow_gain, content_displacement
from nstm_acquire.store.ome import channel_label

__all__ = ["AXIS_LABELS", "find_store_root", "get_reader", "read_store"]

AXIS_LABELS = ("t", "shot", "z", "y", "x")
UNITS = ("second", "dimensionless", "micrometer", "micrometer", "micrometer")
ARROWS_ACROSS = 12

LayerData = tuple[Any, dict[str, Any], str]


def _attributes(folder: Path) -> dict[str, Any] | None:
    meta = folder / "zarr.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("attributes", {}) if isinstance(doc, dict) else None


def find_store_root(path: str | Path) -> Path | None:
    """The store root (the folder whose ``zarr.json`` carries ``nstm_acquire`` attributes) that
    ``path`` is or lies in (up to three levels down), or None."""
    folder = Path(path).expanduser()
    for candidate in (folder, *list(folder.parents)[:3]):
        attrs = _attributes(candidate)
        if attrs is not None and "nstm_acquire" in attrs:
            return candidate
    return None


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: :func:`read_store` if ``path`` is (in) an nstm-acquire store."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_store if find_store_root(path) is not None else None


def _transform(ome: dict[str, Any], array_path: str, like: str | None = None) -> tuple[list[float], list[float], bool]:
    """(scale, translate, t in seconds) of the OME multiscale whose dataset is ``array_path``.

    Stores written before the reconstruction's ``conventional`` and ``motion`` had their own
    OME entry: ``like`` names the image on the same grid whose space scale they share (t is then
    an index)."""
    for image in ome.get("multiscales", []):
        for dataset in image.get("datasets", []):
            if dataset.get("path") == array_path:
                scale, translate = [1.0] * 5, [0.0] * 5
                for transform in dataset.get("coordinateTransformations", []):
                    if transform.get("type") == "scale":
                        scale = [float(v) for v in transform["scale"]]
                    elif transform.get("type") == "translation":
                        translate = [float(v) for v in transform["translation"]]
                seconds = image.get("axes", [{}])[0].get("unit") == "second"
                return scale, translate, seconds
    if like is not None:
        scale, translate, _ = _transform(ome, like)
        return [1.0, *scale[1:]], [0.0, *translate[1:]], False
    raise ValueError(f"the store's OME metadata names no image {array_path!r} (write the store with nstm-acquire)")


def _five_axes(scale: list[float], translate: list[float], seconds: bool = True) -> dict[str, Any]:
    """Layer keywords for the axes (t, shot, z, y, x) from an OME (t, c, z, y, x) transform;
    t in seconds, or an index (``seconds`` False: a store without times)."""
    return {
        "scale": [scale[0], 1.0, *scale[2:]],
        "translate": [translate[0], 0.0, *translate[2:]],
        "axis_labels": AXIS_LABELS,
        "units": UNITS if seconds else ("dimensionless", *UNITS[1:]),
    }


def _limits(window: dict[str, Any] | None, fallback: np.ndarray) -> tuple[float, float]:
    if window and math.isfinite(window.get("start", math.nan)) and window["end"] > window["start"]:
        return float(window["start"]), float(window["end"])
    finite = np.asarray(fallback, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def _raw_layer(group: Any, root_attrs: dict[str, Any]) -> LayerData:
    import dask.array as da

    raw = group["raw"]
    data = da.from_array(raw, chunks=(1, 1, 1, *raw.shape[3:]))
    first = np.asarray(raw[0, 0, 0]) if raw.shape[0] else np.zeros((1, 1))
    kwargs = {
        "name": "raw",
        "contrast_limits": _limits(None, first),
        "colormap": "gray",
        "visible": False,
        "metadata": {"store_path": "raw", "shots": "slider axis 'shot'"},
        **_five_axes(*_transform(root_attrs["ome"], "raw")),
    }
    return data, kwargs, "image"


def _per_window(window: np.ndarray) -> int | None:
    """n if the render times are n per window for windows 0, 1, ..., W-1 in order, else None."""
    window = np.asarray(window)
    if window.size == 0 or window[0] != 0:
        return None
    n = int(np.sum(window == 0))
    n_windows = window.size // n
    if n_windows * n != window.size or not np.array_equal(window, np.repeat(np.arange(n_windows), n)):
        return None
    return n


def _recon_layers(group: Any, name: str, scene_visible: bool) -> list[LayerData]:
    import dask.array as da

    recon = group[f"recon/{name}"]
    attrs = dict(recon.attrs)
    ome = attrs.get("ome", {})
    # render times n per window (the default: one per shot): the scene is shown as
    # (window, render time in the window), on the windows' time axis, beside raw's (window, shot)
    n_per_window = _per_window(np.asarray(recon["window"][...]))
    scene_axes = _five_axes(*_transform(ome, "scene"))
    if n_per_window is not None:
        w_scale, w_translate, w_seconds = _transform(ome, "conventional", like="scene")
        scene_axes = _five_axes(
            [w_scale[0], *scene_axes["scale"][1:]], [w_translate[0], *scene_axes["translate"][1:]], w_seconds
        )
    channels = attrs.get("channels") or [f"channel {c}" for c in range(recon["scene"].shape[1])]
    omero = ome.get("omero", {}).get("channels", [])
    labels = [channel_label(str(c)) for c in channels]
    # a colour video (rolling_shutter): red, green and blue layers shown together, added up
    rgb = [str(c) for c in channels] == ["red", "green", "blue"]
    layers: list[LayerData] = []
    for array_name, prefix, visible in (("conventional", f"{name} conventional", False), ("scene", name, True)):
        array = recon[array_name]
        if array.shape[0] == 0:
            continue
        data = da.from_array(array, chunks=(1, 1, 1, *array.shape[3:]))
        axes = _five_axes(*_transform(ome, array_name, like="scene"))
        if array_name == "scene":
            axes = scene_axes
        for c, label in enumerate(labels):
            window = omero[c].get("window") if c < len(omero) else None
            # phase first (shown), absorption below it (hidden): the DPC phase is what people look at
            shown = visible and scene_visible and (len(labels) == 1 or label.startswith("phase") or rgb)
            channel = data[:, c : c + 1]
            if array_name == "scene" and n_per_window is not None:
                channel = data[:, c].reshape(-1, n_per_window, *data.shape[2:])
            layers.append(
                (
                    channel,
                    {
                        "name": f"{prefix} {label}",
                        "contrast_limits": _limits(window, np.asarray(array[0, c, 0])),
                        "colormap": str(channels[c]) if rgb else "gray",
                        **({"blending": "additive"} if rgb else {}),
                        "visible": shown,
                        "metadata": {"store_path": f"recon/{name}/{array_name}", "channel": str(channels[c])},
                        **axes,
                    },
                    "image",
                )
            )
    _add_trust(layers, recon, name, scene_axes, n_per_window)
    layers.sort(key=lambda layer: layer[1]["visible"])  # hidden layers below the shown ones
    motion = _motion_layer(recon, name, scene_axes, n_per_window)
    if motion is not None:
        layers.append(motion)
    return layers


def _add_trust(layers: list[LayerData], recon: Any, name: str, axes: dict[str, Any], n_per_window: int | None) -> None:
    """Each window's trust verdict (docs/trust.md) into the scene layers' metadata (``trust``:
    window -> verdict and reasons; ``trust_flagged``: the windows not ok, one line each; layer
    names stay as they are, so a viewer's layers keep their identity as windows arrive), and
    the held-out residual maps as the hidden layer ``<name> trust residual`` (one per window)."""
    windows = dict(recon.attrs).get("windows", {})
    trust = {int(w): v["trust"] for w, v in windows.items() if isinstance(v, dict) and isinstance(v.get("trust"), dict)}
    if not trust:
        return
    flagged = [f"window {w} {r.get('verdict')}: {' '.join(r.get('reasons') or [])}".strip()
               for w, r in sorted(trust.items()) if r.get("verdict") != "ok"]  # fmt: skip
    for _, kwargs, _ in layers:
        if kwargs["metadata"].get("store_path") == f"recon/{name}/scene":
            kwargs["metadata"]["trust"] = {w: {"verdict": r.get("verdict"), "reasons": r.get("reasons", [])}
                                           for w, r in sorted(trust.items())}  # fmt: skip
            kwargs["metadata"]["trust_flagged"] = flagged
    maps = recon["trust_residual"] if "trust_residual" in recon else None
    if maps is None or n_per_window is None:
        return
    keys = sorted(int(k) for k in maps.array_keys())
    first = np.asarray(maps[str(keys[0])][...])
    stack = np.full((max(keys) + 1, 1, 1, *first.shape), np.nan, np.float32)
    for w in keys:
        m = np.asarray(maps[str(w)][...])
        if m.shape == first.shape:
            stack[w, 0, 0] = m
    block = float(trust.get(keys[0], {}).get("residual_map_block_px") or 1)
    scale, translate = list(axes["scale"]), list(axes["translate"])
    for i in (3, 4):  # a block of output pixels per map pixel, centred on its block
        translate[i] += 0.5 * (block - 1) * scale[i]
        scale[i] *= block
    kwargs = {
        "name": f"{name} trust residual",
        "contrast_limits": (0.0, 3.0),
        "colormap": "magma",
        "visible": False,
        "metadata": {
            "store_path": f"recon/{name}/trust_residual",
            "meaning": "RMS held-out residual / predicted camera noise sigma per block (1 = down to the noise)",
        },
        **{**axes, "scale": scale, "translate": translate},
    }
    layers.append((stack, kwargs, "image"))


def _motion_layer(recon: Any, name: str, axes: dict[str, Any], n_per_window: int | None) -> LayerData | None:
    """Vectors ``(N, 2, 5)``: position (t, 0, z, y, x), or (window, render time in the window,
    z, y, x) with ``n_per_window``, and the content displacement since the first render time,
    magnified by one gain for the whole layer."""
    motion_array = recon["motion"]
    n_t, n_d, n_z, n_y, n_x = motion_array.shape
    if n_t == 0:
        return None
    step = max(1, round(max(n_y, n_x) / ARROWS_ACROSS))
    motion = np.asarray(motion_array[...])
    rows = []
    for t in range(n_t):
        for z in range(n_z):
            origins, vectors = arrow_field(content_displacement(motion, t, z), step)
            keep = np.all(np.isfinite(vectors), axis=1)
            n = int(keep.sum())
            t_index = (t // n_per_window, t % n_per_window) if n_per_window else (t, 0)
            position = np.column_stack([np.full(n, t_index[0]), np.full(n, t_index[1]), np.full(n, z), origins[keep]])
            direction = np.column_stack([np.zeros((n, 3)), vectors[keep]])
            rows.append(np.stack([position, direction], axis=1))
    data = np.concatenate(rows) if rows else np.zeros((0, 2, 5))
    gain = arrow_gain(data[:, 1, 3:], step) if len(data) else 0.0
    data[:, 1] *= gain
    kwargs = {
        "name": f"{name} motion",
        "edge_color": "yellow",
        "edge_width": 0.12 * step,
        "opacity": 0.9,
        "vector_style": "arrow",
        "metadata": {
            "store_path": f"recon/{name}/motion",
            "arrow_gain": gain,
            "meaning": "displacement of the sample content since the first render time, output pixels x arrow_gain",
        },
        **axes,
    }
    return data, kwargs, "vectors"


def read_store(path: str | list[str]) -> list[LayerData]:
    """The layers of the store at (or around) ``path``: raw, then every reconstruction."""
    import zarr

    if isinstance(path, list):
        (path,) = path
    root = find_store_root(path)
    if root is None:
        raise ValueError(f"{path} is not an nstm-acquire store (no zarr.json with 'nstm_acquire' attributes)")
    group = zarr.open_group(str(root), mode="r")
    root_attrs = dict(group.attrs)
    layers = [_raw_layer(group, root_attrs)]
    if "recon" in group:
        names = sorted(k for k, v in group["recon"].groups())
        for i, name in enumerate(names):
            layers += _recon_layers(group, name, scene_visible=i == 0)
    return layers
