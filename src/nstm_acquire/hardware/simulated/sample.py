"""A phantom moving under a motion field: the simulated sample and its ground truth.

``sample(r, t) = template(r + d(r, t))`` (``docs/conventions.md``), with the template a
phantom from :mod:`.phantoms` and ``d`` a motion from :mod:`.motion`. Positions are µm on the
camera's sample-plane coordinates (pixel ``(i, j)`` centred at ``(i, j) * pixel_size_um``),
times are seconds on the acquisition clock, arrays are ``(z, y, x)``.

The simulated camera calls :meth:`MovingSample.on_grid` a few times per exposure. Measured
costs (development machine, 2 shared CPU cores, best of 20; default phantoms):

* 256 x 256 DPC cell frame: about 1 ms for static/translation/vibration, 2 ms shear,
  5 ms rotation or swirl;
* 512 x 512 fluorescence fine grid (a 256-pixel camera at upsample 2): 2-5 ms for
  uniform motions (evaluated separably), 7-8 ms shear, 8-20 ms rotation, 20-30 ms swirl
  (about 9 ms of it the swirl's displacement field); filaments are the slower end (their
  raster is larger);
* 3D: the 2D cost per plane that holds content, almost nothing for empty planes, plus a
  one-off rasterisation (1-25 ms) the first time a plane is asked for.
"""

from __future__ import annotations

import math

import numpy as np

from nstm_acquire.hardware.simulated.motion import (
    _MotionBase,
    max_displacement_um,
    motion_from_spec,
)
from nstm_acquire.hardware.simulated.phantoms import Phantom

__all__ = ["MovingSample", "fine_grid_coordinates"]


def _check_grid(shape: tuple[int, int], pixel_size_um: float, upsample: int) -> tuple[int, int]:
    try:
        ny, nx = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape={shape!r} must be a pair (ny, nx) of pixel counts") from None
    if (ny, nx) != tuple(shape) or ny < 1 or nx < 1:
        raise ValueError(f"shape={shape!r} must be two positive integers (ny, nx)")
    if not (pixel_size_um > 0 and math.isfinite(pixel_size_um)):
        raise ValueError(f"pixel_size_um={pixel_size_um} must be positive and finite (µm)")
    if int(upsample) != upsample or upsample < 1:
        raise ValueError(f"upsample={upsample} must be an integer >= 1")
    return ny * int(upsample), nx * int(upsample)


def fine_grid_coordinates(
    shape: tuple[int, int], pixel_size_um: float, upsample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of a grid ``upsample`` times finer than ``shape`` camera pixels.

    Fine pixel ``i`` sits at ``i * pixel_size_um / upsample`` µm, so fine pixel ``(0, 0)`` is
    centred on raw pixel ``(0, 0)`` and every ``upsample``-th fine pixel on a raw one.
    Returns ``y`` of shape ``(ny*u, 1)`` and ``x`` of shape ``(1, nx*u)``, µm (broadcastable).
    """
    fy, fx = _check_grid(shape, pixel_size_um, upsample)
    step = pixel_size_um / int(upsample)
    return (np.arange(fy) * step)[:, None], (np.arange(fx) * step)[None, :]


class MovingSample:
    """A phantom template moving with a motion field, with exact ground truth.

    Parameters
    ----------
    phantom
        A :class:`~.phantoms.Phantom` (cells for DPC, beads/filaments for fluorescence).
    motion
        A motion model or anything :func:`~.motion.motion_from_spec` accepts.
    field_centre_um
        ``(cy, cx)`` µm handed to motions without their own centre; default the phantom's
        field centre ``(h / 2, w / 2)``.
    """

    def __init__(
        self,
        phantom: Phantom,
        motion: _MotionBase | str | dict | list,
        field_centre_um: tuple[float, float] | None = None,
    ) -> None:
        if not isinstance(phantom, Phantom):
            raise TypeError(
                f"phantom must be a Phantom (CellPhantom, BeadPhantom, FilamentPhantom), got "
                f"{type(phantom).__name__}"
            )
        self.phantom = phantom
        self.motion = motion_from_spec(motion)
        if field_centre_um is None:
            field_centre_um = phantom.field_centre_um
        try:
            cy, cx = (float(v) for v in field_centre_um)
        except (TypeError, ValueError):
            raise ValueError(
                f"field_centre_um={field_centre_um!r} must be a pair (cy, cx) in µm or None"
            ) from None
        if not (math.isfinite(cy) and math.isfinite(cx)):
            raise ValueError(f"field_centre_um={field_centre_um!r} must be finite (µm)")
        self.field_centre_um = (cy, cx)

    @property
    def contrast(self) -> str:
        """``"phase"`` (values are ``(mu, phi)``) or ``"fluorescence"`` (a density)."""
        return self.phantom.contrast

    # ------------------------------------------------------------------ pointwise

    def displacement(
        self, t_s: float, y_um: np.ndarray, x_um: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward-warp displacement ``(dy, dx)`` in µm at ``(y_um, x_um)`` and time ``t_s``."""
        return self.motion.displacement(float(t_s), y_um, x_um, self.field_centre_um)

    def positions_at(self, t_s: float, template_um: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Where template points ``(N, 2)`` ``(y, x)`` µm are at time ``t_s``, ``(N, 2)`` µm.

        The warp is backward (the sample at ``r`` shows the template at ``r + d(r, t)``), so a
        template point ``p`` is at the ``r`` with ``r + d(r, t) = p``, found by fixed-point
        iteration (exact in one step for uniform motion; the motions here are smooth and
        their displacement gradients well below 1, so it converges).
        """
        p = np.asarray(template_um, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"template_um must be (N, 2) (y, x) in µm, got shape {p.shape}")
        r = p.copy()
        for _ in range(1 if self.motion.is_uniform else int(iterations)):
            dy, dx = self.displacement(t_s, r[:, 0], r[:, 1])
            r = p - np.stack([np.broadcast_to(dy, r[:, 0].shape), np.broadcast_to(dx, r[:, 1].shape)], axis=1)
        return r

    def _warped(self, t_s: float, y_um: np.ndarray, x_um: np.ndarray):
        y_um = np.asarray(y_um, dtype=np.float64)
        x_um = np.asarray(x_um, dtype=np.float64)
        if self.motion.is_uniform:
            # the same shift everywhere: keep the (possibly separable) input shapes
            dy, dx = self.motion.displacement(
                float(t_s), np.zeros(()), np.zeros(()), self.field_centre_um
            )
            return y_um + float(dy), x_um + float(dx)
        dy, dx = self.motion.displacement(float(t_s), y_um, x_um, self.field_centre_um)
        return y_um + dy, x_um + dx

    def values(
        self,
        t_s: float,
        y_um: np.ndarray,
        x_um: np.ndarray,
        z_um: np.ndarray | float | None = None,
    ):
        """The sample at time ``t_s`` (s) at ``(y_um, x_um[, z_um])`` (µm, broadcastable):
        ``template(r + d(r, t))``.

        Returns ``(mu, phi)`` for a phase phantom, else the fluorescence density; float32.
        """
        yw, xw = self._warped(t_s, y_um, x_um)
        return self.phantom.evaluate(yw, xw, z_um)

    # ------------------------------------------------------------------ grids

    def on_grid(
        self,
        t_s: float,
        shape: tuple[int, int],
        pixel_size_um: float,
        upsample: int = 1,
        z_um: np.ndarray | float | None = None,
    ):
        """The sample at time ``t_s`` (s) on the camera pixel grid, optionally finer.

        ``shape = (ny, nx)`` camera pixels of ``pixel_size_um`` µm; with ``upsample = u`` the
        grid is ``u`` times finer, fine pixel ``i`` at ``i * pixel_size_um / u`` (fine pixel
        ``(0, 0)`` centred on raw pixel ``(0, 0)``). Arrays are ``(ny*u, nx*u)``, float32.

        Phase phantoms return ``(mu, phi)``. Fluorescent phantoms return the density; for a
        3D phantom ``z_um`` is a 1D array of plane positions (µm) giving ``(nz, ny*u, nx*u)``
        (a scalar ``z_um`` gives the single plane ``(ny*u, nx*u)``).
        """
        y, x = fine_grid_coordinates(shape, pixel_size_um, upsample)
        yw, xw = self._warped(t_s, y, x)
        full = np.broadcast_shapes(y.shape, x.shape)
        if z_um is None or np.ndim(z_um) == 0:
            out = self.phantom.evaluate(yw, xw, z_um)
            if isinstance(out, tuple):
                return tuple(o if o.shape == full else np.broadcast_to(o, full).copy() for o in out)
            return out if out.shape == full else np.broadcast_to(out, full).copy()
        z = np.asarray(z_um, dtype=np.float64)
        if z.ndim != 1:
            raise ValueError(
                f"z_um must be None, a scalar or a 1D array of planes (µm); got shape {z.shape}"
            )
        if self.phantom.contrast == "phase":
            raise ValueError(
                "z_um planes were given but a phase (DPC) phantom is 2D; pass z_um=None"
            )
        stack = np.empty((z.size,) + full, dtype=np.float32)
        for k, level in enumerate(z):
            stack[k] = self.phantom.evaluate(yw, xw, float(level))
        return stack

    def truth(
        self,
        t_s: float,
        shape: tuple[int, int],
        pixel_size_um: float,
        upsample: int = 1,
        z_um: np.ndarray | float | None = None,
    ):
        """Ground truth for scoring: the same as :meth:`on_grid`."""
        return self.on_grid(t_s, shape, pixel_size_um, upsample=upsample, z_um=z_um)

    def exposure_average(
        self,
        t_start_s: float,
        exposure_s: float,
        n_sub: int,
        shape: tuple[int, int],
        pixel_size_um: float,
        upsample: int = 1,
        z_um: np.ndarray | float | None = None,
    ):
        """Mean of :meth:`on_grid` over an exposure: motion blur.

        The sub-times are the midpoints of ``n_sub`` equal parts of
        ``[t_start_s, t_start_s + exposure_s]`` (s). Returns what :meth:`on_grid` returns.
        For a DPC sample this averages the object, which equals averaging the images only
        in the weak-object (linear) limit; exact blur averages the images of the sub-times.
        """
        if int(n_sub) != n_sub or n_sub < 1:
            raise ValueError(f"n_sub={n_sub} must be an integer >= 1")
        if not (exposure_s >= 0 and math.isfinite(exposure_s)):
            raise ValueError(f"exposure_s={exposure_s} must be finite and >= 0 (seconds)")
        times = t_start_s + (np.arange(int(n_sub)) + 0.5) * exposure_s / int(n_sub)
        total = None
        for t in times:
            frame = self.on_grid(float(t), shape, pixel_size_um, upsample=upsample, z_um=z_um)
            if isinstance(frame, tuple):
                frame = tuple(np.asarray(f, dtype=np.float32) for f in frame)
                total = (
                    [f.copy() for f in frame]
                    if total is None
                    else [a + f for a, f in zip(total, frame, strict=True)]
                )
            else:
                total = np.array(frame, dtype=np.float32) if total is None else total + frame
        if isinstance(total, list):
            return tuple(a / len(times) for a in total)
        return total / len(times)

    def displacement_on_grid(
        self, t_s: float, shape: tuple[int, int], pixel_size_um: float, upsample: int = 1
    ) -> np.ndarray:
        """Displacement field ``(2, ny*u, nx*u)``: ``(dy, dx)`` in µm on the (fine) grid of
        :meth:`on_grid` at time ``t_s`` (s). Divide by the output pixel size for the store's
        ``motion`` array (pixels)."""
        y, x = fine_grid_coordinates(shape, pixel_size_um, upsample)
        full = np.broadcast_shapes(y.shape, x.shape)
        dy, dx = self.motion.displacement(float(t_s), y, x, self.field_centre_um)
        return np.stack([np.broadcast_to(dy, full), np.broadcast_to(dx, full)]).astype(np.float64)

    def max_displacement_um(self, t_max_s: float) -> float:
        """Largest ``|d|`` (µm) over the phantom's field and ``[0, t_max_s]`` (s)."""
        return max_displacement_um(
            self.motion, t_max_s, self.phantom.field_um, self.field_centre_um
        )
