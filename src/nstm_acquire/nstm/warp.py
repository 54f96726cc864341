"""Linear resampling of images and fields on regular grids (JAX, differentiable).

* :func:`resample_linear` samples an image at arbitrary (warped) pixel coordinates,
  bilinear in 2D, trilinear in 3D, clamping coordinates to the grid (edge values extend
  outwards; nothing wraps around).
* :func:`upsample_linear` interpolates a field known on a coarse regular grid onto a finer
  regular grid, separably (one small matrix per axis, no scatter in the backward pass).
"""

from __future__ import annotations

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
    spatial = image.shape[1:]
    if len(spatial) != ndim:
        raise ValueError(f"image has {len(spatial)} spatial axes but coords has {ndim}")
    out_shape = coords.shape[1:]
    c = coords.reshape(ndim, -1)
    lower, frac = [], []
    for a in range(ndim):
        ca = jnp.clip(c[a], 0.0, spatial[a] - 1.0)
        la = jnp.clip(jnp.floor(ca), 0, max(spatial[a] - 2, 0)).astype(jnp.int32)
        lower.append(la)
        frac.append(ca - la)
    flat = image.reshape(image.shape[0], -1)
    strides = np.cumprod((1,) + tuple(spatial[::-1]))[:-1][::-1]
    result = 0.0
    for corner in range(2**ndim):
        idx = 0
        weight = 1.0
        for a in range(ndim):
            bit = (corner >> (ndim - 1 - a)) & 1
            step = 1 if spatial[a] > 1 else 0
            idx = idx + (lower[a] + bit * step) * int(strides[a])
            weight = weight * (frac[a] if bit else 1.0 - frac[a])
        result = result + flat[:, idx] * weight
    return result.reshape(image.shape[0], *out_shape)


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
        out = jnp.moveaxis(jnp.tensordot(m, jnp.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out
