"""NSTM building blocks: resampling, time map, networks, the fit loop's guarantees."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstm_acquire.nstm.config import FitConfig, MotionNetConfig, NSTMConfig, SceneNetConfig
from nstm_acquire.nstm.fit import FitData, build_model, compiled_steps, fit, render_scenes
from nstm_acquire.nstm.model import TimeMap
from nstm_acquire.nstm.warp import interpolation_matrix, resample_linear, upsample_linear


@functools.partial(jax.tree_util.register_dataclass, data_fields=[], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class IdentityForward:
    """Toy forward model: each shot measures the scene's single channel directly."""

    channels = 1

    def render(self, scenes, shots):
        return scenes[:, 0]


def small_config(**fit_changes) -> NSTMConfig:
    fit_kw = dict(max_steps=200, scene_sampling="grid", lr_scene=3e-3, lr_motion=3e-4, eval_every=50)
    fit_kw.update(fit_changes)
    return NSTMConfig(
        scene=SceneNetConfig(hidden=32, finest_cells_per_px=0.5),
        motion=MotionNetConfig(stride_px=4, spatial_finest_cells=4),
        fit=FitConfig(**fit_kw),
    )


def blobs(shape, shift, rng_seed=0):
    """Smooth random texture translated by ``shift`` (dy, dx) pixels."""
    rng = np.random.default_rng(rng_seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    for _ in range(25):
        cy, cx = rng.uniform(-4, shape[0] + 4, 2)
        img += rng.uniform(0.3, 1.0) * np.exp(-((y - cy - shift[0]) ** 2 + (x - cx - shift[1]) ** 2) / 8.0)
    return img.astype(np.float32)


def test_resample_linear_is_exact_for_affine_images_and_clamps():
    y, x = np.mgrid[0:9, 0:11].astype(np.float32)
    image = jnp.asarray(np.stack([2.0 * y - 0.5 * x + 3.0]))
    rng = np.random.default_rng(1)
    coords = jnp.asarray(rng.uniform([0, 0], [8, 10], size=(5, 2)).T)
    out = resample_linear(image, coords)
    np.testing.assert_allclose(out[0], 2.0 * coords[0] - 0.5 * coords[1] + 3.0, rtol=1e-5)
    # outside the grid the edge value extends (no wrap-around)
    far = resample_linear(image, jnp.array([[-5.0, 20.0], [-5.0, 30.0]]))
    np.testing.assert_allclose(far[0], [image[0, 0, 0], image[0, 8, 10]])


def test_resample_linear_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    image = jnp.asarray(rng.normal(size=(1, 6, 7)).astype(np.float32))
    coords = jnp.asarray(np.array([[2.3, 4.6], [1.2, 3.7]], np.float32))
    f = lambda c: jnp.sum(resample_linear(image, c) ** 2)  # noqa: E731
    g = jax.grad(f)(coords)
    eps = 1e-3
    for i in range(2):
        for j in range(2):
            d = np.zeros((2, 2), np.float32)
            d[i, j] = eps
            fd = (f(coords + d) - f(coords - d)) / (2 * eps)
            assert abs(float(g[i, j]) - float(fd)) < 2e-2 * max(1.0, abs(float(fd)))


def _numpy_resample_and_adjoint(image, coords, cot):
    """Reference multilinear sampling and its exact adjoint, one sample at a time (numpy)."""
    c, *spatial = image.shape
    ndim = len(spatial)
    pts = coords.reshape(ndim, -1).T.astype(np.float64)
    g = cot.reshape(c, -1)
    out = np.zeros((c, len(pts)))
    grad_image = np.zeros(image.shape)
    grad_coords = np.zeros_like(pts)
    for n, p in enumerate(pts):
        clamped = np.clip(p, 0, np.array(spatial) - 1.0)
        lower = np.clip(np.floor(clamped), 0, np.maximum(np.array(spatial) - 2, 0)).astype(int)
        frac = clamped - lower
        for corner in np.ndindex(*(2,) * ndim):
            idx = tuple(lower + np.array(corner))
            w = np.prod([f if b else 1 - f for f, b in zip(frac, corner)])
            v = image[(slice(None), *idx)]
            out[:, n] += w * v
            grad_image[(slice(None), *idx)] += w * g[:, n]
            for a in range(ndim):
                if 0 <= p[a] <= spatial[a] - 1:
                    dw = np.prod([(1.0 if b else -1.0) if k == a else (f if b else 1 - f)
                                  for k, (f, b) in enumerate(zip(frac, corner))])
                    grad_coords[n, a] += dw * np.dot(g[:, n], v)
    return out.reshape(cot.shape), grad_image, grad_coords.T.reshape(coords.shape)


@pytest.mark.parametrize("spatial", [(7, 9), (4, 6, 5)])
def test_resample_linear_backward_pass_is_the_exact_adjoint(spatial):
    rng = np.random.default_rng(5)
    image = rng.normal(size=(3, *spatial)).astype(np.float32)
    # samples inside, on the edges and outside (clamped: no coordinate gradient there)
    coords = np.stack([rng.uniform(-1.5, n + 0.5, size=(2, 11)) for n in spatial]).astype(np.float32)
    cot = rng.normal(size=(3, 2, 11)).astype(np.float32)
    out, vjp = jax.vjp(resample_linear, jnp.asarray(image), jnp.asarray(coords))
    grad_image, grad_coords = vjp(jnp.asarray(cot))
    ref_out, ref_image, ref_coords = _numpy_resample_and_adjoint(image, coords, cot)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_image, ref_image, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_coords, ref_coords, rtol=1e-4, atol=1e-4)
    assert np.any(ref_coords == 0) and np.any(ref_coords != 0)


def test_upsample_linear_reproduces_linear_fields():
    coarse = [np.arange(0, 33, 8.0), np.arange(0, 33, 8.0)]
    fine = [np.arange(33.0), np.arange(33.0)]
    cy, cx = np.meshgrid(*coarse, indexing="ij")
    field = jnp.asarray((0.3 * cy - 0.1 * cx + 1.0)[None])
    up = upsample_linear(field, coarse, fine)
    fy, fx = np.meshgrid(*fine, indexing="ij")
    np.testing.assert_allclose(up[0], 0.3 * fy - 0.1 * fx + 1.0, atol=1e-5)
    m = interpolation_matrix(np.array([0.0, 1.0]), np.array([-1.0, 0.25, 2.0]))
    np.testing.assert_allclose(m, [[1, 0], [0.75, 0.25], [0, 1]])


def test_time_map_puts_the_window_on_minus_one_to_one():
    tm = TimeMap.for_times(np.array([[10.0, 10.02], [10.1, 10.12]]), margin=0.0)
    np.testing.assert_allclose(tm.normalise(np.array([10.0, 10.06, 10.12])), [-1, 0, 1], atol=1e-6)
    padded = TimeMap.for_times(np.array([10.0, 10.12]))  # default: a quarter span either side
    np.testing.assert_allclose(padded.normalise(np.array([9.97, 10.06, 10.15])), [-1, 0, 1], atol=1e-5)
    with pytest.raises(ValueError, match="incomplete window"):
        TimeMap.for_times(np.array([0.0, np.nan]))


def test_initial_motion_is_negligible_and_shapes_follow_the_grid():
    model = build_model(small_config(), (24, 20), 2)
    params = model.init(jax.random.PRNGKey(0))
    scenes, motion = jax.jit(lambda p, t: model.scenes(p, t, 1.0))(params, jnp.linspace(-1, 1, 3))
    assert scenes.shape == (3, 2, 24, 20) and motion.shape == (3, 2, 24, 20)
    assert float(jnp.max(jnp.abs(motion))) < 1e-2


def test_fit_data_rejects_incomplete_windows():
    with pytest.raises(ValueError, match="incomplete"):
        FitData(np.zeros((2, 4, 4)), np.array([0.0, np.nan]), np.arange(2))
    with pytest.raises(ValueError, match="one row per measurement"):
        FitData(np.zeros((2, 4, 4)), np.array([0.0, 1.0, 2.0]), np.arange(2))


def test_fit_recovers_a_translation_and_reuses_the_compiled_step():
    """Toy forward model: 4 shots of a texture moving 1.5 px/shot along x. The fitted motion
    moves the right way by the right amount, and a second window of the same shape reuses
    the compiled step (no recompilation between windows)."""
    shape = (32, 32)
    shifts = [(0.0, 1.5 * k) for k in range(4)]
    y = np.stack([blobs(shape, s) for s in shifts])
    times = np.array([0.0, 0.1, 0.2, 0.3])
    config = small_config(max_steps=300)
    model = build_model(config, shape, 1)
    res = fit(model, IdentityForward(), FitData(y, times, np.arange(4)))
    scenes, motion = render_scenes(res, times)
    # scene(x, t) = template(x + d): a feature moving +1.5 px/shot needs d_x decreasing by 1.5
    inner = motion[:, :, 8:-8, 8:-8].mean(axis=(2, 3))
    np.testing.assert_allclose(np.diff(inner[:, 1]), -1.5, atol=0.35)
    np.testing.assert_allclose(np.diff(inner[:, 0]), 0.0, atol=0.35)
    err = np.abs(scenes[:, 0, 6:-6, 6:-6] - y[:, 6:-6, 6:-6]).mean() / np.abs(y).mean()
    assert err < 0.1
    run_chunk, _ = compiled_steps(model, config.fit.eval_every)
    n_compiled = run_chunk._cache_size()
    fit(model, IdentityForward(), FitData(y, times + 5.0, np.arange(4)), init_params=res.params)
    assert run_chunk._cache_size() == n_compiled


def test_learning_rate_factors_and_the_warm_up_scale_the_first_step_exactly():
    """One step from the same parameters, against the same step with neither factor:
    fit.warm_motion_lr_factor = 3 scales a warm fit's motion updates only, and a 4-step
    fit.lr_warmup_steps scales a fit from fitted networks (warm, or cold from start parameters)
    to 1/4; a cold fit from random networks is unchanged."""
    shape = (16, 16)
    y = np.stack([blobs(shape, (0.0, 0.5 * k)) for k in range(2)])
    data = FitData(y, np.array([0.0, 0.1]), np.arange(2))
    start = build_model(small_config(), shape, 1).init(jax.random.PRNGKey(3))
    # start_alpha 1: a cold fit from start parameters has every level on from its first step
    plain = small_config(max_steps=1, eval_every=1, start_alpha=1.0)
    scaled = small_config(max_steps=1, eval_every=1, start_alpha=1.0, warm_motion_lr_factor=3.0, lr_warmup_steps=4)

    def first_step(config, start_from: str) -> dict[str, np.ndarray]:
        model = build_model(config, shape, 1)
        kwargs = {"warm": {"init_params": start}, "pre-fitted": {"start_params": start}, "random": {}}[start_from]
        res = fit(model, IdentityForward(), data, **kwargs)
        origin = start if start_from != "random" else model.init(jax.random.PRNGKey(config.fit.seed))
        return {
            group: np.concatenate([np.ravel(a) - np.ravel(b) for a, b in zip(
                jax.tree_util.tree_leaves(res.params[group]), jax.tree_util.tree_leaves(origin[group]), strict=True
            )])
            for group in ("scene", "motion")
        }

    expected = {"warm": {"scene": 0.25, "motion": 0.75}, "pre-fitted": {"scene": 0.25, "motion": 0.25}}
    for start_from, ratios in expected.items():
        base, moved = first_step(plain, start_from), first_step(scaled, start_from)
        for group, ratio in ratios.items():
            assert np.abs(base[group]).max() > 0
            np.testing.assert_allclose(moved[group], ratio * base[group], rtol=1e-3, atol=1e-9)
    base, moved = first_step(plain, "random"), first_step(scaled, "random")
    for group in ("scene", "motion"):
        np.testing.assert_allclose(moved[group], base[group], rtol=1e-6, atol=1e-12)


def test_non_finite_gradients_never_reach_the_parameters():
    """Updates that would make a parameter NaN are skipped (the loop's NaN guard)."""
    shape = (16, 16)
    y = np.stack([blobs(shape, (0, 0))] * 2)
    config = small_config(max_steps=50, lr_scene=1e30, lr_motion=1e30)
    model = build_model(config, shape, 1)
    try:
        res = fit(model, IdentityForward(), FitData(y, np.array([0.0, 0.1]), np.arange(2)))
    except Exception as err:  # a clear error is acceptable, a NaN result is not
        assert "lr_scene" in str(err)
        return
    leaves = jax.tree_util.tree_leaves(res.params)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["gain"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class GainForward:
    """Toy forward model: row ``k`` measures its scene's channels summed, times its shot's gain."""

    gain: jax.Array
    channels = 2

    def render(self, scenes, shots):
        return jnp.sum(scenes, axis=1) * self.gain[shots].reshape(-1, *([1] * (scenes.ndim - 2)))


@pytest.mark.parametrize("scene_shape", [(16, 20), (3, 12, 10)])
def test_chunked_rendering_gives_the_same_loss_and_gradient(scene_shape):
    # rows rendered 3 at a time (7 rows: the last chunk padded with zero-weight rows), each chunk
    # recomputed in the backward pass: the loss, the held-out loss and every gradient as all at once
    from nstm_acquire.nstm.fit import _loss_terms, _masks

    k, n_sub = 7, 2
    whole = small_config(reg_scene=1e-2)
    chunked = small_config(reg_scene=1e-2, render_chunk=3)
    rng = np.random.default_rng(0)
    forward = GainForward(jnp.asarray(rng.uniform(0.5, 1.5, 4), jnp.float32))
    shots = jnp.asarray([0, 1, 2, 3, 0, 1, 2])
    y = jnp.asarray(rng.normal(size=(k, *scene_shape)), jnp.float32)
    train, val = (jnp.asarray(m) for m in _masks((k, *scene_shape), 1, 0.2, 0))
    tn = jnp.asarray(np.linspace(-0.9, 0.9, k * n_sub), jnp.float32)
    results = []
    for config in (whole, chunked):
        model = build_model(config, scene_shape, 2)
        params = model.init(jax.random.PRNGKey(3))

        def loss(p, model=model):
            return _loss_terms(model, forward, p, jnp.float32(0.7), tn, shots, y, train, val, model.scene_plan())

        (value, metrics), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        results.append((float(value), float(metrics["val"]), grads))
    (v0, h0, g0), (v1, h1, g1) = results
    assert v0 > 0 and h0 > 0
    np.testing.assert_allclose([v1, h1], [v0, h0], rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5 * float(np.abs(a).max()) + 1e-12)
