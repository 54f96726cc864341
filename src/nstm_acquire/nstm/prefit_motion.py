"""Pre-fit the motion network to given displacement fields (a registration of the shots).

A cold fit discovers the motion from zero through its coarse-to-fine ramp, which does not
reach motions of tens of pixels within a window (docs/model.md, "Large motion"). Given
displacements measured another way (:mod:`nstm_acquire.recon.registration`), this fits the
motion network to them before the fit starts; the scene network is left as it is.

The cold fit switches the hash levels on gradually (``alpha`` from ``start_alpha`` to 1), and
the motion network then sees only its coarse levels. The pre-fit therefore minimises the error
at several granularities at once (the levels weighted as the fit weights them), so the motion
is close to the target from the first steps of the ramp on, not only at its end. At ``alpha``
0 every level is off and the network gives one displacement for all times and places: it is
fitted to the target's mean (zero for a registration about the window's mean position).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nstm_acquire.nstm.encoding import encode
from nstm_acquire.nstm.model import NSTMModel, Params, mlp_apply
from nstm_acquire.nstm.prefit import adam_scan

__all__ = ["prefit_motion"]

# granularities at which the pre-fitted motion must match the target, and their weights: the
# fit's ramp spends equal steps at each alpha, the end (alpha 1) is where it settles
_ALPHAS = (0.0, 0.125, 0.25, 0.5, 1.0)
_ALPHA_WEIGHTS = (0.25, 1.0, 1.0, 1.0, 2.0)


def _motion_samples(model: NSTMModel, motion_params: Params, tn: jax.Array, weights: jax.Array) -> jax.Array:
    """The motion network at its own sample points (every ``stride_px`` pixels, before the
    model's interpolation to the full grid): ``(K, N, D)`` output pixels."""
    coords = jnp.asarray(model.motion_coords)
    n, k = coords.shape[0], tn.shape[0]
    txyz = jnp.concatenate(
        [jnp.broadcast_to(tn[:, None, None], (k, n, 1)), jnp.broadcast_to(coords[None], (k, n, model.ndim))], axis=-1
    ).reshape(k * n, model.ndim + 1)
    feats = encode(motion_params["tables"], txyz, model.motion_encoding, weights)
    d = mlp_apply(motion_params["mlp"], feats, model.config.motion.activation) * model.motion_scale
    return d.reshape(k, n, model.motion_dims)


def _target_samples(model: NSTMModel, target: np.ndarray) -> np.ndarray:
    """``target`` ``(K, D, *scene_shape)`` at the motion network's sample points -> ``(K, N, D)``."""
    idx = np.round(model.motion_coords).astype(int)  # output-pixel coordinates of the samples
    flat = np.ravel_multi_index(tuple(idx[:, a] for a in range(idx.shape[1])), target.shape[2:])
    picked = target.reshape(*target.shape[:2], -1)[:, :, flat]  # (K, D, N)
    return np.moveaxis(picked, 1, -1)


@functools.lru_cache(maxsize=16)
def _full_motion(model: NSTMModel):
    """The motion network on the whole grid at full granularity, compiled once per model (op by
    op, its few dozen small operations each compile on their own: seconds per new model)."""
    _, w_m = model.level_weights(1.0)
    return jax.jit(lambda params, tn: model.motion(params, tn, w_m))


@functools.lru_cache(maxsize=16)
def _prefit_runner(model: NSTMModel, steps: int, lr: float, alphas: tuple[float, ...], weights: tuple[float, ...]):
    """A jitted ``steps``-step Adam fit of the motion network, scored at every granularity in
    ``alphas`` each step (weighted)."""
    opt = optax.adam(optax.exponential_decay(lr, steps, 0.1))
    alpha_a = jnp.asarray(alphas, jnp.float32)
    w_a = jnp.asarray(weights, jnp.float32) / float(sum(weights))

    def loss_fn(motion_params, tn, target, scale):
        def at(alpha):
            _, w_m = model.level_weights(alpha)
            d = _motion_samples(model, motion_params, tn, w_m)
            return jnp.mean(((d - target) / scale) ** 2)

        return jnp.sum(jax.vmap(at)(alpha_a) * w_a)

    def run(motion_params, tn, target, scale):
        return adam_scan(lambda p, _: loss_fn(p, tn, target, scale), motion_params, opt, steps)

    return jax.jit(run)


def prefit_motion(
    model: NSTMModel,
    params: Params,
    times_normalised: np.ndarray,
    displacement_px: np.ndarray,
    steps: int = 300,
    lr: float = 1e-2,
    start_alpha: float = 0.0,
) -> tuple[Params, dict[str, float]]:
    """``params`` with the motion network fitted to ``displacement_px`` at the given times.

    Parameters
    ----------
    model
        The model whose motion network is fitted (its structure and coarse-to-fine weights).
    params
        Parameters to start from (``model.init``, or a scene-pre-fitted set); the scene network
        is returned unchanged.
    times_normalised
        ``(K,)`` times on the motion network's axis ``[-1, 1]`` (the fit's
        :class:`~nstm_acquire.nstm.model.TimeMap` of the window).
    displacement_px
        ``(K, D, *scene_shape)`` the backward displacement ``d`` (output pixels) at each time:
        ``scene(r, t_k) = template(r + d(r, t_k))``.
    steps, lr
        Adam steps and learning rate (decayed to 0.1x).
    start_alpha
        The granularity the cold fit starts at: the motion is matched from there to 1.

    Returns
    -------
    params, info
        The parameters, and ``{"rms_error_px", "rms_target_px", "seconds"}``: the RMS error of
        the fitted motion at full resolution and the RMS of the target about its mean.
    """
    import time

    t0 = time.perf_counter()
    tn = jnp.asarray(np.asarray(times_normalised, np.float32).reshape(-1))
    target = np.asarray(displacement_px, np.float32)
    expected = (tn.shape[0], model.motion_dims, *model.scene_shape)
    if target.shape != expected:
        raise ValueError(
            f"displacement_px has shape {target.shape}; give {expected} (times, components, grid)"
        )
    if not np.all(np.isfinite(target)):
        raise ValueError("displacement_px has NaN or infinite values")
    if not 0.0 <= start_alpha <= 1.0:
        raise ValueError(f"start_alpha={start_alpha} must be within [0, 1]")
    # the granularities from the fit's start on (alpha 1 always)
    kept = [(a, w) for a, w in zip(_ALPHAS, _ALPHA_WEIGHTS, strict=True) if a >= start_alpha or a == 1.0]
    alphas = tuple(max(a, start_alpha) for a, _ in kept)
    weights = tuple(float(w) for _, w in kept)
    scale = float(max(np.sqrt(np.mean(target**2)), 1.0))  # errors in units of the motion's size
    run = _prefit_runner(model, int(steps), float(lr), alphas, weights)
    motion, _ = run(params["motion"], tn, jnp.asarray(_target_samples(model, target)), jnp.float32(scale))
    out = {**params, "motion": motion}
    fitted = np.asarray(_full_motion(model)(out, tn))
    info = {
        "rms_error_px": float(np.sqrt(np.mean((fitted - target) ** 2))),
        "rms_target_px": float(np.sqrt(np.mean((target - target.mean(0)) ** 2))),
        "seconds": time.perf_counter() - t0,
    }
    return out, info
