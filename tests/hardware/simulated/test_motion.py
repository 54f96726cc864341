"""Motion fields and the moving sample: signs, geometry, parsing, grids and motion blur."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from nstm_acquire.hardware.simulated.motion import (
    Combined,
    Rotation,
    Shear,
    Static,
    Swirl,
    Translation,
    Vibration,
    max_displacement_um,
    motion_from_spec,
)
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
from nstm_acquire.hardware.simulated.sample import MovingSample

FIELD = (6.4, 6.4)
PIXEL = 0.1  # 64 x 64 camera pixels
SHAPE = (64, 64)


def centroid(image: np.ndarray, pixel_um: float) -> np.ndarray:
    """Intensity centroid (y, x) in µm of an image whose pixel (i, j) is at (i, j) * pixel."""
    y = np.arange(image.shape[0])[:, None] * pixel_um
    x = np.arange(image.shape[1])[None, :] * pixel_um
    m = image.sum(dtype=np.float64)
    return np.array([(image * y).sum(dtype=np.float64) / m, (image * x).sum(dtype=np.float64) / m])


def second_moments(image: np.ndarray, pixel_um: float) -> tuple[float, float]:
    cy, cx = centroid(image, pixel_um)
    y = np.arange(image.shape[0])[:, None] * pixel_um
    x = np.arange(image.shape[1])[None, :] * pixel_um
    m = image.sum(dtype=np.float64)
    return (
        float((image * (y - cy) ** 2).sum(dtype=np.float64) / m),
        float((image * (x - cx) ** 2).sum(dtype=np.float64) / m),
    )


def one_bead(y: float, x: float, diameter: float = 0.3) -> BeadPhantom:
    return BeadPhantom.from_positions(FIELD, [[y, x]], diameter_um=diameter)


def random_points(n: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-5, 15, n), rng.uniform(-5, 15, n)


# ----------------------------------------------------------------------------- motions


def test_translation_moves_bead_by_v_t():
    sample = MovingSample(one_bead(3.2, 3.1), "translation:vx=1.5,vy=-0.5")
    for t in (0.0, 0.4, 1.0):
        image = sample.on_grid(t, SHAPE, PIXEL, upsample=2)
        # the feature appears at p + v t: x grows, y shrinks
        np.testing.assert_allclose(
            centroid(image, PIXEL / 2), [3.2 - 0.5 * t, 3.1 + 1.5 * t], atol=2e-3
        )


def test_translation_displacement_is_minus_v_t():
    dy, dx = Translation(velocity_um_per_s=(0.5, -2.0)).displacement(3.0, *random_points(), (0, 0))
    np.testing.assert_array_equal(dy, np.full(200, -1.5))
    np.testing.assert_array_equal(dx, np.full(200, 6.0))


def test_rotation_preserves_radius_and_turns_by_omega_t():
    omega, t, centre = 0.3, 2.0, (4.0, 5.0)
    y, x = random_points()
    dy, dx = Rotation(angular_velocity_rad_per_s=omega).displacement(t, y, x, centre)
    qy, qx = y + dy - centre[0], x + dx - centre[1]  # template point, relative to the centre
    ry, rx = y - centre[0], x - centre[1]
    np.testing.assert_allclose(np.hypot(qy, qx), np.hypot(ry, rx), rtol=1e-12)
    # displayed counter-clockwise (y down): angle atan2(-y, x) of r exceeds the template's by ω t
    turned = np.angle(np.exp(1j * (np.arctan2(-ry, rx) - np.arctan2(-qy, qx))))
    np.testing.assert_allclose(turned, omega * t, atol=1e-12)


def test_rotation_turns_a_bead_counter_clockwise_as_displayed():
    centre = (3.2, 2.2)
    sample = MovingSample(
        one_bead(3.2, 3.2), Rotation(angular_velocity_rad_per_s=0.5, centre_um=centre)
    )
    for t in (1.0, math.pi):
        theta = 0.5 * t
        # starts 1 µm to the right of the centre, moves up the screen (toward -y)
        expected = [centre[0] - math.sin(theta), centre[1] + math.cos(theta)]
        np.testing.assert_allclose(
            centroid(sample.on_grid(t, SHAPE, PIXEL, 2), PIXEL / 2), expected, atol=2e-3
        )


def test_motion_centre_overrides_the_field_centre():
    y, x = random_points()
    own = Rotation(angular_velocity_rad_per_s=0.2, centre_um=(1.0, 2.0)).displacement(
        1.0, y, x, (9.0, 9.0)
    )
    given = Rotation(angular_velocity_rad_per_s=0.2).displacement(1.0, y, x, (1.0, 2.0))
    np.testing.assert_allclose(own, given)


def test_swirl_rotates_rigidly_at_the_centre_and_not_far_away():
    omega, radius, t, c = 0.4, 2.0, 1.5, (3.0, 3.0)
    swirl = Swirl(angular_velocity_rad_per_s=omega, radius_um=radius)
    rotation = Rotation(angular_velocity_rad_per_s=omega)
    angles = np.linspace(0, 2 * np.pi, 13)
    near_y, near_x = c[0] + 0.002 * np.sin(angles), c[1] + 0.002 * np.cos(angles)
    np.testing.assert_allclose(
        swirl.displacement(t, near_y, near_x, c),
        rotation.displacement(t, near_y, near_x, c),
        rtol=1e-5,
    )
    far_y, far_x = c[0] + 6 * radius * np.sin(angles), c[1] + 6 * radius * np.cos(angles)
    assert np.max(np.hypot(*swirl.displacement(t, far_y, far_x, c))) < 1e-5
    # in between: a rotation by ω t exp(-ρ²/2R²), radius preserved
    rho = 1.3 * radius
    y, x = np.array([c[0]]), np.array([c[1] + rho])
    dy, dx = swirl.displacement(t, y, x, c)
    theta = omega * t * math.exp(-(rho**2) / (2 * radius**2))
    # template point of r = c + ρ x̂ is c + ρ (cos θ x̂ + sin θ ŷ): it turned by θ onto r
    np.testing.assert_allclose(
        [y[0] + dy[0], x[0] + dx[0]],
        [c[0] + rho * math.sin(theta), c[1] + rho * math.cos(theta)],
        atol=1e-12,
    )


def test_shear_moves_features_in_x_proportional_to_y_offset():
    rate, t, cy = 0.1, 2.0, 3.2
    sample = MovingSample(
        BeadPhantom.from_positions(FIELD, [[cy + 2.0, 2.0], [cy, 4.0]], 0.3), f"shear:rate={rate}"
    )
    image = sample.on_grid(t, SHAPE, PIXEL, 2)
    below = image.copy()
    below[: int(4.2 / 0.05)] = 0  # keep the bead 2 µm below the centre line
    on_line = image - below
    np.testing.assert_allclose(centroid(below, 0.05), [cy + 2.0, 2.0 + rate * t * 2.0], atol=2e-3)
    np.testing.assert_allclose(centroid(on_line, 0.05), [cy, 4.0], atol=2e-3)
    dy, dx = Shear(rate_per_s=rate).displacement(t, *random_points(), (cy, 0.0))
    np.testing.assert_array_equal(dy, 0.0)
    np.testing.assert_allclose(dx, -rate * t * (random_points()[0] - cy))


def test_vibration_period_amplitude_and_phase():
    f, a = 2.5, (0.1, -0.3)
    vib = Vibration(amplitude_um=a, frequency_hz=f)
    y, x = random_points(5)
    for t in (0.0, 0.13, 0.31):
        np.testing.assert_allclose(
            vib.displacement(t + 1 / f, y, x, (0, 0)), vib.displacement(t, y, x, (0, 0)), atol=1e-12
        )
    quarter = vib.displacement(1 / (4 * f), y, x, (0, 0))
    np.testing.assert_allclose(quarter, [np.full(5, -a[0]), np.full(5, -a[1])], atol=1e-12)
    np.testing.assert_allclose(vib.displacement(0.0, y, x, (0, 0)), 0.0, atol=1e-15)
    shifted = Vibration(amplitude_um=a, frequency_hz=f, phase_rad=math.pi / 2)
    np.testing.assert_allclose(shifted.displacement(0.0, y, x, (0, 0)), quarter, atol=1e-12)


def test_combined_is_the_sum_of_displacements():
    parts = [
        Translation(velocity_um_per_s=(0.3, 1.0)),
        Rotation(angular_velocity_rad_per_s=-0.2),
        Swirl(angular_velocity_rad_per_s=0.5, radius_um=3.0, centre_um=(2.0, 2.0)),
        Shear(rate_per_s=0.05),
        Vibration(amplitude_um=(0.2, 0.1), frequency_hz=3.0),
    ]
    y, x = random_points()
    total = Combined(motions=parts).displacement(0.7, y, x, (4.0, 4.0))
    expected = np.sum([p.displacement(0.7, y, x, (4.0, 4.0)) for p in parts], axis=0)
    np.testing.assert_allclose(total, expected, atol=1e-12)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("static", Static()),
        ("translation:vx=1.5,vy=0.5", Translation(velocity_um_per_s=(0.5, 1.5))),
        ("translation:vx=2", Translation(velocity_um_per_s=(0.0, 2.0))),
        ("rotation:omega=0.05", Rotation(angular_velocity_rad_per_s=0.05)),
        (
            "rotation:omega=0.05,cy=1,cx=2",
            Rotation(angular_velocity_rad_per_s=0.05, centre_um=(1.0, 2.0)),
        ),
        ("swirl:omega=0.3,radius=6", Swirl(angular_velocity_rad_per_s=0.3, radius_um=6.0)),
        ("shear:rate=0.02", Shear(rate_per_s=0.02)),
        ("vibration:ax=0.3,ay=0.1,f=2", Vibration(amplitude_um=(0.1, 0.3), frequency_hz=2.0)),
        (
            "translation:vx=1 + rotation:omega=0.1",
            Combined(
                motions=[
                    Translation(velocity_um_per_s=(0.0, 1.0)),
                    Rotation(angular_velocity_rad_per_s=0.1),
                ]
            ),
        ),
        (
            {"kind": "swirl", "omega": 0.3, "radius": 6},
            Swirl(angular_velocity_rad_per_s=0.3, radius_um=6.0),
        ),
        (
            {"kind": "translation", "velocity_um_per_s": [1, 2]},
            Translation(velocity_um_per_s=(1.0, 2.0)),
        ),
        (
            [{"kind": "shear", "rate": 0.1}, "vibration:ax=1,f=3"],
            Combined(
                motions=[
                    Shear(rate_per_s=0.1),
                    Vibration(amplitude_um=(0.0, 1.0), frequency_hz=3.0),
                ]
            ),
        ),
        (
            {"kind": "combined", "motions": ["static", {"kind": "rotation", "omega": 1}]},
            Combined(motions=[Static(), Rotation(angular_velocity_rad_per_s=1.0)]),
        ),
    ],
)
def test_motion_from_spec_builds_the_expected_model(spec, expected):
    motion = motion_from_spec(spec)
    assert motion == expected
    # a model's dump parses back to the same model (YAML round trip)
    assert motion_from_spec(motion.model_dump()) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("wobble:a=1", "valid kinds: static, translation, rotation"),
        ("rotation:w=1", "valid parameters: omega, cy, cx"),
        ("swirl:omega=1,radius=2,speed=3", "speed"),
        ("translation:vx=fast", "vx='fast' is not a number"),
        ("translation:vx", "name=value"),
        ("swirl:omega=1,radius=-2", "radius_um"),
        ("rotation", "angular_velocity_rad_per_s"),
        ("vibration:ax=1,f=-1", "frequency_hz"),
        ("translation:vx=1+", "empty motion term"),
        ({"kind": "teleport"}, "valid kinds"),
        ({"omega": 1}, "no 'kind'"),
        ([], "empty motion list"),
        (
            {"kind": "rotation", "angular_velocity_rad_per_s": float("nan")},
            "angular_velocity_rad_per_s",
        ),
    ],
)
def test_bad_specs_raise_value_errors_naming_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        motion_from_spec(spec)


def test_motions_are_frozen():
    with pytest.raises(ValidationError, match="frozen"):
        Rotation(angular_velocity_rad_per_s=1.0).angular_velocity_rad_per_s = 2.0


# ----------------------------------------------------------------------------- margins


def test_max_displacement_matches_analytic_values():
    field, centre = (10.0, 20.0), (5.0, 10.0)
    assert max_displacement_um(Static(), 5.0, field, centre) == 0.0
    assert max_displacement_um(
        Translation(velocity_um_per_s=(3.0, 4.0)), 2.0, field, centre
    ) == pytest.approx(10.0)
    # rigid rotation: the corner, 2 ρ sin(ω t / 2)
    corner = math.hypot(5.0, 10.0)
    expected = 2 * corner * math.sin(0.5 * 0.2 * 4.0)
    assert max_displacement_um(
        Rotation(angular_velocity_rad_per_s=0.2), 4.0, field, centre
    ) == pytest.approx(expected, rel=1e-9)
    vib = Vibration(amplitude_um=(0.3, 0.4), frequency_hz=7.0)
    assert max_displacement_um(vib, 1.0, field, centre) == pytest.approx(0.5, rel=1e-3)
    # swirl: max over ρ of 2 ρ sin(θ(ρ)/2), θ = ω t exp(-ρ²/2R²), from a dense 1D scan
    omega, radius, t = 0.8, 1.5, 2.0
    rho = np.linspace(0, 5, 200001)
    swirl_max = np.max(2 * rho * np.sin(0.5 * omega * t * np.exp(-(rho**2) / (2 * radius**2))))
    got = max_displacement_um(
        Swirl(angular_velocity_rad_per_s=omega, radius_um=radius), t, field, centre
    )
    assert got == pytest.approx(swirl_max, rel=5e-3)
    assert got <= swirl_max * (1 + 1e-9)


# ----------------------------------------------------------------------------- grids and blur


def test_upsampled_grid_keeps_fine_pixel_zero_on_raw_pixel_zero():
    sample = MovingSample(one_bead(1.2, 2.3, diameter=0.25), "rotation:omega=0.1")
    raw = sample.on_grid(0.5, SHAPE, PIXEL)
    fine = sample.on_grid(0.5, SHAPE, PIXEL, upsample=4)
    assert fine.shape == (256, 256)
    np.testing.assert_allclose(fine[::4, ::4], raw, atol=1e-7)
    static = MovingSample(one_bead(1.2, 2.3, diameter=0.25), "static")
    assert np.unravel_index(np.argmax(static.on_grid(0.0, SHAPE, PIXEL)), SHAPE) == (12, 23)
    assert np.unravel_index(
        np.argmax(static.on_grid(0.0, SHAPE, PIXEL, upsample=4)), (256, 256)
    ) == (48, 92)


def test_displacement_on_grid_is_dy_dx_in_um_on_the_fine_grid():
    sample = MovingSample(one_bead(3.0, 3.0), "shear:rate=0.5")
    d = sample.displacement_on_grid(2.0, (8, 10), 0.5, upsample=2)
    assert d.shape == (2, 16, 20)
    y = np.arange(16) * 0.25
    np.testing.assert_array_equal(d[0], 0.0)
    np.testing.assert_allclose(d[1], np.broadcast_to((-0.5 * 2.0 * (y - 3.2))[:, None], (16, 20)))


def test_exposure_average_blurs_along_the_motion_only():
    v, exposure, n_sub = 2.0, 0.5, 8
    bead = one_bead(3.2, 2.5, diameter=0.3)
    moving = MovingSample(bead, f"translation:vx={v}")
    still = MovingSample(bead, "static")
    blurred = moving.exposure_average(0.0, exposure, n_sub, SHAPE, PIXEL, upsample=2)
    sharp = still.on_grid(0.0, SHAPE, PIXEL, upsample=2)
    var_y0, var_x0 = second_moments(sharp, 0.05)
    var_y, var_x = second_moments(blurred, 0.05)
    # n_sub evenly spaced positions over v T: variance (v T)² (n² - 1) / (12 n²)
    spread = (v * exposure) ** 2 * (n_sub**2 - 1) / (12 * n_sub**2)
    assert var_x - var_x0 == pytest.approx(spread, rel=1e-2)
    assert abs(var_y - var_y0) < 1e-4
    # centred on the exposure midpoint
    np.testing.assert_allclose(centroid(blurred, 0.05), [3.2, 2.5 + v * exposure / 2], atol=2e-3)
