"""Fit an NSTM to one window of shots through any differentiable forward model.

The forward-model interface is deliberately small (:class:`ForwardModel`): a JAX pytree with
``render(scenes, shots) -> predictions`` where ``scenes`` is ``(K, C, *scene_shape)`` -- the
scene at each of the K rows' times -- and ``shots`` the row index of each (to pick its
pattern / transfer function). A row is usually one shot; a forward model may also predict
several measurements from one scene (3D SIM: the frames of one time bin, padded to the same
number, the padding given weight 0 by :attr:`FitData.weights`). Everything else (networks,
warping, exposure integration, coarse-to-fine, optimiser, stopping) is shared by every
modality.

One compiled update serves every window of the same shape: the step is compiled once per
(model structure, forward model type, array shapes) and reused (:func:`compiled_steps`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nstm_acquire.nstm.config import FitConfig, NSTMConfig
from nstm_acquire.nstm.model import NSTMModel, Params, TimeMap

__all__ = [
    "FitData",
    "FitDivergedError",
    "FitResult",
    "ForwardModel",
    "build_model",
    "exposure_sample_times",
    "fit",
    "fit_masks",
    "holdout_pixels",
    "predict_rows",
    "render_normalised",
    "render_scenes",
    "start_text",
]


def exposure_sample_times(timestamps_s: np.ndarray, exposure_s: np.ndarray, n_sub: int) -> np.ndarray:
    """``(K, n_sub)`` times (s) at the midpoints of ``n_sub`` equal parts of each exposure."""
    t = np.asarray(timestamps_s, np.float64).reshape(-1)
    e = np.asarray(exposure_s, np.float64).reshape(-1)
    return t[:, None] + (np.arange(n_sub)[None, :] + 0.5) / n_sub * e[:, None]


class ForwardModel(Protocol):
    """A modality's differentiable measurement model (a JAX pytree)."""

    channels: int  # scene channels C

    def render(self, scenes: jax.Array, shots: jax.Array) -> jax.Array:
        """Predicted measurements ``(K, *measurement_shape)`` of scenes ``(K, C, *scene_shape)``."""
        ...


class FitDivergedError(RuntimeError):
    """The optimisation produced non-finite values and could not recover."""


@dataclasses.dataclass
class FitData:
    """One window's measurements, prepared for fitting.

    Attributes
    ----------
    measurements
        ``(K, *measurement_shape)`` float32, in the forward model's units (DPC: image /
        background - 1).
    times_s
        ``(K, n_sub)`` seconds on the acquisition clock: the times at which each shot's scene
        is rendered (exposure midpoint, or several times across the exposure; averaged).
    shots
        ``(K,)`` int: the shot (pattern) index of each measurement row, as the forward model
        understands it.
    weights
        None, or ``(K, ...)`` float: the weight of each measurement in the loss, broadcast over
        the measurement's trailing axes (0: padding, not a measurement).
    exposure_s
        None, or ``(K,)``: each row's exposure, s, centred on the mean of its ``times_s``; lets
        :meth:`sampled_in_exposure` render a row at several times across it.
    held_out
        None (the default: the same random ``validation_fraction`` of the trailing two axes'
        pixels in every row, :func:`holdout_pixels`), or a 0/1 float mask broadcastable to
        ``measurements`` of the held-out pixels, for measurements whose trailing axes are not
        one camera pixel grid (a lensless window's row blocks: the held-out pixels are drawn
        on the sensor and follow each block's rows).
    """

    measurements: np.ndarray
    times_s: np.ndarray
    shots: np.ndarray
    weights: np.ndarray | None = None
    exposure_s: np.ndarray | None = None
    held_out: np.ndarray | None = None

    def sampled_in_exposure(self, n_sub: int) -> FitData:
        """The same rows, each rendered at the midpoints of ``n_sub`` equal parts of its exposure."""
        if self.exposure_s is None:
            raise ValueError("these fit data carry no exposure_s: give each row's exposure to sample within it")
        if n_sub < 1:
            raise ValueError(f"n_sub={n_sub} must be at least 1")
        start = self.times_s.mean(axis=1) - 0.5 * self.exposure_s
        return dataclasses.replace(self, times_s=exposure_sample_times(start, self.exposure_s, n_sub))

    def __post_init__(self) -> None:
        self.measurements = np.asarray(self.measurements, np.float32)
        t = np.asarray(self.times_s, np.float64)
        if t.ndim == 1:
            t = t[:, None]
        self.times_s = t
        self.shots = np.asarray(self.shots, np.int32)
        k = self.measurements.shape[0]
        if t.shape[0] != k or self.shots.shape != (k,):
            raise ValueError(
                f"times_s {t.shape} and shots {self.shots.shape} must have one row per measurement ({k})"
            )
        if not np.all(np.isfinite(t)):
            raise ValueError("times_s has non-finite values: the window is incomplete")
        if not np.all(np.isfinite(self.measurements)):
            raise ValueError("measurements contain NaN or infinite values")
        if self.weights is not None:
            w = np.asarray(self.weights, np.float32)
            if w.shape != self.measurements.shape[: w.ndim] or w.ndim == 0:
                raise ValueError(
                    f"weights {w.shape} must match the leading axes of measurements {self.measurements.shape}"
                )
            self.weights = w
        if self.held_out is not None:
            h = np.asarray(self.held_out, np.float32)
            try:
                np.broadcast_shapes(h.shape, self.measurements.shape)
            except ValueError:
                raise ValueError(
                    f"held_out {h.shape} must broadcast to the measurements {self.measurements.shape}"
                ) from None
            self.held_out = h
        if self.exposure_s is not None:
            e = np.asarray(self.exposure_s, np.float64).reshape(-1)
            if e.shape != (k,) or not np.all(np.isfinite(e) & (e >= 0)):
                raise ValueError(f"exposure_s {e.shape} must hold one finite exposure >= 0 s per measurement ({k})")
            self.exposure_s = e


@dataclasses.dataclass
class FitResult:
    """The fitted networks and how the fit went."""

    params: Params
    model: NSTMModel
    time_map: TimeMap
    steps: int
    best_step: int
    final_loss: float
    final_val_loss: float | None
    wall_s: float
    compile_s: float
    stop_reason: str
    warm_start: bool
    history: list[dict[str, float]]
    reference_val_loss: float | None = None
    rejected_warm_fit: dict[str, Any] | None = None
    restarts: list[dict[str, Any]] | None = None  # fit.restarts > 1: each run (seed, held-out loss, steps, s)

    def summary(self) -> str:
        """One line for people: steps, how it stopped, loss, seconds, how it started."""
        start = ""
        if self.warm_start:
            start = ", warm start"
        elif self.rejected_warm_fit is not None:
            rejected = self.rejected_warm_fit["final_val_loss"]
            loss = "not finite" if rejected is None else f"{rejected:.3e}"
            start = (
                f", warm start rejected (held-out loss {loss} vs reference "
                f"{self.reference_val_loss:.3e}), fitted from scratch"
            )
        if self.restarts:
            start += f", best of {len(self.restarts)} starts"
        return (
            f"{self.steps} steps ({self.stop_reason}), loss {self.final_loss:.3e}, "
            f"{self.wall_s:.1f} s{start}"
        )

    def info(self) -> dict[str, Any]:
        """Per-window facts for the reconstruction's attributes."""
        return {
            "steps": self.steps,
            "best_step": self.best_step,
            "final_loss": self.final_loss,
            "final_val_loss": self.final_val_loss,
            "wall_s": self.wall_s,
            "compile_s": self.compile_s,
            "stop_reason": self.stop_reason,
            "warm_start": self.warm_start,
            "reference_val_loss": self.reference_val_loss,
            "rejected_warm_fit": self.rejected_warm_fit,
            "restarts": self.restarts,
            "time_map": [self.time_map.t_start_s, self.time_map.t_end_s],
        }


@functools.lru_cache(maxsize=32)
def _cached_model(
    config_json: str, scene_shape: tuple, channels: int, motion_dims: int, nonnegative: bool, n_shots: int
) -> NSTMModel:
    return NSTMModel(
        NSTMConfig.model_validate_json(config_json), scene_shape, channels, motion_dims, nonnegative, n_shots
    )


def build_model(
    config: NSTMConfig,
    scene_shape: tuple[int, ...],
    channels: int,
    motion_dims: int | None = None,
    nonnegative: bool = False,
    n_shots: int = 0,
) -> NSTMModel:
    """The (cached) model structure for a configuration, output grid and shots per window."""
    md = motion_dims or len(scene_shape)
    return _cached_model(
        config.model_dump_json(),
        tuple(int(s) for s in scene_shape),
        int(channels),
        int(md),
        bool(nonnegative),
        int(n_shots),
    )


def _optimizer(config: NSTMConfig) -> optax.GradientTransformation:
    f = config.fit

    def adam(lr: float) -> optax.GradientTransformation:
        schedule = optax.exponential_decay(
            init_value=lr, transition_steps=f.decay_steps(), decay_rate=f.lr_final_factor
        )
        return optax.adam(schedule, b1=f.adam_b1, b2=f.adam_b2, eps=f.adam_eps)

    def labels(params: Params) -> dict[str, Any]:
        return {name: jax.tree_util.tree_map(lambda _, n=name: n, sub) for name, sub in params.items()}

    return optax.multi_transform({"scene": adam(f.lr_scene), "motion": adam(f.lr_motion)}, labels)


def _loss_terms(
    model: NSTMModel,
    forward: ForwardModel,
    params: Params,
    alpha: jax.Array,
    tn: jax.Array,
    shots: jax.Array,
    y: jax.Array,
    train_mask: jax.Array,
    val_mask: jax.Array,
    plan: Any,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    k = y.shape[0]
    n_sub = tn.shape[0] // k
    chunk = model.config.fit.render_chunk
    if 0 < chunk < k and model.config.fit.scene_sampling == "grid":
        return _chunked_loss_terms(model, forward, params, alpha, (tn, shots, y, train_mask, val_mask), plan)
    scenes, _ = model.scenes(params, tn, alpha, plan)
    scenes = scenes.reshape(k, n_sub, *scenes.shape[1:]).mean(axis=1)  # exposure integration
    pred = forward.render(scenes, shots)
    resid2 = (pred - y) ** 2
    return _loss_from_sums(
        model, k, jnp.sum(resid2 * train_mask), jnp.sum(resid2 * val_mask), jnp.mean(jnp.sum(scenes**2, axis=1)),
        train_mask, val_mask,
    )  # fmt: skip


def _loss_from_sums(
    model: NSTMModel,
    k: int,
    train_sum: jax.Array,
    val_sum: jax.Array,
    mean_power: jax.Array,
    train_mask: jax.Array,
    val_mask: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss and its terms from the summed squared residuals of the ``k`` rows' training and
    held-out pixels and the scene's mean power (per pixel, summed over channels)."""
    data = train_sum / jnp.maximum(jnp.sum(train_mask), 1.0) * k
    reg = model.config.fit.reg_scene * mean_power
    val = val_sum / jnp.maximum(jnp.sum(val_mask), 1.0) * k
    return data + reg, {"loss": data + reg, "data": data, "val": val}


def _chunked_loss_terms(
    model: NSTMModel, forward: ForwardModel, params: Params, alpha: jax.Array, rows: tuple[jax.Array, ...], plan: Any
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """:func:`_loss_terms` with the rows rendered ``fit.render_chunk`` at a time; ``rows`` is its
    ``(tn, shots, y, train_mask, val_mask)``.

    The scene network runs once on its padded grid; the warps, the forward model and the
    residuals of one chunk of rows after another run in a scan whose body is rematerialised in
    the backward pass (``jax.checkpoint``), so a step holds one chunk's intermediates instead of
    every row's (3D SIM: 60 time-bin volumes). The same loss to round-off; rows added to fill the
    last chunk repeat the last row with zero weight.
    """
    tn, shots, y, train_mask, val_mask = rows
    k = y.shape[0]
    n_sub = tn.shape[0] // k
    chunk = model.config.fit.render_chunk
    n_chunks = -(-k // chunk)
    pad = n_chunks * chunk - k
    w_s, w_m = model.level_weights(alpha)
    grid = model.scene_on_padded_grid(params, w_s, plan)

    def padded(a: jax.Array, fill_edge: bool) -> jax.Array:
        if pad == 0:
            return a.reshape(n_chunks, chunk, *a.shape[1:])
        extra = jnp.repeat(a[-1:], pad, axis=0) if fill_edge else jnp.zeros((pad, *a.shape[1:]), a.dtype)
        return jnp.concatenate([a, extra]).reshape(n_chunks, chunk, *a.shape[1:])

    rows_valid = padded(jnp.ones((k,), jnp.float32), False)
    xs = (
        padded(tn.reshape(k, n_sub), True), padded(shots, True), padded(y, True),
        padded(train_mask, False), padded(val_mask, False), rows_valid,
    )

    @jax.checkpoint
    def one_chunk(sums: jax.Array, x: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        tn_c, shots_c, y_c, train_c, val_c, valid_c = x
        scenes, _ = model.warp_grid(params, grid, tn_c.reshape(-1), w_m)
        scenes = scenes.reshape(chunk, n_sub, *scenes.shape[1:]).mean(axis=1)
        resid2 = (forward.render(scenes, shots_c) - y_c) ** 2
        power = jnp.mean(jnp.sum(scenes**2, axis=1).reshape(chunk, -1), axis=1)  # per row
        terms = jnp.stack([jnp.sum(resid2 * train_c), jnp.sum(resid2 * val_c), jnp.sum(power * valid_c)])
        return sums + terms, None

    sums, _ = jax.lax.scan(one_chunk, jnp.zeros((3,), jnp.float32), xs)
    return _loss_from_sums(model, k, sums[0], sums[1], sums[2] / k, train_mask, val_mask)


@functools.lru_cache(maxsize=32)
def compiled_steps(model: NSTMModel, chunk: int) -> tuple[Callable, optax.GradientTransformation]:
    """A jitted function running ``chunk`` optimisation steps; cached per model structure.

    Its ``alpha0`` argument is ``(start granularity, (scene, motion) learning-rate factors,
    learning-rate warm-up steps)``.
    """
    config = model.config
    opt = _optimizer(config)
    c2f = float(config.fit.c2f_steps())

    def one_step(carry, _):
        params, opt_state, step, (alpha0, lr_factor, warmup), forward, data = carry
        alpha = jnp.minimum(alpha0 + step.astype(jnp.float32) / c2f, 1.0)
        # the learning rates ramp up over the first `warmup` steps (1: none)
        ramp = jnp.minimum((step.astype(jnp.float32) + 1.0) / warmup, 1.0)
        (loss, metrics), grads = jax.value_and_grad(
            lambda p: _loss_terms(model, forward, p, alpha, *data), has_aux=True
        )(params)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
        finite = finite & jnp.isfinite(loss)
        updates, new_state = opt.update(grads, opt_state, params)
        updates = {
            group: jax.tree_util.tree_map(lambda u, f=factor: u * (f * ramp), updates[group])
            for group, factor in (("scene", lr_factor[0]), ("motion", lr_factor[1]))
        }
        new_params = optax.apply_updates(params, updates)
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new_params, params)
        opt_state = jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new_state, opt_state)
        metrics = {**metrics, "finite": finite.astype(jnp.float32)}
        return (params, opt_state, step + 1, (alpha0, lr_factor, warmup), forward, data), metrics

    def run_chunk(params, opt_state, step, alpha0, forward, data):
        (params, opt_state, step, _, _, _), metrics = jax.lax.scan(
            one_step, (params, opt_state, step, alpha0, forward, data), None, length=chunk
        )
        last = jax.tree_util.tree_map(lambda m: m[-1], metrics)
        last["n_finite"] = jnp.sum(metrics["finite"])
        return params, opt_state, step, last

    return jax.jit(run_chunk), opt


def holdout_pixels(shape: tuple[int, int], validation_fraction: float, seed: int) -> np.ndarray:
    """The held-out pixels of a ``shape`` = (Y, X) grid: float32 0/1, each pixel with
    probability ``validation_fraction`` (the fit's ``seed``: the same pixels for every window)."""
    if validation_fraction <= 0:
        return np.zeros(shape, np.float32)
    rng = np.random.default_rng(seed + 12345)
    return (rng.random(shape) < validation_fraction).astype(np.float32)


def _masks(
    shape: tuple[int, ...], margin: int, validation_fraction: float, seed: int, held_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out pixel masks ``shape`` = (K, *measurement_shape): the margin left
    out of both; held out ``held_out`` (:class:`FitData`) or else :func:`holdout_pixels` of the
    trailing two axes in every row."""
    inner = np.zeros(shape, np.float32)
    sl = [slice(None)] * (len(shape) - 2) + [slice(margin, shape[-2] - margin), slice(margin, shape[-1] - margin)]
    inner[tuple(sl)] = 1.0
    if validation_fraction <= 0:
        return inner, np.zeros(shape, np.float32)
    held = holdout_pixels((shape[-2], shape[-1]), validation_fraction, seed) if held_out is None else held_out
    held = np.broadcast_to(np.asarray(held, np.float32), shape)
    return inner * (1 - held), inner * held


def fit_masks(data: FitData, config: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out masks of ``data`` under ``config`` (``(K, *measurement_shape)``
    float32): the border margin out of both, the held-out pixels (``data.held_out`` or the
    default draw) out of training, padding rows (weight 0) out of both."""
    train, val = _masks(
        tuple(data.measurements.shape), config.loss_margin_px, config.validation_fraction, config.seed,
        data.held_out,
    )  # fmt: skip
    if data.weights is not None:  # padding rows out of the loss
        w = data.weights.reshape(data.weights.shape + (1,) * (data.measurements.ndim - data.weights.ndim))
        train, val = train * w, val * w
    return train, val


def fit(
    model: NSTMModel,
    forward: ForwardModel,
    data: FitData,
    init_params: Params | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    monitor: Callable[[int, Params, TimeMap], dict[str, float]] | None = None,
    reference_val_loss: float | None = None,
    start_params: Params | Callable[[], Params | None] | None = None,
) -> FitResult:
    """Fit the NSTM to one window.

    Parameters
    ----------
    model
        Network structure (:func:`build_model`).
    forward
        The modality's forward model (pytree with ``render``).
    data
        Measurements, their times and shot indices.
    init_params
        Warm start (for example the previous window's fitted parameters); None: random.
    callback
        Called every ``eval_every`` steps with ``(step, metrics)``.
    should_stop
        Polled at the same points; True ends the fit early (stop reason ``"interrupted"``).
    monitor
        Called at the same points with ``(step, params, time_map)``; the numbers it returns are
        added to that step's history (benchmarks use it to score against ground truth).
    reference_val_loss
        With ``init_params``: the held-out loss a cold fit of an earlier window ended at
        (:class:`~nstm_acquire.recon.chain.StoreReconstructor` passes its chain's last cold
        fit, so the tolerance does not compound from warm window to warm window). The warm
        fit stops as soon as its own held-out loss is within ``fit.warm_target_tolerance`` of
        it (stop reason ``"reached_reference"``: it explains its window as well as the
        reference fit explained its own), and a warm fit that ends above
        ``fit.warm_refit_factor`` x this is discarded and the window fitted from scratch
        (recorded in ``rejected_warm_fit``).
    start_params
        The parameters a cold fit (and the refit of a rejected warm fit) starts from, for
        example networks pre-fitted to the conventional result or to a registration of the
        shots; None: random (``model.init`` with ``fit.seed``). A cold start keeps its
        coarse-to-fine schedule either way (from ``fit.start_alpha`` when started from these).
        A callable is called only when a cold fit needs them (a warm fit's refit).
    """
    cfg = model.config.fit
    warm = init_params is not None
    reference = reference_val_loss if warm and cfg.validation_fraction > 0 else None
    if reference is not None and not (np.isfinite(reference) and reference > 0):
        raise ValueError(
            f"reference_val_loss={reference_val_loss} must be a positive finite held-out loss "
            "(an earlier cold fit's FitResult.final_val_loss), or None"
        )
    if callable(start_params) and not warm:
        start_params = start_params()
    if not warm and start_params is None and cfg.restarts > 1:
        return _best_of_restarts(model, forward, data, callback, should_stop, monitor)
    result = _fit_once(
        model, forward, data, init_params, callback, should_stop, monitor, reference,
        None if callable(start_params) else start_params,
    )
    refit = cfg.warm_refit_factor
    if (
        reference is not None
        and refit is not None
        and result.stop_reason != "interrupted"
        and not (result.final_val_loss is not None and result.final_val_loss <= refit * reference)
    ):
        rejected = {
            "final_val_loss": result.final_val_loss,
            "steps": result.steps,
            "wall_s": result.wall_s,
            "stop_reason": result.stop_reason,
        }
        rejected_wall_s = result.wall_s
        if callable(start_params):
            start_params = start_params()
        result = _fit_once(
            model, forward, data, None, callback, should_stop, monitor, None,
            None if callable(start_params) else start_params,
        )
        result.wall_s += rejected_wall_s
        result.reference_val_loss = reference
        result.rejected_warm_fit = rejected
    return result


def _with_start(
    callback: Callable[[int, dict[str, float]], None], start: int, starts: int
) -> Callable[[int, dict[str, float]], None]:
    return lambda step, metrics: callback(step, {**metrics, "start": start, "starts": starts})


def start_text(metrics: dict[str, float]) -> str:
    """``" (start 2/3)"`` for a progress callback's metrics during ``fit.restarts``, else ``""``."""
    return f" (start {int(metrics['start'])}/{int(metrics['starts'])})" if "starts" in metrics else ""


def _best_of_restarts(
    model: NSTMModel,
    forward: ForwardModel,
    data: FitData,
    callback: Callable[[int, dict[str, float]], None] | None,
    should_stop: Callable[[], bool] | None,
    monitor: Callable[[int, Params, TimeMap], dict[str, float]] | None,
) -> FitResult:
    """``fit.restarts`` cold fits from random networks (seeds ``fit.seed + r``; the held-out
    pixels stay those of ``fit.seed``), the one with the lowest held-out loss kept (without
    held-out pixels: the lowest training loss). Its ``wall_s`` is all the runs'."""
    cfg = model.config.fit
    runs: list[FitResult] = []
    for r in range(cfg.restarts):
        # progress callbacks see which start this is (metrics "start", "starts": 1-based, total)
        labelled = None if callback is None else _with_start(callback, r + 1, cfg.restarts)
        runs.append(_fit_once(model, forward, data, None, labelled, should_stop, monitor, None, None, init_seed=cfg.seed + r))
        if runs[-1].stop_reason == "interrupted":
            break

    def score(run: FitResult) -> float:
        loss = run.final_val_loss if run.final_val_loss is not None else run.final_loss
        return float(loss) if loss is not None and np.isfinite(loss) else np.inf

    best = min(runs, key=score)
    best.restarts = [
        {"seed": cfg.seed + i, "final_val_loss": run.final_val_loss, "steps": run.steps, "wall_s": run.wall_s,
         "kept": run is best}
        for i, run in enumerate(runs)
    ]  # fmt: skip
    best.wall_s = float(sum(run.wall_s for run in runs))
    return best


def _fit_once(
    model: NSTMModel,
    forward: ForwardModel,
    data: FitData,
    init_params: Params | None,
    callback: Callable[[int, dict[str, float]], None] | None,
    should_stop: Callable[[], bool] | None,
    monitor: Callable[[int, Params, TimeMap], dict[str, float]] | None,
    reference_val_loss: float | None,
    start_params: Params | None = None,
    init_seed: int | None = None,
) -> FitResult:
    """One optimisation run of :func:`fit` (warm when ``init_params`` is given; a cold run
    starts from ``start_params`` when given, else from random networks drawn with
    ``init_seed``, default ``fit.seed``)."""
    cfg = model.config.fit
    t_start = time.perf_counter()
    time_map = TimeMap.for_times(data.times_s)
    tn = time_map.normalise(data.times_s.reshape(-1))
    y = jnp.asarray(data.measurements)
    train, val = fit_masks(data, cfg)
    plan = model.scene_plan() if cfg.scene_sampling == "grid" else None
    arrays = (tn, jnp.asarray(data.shots), y, jnp.asarray(train), jnp.asarray(val), plan)
    warm = init_params is not None
    if init_params is not None:
        params = init_params
    elif start_params is not None:
        params = start_params
    else:
        params = model.init(jax.random.PRNGKey(cfg.seed if init_seed is None else init_seed))
    # a warm start already has every level trained: start at full resolution; a cold start from
    # pre-fitted networks at the granularity they were fitted at (fit.start_alpha)
    start_alpha = 1.0 if warm else (cfg.start_alpha if start_params is not None else 0.0)
    # learning-rate factors (scene, motion): a warm fit's motion may move faster than its scene
    lr_factors = (cfg.warm_lr_factor, cfg.warm_lr_factor * cfg.warm_motion_lr_factor) if warm else (1.0, 1.0)
    # networks that are already fitted (a warm start, pre-fitted start parameters) ramp their
    # learning rates up: Adam's first steps would move every parameter by the full rate
    warmup = max(cfg.lr_warmup_steps, 1) if (warm or start_params is not None) else 1
    alpha0 = (
        jnp.asarray(start_alpha, jnp.float32),
        jnp.asarray(lr_factors, jnp.float32),
        jnp.asarray(warmup, jnp.float32),
    )
    max_steps = (cfg.warm_max_steps or cfg.max_steps) if warm else cfg.max_steps
    patience = cfg.warm_patience if warm else cfg.patience
    min_improvement = cfg.warm_min_improvement if warm else 1e-4
    target_val = (
        reference_val_loss * (1 + cfg.warm_target_tolerance)
        if warm and reference_val_loss is not None and cfg.warm_target_tolerance is not None
        else None
    )
    chunk = cfg.eval_every
    run_chunk, opt = compiled_steps(model, chunk)
    opt_state = opt.init(params)
    step = jnp.asarray(0, jnp.int32)
    use_val = cfg.validation_fraction > 0
    best_params, best_val, best_step, wait = params, np.inf, 0, 0
    history: list[dict[str, float]] = []
    stop_reason = "max_steps"
    compile_s = 0.0
    metrics: dict[str, float] = {"loss": float("nan"), "val": float("nan")}
    n_done = 0
    c2f = int(np.ceil((1.0 - start_alpha) * cfg.c2f_steps()))  # steps left of the ramp
    bad_chunks = 0
    while n_done < max_steps:
        t0 = time.perf_counter()
        params, opt_state, step, last = run_chunk(params, opt_state, step, alpha0, forward, arrays)
        last = jax.device_get(last)
        if n_done == 0:
            compile_s = time.perf_counter() - t0
        n_done += chunk
        metrics = {k: float(v) for k, v in last.items()}
        metrics["step"] = n_done
        if monitor is not None:
            metrics.update(monitor(n_done, params, time_map))
        history.append(metrics)
        if metrics["n_finite"] < chunk:
            bad_chunks += 1
            if bad_chunks >= 3 or not np.isfinite(metrics["loss"]):
                if not np.isfinite(best_val) and not warm and bad_chunks >= 3:
                    raise FitDivergedError(
                        f"the fit produced non-finite values at step {n_done} (loss {metrics['loss']}); "
                        "lower fit.lr_scene / fit.lr_motion or check the measurements"
                    )
                stop_reason = "diverged"
                break
        else:
            bad_chunks = 0
        if callback is not None:
            callback(n_done, metrics)
        if use_val and (warm or n_done >= c2f):
            improved = metrics["val"] < best_val * (1 - min_improvement)
            if metrics["val"] < best_val:
                best_val, best_params, best_step = metrics["val"], params, n_done
                if target_val is not None and best_val <= target_val and n_done >= cfg.min_steps:
                    stop_reason = "reached_reference"
                    break
            if improved:
                wait = 0
            else:
                wait += 1
                if wait >= patience and n_done >= cfg.min_steps:
                    stop_reason = "converged"
                    break
        if should_stop is not None and should_stop():
            stop_reason = "interrupted"
            break
    if use_val and np.isfinite(best_val):
        final_params, final_step = best_params, best_step
    else:
        final_params, final_step = params, n_done
    return FitResult(
        params=final_params,
        model=model,
        time_map=time_map,
        steps=n_done,
        best_step=final_step,
        final_loss=metrics["loss"],
        final_val_loss=(best_val if use_val and np.isfinite(best_val) else None),
        wall_s=time.perf_counter() - t_start,
        compile_s=compile_s,
        stop_reason=stop_reason,
        warm_start=warm,
        history=history,
        reference_val_loss=reference_val_loss,
    )


def render_scenes(result: FitResult, times_s: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Scene and motion at any times (s): ``((T, C, *scene_shape), (T, D, *scene_shape))``."""
    tn_all = np.asarray(result.time_map.normalise(np.asarray(times_s, np.float64).reshape(-1)))
    return render_normalised(result.model, result.params, tn_all, batch)


def render_normalised(
    model: NSTMModel, params: Params, tn: np.ndarray, batch: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Scene and motion of ``params`` at normalised times ``tn`` (T,):
    ``((T, C, *scene_shape), (T, D, *scene_shape))``; ``batch`` times at a time, one compiled
    function per model (shared with :func:`render_scenes`)."""
    scenes, motions = [], []
    fn = _render_fn(model)
    for i in range(0, len(tn), batch):
        part = tn[i : i + batch]
        pad = batch - len(part)
        padded = np.concatenate([part, np.repeat(part[-1:], pad)]) if pad else part
        s, m = fn(params, jnp.asarray(padded, jnp.float32))
        scenes.append(np.asarray(s)[: len(part)])
        motions.append(np.asarray(m)[: len(part)])
    return np.concatenate(scenes), np.concatenate(motions)


def predict_rows(
    model: NSTMModel, params: Params, forward: ForwardModel, tn: np.ndarray, shots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The measurements ``params`` predict for rows rendered at normalised times ``tn``
    ``(K, n_sub)`` (each row's scene averaged over its ``n_sub`` exposure samples, then through
    ``forward.render`` for rows ``shots`` ``(K,)``): ``(K, *measurement_shape)`` float32, and the
    motion at those times ``(K n_sub, D, *scene_shape)``."""
    k, n_sub = tn.shape
    scenes, motion = render_normalised(model, params, tn.reshape(-1))
    scenes = scenes.reshape(k, n_sub, *scenes.shape[1:]).mean(axis=1)
    pred = _render_each_row(forward, jnp.asarray(scenes, jnp.float32), jnp.asarray(shots, jnp.int32))
    return np.asarray(pred), motion


@jax.jit
def _render_each_row(forward: ForwardModel, scenes: jax.Array, shots: jax.Array) -> jax.Array:
    return forward.render(scenes, shots)


@functools.lru_cache(maxsize=32)
def _render_fn(model: NSTMModel) -> Callable:
    plan = model.scene_plan() if model.config.fit.scene_sampling == "grid" else None

    def render(params, tn):
        return model.scenes(params, tn, 1.0, plan)

    return jax.jit(render)
