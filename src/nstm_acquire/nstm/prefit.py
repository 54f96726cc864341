"""Pre-fit the scene network to an image: where a cold fit can start instead of random networks.

A cold NSTM fit spends many of its steps discovering the scene. When a conventional (static)
reconstruction of the window is at hand (SIM: the Wiener result), the scene network can be fitted
to it directly first -- no forward model, no motion, a plain image loss -- which costs a small
fraction of a fit step per step. :func:`prefit_scene` does that and returns the parameters a cold
fit then starts from (``nstm.fit.fit``'s ``start_params``).

Each step draws ``batch`` output pixels at random (the same every call for a given seed) and
fits the scene network's values there to the target's, at the given coarse-to-fine granularity
``alpha``: levels the schedule weights 0 at ``alpha`` are not fitted (their features are
multiplied by 0). The motion network is returned unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nstm_acquire.nstm.encoding import encode
from nstm_acquire.nstm.model import NSTMModel, Params, mlp_apply

__all__ = ["prefit_scene", "scene_error"]


def _check_target(model: NSTMModel, target: np.ndarray) -> np.ndarray:
    target = np.asarray(target, np.float32)
    want = (model.channels, *model.scene_shape)
    if target.shape != want:
        raise ValueError(
            f"target has shape {target.shape}, the model's scene is {want} (channels, *scene_shape); "
            "give the image on the model's output grid"
        )
    if not np.all(np.isfinite(target)):
        raise ValueError("target contains NaN or infinite values; give a finite image")
    return target


@functools.lru_cache(maxsize=16)
def _compiled(model: NSTMModel, steps: int, batch: int, lr: float) -> Any:
    """A jitted scan of ``steps`` Adam steps on the scene parameters (cached per structure)."""
    opt = optax.adam(optax.exponential_decay(lr, steps, 0.1), b1=0.9, b2=0.99, eps=1e-15)
    n_pix = int(np.prod(model.scene_shape))
    coords_all = jnp.asarray(model.output_coords)
    activation = model.config.scene.activation

    def loss_fn(scene: Params, weights: jax.Array, coords: jax.Array, values: jax.Array) -> jax.Array:
        feats = encode(scene["tables"], coords, model.scene_encoding, weights)
        out = model._output(mlp_apply(scene["mlp"], feats, activation))
        return jnp.mean((out - values) ** 2)

    def run(scene: Params, target_flat: jax.Array, weights: jax.Array, key: jax.Array):
        def batch_loss(scene: Params, k: jax.Array) -> jax.Array:
            idx = jax.random.randint(k, (batch,), 0, n_pix)
            return loss_fn(scene, weights, coords_all[idx], target_flat[idx])

        return adam_scan(batch_loss, scene, opt, steps, jax.random.split(key, steps))

    return jax.jit(run)


def adam_scan(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    opt: optax.GradientTransformation,
    steps: int,
    xs: Any = None,
) -> tuple[Any, jax.Array]:
    """``steps`` optimiser steps on ``loss_fn(params, x)`` in one ``jax.lax.scan`` (``x``: the
    step's slice of ``xs``, None without), from a fresh optimiser state. Returns the parameters
    and each step's loss ``(steps,)``. Traceable: call it inside a jitted function."""

    def step(carry, x):
        p, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, x)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), xs, length=steps)
    return params, losses


def prefit_scene(
    model: NSTMModel,
    params: Params,
    target: np.ndarray,
    alpha: float = 1.0,
    steps: int = 300,
    batch: int = 16384,
    lr: float = 1e-2,
    seed: int = 0,
) -> tuple[Params, np.ndarray]:
    """Fit ``params``' scene network to ``target`` with zero motion.

    Parameters
    ----------
    model
        The NSTM structure (its scene grid, encoding, MLP and output map).
    params
        Starting parameters (usually ``model.init(key)``); only ``params["scene"]`` changes.
    target
        ``(C, *scene_shape)`` image on the model's output grid, in the scene's units (a
        non-negative model cannot match negative values: clip them first).
    alpha
        Coarse-to-fine granularity the scene is fitted at (1: every level; the cold fit should
        then start at the same ``alpha``).
    steps, batch, lr
        Adam steps (learning rate decayed exponentially to 0.1x), output pixels drawn per step,
        initial learning rate.
    seed
        Seed of the pixel draws.

    Returns
    -------
    (params, losses): the parameters with the fitted scene network, and the mean squared error
    on each step's pixels ``(steps,)``.
    """
    target = _check_target(model, target)
    if steps < 1 or batch < 1:
        raise ValueError(f"steps={steps} and batch={batch} must be at least 1")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1] (the coarse-to-fine granularity)")
    flat = jnp.asarray(np.moveaxis(target.reshape(model.channels, -1), 0, -1))  # (N, C)
    weights, _ = model.level_weights(float(alpha))
    run = _compiled(model, int(steps), int(min(batch, flat.shape[0])), float(lr))
    scene, losses = run(params["scene"], flat, weights, jax.random.PRNGKey(seed))
    return {**params, "scene": scene}, np.asarray(losses)


def scene_error(model: NSTMModel, params: Params, target: np.ndarray, alpha: float = 1.0) -> float:
    """Relative RMS error of the scene network (zero motion, granularity ``alpha``) against
    ``target`` ``(C, *scene_shape)``: ``||f_s - target|| / ||target||``."""
    target = _check_target(model, target)
    out = np.asarray(model.template(params, alpha))
    return float(np.linalg.norm(out - target)) / max(float(np.linalg.norm(target)), 1e-30)
