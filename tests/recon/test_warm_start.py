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


# ---------------------------------------------------------------- failed fits in a store chain
def test_a_window_whose_fit_fails_is_marked_failed_and_never_warm_starts_the_next(fast_sim, open_scope, tmp_path, capsys):
    """Window 1's data cannot be fitted (1e30: its loss overflows): it is stored as failed with its reason, window 2
    fits from scratch, windows 0 and 2 are final, and the CLI warns once per failed window."""
    import dataclasses
    from types import SimpleNamespace

    from nstm_acquire import cli
    from nstm_acquire.acquire.controller import AcquisitionController
    from nstm_acquire.acquire.sequences import AcquisitionPlan
    from nstm_acquire.recon import chain
    from nstm_acquire.store import ReconReader

    scope = open_scope(fast_sim(frame_shape=(24, 24)))
    store = tmp_path / "run.zarr"
    AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=3), store).run()
    config = default_config().with_fit(max_steps=40, coarse_to_fine_steps=20, warm_max_steps=20, eval_every=10)
    real = chain.reconstruct_window

    def unfittable_window_1(problem, *args, window=0, **kwargs):
        if window == 1:
            huge = np.full_like(problem.data.measurements, 1e30)
            problem = dataclasses.replace(problem, data=dataclasses.replace(problem.data, measurements=huge))
        return real(problem, *args, window=window, **kwargs)

    chain.reconstruct_window, saved = unfittable_window_1, chain.reconstruct_window
    try:
        results = chain.StoreReconstructor(store, config).run()
        assert results[1].info["status"] == "failed" and "non-finite" in results[1].info["failure"]
        # window 1 was warm-started from window 0 (rejected: diverged, then refitted cold) ...
        assert results[1].fit.warm_start or results[1].fit.rejected_warm_fit is not None
        assert not results[2].fit.warm_start  # ... but window 2 is not warm-started from window 1
        assert results[2].info["warm_start_from"] is None
        assert [r.info["status"] for r in results] == ["final", "failed", "final"]
        recon = ReconReader(store)
        assert recon.windows_done() == [0, 2]
        failed = recon.windows_failed()
        assert list(failed) == [1] and "\n" not in failed[1] and failed[1] == results[1].info["failure"]
    finally:
        chain.reconstruct_window = saved
    # the CLI: one warning line per failed window, and a non-zero exit (the fits above, replayed)

    class Replay:
        def __init__(self, *args, **kwargs):
            self.reader = SimpleNamespace(complete_windows=lambda: [0, 1, 2])

        def pending(self, windows=None):
            return [0, 1, 2]

        def reconstruct(self, w, callback=None):
            return results[w]

    chain.StoreReconstructor, real_class = Replay, chain.StoreReconstructor
    try:
        capsys.readouterr()
        code = cli.main(["reconstruct", str(store), "--overwrite"])
    finally:
        chain.StoreReconstructor = real_class
    out, err = capsys.readouterr()
    assert code == 1 and "2 windows, 1 failed (1;" in out
    warned = [line for line in err.splitlines() if line.startswith("warning: window")]
    assert len(warned) == 1 and warned[0].startswith("warning: window 1 failed") and "non-finite" in warned[0]


def test_fit_failure_judges_explosions_against_the_first_evaluation_and_a_flat_prediction():
    from types import SimpleNamespace

    from nstm_acquire.recon.chain import EXPLODED_FACTOR, FLAT_FACTOR, fit_failure

    def result(final_val, first_val, stop="converged"):
        fit = SimpleNamespace(
            stop_reason=stop, steps=100, final_loss=final_val, final_val_loss=final_val,
            history=[{"loss": first_val, "val": first_val}],
        )
        return SimpleNamespace(fit=fit, scene=np.zeros((2, 1, 1, 4, 4)), motion=np.zeros((2, 2, 1, 4, 4)))

    y = np.random.default_rng(0).normal(size=(4, 8, 8))  # flat-prediction loss about 4
    assert fit_failure(result(1.0, 3.0), y) is None
    assert "exploded" in fit_failure(result(EXPLODED_FACTOR * 3.0 * 1.01, 3.0), y)
    assert "predicting each frame by its mean" in fit_failure(result(FLAT_FACTOR * 4.5, 1000.0), y)
    assert fit_failure(result(9.0, 100.0), y) is None  # an unconverged fit a little above flat is kept
    assert "diverged" in fit_failure(result(1.0, 3.0, stop="diverged"), y)
    assert "non-finite" in fit_failure(result(float("nan"), 3.0), y)


def test_a_chain_renders_its_warm_windows_across_the_exposure_as_its_cold_fit_chose(fast_sim, open_scope, tmp_path):
    """The cold fit decides how many times per exposure a shot is rendered (recon.start.exposure_sampled,
    forced to 2 here); the warm windows after it are fitted, and judged by the trust report, on
    data sampled alike, and say so in their attributes."""
    from nstm_acquire.acquire.controller import AcquisitionController
    from nstm_acquire.acquire.sequences import AcquisitionPlan
    from nstm_acquire.recon import chain
    from nstm_acquire.store import ReconReader

    scope = open_scope(fast_sim(frame_shape=(24, 24)))
    store = tmp_path / "run.zarr"
    AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=3), store).run()
    config = default_config().with_fit(max_steps=40, coarse_to_fine_steps=20, warm_max_steps=20, eval_every=10)
    asked, fitted = [], []
    real_sampled, real_fit = chain.exposure_sampled, chain.reconstruct_window

    def sampled(problem, cfg, samples=None):
        asked.append(samples)
        return real_sampled(problem, cfg, 2 if samples is None else samples)

    def reconstruct(problem, *args, **kwargs):
        fitted.append(problem.data.times_s.shape)
        return real_fit(problem, *args, **kwargs)

    chain.exposure_sampled, chain.reconstruct_window = sampled, reconstruct
    try:
        results = chain.StoreReconstructor(store, config).run()
    finally:
        chain.exposure_sampled, chain.reconstruct_window = real_sampled, real_fit
    assert [r.fit.warm_start for r in results] == [False, True, True]
    assert asked == [None, 2, 2]
    assert fitted == [(4, 2)] * 3
    recon = ReconReader(store)
    for w in range(3):
        assert recon.windows_info()[w]["exposure_samples"]["samples"] == 2
        assert results[w].info["trust"]["verdict"] != "unavailable"
