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
