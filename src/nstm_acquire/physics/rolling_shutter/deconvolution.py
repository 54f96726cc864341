"""Conventional lensless reconstructions: static deconvolution and FISTA with 3D total variation.

* :func:`tikhonov_deconvolution` -- every frame deconvolved as if the scene were static:
  ``min_x 0.5 ||crop(h * x) - y||² + 0.5 reg ||x||²``, ``x >= 0``, by FISTA (accelerated
  projected gradient) with the exact cropped convolution.
* :func:`fista_tv3d` -- the video at the rolling-shutter time points from the same data, as in
  the original rolling-shutter DiffuserCam work (Antipa et al., ICCP 2019):
  ``min_x 0.5 ||A x - y||² + tau (w_t ||D_t x||_1 + ||D_y x||_1 + ||D_x x||_1)``, ``x >= 0``,
  with ``A`` the rolling-shutter forward model
  (:class:`~nstm_acquire.physics.rolling_shutter.forward.RollingShutterForward`) and ``D`` forward
  differences along (t, y, x). FISTA (Beck & Teboulle 2009) whose proximal step, the
  non-negative anisotropic TV denoiser, is solved by a few projected-gradient steps on its dual
  (warm-started from the previous iteration).

Axis order: frames ``(F, C, H, W)``; videos ``(K, C, Hs, Ws)`` (time points frame major).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.physics.rolling_shutter.forward import LenslessConvolution, RollingShutterForward

__all__ = ["anisotropic_tv", "fista_tv3d", "prox_tv_nonnegative", "tikhonov_deconvolution"]


def tikhonov_deconvolution(
    frames: np.ndarray,
    conv: LenslessConvolution,
    reg: float = 1e-3,
    n_iter: int = 200,
) -> np.ndarray:
    """Each frame deconvolved as a static scene: ``(F, C, H, W)`` -> ``(F, C, Hs, Ws)``, non-negative.

    ``reg`` is the Tikhonov weight relative to the (normalised) PSF's ``|H(0)|² = 1``.
    """
    if not reg >= 0:
        raise ValueError(f"reg={reg} must be >= 0")
    y = jnp.asarray(frames, jnp.float32)
    if y.ndim != 4 or y.shape[-2:] != conv.sensor_shape:
        raise ValueError(f"frames have shape {y.shape}; give (F, C, H, W) with (H, W) = {conv.sensor_shape}")
    step = 1.0 / (conv.lipschitz() + reg)
    x = _tikhonov_run(conv, y, jnp.float32(reg), jnp.float32(step), int(n_iter))
    return np.asarray(x)


@functools.partial(jax.jit, static_argnums=(4,))
def _tikhonov_run(conv, y, reg, step, n_iter):
    x0 = jnp.zeros((*y.shape[:2], *conv.scene_shape), jnp.float32)

    def body(_, carry):
        x, z, t = carry
        grad = conv.adjoint(conv(z) - y) + reg * z
        x_new = jnp.maximum(z - step * grad, 0.0)
        t_new = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        return x_new, z, t_new

    x, _, _ = jax.lax.fori_loop(0, n_iter, body, (x0, x0, jnp.float32(1.0)))
    return x


def _diff(x: jax.Array, axis: int) -> jax.Array:
    """Forward difference along ``axis``, 0 at the last element."""
    d = jnp.diff(x, axis=axis)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, 1)
    return jnp.pad(d, pad)


def _diff_adjoint(p: jax.Array, axis: int) -> jax.Array:
    """Adjoint of :func:`_diff`: ``(D^T p)_i = p_{i-1} - p_i`` (p_{-1} = p_{n-1} = 0)."""
    n = p.shape[axis]
    inner = jax.lax.slice_in_dim(p, 0, n - 1, axis=axis)
    pad_lo = [(0, 0)] * p.ndim
    pad_lo[axis] = (1, 0)
    pad_hi = [(0, 0)] * p.ndim
    pad_hi[axis] = (0, 1)
    return jnp.pad(inner, pad_lo) - jnp.pad(inner, pad_hi)


# video axes (K, C, Hs, Ws): time 0, y 2, x 3
_TV_AXES = (0, 2, 3)


def anisotropic_tv(x: jax.Array, weight_t: float = 1.0) -> jax.Array:
    """``w_t ||D_t x||_1 + ||D_y x||_1 + ||D_x x||_1`` of a video ``(K, C, Hs, Ws)``."""
    w = (weight_t, 1.0, 1.0)
    total = jnp.zeros((), x.dtype)
    for wa, a in zip(w, _TV_AXES):
        total = total + wa * jnp.sum(jnp.abs(_diff(x, a)))
    return total


def prox_tv_nonnegative(
    b: jax.Array, lam: jax.Array | float, weight_t: float, n_iter: int, p0: tuple | None = None
) -> tuple[jax.Array, tuple]:
    """``argmin_{x >= 0} 0.5 ||x - b||² + lam TV(x)`` (anisotropic, :func:`anisotropic_tv`).

    Fast gradient projection on the dual (Beck & Teboulle 2009): dual fields ``p_a`` bounded
    by the axis weights, ``x(p) = max(b - lam Σ D_a^T p_a, 0)``. Returns ``(x, p)``; pass ``p``
    back as ``p0`` to warm-start the next call.
    """
    w = (weight_t, 1.0, 1.0)
    step = 1.0 / (12.0 * lam)  # ||D||² <= 4 per axis
    if p0 is None:
        p0 = tuple(jnp.zeros_like(b) for _ in _TV_AXES)

    def primal(p):
        return jnp.maximum(b - lam * sum(_diff_adjoint(pa, a) for pa, a in zip(p, _TV_AXES)), 0.0)

    def body(_, carry):
        p, r, t = carry
        x = primal(r)
        p_new = tuple(jnp.clip(ra + step * _diff(x, a), -wa, wa) for ra, a, wa in zip(r, _TV_AXES, w))
        t_new = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
        r = tuple(pn + ((t - 1) / t_new) * (pn - po) for pn, po in zip(p_new, p))
        return p_new, r, t_new

    p, _, _ = jax.lax.fori_loop(0, n_iter, body, (p0, p0, jnp.float32(1.0)))
    return primal(p), p


def fista_tv3d(
    forward: RollingShutterForward,
    blocks: np.ndarray,
    tau: float = 1e-3,
    n_iter: int = 200,
    weight_t: float = 1.0,
    tv_iter: int = 10,
    record_every: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """Video ``(K, C, Hs, Ws)`` at the forward model's time points from row blocks ``(K, C, B, W)``.

    ``tau``: TV weight (per unit of data misfit, the PSF normalised); ``weight_t``: the time
    axis' TV weight relative to the spatial ones; ``tv_iter``: dual steps of each proximal
    step. ``record_every > 0`` also returns the objective every that many iterations (and at
    iteration 0), else an empty list.
    """
    if not (tau > 0 and weight_t >= 0):
        raise ValueError(f"tau={tau} must be > 0 and weight_t={weight_t} >= 0")
    y = jnp.asarray(blocks, jnp.float32)
    k = y.shape[0]
    x = jnp.zeros((k, y.shape[1], *forward.conv.scene_shape), jnp.float32)
    step = jnp.float32(1.0 / forward.conv.lipschitz())  # the time weights are convex combinations: ||W|| <= 1
    state = (x, x, jnp.float32(1.0), tuple(jnp.zeros_like(x) for _ in _TV_AXES))
    history: list[float] = []
    chunk = record_every if record_every > 0 else n_iter
    args = (jnp.float32(tau), jnp.float32(weight_t))
    if record_every > 0:
        history.append(float(_objective(forward, y, x, *args)))
    done = 0
    while done < n_iter:
        n = min(chunk, n_iter - done)
        state = _fista_chunk(forward, y, state, step, *args, n, int(tv_iter))
        done += n
        if record_every > 0:
            history.append(float(_objective(forward, y, state[0], *args)))
    return np.asarray(state[0]), history


@jax.jit
def _objective(forward, y, x, tau, weight_t):
    r = forward.render(x) - y
    return 0.5 * jnp.sum(r * r) + tau * anisotropic_tv(x, weight_t)


@functools.partial(jax.jit, static_argnums=(6, 7))
def _fista_chunk(forward, y, state, step, tau, weight_t, n, tv_iter):
    _, render_t = jax.vjp(forward.render, state[0])

    def body(_, carry):
        x, z, t, p = carry
        grad = render_t(forward.render(z) - y)[0]
        x_new, p = prox_tv_nonnegative(z - step * grad, step * tau, weight_t, tv_iter, p)
        t_new = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        return x_new, z, t_new, p

    return jax.lax.fori_loop(0, n, body, state)
