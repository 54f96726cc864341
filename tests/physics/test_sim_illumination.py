"""The SIM illumination model as the store's schema: the order-0 term of ``modulation``, errors
that name the element, and models passed on as they are."""

import pytest
from pydantic import ValidationError

from nstm_acquire._validation import first_field_problem
from nstm_acquire.physics.sim.illumination import SimIllumination

TWO_BEAM = {"n_orientations": 2, "n_phases": 3, "excitation_wavelength_um": 0.488}
THREE_BEAM = {**TWO_BEAM, "n_phases": 5, "three_beam": True}


@pytest.mark.parametrize(
    ("fields", "given", "kept"),
    [
        (TWO_BEAM, [[0.8], [0.7]], ((0.8,), (0.7,))),
        (TWO_BEAM, [[1.0, 0.8], [1.0, 0.7]], ((0.8,), (0.7,))),
        (TWO_BEAM, [[1.0, 0.8], [0.7]], ((0.8,), (0.7,))),  # the forms may be mixed
        (TWO_BEAM, [[1.0], [1]], ((1.0,), (1.0,))),  # full depth without order 0
        (THREE_BEAM, [[1.2, 0.6], [1.1, 0.5]], ((1.2, 0.6), (1.1, 0.5))),
        (THREE_BEAM, [[1.0, 1.2, 0.6], [1.0, 1.1, 0.5]], ((1.2, 0.6), (1.1, 0.5))),
        (THREE_BEAM, [[1.0, 0.6], [1.0, 0.5]], ((1.0, 0.6), (1.0, 0.5))),  # [m1, m2] with m1 = 1
    ],
)
def test_modulation_with_or_without_the_order_zero_term(fields, given, kept):
    """FORMAT.md: writers may lead each entry with the order-0 term 1.0; one form is kept."""
    ill = SimIllumination.model_validate({**fields, "modulation": given})
    assert ill.modulation == kept
    assert ill.to_store()["modulation"] == [list(m) for m in kept]
    assert SimIllumination.from_store(ill.to_store()) == ill  # the written form reads back the same


def test_modulation_of_the_wrong_length_names_both_forms():
    with pytest.raises(ValidationError) as err:
        SimIllumination.model_validate({**TWO_BEAM, "modulation": [[0.5, 0.8], [0.7]]})
    field, problem = first_field_problem(err.value, prefix="illumination")
    assert field == "illumination.modulation[0]"
    assert "[m], or [1.0, m] with the order-0 term" in problem
    with pytest.raises(ValidationError) as err:
        SimIllumination.model_validate({**THREE_BEAM, "modulation": [[1.0, 1.0, 0.5, 0.1]] * 2})
    assert first_field_problem(err.value)[0] == "modulation[0]"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"k_per_um": [[0.0, 0.0], [1.0, 1.0]]}, "k_per_um[0]"),
        ({"k_per_um": [[1.0, 1.0]]}, "k_per_um"),
        ({"phase_rad": [0.0, float("nan")]}, "phase_rad"),
        ({"modulation": [[0.5], [1.5]]}, "modulation[1]"),
        ({"excitation_wavelength_um": 488.0}, "excitation_wavelength_um"),
        ({"three_beam": True}, "n_phases"),
    ],
)
def test_errors_name_the_element(change, field):
    with pytest.raises(ValidationError) as err:
        SimIllumination.model_validate({**TWO_BEAM, **change})
    got, problem = first_field_problem(err.value)
    assert got == field and "\n" not in problem


def test_from_store_returns_a_model_unchanged():
    ill = SimIllumination.model_validate(TWO_BEAM)
    assert SimIllumination.from_store(ill) is ill
    assert SimIllumination.from_store(ill, modality="sim2d") is ill


# ---------------------------------------------------------------- three-beam modulation limits
def _three_beam_intensity(beam_ratio: float, k: float, kz: float, y, z):
    """Mean-normalised |E|² of a centre beam (amplitude ``beam_ratio``) and two coherent side
    beams (amplitude 1) with lateral wavevectors ±k/2 and axial offset kz (cycles/µm)."""
    import numpy as np

    centre = beam_ratio * np.exp(2j * np.pi * 0.0 * z)
    side = np.exp(2j * np.pi * (k / 2 * y - kz * z)) + np.exp(2j * np.pi * (-k / 2 * y - kz * z))
    intensity = np.abs(centre + side) ** 2
    return intensity / (beam_ratio**2 + 2.0)


@pytest.mark.parametrize("beam_ratio", [0.0, 0.5, 1.0, 2**0.5, 3.0])
def test_three_beam_modulation_is_that_of_three_coherent_plane_waves(beam_ratio):
    """m1 = 4a/(a²+2), m2 = 2/(a²+2) reproduce |E|² of the three beams (FORMAT.md's pattern)."""
    import numpy as np

    from nstm_acquire.physics.sim.illumination import (
        illumination_pattern,
        three_beam_contrast,
        three_beam_modulation,
    )

    k, kz = 4.0, 0.7
    m1, m2 = three_beam_modulation(beam_ratio)
    ill = SimIllumination.model_validate(
        {**THREE_BEAM, "n_orientations": 1, "k_per_um": [[k, 0.0]], "phase_rad": [0.0],
         "modulation": [[m1, m2]], "axial_k_per_um": kz}
    )
    y = np.linspace(0.0, 2.0, 201)[None, :]
    z = np.linspace(-1.0, 1.0, 101)[:, None]
    expected = _three_beam_intensity(beam_ratio, k, kz, y, z)
    assert np.allclose(illumination_pattern(ill, 0, y, 0.0, z), expected, atol=1e-12)
    if beam_ratio > 0:
        assert three_beam_contrast(m1, m2) == pytest.approx(1.0)
        # the darkest point |a - 2|² / (a² + 2): 0 unless the centre beam outshines both side beams
        darkest = max(beam_ratio - 2.0, 0.0) ** 2 / (beam_ratio**2 + 2.0)
        assert expected.min() == pytest.approx(darkest, abs=0.02)  # on a finite grid: nearly


def test_three_beam_modulation_limits():
    import math

    from nstm_acquire.physics.sim.illumination import (
        THREE_BEAM_MAX_M1,
        physical_modulation,
        three_beam_contrast,
        three_beam_modulation,
    )

    assert three_beam_modulation(1.0) == pytest.approx((4 / 3, 2 / 3))  # equal beams
    assert three_beam_modulation(2**0.5) == pytest.approx((2**0.5, 0.5))  # the largest m1
    ratios = [0.01 * i for i in range(1, 1001)]
    assert max(three_beam_modulation(a)[0] for a in ratios) == pytest.approx(THREE_BEAM_MAX_M1, abs=1e-4)
    assert three_beam_modulation(0.1)[1] > 0.99  # a weak centre beam: m2 up to 1
    assert three_beam_contrast(*three_beam_modulation(0.7, 0.6)) == pytest.approx(0.6)
    # noisy estimates: moved onto the physical boundary with their beam ratio, not capped at 1
    m1, m2 = physical_modulation([1.5, 0.55], three_beam=True)
    assert three_beam_contrast(m1, m2) == pytest.approx(1.0) and m1 / m2 == pytest.approx(1.5 / 0.55)
    assert physical_modulation([1.374, 0.48], three_beam=True) == [1.374, 0.48]
    assert physical_modulation([1.2], three_beam=False) == [1.0]
    assert math.isinf(three_beam_contrast(0.5, 0.0))
