"""Where a cold fit starts: networks pre-fitted to what the window's data already say.

A cold fit from random networks spends most of its steps discovering the scene and the motion.
:func:`start_params` builds the parameters a cold fit starts from instead
(:func:`~nstm_acquire.nstm.fit.fit`'s ``start_params``), as the configuration asks:

* the scene network pre-fitted to the window's conventional (static) reconstruction;
* the motion network pre-fitted to a registration of the window's shots (DPC and 2D SIM;
  :func:`~nstm_acquire.recon.registration.motion_from_registration`), after the scene pre-fit.

None (the default configuration asks for neither) means random networks, as published.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.model import NSTMModel, Params
from nstm_acquire.nstm.prefit import prefit_scene
from nstm_acquire.recon.problem import WindowProblem
from nstm_acquire.recon.registration import motion_from_registration

__all__ = ["start_params"]


def start_params(model: NSTMModel, problem: WindowProblem, config: NSTMConfig) -> Params | None:
    """The parameters a cold fit of ``problem`` starts from, or None for random networks."""
    params: Params | None = None
    if config.fit.scene_start == "conventional":
        params = scene_from_conventional(model, problem, config, params)
    if config.fit.motion_start == "registration":
        params = motion_from_registration(model, problem, config, params)
    return params


# steps and pixels per step of the scene pre-fit (docs/model.md, "SIM: starting from the Wiener result")
SCENE_PREFIT_STEPS = 300
SCENE_PREFIT_BATCH = 16384


def conventional_target(model: NSTMModel, problem: WindowProblem) -> np.ndarray:
    """The window's conventional reconstruction as a scene-network target ``(C, *scene_shape)``:
    on the model's grid, negative values clipped for a non-negative scene, and scaled by the
    least-squares factor that makes its rendering through the forward model match the frames."""
    conv = np.asarray(problem.conventional, np.float32)  # (C, Z, Y', X')
    target = conv[:, 0] if len(model.scene_shape) == 2 else conv
    if target.shape != (model.channels, *model.scene_shape):
        raise ValueError(
            f"conventional has shape {conv.shape}, the scene grid is {model.scene_shape} with "
            f"{model.channels} channels; the problem builder and the model disagree"
        )
    if model.nonnegative:
        target = np.maximum(target, 0.0)
    data = problem.data
    k = data.measurements.shape[0]
    pred = np.asarray(
        problem.forward.render(jnp.broadcast_to(jnp.asarray(target), (k, *target.shape)), jnp.asarray(data.shots))
    )
    y = np.asarray(data.measurements, np.float32)
    if data.weights is not None:
        w = data.weights.reshape(data.weights.shape + (1,) * (y.ndim - data.weights.ndim))
        pred, y = pred * w, y * w
    gain = float(np.sum(pred * y) / max(float(np.sum(pred * pred)), 1e-30))
    if not (np.isfinite(gain) and gain > 0):
        raise ValueError(
            f"the conventional reconstruction does not explain the frames (gain {gain:.3g}); "
            "set fit.scene_start = 'random'"
        )
    return target * np.float32(gain)


def scene_from_conventional(
    model: NSTMModel, problem: WindowProblem, config: NSTMConfig, params: Params | None = None
) -> Params:
    """``params`` (random networks when None) with the scene network pre-fitted to the window's
    conventional reconstruction at the granularity the cold fit starts at (``fit.start_alpha``)."""
    if params is None:
        params = model.init(jax.random.PRNGKey(config.fit.seed))
    target = conventional_target(model, problem)
    params, _ = prefit_scene(
        model, params, target, alpha=config.fit.start_alpha, steps=SCENE_PREFIT_STEPS,
        batch=SCENE_PREFIT_BATCH, lr=config.fit.lr_scene, seed=config.fit.seed,
    )
    return params
