"""Linear resampling of images and fields on regular grids (JAX, differentiable).

* :func:`resample_linear` samples an image at arbitrary (warped) pixel coordinates,
  bilinear in 2D, trilinear in 3D, clamping coordinates to the grid (edge values extend
  outwards; nothing wraps around).
* :func:`upsample_linear` interpolates a field known on a coarse regular grid onto a finer
  regular grid, separably (one small matrix per axis, no scatter in the backward pass).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["interpolation_matrix", "resample_linear", "upsample_linear"]


def resample_linear(image: jax.Array, coords: jax.Array) -> jax.Array:
    """Multilinear interpolation of ``image`` at pixel coordinates.

    Parameters
    ----------
    image
        ``(C, *S)`` with ``len(S)`` = 2 or 3 (pixel ``i`` of each axis at coordinate ``i``).
    coords
        ``(ndim, *out)``: the coordinate of every output sample along each image axis, in
        pixels of ``image``. Clamped to ``[0, S_a - 1]``.

    Returns
    -------
    ``(C, *out)``. Differentiable with respect to ``image`` and ``coords``.
    """
    ndim = coords.shape[0]
    spatial = tuple(int(n) for n in image.shape[1:])
    if len(spatial) != ndim:
        raise ValueError(f"image has {len(spatial)} spatial axes but coords has {ndim}")
    out_shape = coords.shape[1:]
    # Pixels as rows of C channels: one row gather per corner serves every channel.
    rows = jnp.moveaxis(image, 0, -1).reshape(-1, image.shape[0])
    result = _resample_rows(spatial, rows, tuple(c.reshape(-1) for c in coords))  # (N, C)
    return jnp.moveaxis(result, -1, 0).reshape(image.shape[0], *out_shape)


def _corner_geometry(
    spatial: tuple[int, ...], coords: tuple[jax.Array, ...]
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
    """Row of each sample's cell corners, fractional offsets and in-grid masks.

    ``coords``: ``ndim`` arrays ``(N,)``. Returns ``2**ndim`` corner rows ``(N,)`` (bit
    ``ndim - 1 - a`` of corner ``c`` selects the upper neighbour along axis ``a``), fractions
    ``(N,)`` per axis, and per axis whether the coordinate lies inside ``[0, S_a - 1]``
    (outside, it is clamped and has no gradient).
    """
    ndim = len(spatial)
    strides = np.cumprod((1,) + spatial[::-1])[:-1][::-1]
    lower, frac, inside = [], [], []
    for a in range(ndim):
        ca = jnp.clip(coords[a], 0.0, spatial[a] - 1.0)
        la = jnp.clip(jnp.floor(ca), 0, max(spatial[a] - 2, 0)).astype(jnp.int32)
        lower.append(la)
        frac.append(ca - la)
        inside.append((coords[a] >= 0.0) & (coords[a] <= spatial[a] - 1.0))
    base = lower[0] * int(strides[0])
    for a in range(1, ndim):
        base = base + lower[a] * int(strides[a])
    rows = []
    for corner in range(2**ndim):
        offset = sum(
            int(strides[a]) * ((corner >> (ndim - 1 - a)) & 1) * (1 if spatial[a] > 1 else 0)
            for a in range(ndim)
        )
        rows.append(base + offset)
    return rows, frac, inside


def _corner_factors(frac: list[jax.Array], corner: int) -> list[jax.Array]:
    """Per-axis weight factors ``f`` (upper neighbour) or ``1 - f`` (lower) of one corner."""
    ndim = len(frac)
    return [frac[a] if (corner >> (ndim - 1 - a)) & 1 else 1.0 - frac[a] for a in range(ndim)]


def _product(factors: Sequence[jax.Array]) -> jax.Array:
    out = factors[0]
    for f in factors[1:]:
        out = out * f
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _resample_rows(
    spatial: tuple[int, ...], rows: jax.Array, coords: tuple[jax.Array, ...]
) -> jax.Array:
    """Multilinear samples ``(N, C)`` of the image ``rows`` ``(prod(S), C)`` at ``coords``.

    Hand-written backward pass (measured on 2 CPU cores, 2 x 288^2 image, 4 x 256^2 samples,
    forward and backward: 11.5 ms, against 25 ms for JAX's derivative of the same forward):
    the coordinate cotangent sums the few channels with explicit adds instead of a reduction
    over a short minor axis, and reuses the gathered corner values.
    """
    return _resample_rows_fwd(spatial, rows, coords)[0]


def _resample_rows_fwd(spatial, rows, coords):
    corner_rows, frac, inside = _corner_geometry(spatial, coords)
    values = [rows.at[r].get(mode="promise_in_bounds") for r in corner_rows]
    out = None
    for corner, v in enumerate(values):
        term = _product(_corner_factors(frac, corner))[:, None] * v
        out = term if out is None else out + term
    return out, (rows.shape[0], corner_rows, frac, inside, values)


def _resample_rows_bwd(spatial, residuals, g):
    n_rows, corner_rows, frac, inside, values = residuals
    ndim = len(frac)
    grad_rows = jnp.zeros((n_rows, g.shape[-1]), g.dtype)
    grad_frac = [0.0] * ndim
    for corner, (r, v) in enumerate(zip(corner_rows, values)):
        factors = _corner_factors(frac, corner)
        grad_rows = grad_rows.at[r].add(_product(factors)[:, None] * g, mode="promise_in_bounds")
        g_dot_v = g[:, 0] * v[:, 0]
        for ch in range(1, g.shape[-1]):
            g_dot_v = g_dot_v + g[:, ch] * v[:, ch]
        for a in range(ndim):
            sign = 1.0 if (corner >> (ndim - 1 - a)) & 1 else -1.0
            grad_frac[a] = grad_frac[a] + sign * g_dot_v * _product(factors[:a] + factors[a + 1 :])
    grad_coords = tuple(jnp.where(inside[a], grad_frac[a], 0.0) for a in range(ndim))
    return grad_rows, grad_coords


_resample_rows.defvjp(_resample_rows_fwd, _resample_rows_bwd)


def interpolation_matrix(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(len(target), len(source))`` matrix of linear interpolation from sorted ``source`` points.

    Targets outside ``[source[0], source[-1]]`` take the edge value.
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    m = np.zeros((len(target), len(source)), np.float32)
    if len(source) == 1:
        m[:, 0] = 1.0
        return m
    t = np.clip(target, source[0], source[-1])
    j = np.clip(np.searchsorted(source, t, side="right") - 1, 0, len(source) - 2)
    f = (t - source[j]) / (source[j + 1] - source[j])
    rows = np.arange(len(target))
    m[rows, j] = 1.0 - f
    m[rows, j + 1] += f
    return m


def upsample_linear(
    field: jax.Array, coarse_axes: Sequence[np.ndarray], fine_axes: Sequence[np.ndarray]
) -> jax.Array:
    """Separable linear interpolation of ``field`` ``(..., *coarse)`` onto ``(..., *fine)``."""
    nd = len(coarse_axes)
    out = field
    for a in range(nd):
        if len(coarse_axes[a]) == len(fine_axes[a]) and np.allclose(coarse_axes[a], fine_axes[a]):
            continue
        m = jnp.asarray(interpolation_matrix(coarse_axes[a], fine_axes[a]))
        axis = out.ndim - nd + a
        # matrix products over the last two axes keep the result in row-major (..., *fine)
        # order; a tensordot over a leading axis leaves it transposed, and XLA:CPU then
        # recomputes that transpose inside every consumer (measured: ~5 ms of a 256 x 256
        # training step)
        if axis == out.ndim - 1:
            out = out @ m.T
        else:
            out = jnp.moveaxis(m @ jnp.moveaxis(out, axis, -2), -2, axis)
    return out
