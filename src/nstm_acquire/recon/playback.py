"""Use a stored reconstruction after the run: the scene at any time, trajectories of points.

A reconstruction stores each window's fitted networks (``recon/<name>/network/<w>``) with its
configuration and time map, so the continuous space-time model can be evaluated again:

* :meth:`StoredReconstruction.render` -- the scene and motion at any times (each time is
  rendered by the window whose time span holds it, or the nearest window);
* :meth:`StoredReconstruction.trajectories` -- where material points go: a point at ``p`` at a
  reference time is followed by solving ``x + d(x, t) = p + d(p, t_ref)`` at every time
  (FORMAT.md's convention ``scene(x, t) = template(x + d(x, t))``);
* :func:`write_tiff_stack` and :func:`write_trajectories_csv` export them.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.fit import FitResult, build_model, render_scenes
from nstm_acquire.nstm.model import TimeMap
from nstm_acquire.recon.rolling_shutter import track_points
from nstm_acquire.store import ReconReader, StoreError

__all__ = ["StoredReconstruction", "parse_times", "write_tiff_stack", "write_trajectories_csv"]


def parse_times(text: str) -> np.ndarray:
    """``"0.1,0.25,0.4"`` or ``"start:stop:step"`` (seconds, stop included) -> times."""
    text = text.strip()
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0:
                raise ValueError
            return np.arange(start, stop + step / 2, step)
        return np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise ValueError(
            f"--times {text!r}: give seconds as t1,t2,... or start:stop:step (step > 0)"
        ) from None


class StoredReconstruction:
    """A reconstruction group read back with its networks."""

    def __init__(self, store: str | Path, name: str = "nstm") -> None:
        self.store = Path(store)
        self.reader = ReconReader(store, name)
        attrs = self.reader.attrs
        model = attrs.get("model")
        cfg = (attrs.get("config") or {}).get("nstm")
        if model is None or cfg is None:
            raise StoreError(
                str(self.store), f"recon/{name}", "has no stored networks (reconstructed by an older version; "
                "run nstm-acquire reconstruct again)"
            )
        self.config = NSTMConfig.model_validate(cfg)
        self.modality = (attrs.get("config") or {}).get("modality")
        """The reconstructed store's modality (None: not recorded)."""
        self.model = build_model(
            self.config,
            tuple(model["scene_shape"]),
            model["channels"],
            model["motion_dims"],
            model["nonnegative"],
            model.get("n_shots", 0),  # stores written before it was recorded: the configured resolution
        )
        self._template = ravel_pytree(self.model.init(jax.random.PRNGKey(0)))[1]
        self.info = self.reader.windows_info()
        self.windows = [w for w in self.reader.windows_done() if self.reader.network(w) is not None]
        if not self.windows:
            raise StoreError(str(self.store), f"recon/{name}", "has no reconstructed window with stored networks")
        self.pixel_size_um = float(self.reader.pixel_size_um)

    def time_span(self, w: int) -> tuple[float, float]:
        t0, t1 = self.info[w]["time_map"]
        return float(t0), float(t1)

    def window_for(self, t: float) -> int:
        """The window whose time span holds ``t`` (else the nearest)."""
        best, dist = self.windows[0], np.inf
        for w in self.windows:
            t0, t1 = self.time_span(w)
            d = 0.0 if t0 <= t <= t1 else min(abs(t - t0), abs(t - t1))
            if d < dist:
                best, dist = w, d
        return best

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a handful of windows per object
    def result(self, w: int) -> FitResult:
        params = self._template(jnp.asarray(self.reader.network(w)))
        tm = TimeMap(*self.time_span(w))
        return FitResult(params, self.model, tm, 0, 0, float("nan"), None, 0.0, 0.0, "stored", False, [])

    def render(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scene ``(T, C, Z, Y, X)``, motion ``(T, D, Z, Y, X)`` and window ``(T,)`` at ``times_s``."""
        times = np.asarray(times_s, np.float64).reshape(-1)
        which = np.array([self.window_for(float(t)) for t in times])
        scenes = np.zeros((len(times), self.model.channels, *self._zyx()), np.float32)
        motion = np.zeros((len(times), self.model.motion_dims, *self._zyx()), np.float32)
        for w in np.unique(which):
            idx = np.flatnonzero(which == w)
            sc, mo = render_scenes(self.result(int(w)), times[idx])
            if self.model.ndim == 2:
                sc, mo = sc[:, :, None], mo[:, :, None]
            scenes[idx], motion[idx] = sc, mo
        return scenes, motion, which

    def _zyx(self) -> tuple[int, int, int]:
        shape = tuple(int(n) for n in self.model.scene_shape)
        if len(shape) == 2:
            return (1, shape[0], shape[1])
        return (shape[0], shape[1], shape[2])

    def trajectories(
        self,
        points_px: np.ndarray,
        times_s: np.ndarray,
        t_ref_s: float | None = None,
        iterations: int = 20,
        search: bool | None = None,
    ) -> np.ndarray:
        """Positions ``(N, T, 2)`` (y, x output pixels) of points given at ``t_ref_s`` (default: the
        first time), for 2D scenes (or the lateral motion of the first plane of a volume).

        Within a window a point keeps its template coordinate ``a = x + d(x, t)``. Each window
        has its own template, so between windows the point is carried to the middle of the gap
        with the old window's motion and re-anchored there in the new window's template (each
        window's motion extends a quarter of its span beyond its shots; over longer gaps the
        motion in the gap, which no shot saw, is extrapolated).

        ``search`` (default: for ``rolling_shutter`` reconstructions) solves ``x + d(x, t) = a``
        by a search of the whole grid and Newton steps
        (:func:`~nstm_acquire.recon.rolling_shutter.track_points`) instead of the fixed-point
        iteration: a lensless fit's warp need not be smooth or contracting.
        """
        if search is None:
            search = self.modality == "rolling_shutter"
        pts = np.asarray(points_px, np.float64).reshape(-1, 2)
        times = np.asarray(times_s, np.float64).reshape(-1)
        order = np.argsort(times, kind="stable")
        t_prev = float(times[order[0]] if t_ref_s is None else t_ref_s)
        x = pts.copy()
        current = None
        anchor = None
        out = np.zeros((len(pts), len(times), 2))
        for k in order:
            t = float(times[k])
            w = self.window_for(t)
            if w != current:
                if current is not None:  # walk to the middle of the gap with the old window
                    t_mid = 0.5 * (self.time_span(current)[1] + self.time_span(w)[0])
                    old = self._lateral_motion(current, t_mid)
                    for _ in range(iterations):
                        x = anchor - _sample(old, x)
                    t_prev = t_mid
                # (re-)anchor in this window's template where the point is at t_prev
                anchor = x + _sample(self._lateral_motion(w, t_prev), x)
                current = w
            field = self._lateral_motion(w, t)
            if search:  # the pixel mapped nearest the anchor, refined (recon/rolling_shutter.py)
                x = track_points(x, self._lateral_motion(w, t_prev), field[None])[0]
            else:
                for _ in range(iterations):  # fixed point of x = anchor - d(x, t)
                    x = anchor - _sample(field, x)
            out[:, k] = x
            t_prev = t
        return out

    def _lateral_motion(self, w: int, t: float) -> np.ndarray:
        _, mo = render_scenes(self.result(w), np.array([t]))
        mo = mo[0] if self.model.ndim == 2 else mo[0][:, 0]
        return np.asarray(mo[-2:], np.float64)


def _sample(field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``field`` ``(2, Y, X)`` at points ``(N, 2)`` (clamped) -> ``(N, 2)``."""
    ny, nx = field.shape[1:]
    y = np.clip(pts[:, 0], 0, ny - 1)
    x = np.clip(pts[:, 1], 0, nx - 1)
    y0 = np.clip(np.floor(y).astype(int), 0, max(ny - 2, 0))
    x0 = np.clip(np.floor(x).astype(int), 0, max(nx - 2, 0))
    fy, fx = y - y0, x - x0
    y1, x1 = np.minimum(y0 + 1, ny - 1), np.minimum(x0 + 1, nx - 1)
    out = np.empty((len(pts), 2))
    for c in range(2):
        f = field[c]
        out[:, c] = (
            f[y0, x0] * (1 - fy) * (1 - fx) + f[y0, x1] * (1 - fy) * fx + f[y1, x0] * fy * (1 - fx) + f[y1, x1] * fy * fx
        )
    return out


def write_tiff_stack(path: str | Path, scenes: np.ndarray, times_s: np.ndarray, channel: int, pixel_size_um: float) -> Path:
    """One channel of ``scenes`` ``(T, C, Z, Y, X)`` as an ImageJ hyperstack TIFF (T, Z, Y, X), µm scale."""
    import tifffile

    data = np.ascontiguousarray(scenes[:, channel].astype(np.float32))
    interval = float(np.median(np.diff(times_s))) if len(times_s) > 1 else 1.0
    tifffile.imwrite(
        str(path),
        data,
        imagej=True,
        resolution=(1.0 / pixel_size_um, 1.0 / pixel_size_um),
        metadata={"axes": "TZYX", "unit": "um", "finterval": interval},
    )
    return Path(path)


def write_trajectories_csv(
    path: str | Path, positions: np.ndarray, times_s: np.ndarray, pixel_size_um: float
) -> Path:
    """CSV rows: point, t_s, y_px, x_px, y_um, x_um (output-grid pixels, pixel centre at i)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", "t_s", "y_px", "x_px", "y_um", "x_um"])
        for i, track in enumerate(positions):
            for t, (y, x) in zip(times_s, track):
                w.writerow([i, f"{t:.6f}", f"{y:.4f}", f"{x:.4f}", f"{y * pixel_size_um:.4f}", f"{x * pixel_size_um:.4f}"])
    return Path(path)
