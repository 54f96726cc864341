"""Scene pre-fit (nstm.prefit) and the cold SIM fit started from the Wiener result (recon.start)."""

import dataclasses

import jax
import numpy as np
import pytest

from nstm_acquire.nstm.config import MotionNetConfig, NSTMConfig, SceneNetConfig
from nstm_acquire.nstm.fit import build_model
from nstm_acquire.nstm.prefit import prefit_scene, scene_error


def _blobs(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth non-negative texture of 20 Gaussian blobs (sigma 2 px)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    for _ in range(20):
        cy, cx = rng.uniform(0, shape[0], 2)
        img += rng.uniform(0.3, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 8.0)
    return img.astype(np.float32)


def _model(nonnegative: bool):
    config = NSTMConfig(
        scene=SceneNetConfig(levels=6, log2_table_size=10, hidden=32, finest_cells_per_px=0.5, margin_fraction=0.0625),
        motion=MotionNetConfig(levels=2, log2_table_size=8, stride_px=4, spatial_finest_cells=4),
    )
    return build_model(config, (32, 32), 1, nonnegative=nonnegative)


def test_prefit_reproduces_a_known_image():
    model = _model(nonnegative=True)  # the SIM density's softplus output
    target = _blobs((32, 32))[None]
    start = model.init(jax.random.PRNGKey(0))
    before = scene_error(model, start, target)
    params, losses = prefit_scene(model, start, target, steps=300, batch=256, lr=1e-2)
    out = np.asarray(model.template(params, 1.0))[0]
    assert np.corrcoef(out.ravel(), target[0].ravel())[0, 1] > 0.99
    assert scene_error(model, params, target) < 0.1 < before
    assert losses.shape == (300,) and losses[-1] < 0.05 * losses[0]
    # only the scene network is fitted
    for a, b in zip(jax.tree_util.tree_leaves(params["motion"]), jax.tree_util.tree_leaves(start["motion"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_prefit_at_a_coarse_alpha_leaves_the_fine_levels_untouched():
    model = _model(nonnegative=True)
    target = _blobs((32, 32), seed=1)[None]
    start = model.init(jax.random.PRNGKey(0))
    params, _ = prefit_scene(model, start, target, alpha=0.5, steps=300, batch=256, lr=1e-2)
    levels = model.config.scene.levels
    for level in range(levels):
        same = np.array_equal(np.asarray(params["scene"]["tables"][level]), np.asarray(start["scene"]["tables"][level]))
        assert same == (level >= levels // 2), level


def test_prefit_rejects_a_target_off_the_scene_grid():
    model = _model(True)
    start = model.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"target has shape \(1, 16, 16\).*\(1, 32, 32\)"):
        prefit_scene(model, start, np.zeros((1, 16, 16), np.float32))
    with pytest.raises(ValueError, match="alpha=1.5"):
        prefit_scene(model, start, np.zeros((1, 32, 32), np.float32), alpha=1.5)


def test_sim2d_cold_fit_from_the_wiener_result_needs_fewer_steps():
    """Static filaments, 32 x 32 camera pixels, one configuration (the 2D SIM defaults) started
    from the Wiener result and from random networks: the held-out loss the Wiener-started fit
    reaches in 50 steps, the random start has not come within 20 % of after 80."""
    from sim_data import OPTICS, illumination, simulate_moving_2d

    from nstm_acquire.hardware.simulated.phantoms import FilamentPhantom
    from nstm_acquire.nstm.config import default_config
    from nstm_acquire.nstm.fit import fit
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.recon.start import start_params

    n = 32
    ill = illumination(False)
    raw, starts, _ = simulate_moving_2d(ill, FilamentPhantom((n * 0.1, n * 0.1), n_filaments=3, seed=2), "static", n=n)
    cfg = default_config("sim2d").with_fit(max_steps=80, patience=100)
    assert cfg.fit.scene_start == "conventional"
    problem = ProblemBuilder(OPTICS, ill, (n, n), 1, cfg).problem_from_arrays(raw, starts, np.full_like(starts, 0.01))
    model = build_model(cfg, problem.scene_shape, 1, 2, nonnegative=True, n_shots=9)
    start = start_params(model, problem, cfg)
    assert start is not None
    val = {}
    for name, sp in (("wiener", start), ("random", None)):
        result = fit(model, problem.forward, problem.data, start_params=sp)
        val[name] = {int(h["step"]): h["val"] for h in result.history}
    assert val["random"][80] > 1.2 * val["wiener"][50], val


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Identity:
    """Toy forward model: each shot measures the scene's single channel."""

    channels = 1

    def render(self, scenes, shots):
        return scenes[:, 0]


def test_pre_fitted_start_is_made_only_for_a_cold_fit_or_the_refit_of_a_rejected_warm_fit():
    from nstm_acquire.nstm.fit import FitData, fit

    config = NSTMConfig(
        scene=SceneNetConfig(levels=2, log2_table_size=8, hidden=8, margin_fraction=0.0625),
        motion=MotionNetConfig(levels=2, log2_table_size=8, hidden=8, stride_px=4, spatial_finest_cells=2),
    ).with_fit(
        max_steps=4, eval_every=2, scene_sampling="grid", validation_fraction=0.1, warm_max_steps=2,
        warm_refit_factor=2.0, warm_target_tolerance=0.05, start_alpha=0.5, loss_margin_px=0,
    )
    model = build_model(config, (16, 16), 1)
    data = FitData(np.stack([_blobs((16, 16))] * 2), np.array([[0.0], [1.0]]), np.arange(2))
    calls = []

    def start():
        calls.append(1)
        return model.init(jax.random.PRNGKey(1))

    cold = fit(model, _Identity(), data, start_params=start)
    assert len(calls) == 1 and not cold.warm_start
    fit(model, _Identity(), data, init_params=cold.params, reference_val_loss=1e6, start_params=start)
    assert len(calls) == 1  # accepted warm fit: no pre-fit
    refit = fit(model, _Identity(), data, init_params=cold.params, reference_val_loss=1e-12, start_params=start)
    assert len(calls) == 2 and refit.rejected_warm_fit is not None


def test_restarts_keep_the_run_with_the_lowest_held_out_loss():
    """fit.restarts cold fits from random networks (seeds seed, seed + 1, ...; the held-out
    pixels of seed): the first run is the single-start fit, and the one with the lowest held-out
    loss is kept."""
    from nstm_acquire.nstm.fit import FitData, fit, start_text

    base = NSTMConfig(
        scene=SceneNetConfig(levels=2, log2_table_size=8, hidden=8, margin_fraction=0.0625),
        motion=MotionNetConfig(levels=2, log2_table_size=8, hidden=8, stride_px=4, spatial_finest_cells=2),
    ).with_fit(max_steps=6, eval_every=2, scene_sampling="grid", validation_fraction=0.1, loss_margin_px=0)
    data = FitData(np.stack([_blobs((16, 16))] * 2), np.array([[0.0], [1.0]]), np.arange(2))
    single = fit(build_model(base, (16, 16), 1), _Identity(), data)
    seen = []
    best = fit(build_model(base.with_fit(restarts=3), (16, 16), 1), _Identity(), data,
               callback=lambda step, metrics: seen.append(metrics))  # fmt: skip
    assert sorted({m["start"] for m in seen}) == [1, 2, 3] and start_text(seen[-1]) == " (start 3/3)"
    assert start_text({"loss": 1.0}) == ""  # a single start says nothing
    losses = [r["final_val_loss"] for r in best.restarts]
    assert [r["seed"] for r in best.restarts] == [0, 1, 2] and len(set(losses)) == 3  # different starts
    assert losses[0] == pytest.approx(single.final_val_loss, rel=1e-6)
    assert best.final_val_loss == min(losses) and [r["kept"] for r in best.restarts] == [v == min(losses) for v in losses]
    assert best.wall_s >= max(r["wall_s"] for r in best.restarts) and "best of 3 starts" in best.summary()
    # a start given (pre-fitted networks) or a warm start is one run
    assert fit(build_model(base.with_fit(restarts=3), (16, 16), 1), _Identity(), data,
               start_params=single.params).restarts is None  # fmt: skip
