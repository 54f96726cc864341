"""The stationary-velocity-field motion (nstm.velocity) against analytic flows.

Known answers: a uniform velocity ``v`` carries every point by ``v s`` (the displacement at
normalised time ``t`` is ``-v t``); a rigid rotation's velocity ``ω J (x - c)`` (linear in ``x``,
so the bilinear control grid holds it exactly) carries a point round ``c`` by the angle ``ω s``;
the flow back and forth returns every point; the field's model renders through the NSTM's warp
(a static scene shifted by the flow, compared with numpy's own shift).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.velocity import VelocityFieldModel, build_velocity_model, control_grid_shape


@pytest.fixture(scope="module")
def model() -> VelocityFieldModel:
    return build_velocity_model(default_config("dpc"), (48, 40), 2, spacing_px=10.0)


def test_control_points_span_the_field_at_the_asked_spacing():
    assert control_grid_shape((128, 128), 25.0) == (6, 6)
    assert control_grid_shape((48, 40), 10.0) == (6, 5)
    assert control_grid_shape((8, 8), 100.0) == (2, 2)
    with pytest.raises(ValueError, match="spacing_px"):
        control_grid_shape((8, 8), 0.0)


def test_uniform_velocity_displaces_every_pixel_by_minus_v_t(model):
    v = jnp.broadcast_to(jnp.asarray([3.0, -5.0])[:, None, None], (2, *model.control_shape))
    tn = jnp.asarray([-0.6, 0.0, 0.25, 0.7])
    d = np.asarray(model.motion({"motion": {"velocity": [v]}}, tn))
    assert d.shape == (4, 2, 48, 40)
    want = -np.asarray(tn)[:, None] * np.array([3.0, -5.0])[None]
    np.testing.assert_allclose(d, np.broadcast_to(want[:, :, None, None], d.shape), atol=1e-4)


def test_rotation_velocity_turns_points_about_the_centre_by_omega_s(model):
    omega = 1.2  # rad per unit of normalised time
    ny, nx = model.scene_shape
    c = np.array([(ny - 1) / 2, (nx - 1) / 2])
    gy = np.linspace(0, ny - 1, model.control_shape[0])
    gx = np.linspace(0, nx - 1, model.control_shape[1])
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    velocity = jnp.asarray(np.stack([omega * (xx - c[1]), -omega * (yy - c[0])]), jnp.float32)  # J (x - c)
    points = jnp.asarray(np.stack([c[0] + np.array([5.0, -8.0, 12.0]), c[1] + np.array([0.0, 6.0, -3.0])]))
    s = 0.6
    moved = np.asarray(model.flow(velocity, points, jnp.asarray(s)))
    r = np.asarray(points) - c[:, None]
    angle = omega * s  # dy/ds = ω (x - cx), dx/ds = -ω (y - cy): a turn by ω s
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    np.testing.assert_allclose(moved, c[:, None] + rot @ r, atol=0.02)
    back = np.asarray(model.flow(velocity, jnp.asarray(moved), jnp.asarray(-s)))
    np.testing.assert_allclose(back, np.asarray(points), atol=0.02)


def test_rendered_scenes_are_the_template_moved_by_the_flow(model):
    params = model.init(jax.random.PRNGKey(0))
    assert set(params) == {"scene", "motion"}
    # three levels of control points, coarse to fine, 40 / 20 / 10 px apart
    assert [v.shape for v in params["motion"]["velocity"]] == [(2, 2, 2), (2, 3, 3), (2, *model.control_shape)]
    template = np.asarray(model.template(params, 1.0))
    v = jnp.broadcast_to(jnp.asarray([0.0, 4.0])[:, None, None], (2, *model.control_shape))
    params = {**params, "motion": {"velocity": [v]}}
    scenes, motion = model.scenes(params, jnp.asarray([0.5]), 1.0)
    # at t = 0.5 the sample has moved +2 px along x: scene(r) = template(r + d), d = (0, -2)
    np.testing.assert_allclose(np.asarray(motion)[0, 1], -2.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(scenes)[0][:, 8:-8, 8:-8], template[:, 8:-8, 6:-10], atol=1e-4)


def test_the_levels_sum_to_one_field_at_the_finest_control_points(model):
    coarse = jnp.ones((2, 2, 2), jnp.float32) * jnp.asarray([1.0, -2.0])[:, None, None]  # uniform
    fine = jnp.zeros((2, *model.control_shape), jnp.float32).at[0, 2, 3].set(0.5)
    total = np.asarray(model.control_velocity([coarse, fine]))
    want = np.zeros((2, *model.control_shape))
    want[0] += 1.0
    want[1] -= 2.0
    want[0, 2, 3] += 0.5
    np.testing.assert_allclose(total, want, atol=1e-6)


def test_a_volume_is_refused_with_the_setting_to_change():
    with pytest.raises(ValueError, match="deformation_start='zero'"):
        VelocityFieldModel(default_config(), (4, 16, 16), 1, motion_dims=2)


def test_dpc_defaults_ask_for_the_velocity_start_and_check_its_rates():
    from pydantic import ValidationError

    from nstm_acquire.nstm.config import FitConfig

    fit = default_config("dpc").fit
    assert fit.deformation_start == "velocity" and fit.velocity_lrs == (0.5, 1.0)
    assert default_config("sim2d").fit.deformation_start == "zero"  # measured on DPC only
    with pytest.raises(ValidationError, match="velocity_lrs"):
        FitConfig(velocity_lrs=(0.5, 0.0))
    # the motion grid: cells at most 32 px wide on DPC's larger fields, 4 across 128 px as before
    from nstm_acquire.nstm.fit import build_model

    cells = [build_model(default_config("dpc"), (n, n), 2).motion_encoding.finest_resolution[-1] for n in (128, 256, 512)]
    assert cells == [4.0, 8.0, 16.0]
