"""A warm fit's motion started from a registration against the previous window's scene.

Known answers: the "previous scene" is a scene network pre-fitted to a simulated 2D SIM
window's Wiener result; the "new window" is that scene moved by a known translation per shot
and rendered through the window's own forward model (pattern and OTF of each shot). Each
shot's frame registered against the unmoved scene's rendering must give the translation back,
absolutely (not about the window's mean), and the motion network pre-fitted to it must return
the backward displacement ``d = -c`` at every shot.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from sim_data import OPTICS, illumination, simulate_moving_2d

from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import FitData, build_model
from nstm_acquire.nstm.model import TimeMap
from nstm_acquire.recon.problem import ProblemBuilder, WindowProblem
from nstm_acquire.recon.registration import motion_against_rendering
from nstm_acquire.recon.start import _render_static, scene_from_conventional, warm_start_params
from nstm_acquire.store import WindowData

pytestmark = pytest.mark.filterwarnings("ignore:SIM parameters:UserWarning")

N = 48  # camera pixels: 96 x 96 output pixels
# content shift of each of the nine shots relative to the previous scene, output pixels (dy, dx):
# a vibration of a few pixels, none of them zero-mean
SHIFTS = np.array([[2, 4], [3, 5], [4, 6], [4, 6], [3, 5], [2, 3], [1, 1], [0, -1], [-1, -2]])


@pytest.fixture(scope="module")
def moved_window():
    config = default_config("sim2d").with_fit(warm_motion_start="registration")
    ill = illumination(three_beam=False)
    phantom = BeadPhantom((N * OPTICS.pixel_size_um,) * 2, n_beads=30, seed=3, n_pairs_each=0)
    raw, starts, _ = simulate_moving_2d(ill, phantom, "static", n=N, photons=400.0)
    problem = ProblemBuilder(OPTICS, ill, (N, N), 1, config).problem(
        WindowData(0, raw, starts, np.full_like(starts, 0.01))
    )
    model = build_model(config, problem.scene_shape, 1, 2, nonnegative=True, n_shots=9)
    params = scene_from_conventional(model, problem, config)
    template = np.asarray(model.template(params, 1.0))  # (1, Y', X')
    moved = np.stack([np.roll(template, tuple(s), axis=(-2, -1)) for s in SHIFTS])
    frames = np.asarray(problem.forward.render(jnp.asarray(moved), jnp.asarray(problem.data.shots)))
    new = dataclasses.replace(problem, data=dataclasses.replace(problem.data, measurements=frames), info={})
    return config, model, params, template, new


def test_each_shot_registers_absolutely_against_the_previous_scene(moved_window):
    _, _, _, template, problem = moved_window
    motion, info = motion_against_rendering(problem, _render_static(problem, template))
    assert info["registered"] and motion is not None
    found = np.asarray(info["shot_shift_px"]) * 2  # camera -> output pixels
    np.testing.assert_allclose(found, SHIFTS, atol=0.35)  # within 0.18 camera pixels
    # the backward displacement d = -c, uniform over the output grid
    np.testing.assert_allclose(motion[:, :, 30, 60], -found, atol=0.03)


def test_warm_start_prefits_the_motion_to_the_registration_and_keeps_the_scene(moved_window):
    config, model, params, _, problem = moved_window
    out = warm_start_params(model, problem, config, params)
    assert problem.info["warm_motion_start"]["prefit"]
    assert out["scene"] is params["scene"]
    times = problem.data.times_s
    tn = jnp.asarray(TimeMap.for_times(times).normalise(times.mean(axis=1)))
    _, w_m = model.level_weights(1.0)
    d = np.asarray(model.motion(out, tn, w_m))  # (K, 2, Y', X')
    inner = d[:, :, 16:-16, 16:-16].reshape(9, 2, -1)
    np.testing.assert_allclose(inner.mean(axis=-1), -SHIFTS, atol=0.35)
    # asked for the previous window's motion as it ended: nothing changes
    assert warm_start_params(model, problem, config.with_fit(warm_motion_start="previous"), params) is params


def test_a_shot_that_shares_nothing_with_the_scene_leaves_the_warm_start_unchanged(moved_window):
    config, model, params, _, problem = moved_window
    rng = np.random.default_rng(0)
    noise = rng.normal(1.0, 0.1, problem.data.measurements.shape).astype(np.float32)
    unrelated = dataclasses.replace(problem, data=dataclasses.replace(problem.data, measurements=noise), info={})
    assert warm_start_params(model, unrelated, config, params) is params
    assert not unrelated.info["warm_motion_start"]["registered"]


def test_a_volume_window_is_refused_in_one_line():
    class Volumes:  # a forward model with neither h_phi nor 2D patterns (3D SIM)
        pass

    data = FitData(np.zeros((2, 8, 8)), np.zeros((2, 1)), np.arange(2))
    problem = WindowProblem(Volumes(), data, (4, 16, 16), 1, ["density"], 3, np.zeros(2), np.zeros((1, 4, 16, 16)), 0.05, 0.1, {})
    with pytest.raises(ValueError, match=r"DPC and 2D SIM windows only .*Volumes.*fit.warm_motion_start='previous'$"):
        motion_against_rendering(problem, np.zeros((2, 8, 8)))

