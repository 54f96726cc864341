"""Where a fit starts: networks pre-fitted to what the window's data already say.

A cold fit from random networks spends most of its steps discovering the scene and the motion.
:func:`start_params` builds the parameters a cold fit starts from instead
(:func:`~nstm_acquire.nstm.fit.fit`'s ``start_params``), as the configuration asks:

* the scene network pre-fitted to the window's conventional (static) reconstruction;
* the motion network pre-fitted to a registration of the window's shots (DPC and 2D SIM;
  :func:`~nstm_acquire.recon.registration.motion_from_registration`), after the scene pre-fit;
* where those shots share no common translation, or a patch of a large field moves unlike the
  whole (a deformation), the motion network pre-fitted to the flow of a stationary velocity field
  fitted to the window first (``fit.deformation_start = "velocity"``,
  :func:`motion_from_velocity_field`), and the scene network from that fit.

:func:`exposure_sampled` prepares a cold fit's data first: where that registration finds the
sample moving far within one exposure (``fit.exposure_blur_px``), every shot is rendered at
several times across its exposure, as the camera integrated it.

None (the default configuration asks for neither) means random networks, as published.

:func:`warm_start_params` does the same for a warm fit's motion (``fit.warm_motion_start``): 2D
SIM's default pre-fits the previous window's motion network to a registration of this window's
shots against the previous window's scene; DPC's moves the previous window's motion by one
translation, how far the sample has travelled since (registered against what the previous
networks predict for this window).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.fit import fit, predict_rows
from nstm_acquire.nstm.model import NSTMModel, Params, TimeMap
from nstm_acquire.nstm.prefit import prefit_scene
from nstm_acquire.nstm.velocity import VelocityFieldModel, build_velocity_model
from nstm_acquire.recon.problem import WindowProblem
from nstm_acquire.recon.registration import (
    PREFIT_MIN_PX,
    exposure_blur_px,
    largest_deviation_px,
    motion_against_rendering,
    motion_from_registration,
    normalised_row_times,
    patch_registration,
    prefit_registered_motion,
    window_motion,
)

__all__ = ["EXPOSURE_SAMPLES_MAX", "exposure_sampled", "motion_from_velocity_field", "start_params", "warm_start_params"]

#: the most times :func:`exposure_sampled` renders a shot within its exposure
EXPOSURE_SAMPLES_MAX = 4


def start_params(model: NSTMModel, problem: WindowProblem, config: NSTMConfig) -> Params | None:
    """The parameters a cold fit of ``problem`` starts from, or None for random networks."""
    params: Params | None = None
    if config.fit.scene_start == "conventional":
        params = scene_from_conventional(model, problem, config, params)
    if config.fit.motion_start == "registration":
        params = motion_from_registration(model, problem, config, params)
        if config.fit.deformation_start == "velocity" and _deformed(problem, model):
            params = motion_from_velocity_field(model, problem, config, params)
    return params


def _deformed(problem: WindowProblem, model: NSTMModel) -> bool:
    """Whether a window not pre-fitted from its registration moves in a way one translation
    does not describe: its shots do not register, or (a large field) a patch of it moves unlike
    the whole (:func:`~nstm_acquire.recon.registration.patch_registration`, recorded as
    ``problem.info["motion_start"]["patches"]``). 2D windows only."""
    found = problem.info["motion_start"]
    if found.get("prefit") or len(model.scene_shape) != 2:
        return False
    if not found["registered"]:
        return True
    patches = patch_registration(problem)
    problem.info["motion_start"] = {**found, "patches": patches}
    return bool(patches.get("deformed", False))


def motion_from_velocity_field(
    model: NSTMModel, problem: WindowProblem, config: NSTMConfig, params: Params | None = None
) -> Params | None:
    """``params`` with the motion network pre-fitted to the flow of a stationary velocity field
    fitted to the window, and the scene network from that fit; or ``params`` unchanged where the
    flow moves the sample less than :data:`~nstm_acquire.recon.registration.PREFIT_MIN_PX`
    (which the fit from zero finds by itself).

    The field's fit (:class:`~nstm_acquire.nstm.velocity.VelocityFieldModel`, control points
    ``fit.velocity_spacing_px`` apart) is a whole cold fit with the window's schedule, started from
    ``params``' scene network when given (a pre-fitted one), run once per learning rate of
    ``fit.velocity_lrs`` (a fit can wander off from either: the 32 px DPC swirl at 128 x 128 was
    found at 0.5 and lost at 1.0, the 24 px one at 64 x 64 the other way round) and the one with
    the lowest held-out loss kept. Its displacement at the rows' times (exposure samples averaged,
    as a registration's) is the motion network's pre-fit target. What was done goes to
    ``problem.info["motion_start"]["velocity"]``.
    """
    cfg = config.fit
    t0 = time.perf_counter()
    stage, vmodel, tried, best_loss = None, None, [], np.inf
    for lr in cfg.velocity_lrs:
        candidate_model = build_velocity_model(
            config.with_fit(lr_motion=lr), model.scene_shape, model.channels, model.nonnegative,
            model.n_shots, cfg.velocity_spacing_px,
        )
        start = None
        if params is not None:
            start = {"scene": params["scene"], "motion": candidate_model.init(jax.random.PRNGKey(cfg.seed))["motion"]}
        candidate = fit(candidate_model, problem.forward, problem.data, start_params=start)
        loss = candidate.final_val_loss if candidate.final_val_loss is not None else candidate.final_loss
        tried.append({"lr": lr, "steps": candidate.steps, "val_loss": round(float(loss), 6)})
        if np.isfinite(loss) and float(loss) < best_loss:
            stage, vmodel, best_loss = candidate, candidate_model, float(loss)

    def record(found: dict) -> None:
        found["seconds"] = round(time.perf_counter() - t0, 2)
        problem.info["motion_start"] = {**problem.info["motion_start"], "velocity": found}

    if stage is None or vmodel is None:  # every try diverged: start as before
        record({"tried": tried, "prefit": False})
        return params
    tn = normalised_row_times(problem)
    motion = np.asarray(_velocity_motion(vmodel)(stage.params, jnp.asarray(tn)))
    largest = largest_deviation_px(motion)
    found = {
        "steps": stage.steps,
        "val_loss": None if stage.final_val_loss is None else round(float(stage.final_val_loss), 6),
        "tried": tried,
        "largest_px": round(largest, 2),
        "control_points": list(vmodel.control_shape),
    }
    if largest < PREFIT_MIN_PX:  # the fit from zero finds this by itself: start as before
        record({**found, "prefit": False})
        return params
    if params is None:
        params = model.init(jax.random.PRNGKey(cfg.seed))
    params, fit_info = prefit_registered_motion(model, problem, {**params, "scene": stage.params["scene"]}, motion, cfg.start_alpha)
    record({**found, **fit_info})
    return params


@functools.lru_cache(maxsize=8)
def _velocity_motion(vmodel: VelocityFieldModel):
    """The velocity field's displacement at normalised times, compiled once per model."""
    return jax.jit(lambda params, tn: vmodel.motion(params, tn, None))


def exposure_sampled(problem: WindowProblem, config: NSTMConfig, samples: int | None = None) -> WindowProblem:
    """``problem`` with every shot rendered at several times across its exposure, or unchanged.

    ``samples`` None (a cold fit): as many as ``fit.exposure_blur_px`` asks for the motion the
    shots' registration finds (:func:`~nstm_acquire.recon.registration.exposure_blur_px`; only
    where that motion is large enough to be pre-fitted, ``recon.registration.PREFIT_MIN_PX``, so
    the windows of small motion start exactly as before). An int (a warm fit in a chain): that
    many, the chain's cold fit's choice. Only for fit data with one time per row and their
    exposures (not with row-exact timing); ``problem.info["exposure_samples"]`` says what was done.
    """
    data, cfg = problem.data, config.fit
    if data.exposure_s is None or data.times_s.shape[1] != 1:
        return problem
    blur = None
    if samples is None:
        if cfg.exposure_blur_px is None or cfg.motion_start != "registration":
            return problem
        motion, _ = window_motion(problem)
        if motion is None or largest_deviation_px(motion) < PREFIT_MIN_PX:
            return problem
        blur = exposure_blur_px(problem, motion)
        samples = min(EXPOSURE_SAMPLES_MAX, max(1, math.ceil(blur / cfg.exposure_blur_px)))
    if samples <= 1:
        return problem
    info = {**problem.info, "exposure_samples": {"samples": int(samples), **({"blur_px": round(blur, 2)} if blur is not None else {})}}
    return dataclasses.replace(problem, data=data.sampled_in_exposure(int(samples)), info=info)


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
    pred = _render_static(problem, target)
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


@jax.jit
def _render_rows(forward, scene: jax.Array, shots: jax.Array) -> jax.Array:
    return forward.render(jnp.broadcast_to(scene, (shots.shape[0], *scene.shape)), shots)


def _render_static(problem: WindowProblem, scene: np.ndarray) -> np.ndarray:
    """``scene`` ``(C, *scene_shape)`` rendered through every row's forward model with no motion:
    ``(K, *measurement_shape)``."""
    return np.asarray(_render_rows(problem.forward, jnp.asarray(scene, jnp.float32), jnp.asarray(problem.data.shots)))


@functools.lru_cache(maxsize=16)
def _template_fn(model: NSTMModel):
    """:meth:`NSTMModel.template` at full granularity, compiled once per model."""
    return jax.jit(lambda params, coords: model.template(params, 1.0, coords))


def warm_start_params(model: NSTMModel, problem: WindowProblem, config: NSTMConfig, params: Params) -> Params:
    """A warm start ``params`` (the previous window's networks) with the motion network pre-fitted
    to where this window's shots lie relative to the previous window's scene, as
    ``fit.warm_motion_start`` asks (``"previous"``: ``params`` unchanged).

    The previous scene (its template, the scene with no motion) is rendered through every shot's
    forward model and each shot's frame registered against its rendering
    (:func:`~nstm_acquire.recon.registration.motion_against_rendering`); the motion network is
    then fitted to those translations at full granularity (a warm fit runs at full resolution).
    When a shot does not register, ``params`` is returned unchanged. Either way
    ``problem.info["warm_motion_start"]`` says what was done.
    """
    mode = config.fit.warm_motion_start
    if mode == "previous":
        return params
    if mode == "offset":
        return _offset_motion(model, problem, params)
    template = np.asarray(_template_fn(model)(params, jnp.asarray(model.output_coords)))
    motion, info = motion_against_rendering(problem, _render_static(problem, template))
    if motion is None:
        problem.info["warm_motion_start"] = {**info, "prefit": False}
        return params
    params, fit_info = prefit_registered_motion(model, problem, params, motion, start_alpha=1.0)
    problem.info["warm_motion_start"] = {**info, **fit_info}
    return params


#: the common translation (output pixels, either axis) below which ``warm_motion_start = "offset"``
#: leaves the previous window's motion as it is: a static sample registers within a few tenths
OFFSET_MIN_PX = 1.0


def _offset_motion(model: NSTMModel, problem: WindowProblem, params: Params) -> Params:
    """``params`` with the motion moved by one constant translation, as ``fit.warm_motion_start
    = "offset"`` asks: the previous window's networks predict this window's rows (their motion
    carried on to this window's times, each row's exposure samples averaged, so a fast sample's
    blur is in the prediction too); each shot's frame is registered against its prediction
    (:func:`~nstm_acquire.recon.registration.motion_against_rendering`), and the mean of those
    residual shifts over the shots is added to the motion everywhere
    (:meth:`NSTMModel.with_motion_offset`). The previous window's deformation and its course in
    time are kept; only how far the sample has travelled since is added. When a shot does not
    register, the offset is below :data:`OFFSET_MIN_PX`, or it would carry the motion's mean
    beyond the scene's margin plus ``fit.loss_margin_px``, ``params`` is returned unchanged;
    ``problem.info["warm_motion_start"]`` says what was done."""
    times = problem.data.times_s
    # this window's times as the warm fit will see them; the scenes by the function that renders
    # every window's output (compiled already)
    tn = np.asarray(TimeMap.for_times(times).normalise(times.reshape(-1))).reshape(times.shape)
    predicted, motion = predict_rows(model, params, problem.forward, tn, problem.data.shots)
    mean_motion = motion.mean(axis=(0, *range(2, motion.ndim)))
    residual, info = motion_against_rendering(problem, predicted)
    if residual is None:
        problem.info["warm_motion_start"] = {**info, "prefit": False}
        return params
    offset = np.mean(residual, axis=(0, *range(2, residual.ndim)))
    info = {**info, "prefit": False, "offset_px": [round(float(v), 2) for v in offset]}
    # the template stays where the previous window left it and the motion carries the sample
    # from there: only as far as the scene's margin reaches (plus the edge the loss leaves out),
    # beyond which the template has no grid to hold what comes into the field (the fit from the
    # previous networks moves the template itself)
    carried = mean_motion + offset
    reach = np.asarray(model.margin_px, np.float64) + model.config.fit.loss_margin_px
    within = bool(np.all(np.abs(carried)[-2:] <= reach))
    applied = bool(np.max(np.abs(offset)) >= OFFSET_MIN_PX) and within
    info["mean_motion_px"] = [round(float(v), 2) for v in carried]
    problem.info["warm_motion_start"] = {**info, "offset_applied": applied}
    return model.with_motion_offset(params, offset) if applied else params
