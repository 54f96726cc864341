"""Warm-started fits: stop once the previous window's held-out loss is reached, refit from
scratch when a warm start lands far above it.

A 64 x 64 cell sample translates steadily; window 2 follows window 1 in time. Quality is scored
against the simulator's true phase at every shot time.
"""

import numpy as np
import pytest

from nstm_acquire.evaluation.metrics import correlation, crop, highpass
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import simulate_dpc_window
from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import FitData, build_model, fit, render_scenes
from nstm_acquire.physics.dpc.forward import DpcForward, dpc_normalise

N = 64
MARGIN = 6
MOTION = "translation:vx=30,vy=15"
CELLS = {"n_cells": 12, "cell_radius_um": (4.0, 9.0)}


def _window(t_start_s=0.0, seed=0, noise_seed=None):
    cfg = simulated_config(frame_shape=(N, N))
    return simulate_dpc_window(
        cfg, shape=(N, N), motion=MOTION, exposure_s=0.03, seed=seed, t_start_s=t_start_s,
        noise_seed=noise_seed, sample_options=CELLS,
    )


def _problem(win):
    y = dpc_normalise(win.raw, win.background)
    return DpcForward.for_illumination((N, N), win.optics, win.illumination), FitData(y, win.midpoints_s, np.arange(4))


def _phase_corr(result, win):
    scenes, _ = render_scenes(result, win.midpoints_s)
    px, cut = win.optics.pixel_size_um, 0.1 * win.optics.cutoff_per_um
    hp = lambda a: crop(highpass(a, px, cut), MARGIN)  # noqa: E731
    return min(correlation(hp(scenes[k, 1]), hp(win.truth_scene[k, 1])) for k in range(4))


@pytest.fixture(scope="module")
def chain():
    """Config, model, the first window's cold fit, and the next window (12.5 ms later)."""
    config = default_config().with_fit(max_steps=300, warm_max_steps=200)
    first = _window()
    model = build_model(config, (N, N), 2, n_shots=4)
    cold = fit(model, *_problem(first))
    t_next = float(first.timestamps_s[-1] + first.exposure_s[-1] + 0.0025)
    return config, model, cold, _window(t_start_s=t_next, noise_seed=5)


def test_warm_fit_stops_when_it_reaches_the_reference_held_out_loss(chain):
    config, _, cold, second = chain
    # patience off, so that only the reference can end the fit early
    open_ended = config.with_fit(warm_patience=1000, warm_refit_factor=None)
    model = build_model(open_ended, (N, N), 2, n_shots=4)
    forward, data = _problem(second)
    free = fit(model, forward, data, init_params=cold.params)
    assert free.stop_reason == "max_steps" and free.steps == config.fit.warm_max_steps
    val = {int(h["step"]): h["val"] for h in free.history}
    # a reference that the held-out loss at step 75 is within 5 % of (and no earlier one is)
    reference = val[75] / (1 + config.fit.warm_target_tolerance)
    assert val[50] > val[75]
    targeted = fit(model, forward, data, init_params=cold.params, reference_val_loss=reference)
    assert targeted.stop_reason == "reached_reference"
    assert targeted.steps == 75 and targeted.best_step == 75
    assert targeted.final_val_loss == pytest.approx(val[75], rel=1e-5)
    assert targeted.info()["reference_val_loss"] == reference
    assert targeted.summary().startswith("75 steps (reached_reference)")
    assert targeted.summary().endswith("warm start")


def test_default_warm_fit_stops_early_at_the_cold_fits_quality(chain):
    config, model, cold, second = chain
    forward, data = _problem(second)
    warm = fit(model, forward, data, init_params=cold.params, reference_val_loss=cold.final_val_loss)
    assert warm.warm_start and warm.rejected_warm_fit is None
    assert warm.stop_reason in ("reached_reference", "converged")
    assert warm.steps < config.fit.warm_max_steps
    # it stopped at the first evaluation that gained less than warm_min_improvement
    vals = [h["val"] for h in warm.history]
    if warm.stop_reason == "converged":
        assert vals[-1] > vals[-2] * (1 - config.fit.warm_min_improvement)
        assert all(b < a * (1 - config.fit.warm_min_improvement) for a, b in zip(vals[:-2], vals[1:-1]))
    # the same window fitted from scratch, for the quality it must match
    cold_second = fit(model, forward, data)
    assert _phase_corr(warm, second) > 0.97
    assert _phase_corr(warm, second) > _phase_corr(cold_second, second) - 0.01
    assert warm.steps < cold_second.steps


def test_a_warm_start_that_ends_far_above_the_reference_is_refitted_from_scratch(chain):
    config, model, cold, second = chain
    # networks fitted to a different sample, given too few steps to unlearn it
    other = _window(seed=7)
    wrong = fit(model, *_problem(other)).params
    short = config.with_fit(warm_max_steps=25)
    short_model = build_model(short, (N, N), 2, n_shots=4)
    forward, data = _problem(second)
    result = fit(short_model, forward, data, init_params=wrong, reference_val_loss=cold.final_val_loss)
    rejected = result.rejected_warm_fit
    assert rejected is not None, "a 25-step warm start from another sample must be rejected"
    assert rejected["steps"] == 25
    assert rejected["final_val_loss"] > config.fit.warm_refit_factor * cold.final_val_loss
    assert not result.warm_start  # the kept result is the cold refit
    assert result.final_val_loss < rejected["final_val_loss"]
    assert result.wall_s > rejected["wall_s"]
    assert "warm start rejected" in result.summary() and "fitted from scratch" in result.summary()
    assert _phase_corr(result, second) > 0.97


def test_without_a_refit_factor_the_warm_result_is_kept(chain):
    config, _, cold, second = chain
    keep = config.with_fit(warm_max_steps=25, warm_refit_factor=None, warm_target_tolerance=None)
    model = build_model(keep, (N, N), 2, n_shots=4)
    other = _window(seed=7)
    wrong = fit(model, *_problem(other)).params
    result = fit(model, *_problem(second), init_params=wrong, reference_val_loss=cold.final_val_loss)
    assert result.warm_start and result.rejected_warm_fit is None and result.steps == 25


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_reference_val_loss_must_be_a_positive_finite_loss(chain, bad):
    _, model, cold, second = chain
    with pytest.raises(ValueError, match="reference_val_loss"):
        fit(model, *_problem(second), init_params=cold.params, reference_val_loss=bad)
