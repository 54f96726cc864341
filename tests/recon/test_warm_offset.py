"""A warm DPC fit started from the previous window's networks moved by how far the sample has
travelled since (``fit.warm_motion_start = "offset"``).

Known answers: the "previous window" is a scene network pre-fitted to a simulated DPC window's
conventional phase and a motion network that predicts no motion at all (its last layer
zeroed). The "new window" is that scene moved by a known translation (the same for every shot,
plus a per-shot part that sums to zero) and rendered through each shot's transfer. The warm
start must add the translation's backward displacement ``d = -c`` to the motion everywhere,
keep the scene, and leave the networks alone where the translation is too small to matter or
carries the sample beyond the scene's margin.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import simulate_dpc_window
from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import build_model
from nstm_acquire.nstm.model import TimeMap
from nstm_acquire.recon.problem import ProblemBuilder
from nstm_acquire.recon.start import OFFSET_MIN_PX, scene_from_conventional, warm_start_params
from nstm_acquire.store import WindowData

N = 64  # margin 4 px, and the loss leaves 5 px at the edges out: the offset reaches 9 px
# per-shot wobble about the common translation (output pixels, dy dx), zero mean
WOBBLE = np.array([[1, -1], [0, 1], [-1, 1], [0, -1]])


@pytest.fixture(scope="module")
def previous():
    config = default_config("dpc").with_fit(warm_motion_start="offset")
    cfg = simulated_config(frame_shape=(N, N))
    cells = {"n_cells": 12, "cell_radius_um": (4.0, 9.0)}
    win = simulate_dpc_window(cfg, shape=(N, N), motion="static", exposure_s=0.03, seed=2, sample_options=cells)
    builder = ProblemBuilder(win.optics, win.illumination, (N, N), 1, config, background=win.background[:, None])
    problem = builder.problem(WindowData(0, win.raw[:, None], win.timestamps_s[:, None], win.exposure_s[:, None]))
    model = build_model(config, problem.scene_shape, 2, 2, n_shots=4)
    params = scene_from_conventional(model, problem, config)
    last = params["motion"]["mlp"][-1]
    params["motion"]["mlp"][-1] = {"w": jnp.zeros_like(last["w"]), "b": jnp.zeros_like(last["b"])}
    template = np.asarray(model.template(params, 1.0))  # (2, Y, X)
    return config, model, params, template, problem


def moved(previous, shift):
    """The previous window's problem with every shot's frame the template moved by ``shift`` +
    that shot's wobble (output pixels) and rendered through its transfer."""
    _, _, _, template, problem = previous
    scenes = np.stack([np.roll(template, tuple(np.add(shift, w)), axis=(-2, -1)) for w in WOBBLE])
    frames = np.asarray(problem.forward.render(jnp.asarray(scenes), jnp.asarray(problem.data.shots)))
    return dataclasses.replace(problem, data=dataclasses.replace(problem.data, measurements=frames), info={})


def motion_of(model, params, problem):
    times = problem.data.times_s
    tn = jnp.asarray(TimeMap.for_times(times).normalise(times.mean(axis=1)))
    return np.asarray(model.motion(params, tn, model.level_weights(1.0)[1]))  # (K, 2, Y, X)


def test_the_offset_moves_the_motion_by_the_common_translation_and_keeps_the_scene(previous):
    config, model, params, _, _ = previous
    problem = moved(previous, (3, -5))
    out = warm_start_params(model, problem, config, params)
    info = problem.info["warm_motion_start"]
    assert info["registered"] and info["offset_applied"]
    np.testing.assert_allclose(info["offset_px"], [-3, 5], atol=0.2)  # d = -c
    assert out["scene"] is params["scene"]
    d = motion_of(model, out, problem)
    # the same displacement everywhere and at every shot: the wobble is the fit's to find
    np.testing.assert_allclose(d[:, 0], info["offset_px"][0], atol=0.006)  # info is rounded to 0.01
    np.testing.assert_allclose(d[:, 1], info["offset_px"][1], atol=0.006)


def test_a_sample_that_has_not_travelled_keeps_the_previous_networks(previous):
    config, model, params, _, _ = previous
    problem = moved(previous, (0, 0))
    assert warm_start_params(model, problem, config, params) is params
    info = problem.info["warm_motion_start"]
    assert info["registered"] and not info["offset_applied"]
    assert np.max(np.abs(info["offset_px"])) < OFFSET_MIN_PX


def test_a_sample_carried_beyond_the_scene_margin_keeps_the_previous_networks(previous):
    config, model, params, _, _ = previous
    problem = moved(previous, (0, 12))  # 12 px > 4 px margin + 5 px edge
    assert warm_start_params(model, problem, config, params) is params
    info = problem.info["warm_motion_start"]
    assert info["registered"] and not info["offset_applied"]
    assert info["offset_px"][1] == pytest.approx(-12, abs=0.3)


def test_frames_that_share_nothing_with_the_prediction_keep_the_previous_networks(previous):
    config, model, params, _, problem = previous
    noise = np.random.default_rng(0).normal(0.0, 0.1, problem.data.measurements.shape).astype(np.float32)
    unrelated = dataclasses.replace(problem, data=dataclasses.replace(problem.data, measurements=noise), info={})
    assert warm_start_params(model, unrelated, config, params) is params
    assert not unrelated.info["warm_motion_start"]["registered"]


def test_a_motion_offset_is_exact(previous):
    _, model, params, _, problem = previous
    rand = jax.tree_util.tree_map(lambda a: a + 0.01 * jnp.ones_like(a), params)  # a motion that is not zero
    before = motion_of(model, rand, problem)
    after = motion_of(model, model.with_motion_offset(rand, np.array([2.5, -1.25])), problem)
    np.testing.assert_allclose(after - before, np.broadcast_to(np.array([2.5, -1.25])[None, :, None, None], before.shape), atol=1e-4)
