"""LED-array geometry, brightfield selection, half-circle patterns and the store description."""

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from nstm_acquire.physics.dpc.illumination import (
    DpcIllumination,
    LedArrayGeometry,
    brightfield_leds,
    dpc_half_circle_patterns,
    led_pupils,
)
from nstm_acquire.physics.optics import Optics, pupil

PITCH_MM = 4.0
DISTANCE_MM = 70.0
NA = 0.25


def test_centre_led_on_axis_and_row_major_order():
    geometry = LedArrayGeometry(rows=9, cols=9, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM)
    na = geometry.led_na()
    assert na.shape == (81, 2)
    np.testing.assert_array_equal(na[40], [0.0, 0.0])  # row 4, col 4
    # index 1 = row 0, col 1: one pitch to -y (rows run along y), three pitches to -x
    y, x = -4 * PITCH_MM, -3 * PITCH_MM
    radius = math.sqrt(x**2 + y**2 + DISTANCE_MM**2)
    np.testing.assert_allclose(na[1], [y / radius, x / radius], rtol=1e-12)
    # index 9 = row 1, col 0
    y, x = -3 * PITCH_MM, -4 * PITCH_MM
    radius = math.sqrt(x**2 + y**2 + DISTANCE_MM**2)
    np.testing.assert_allclose(na[9], [y / radius, x / radius], rtol=1e-12)


def test_na_is_sine_of_angle_for_offset_led():
    x_mm = 13.7
    geometry = LedArrayGeometry(
        rows=1, cols=1, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM, centre_offset_mm=(0.0, x_mm)
    )
    na = geometry.led_na()[0]
    assert na[0] == 0.0
    assert na[1] == pytest.approx(x_mm / math.sqrt(x_mm**2 + DISTANCE_MM**2), rel=1e-12)
    # the same LED offset along y gives the same value on the other component
    geometry_y = LedArrayGeometry(
        rows=1, cols=1, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM, centre_offset_mm=(x_mm, 0.0)
    )
    np.testing.assert_allclose(geometry_y.led_na()[0], na[::-1], rtol=1e-12)


def test_rotation_turns_x_towards_y():
    plain = LedArrayGeometry(rows=1, cols=3, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM)
    turned = LedArrayGeometry(
        rows=1, cols=3, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM, rotation_rad=math.pi / 2
    )
    # the +x LED of the plain row sits at +y after a quarter turn
    np.testing.assert_allclose(turned.led_na()[2], plain.led_na()[2][::-1], atol=1e-15)
    np.testing.assert_allclose(turned.led_na()[0], plain.led_na()[0][::-1], atol=1e-15)


def test_brightfield_leds_and_margin():
    na = np.array([[0.0, 0.0], [0.0, 0.2499], [0.0, 0.25], [0.18, 0.18], [0.1, -0.2]])
    np.testing.assert_array_equal(brightfield_leds(na, NA), [0, 1, 4])  # |[.18,.18]| = 0.2546
    np.testing.assert_array_equal(brightfield_leds(na, NA, margin=0.02), [0, 4])
    with pytest.raises(ValueError, match="margin"):
        brightfield_leds(na, NA, margin=0.3)
    with pytest.raises(ValueError, match="led_na"):
        brightfield_leds(np.zeros((3, 3)), NA)


def test_half_circles_of_centred_array_are_equal_mirror_halves():
    na = LedArrayGeometry(rows=9, cols=9, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM).led_na()
    patterns = dpc_half_circle_patterns(na, NA)
    bright = set(brightfield_leds(na, NA).tolist())
    assert list(patterns) == ["top", "bottom", "left", "right"]
    sizes = {name: len(lit) for name, lit in patterns.items()}
    assert len(set(sizes.values())) == 1 and sizes["top"] > 0
    for lit in patterns.values():
        assert set(lit) <= bright
    # LEDs on the split axis belong to neither half of that pair
    on_x_axis = {i for i in bright if na[i, 1] == 0.0}
    assert on_x_axis and not on_x_axis & (set(patterns["left"]) | set(patterns["right"]))
    assert len(patterns["left"]) + len(patterns["right"]) + len(on_x_axis) == len(bright)
    # left mirrored in x is right
    left = {tuple(np.round(na[i] * [1, -1], 12)) for i in patterns["left"]}
    right = {tuple(np.round(na[i], 12)) for i in patterns["right"]}
    assert left == right
    assert all(na[i, 0] < 0 for i in patterns["top"]) and all(
        na[i, 0] > 0 for i in patterns["bottom"]
    )


def test_half_circle_validation():
    na = LedArrayGeometry(rows=5, cols=5, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM).led_na()
    with pytest.raises(ValueError, match="axes"):
        dpc_half_circle_patterns(na, NA, axes=("up",))
    with pytest.raises(ValueError, match="lights no LED"):
        dpc_half_circle_patterns(np.array([[0.0, 0.0], [0.0, 0.1]]), NA, axes=("left",))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rows": 0}, "rows"),
        ({"pitch_mm": -1.0}, "pitch_mm"),
        ({"distance_mm": 0.0}, "distance_mm"),
        ({"centre_offset_mm": (float("nan"), 0.0)}, "centre_offset_mm"),
        ({"rotation_rad": float("inf")}, "rotation_rad"),
    ],
)
def test_geometry_validation_names_field(kwargs, field):
    base = {"rows": 3, "cols": 3, "pitch_mm": PITCH_MM, "distance_mm": DISTANCE_MM}
    with pytest.raises(ValidationError, match=field):
        LedArrayGeometry(**{**base, **kwargs})


def test_dpc_illumination_round_trip_and_lit():
    na = LedArrayGeometry(rows=5, cols=5, pitch_mm=PITCH_MM, distance_mm=DISTANCE_MM).led_na()
    brightness = np.linspace(0.5, 1.5, 25)
    ill = DpcIllumination.half_circles(na, NA, led_brightness=brightness)
    stored = json.loads(json.dumps(ill.to_store()))
    assert set(stored) == {"led_na", "shots", "led_brightness"}
    back = DpcIllumination.from_store({**stored, "some_future_field": 1})
    assert back == ill
    lit_na, lit_b = back.lit(2)  # left
    idx = list(ill.shots[2])
    np.testing.assert_allclose(lit_na, na[idx])
    np.testing.assert_allclose(lit_b, brightness[idx])
    assert "led_brightness" not in DpcIllumination.half_circles(na, NA).to_store()


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"led_na": [[0.0, 0.0]], "shots": [[1]]}, "outside"),
        ({"led_na": [[0.0, 0.0]], "shots": [[]]}, "lights no LED"),
        ({"led_na": [[0.0, 0.0]], "shots": []}, "shots is empty"),
        ({"led_na": [[0.0, 1.2]], "shots": [[0]]}, "led_na"),
        ({"led_na": [[0.8, 0.8]], "shots": [[0]]}, "led_na"),
        ({"led_na": [[0.0, 0.0], [0.1, 0.0]], "shots": [[0, 0]]}, "twice"),
        ({"led_na": [[0.0, 0.0]], "shots": [[0]], "led_brightness": [1.0, 2.0]}, "led_brightness"),
        ({"led_na": [[0.0, 0.0]], "shots": [[0]], "led_brightness": [-1.0]}, "led_brightness"),
        ({"shots": [[0]]}, "led_na"),
    ],
)
def test_dpc_illumination_validation(attrs, message):
    with pytest.raises(ValueError, match=message):
        DpcIllumination.from_store(attrs)


def test_led_pupils_match_optics_pupil_off_grid():
    optics = Optics(wavelength_um=0.52, na_detection=NA, pixel_size_um=0.5)
    na = np.array([[0.0, 0.0], [0.0731, -0.1234], [-0.2, 0.11]])
    pupils = led_pupils((48, 64), optics, na)
    assert pupils.shape == (3, 48, 64) and pupils.dtype == bool
    for j in range(3):
        expected = pupil((48, 64), optics, shift_per_um=tuple(na[j] / optics.wavelength_um))
        np.testing.assert_array_equal(pupils[j], expected.astype(bool))


@pytest.mark.parametrize(
    ("attrs", "field", "problem"),
    [
        ({"led_na": [[0.0, 0.0], [0.1, 0.0]], "shots": [[0], [1, 2]]}, "shots[1][1]", "= 2 is out of range"),
        ({"led_na": [[0.0, 0.0], [0.9, 0.9]], "shots": [[0]]}, "led_na[1]", "is not a valid illumination NA"),
        ({"led_na": [[0.0, 0.0]], "shots": [[0], []]}, "shots[1]", "lights no LED"),
        ({"led_na": [[0.0, 0.0]], "shots": [[0]], "led_brightness": [0.0]}, "led_brightness[0]", "> 0"),
    ],
)
def test_dpc_illumination_errors_name_the_element(attrs, field, problem):
    """The model is the authority for its values: each error carries the element's path."""
    from nstm_acquire._validation import FieldError, first_field_problem

    with pytest.raises(ValidationError) as err:
        DpcIllumination.model_validate(attrs)
    assert isinstance(err.value.errors()[0]["ctx"]["error"], FieldError)
    got_field, got_problem = first_field_problem(err.value, prefix="illumination")
    assert got_field == f"illumination.{field}"
    assert problem in got_problem and "\n" not in got_problem


def test_from_store_returns_a_model_unchanged():
    ill = DpcIllumination(led_na=[[0.0, 0.0]], shots=[[0]])
    assert DpcIllumination.from_store(ill) is ill
