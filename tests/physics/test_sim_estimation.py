"""SIM illumination-parameter estimation and its plausibility checks.

Known answers: data simulated by the simulated microscope's SIM camera (``SimImager``) with
camera noise (``CameraNoise``) from phantoms whose pattern ``k``, phase and modulation are set
here; a vibrating sample of known motion; the order separation of frames built from known
bands.

Tolerances (static, noisy data, 300-700 photons at the brightest pixels):

* ``|Δk| < 0.05`` of a frequency pixel ``1 / (N · pixel)``: a ``k`` error ``δ`` turns the
  pattern phase by ``2π δ·r`` across the field, so 0.05 pixel keeps the reconstructed pattern
  within 18° of the truth at the far edge of the field; fairSIM-style estimators reach a few
  hundredths of a pixel (noise-free data give ~1e-4 here, noisy 0.01-0.03);
* phase of shot 0 (at pixel (0, 0)) within 5°; modulation within 10 % of the pattern's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
from sim_data import (
    OPTICS,
    illumination,
    simulate_2d,
    simulate_3d,
    unknown,
)

from nstm_acquire.hardware.simulated.motion import Vibration
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom, FilamentPhantom
from nstm_acquire.physics.sim.estimation import (
    SimEstimate,
    SimParameterError,
    edge_taper_window,
    embed_spectrum,
    estimate_sim_parameters,
    resolve_sim_parameters,
    separate_orders,
)
from nstm_acquire.physics.sim.illumination import SimIllumination

K_TOL_PX = 0.05
PHASE_TOL_DEG = 5.0
MODULATION_TOL = 0.10


def wrap_deg(angle_rad: float) -> float:
    return math.degrees((angle_rad + math.pi) % (2 * math.pi) - math.pi)


def assert_matches_truth(est: SimEstimate, truth: SimIllumination, n_pixels: int) -> None:
    field_um = n_pixels * OPTICS.pixel_size_um  # 1 frequency pixel = 1 / field_um
    assert est.all_plausible, est.problems
    for d in range(truth.n_orientations):
        dk_px = math.hypot(*np.subtract(est.k_per_um[d], truth.k_per_um[d])) * field_um
        assert dk_px < K_TOL_PX, (d, dk_px)
        assert abs(wrap_deg(est.phase_rad[d] - truth.phase_rad[d])) < PHASE_TOL_DEG, d
        np.testing.assert_allclose(est.modulation[d], truth.modulation[d], rtol=MODULATION_TOL)
        assert 0.5 < est.correlation[d] <= 1.0


# ---------------------------------------------------------------- building blocks
def test_separate_orders_recovers_the_bands_the_frames_were_built_from():
    rng = np.random.default_rng(0)
    for n_phases, top in ((3, 1), (5, 2), (7, 2)):
        bands = {
            m: rng.normal(size=(4, 6)) + 1j * rng.normal(size=(4, 6)) for m in range(1, top + 1)
        }
        bands[0] = rng.normal(size=(4, 6)).astype(complex)
        p = np.arange(n_phases)[:, None, None]
        frames = bands[0].real + sum(
            2 * np.real(bands[m] * np.exp(2j * np.pi * m * p / n_phases)) for m in range(1, top + 1)
        )
        out = separate_orders(frames, top)
        for m in range(top + 1):
            np.testing.assert_allclose(out[m], bands[m], atol=1e-12)
    with pytest.raises(ValueError, match="n_phases must be at least 5"):
        separate_orders(np.zeros((3, 4, 4)), 2)


def test_embed_spectrum_interpolates_band_limited_images_with_pixel_0_fixed():
    ny, nx, px = 16, 12, 0.1
    y = np.arange(ny)[:, None] * px
    x = np.arange(nx)[None, :] * px
    def f(yy, xx):
        return np.cos(2 * np.pi * (3 / (ny * px) * yy - 2 / (nx * px) * xx) + 0.4)

    spec = embed_spectrum(np.fft.fft2(f(y, x)), (3 * ny, 3 * nx))
    fine = np.fft.ifft2(spec).real * 9
    yf = np.arange(3 * ny)[:, None] * px / 3
    xf = np.arange(3 * nx)[None, :] * px / 3
    np.testing.assert_allclose(fine, f(yf, xf), atol=1e-12)
    window = edge_taper_window((20, 10), 0.2)
    assert window[10, 5] == 1.0 and window[0, 5] < 0.1 and window.min() > 0


# ---------------------------------------------------------------- static data: known answers
@pytest.fixture(scope="module")
def static_2d() -> dict[str, np.ndarray]:
    ill = illumination(False)
    field = (12.8, 12.8)
    return {
        "beads": simulate_2d(ill, BeadPhantom(field, n_beads=80, diameter_um=0.1, seed=3)),
        "filaments": simulate_2d(ill, FilamentPhantom(field, n_filaments=8, seed=2)),
    }


@pytest.mark.parametrize("search", ["full", "configured_k"])
@pytest.mark.parametrize("kind", ["beads", "filaments"])
def test_2d_estimates_match_the_pattern_on_noisy_static_data(static_2d, kind, search):
    truth = illumination(False)
    est = estimate_sim_parameters(static_2d[kind], OPTICS, unknown(truth, search == "configured_k"))
    assert not est.three_beam and est.n_orientations == 3
    assert_matches_truth(est, truth, 128)
    assert all(r > 5 for r in est.peak_to_background)
    json.dumps(est.to_dict())


@pytest.fixture(scope="module")
def static_3d() -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(0)
    planes = np.array([-0.3, 0.0, 0.3])
    n, field = 64, 6.4
    positions = np.column_stack(
        [rng.choice(planes, 70), rng.uniform(-0.5, field + 0.5, size=(70, 2))]
    )
    phantom = BeadPhantom.from_positions((field, field), positions, diameter_um=0.1)
    z_step = 0.15
    return simulate_3d(illumination(True), phantom, planes, 16, z_step, n), z_step


@pytest.mark.parametrize("search", ["full", "configured_k"])
def test_3d_estimates_match_the_three_beam_pattern_on_noisy_static_stacks(static_3d, search):
    raw, z_step = static_3d
    truth = illumination(True)
    est = estimate_sim_parameters(
        raw, OPTICS, unknown(truth, search == "configured_k"), z_step_um=z_step
    )
    assert est.three_beam
    assert_matches_truth(est, truth, 64)  # m1 and m2 both within 10 %


# ---------------------------------------------------------------- motion and misconfiguration
@pytest.fixture(scope="module")
def vibrating_2d() -> np.ndarray:
    # 0.35 µm peak displacement at 37 Hz, shots 10 ms apart: between phase shots the sample
    # moves by about one pattern period (1/|k| = 0.25 µm)
    motion = Vibration(amplitude_um=(0.18, 0.3), frequency_hz=37.0)
    phantom = BeadPhantom((12.8, 12.8), n_beads=80, diameter_um=0.1, seed=3)
    return simulate_2d(illumination(False), phantom, motion=motion)


def test_vibrating_sample_is_flagged_and_resolved_by_policy(vibrating_2d):
    configured = illumination(False)  # the hardware's nominal pattern, complete
    est = estimate_sim_parameters(vibrating_2d, OPTICS, configured)
    bad = [d for d in range(3) if not est.plausible[d]]
    good = [d for d in range(3) if est.plausible[d]]
    assert bad, "motion of one pattern period between shots must make an orientation implausible"
    assert all(est.orientation_problems[d] for d in bad)
    assert all(p.startswith(f"orientation {d}:") for d in bad for p in est.orientation_problems[d])

    resolved, report = resolve_sim_parameters(est, configured, policy="fallback")
    for d in bad:
        assert resolved.k_per_um[d] == configured.k_per_um[d]
        assert resolved.phase_rad[d] == configured.phase_rad[d]
        assert resolved.modulation[d] == configured.modulation[d]
        assert report["source"]["k_per_um"][d] == "configured"
    for d in good:
        assert resolved.k_per_um[d] == pytest.approx(est.k_per_um[d])
        assert report["source"]["modulation"][d] == "estimate"
    assert report["problems"] == est.problems and report["policy"] == "fallback"
    json.dumps(report)

    with pytest.raises(SimParameterError) as excinfo:
        resolve_sim_parameters(est, configured, policy="error")
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"orientation {bad[0]}: ")
    assert "--sim-parameters configured" in message

    # nothing configured to fall back on: refuse rather than reconstruct with a broken pattern
    with pytest.raises(
        SimParameterError, match=rf"^orientation {bad[0]}: .*illumination\.k_per_um"
    ):
        resolve_sim_parameters(est, unknown(configured), policy="fallback")


def test_a_misconfigured_k_is_reported_with_orientation_value_and_fix(static_2d):
    truth = illumination(False)
    wrong = truth.replace(k_per_um=[[0.7 * ky, 0.7 * kx] for ky, kx in truth.k_per_um])
    # a wide ring (0.1-1.9 x the configured |k|) still contains the true peak
    est = estimate_sim_parameters(
        static_2d["filaments"], OPTICS, unknown(wrong, keep_k=True), search_ring=0.9
    )
    true_k = math.hypot(*truth.k_per_um[0])
    assert math.hypot(*est.k_per_um[0]) == pytest.approx(true_k, rel=1e-3)  # the data win
    assert not any(est.plausible)
    with pytest.raises(SimParameterError) as excinfo:
        resolve_sim_parameters(est, unknown(wrong, keep_k=True), policy="error")
    expected = (
        f"orientation 0: estimated k = {math.hypot(*est.k_per_um[0]):.3f} cycles/µm is 43 % off "
        f"the expected {0.7 * true_k:.3f}; the sample may have moved during the window; give "
        "illumination.k_per_um in the store or reconstruct with --sim-parameters configured"
    )
    assert str(excinfo.value) == expected


# ---------------------------------------------------------------- resolution policies
def _estimate(plausible: tuple[bool, ...]) -> SimEstimate:
    return SimEstimate(
        three_beam=False,
        k_per_um=((0.4, 3.9), (3.5, 1.6), (3.2, -2.3)),
        phase_rad=(0.1, 0.2, 0.3),
        modulation=((0.7,), (0.2,), (0.75,)),
        correlation=(0.9, 0.3, 0.9),
        peak_to_background=(8.0, 2.0, 8.0),
        phase_step_error_rad=(0.01, 0.5, 0.02),
        plausible=plausible,
        orientation_problems=tuple(
            () if ok else (f"orientation {d}: estimated modulation m = 0.20 is below 0.30",)
            for d, ok in enumerate(plausible)
        ),
        expected_k_magnitude_per_um=(None, None, None),
    )


def test_resolve_policies_choose_per_orientation_and_report_sources():
    est = _estimate((True, False, True))
    configured = illumination(False).replace(phase_rad=None)
    # fallback: configured k and modulation for orientation 1, but its phase is unknown
    with pytest.raises(SimParameterError, match=r"^orientation 1: .*illumination\.phase_rad"):
        resolve_sim_parameters(est, configured, "fallback")
    # configured: given values win, missing ones come from plausible estimates only
    with pytest.raises(SimParameterError, match="^orientation 1: "):
        resolve_sim_parameters(est, configured, "configured")
    ok = _estimate((True, True, True))
    resolved, report = resolve_sim_parameters(ok, configured, "configured")
    assert resolved.k_per_um == configured.k_per_um
    assert resolved.phase_rad == ok.phase_rad
    assert report["source"]["phase_rad"] == ["estimate"] * 3
    assert report["source"]["k_per_um"] == ["configured"] * 3
    # estimate: an explicit override uses everything, loudly
    with pytest.warns(UserWarning, match="implausible estimates"):
        resolved, report = resolve_sim_parameters(est, configured, "estimate")
    assert resolved.modulation[1] == (0.2,)
    assert report["problems"] == list(est.problems)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_sim_parameters(ok, configured, "estimate")
    with pytest.raises(ValueError, match="policy="):
        resolve_sim_parameters(ok, configured, "guess")  # type: ignore[arg-type]


def test_estimation_rejects_bad_input_with_the_fix():
    ill = unknown(illumination(False))
    with pytest.raises(
        ValueError, match="8 shots but the illumination has 9.*pass one whole window"
    ):
        estimate_sim_parameters(np.zeros((8, 1, 32, 32)), OPTICS, ill)
    with pytest.raises(ValueError, match="NaN"):
        estimate_sim_parameters(np.full((9, 1, 32, 32), np.nan), OPTICS, ill)
    with pytest.raises(ValueError, match="z_step_um"):
        estimate_sim_parameters(np.zeros((15, 4, 32, 32)), OPTICS, unknown(illumination(True)))
    far = ill.replace(k_per_um=[[0.0, 4.8]] * 3)
    with pytest.raises(ValueError, match="orientation 0: the expected .k. = 4.8"):
        estimate_sim_parameters(np.ones((9, 1, 32, 32)), OPTICS, far)


def test_a_spurious_peak_in_one_orientation_is_searched_again_around_the_others():
    # a sparse 6.4 µm field: the full search of orientation 2 locks onto a low-frequency
    # peak of the sample (|k| ~ 1 cycle/µm); the others find the pattern, so orientation 2 is
    # searched again on their ring and recovered
    ill = illumination(False)
    phantom = BeadPhantom(
        (6.4, 6.4), n_beads=20, diameter_um=0.1, seed=3, pair_separations_um=(0.15, 0.2, 0.25), n_pairs_each=2
    )
    raw = simulate_2d(ill, phantom, n=64)
    est = estimate_sim_parameters(raw, OPTICS, unknown(ill))
    assert any(note.startswith("orientation 2: searched again") for note in est.notes), est.notes
    assert_matches_truth(est, ill, 64)


# ---------------------------------------------------------------- physical three-beam limits
def _bead_stack_phantom() -> tuple[BeadPhantom, np.ndarray]:
    rng = np.random.default_rng(0)
    planes = np.array([-0.3, 0.0, 0.3])
    field = 6.4
    positions = np.column_stack([rng.choice(planes, 70), rng.uniform(-0.5, field + 0.5, size=(70, 2))])
    return BeadPhantom.from_positions((field, field), positions, diameter_um=0.1), planes


def _three_beam_truth(beam_ratio: float, contrast: float) -> SimIllumination:
    from nstm_acquire.physics.sim.illumination import three_beam_modulation

    m = three_beam_modulation(beam_ratio, contrast)
    return illumination(True).replace(modulation=[list(m)] * 3)


@pytest.mark.parametrize(
    ("beam_ratio", "label"), [(math.sqrt(2.0), "m1 = 1.37 > 1"), (0.6, "weak centre beam, m2 = 0.80 > 2/3")]
)
def test_3d_estimates_reach_the_physical_limits_not_the_equal_beam_values(beam_ratio, label):
    """m1 up to √2 and m2 above 2/3 are estimated, plausible and used as they are (not capped)."""
    phantom, planes = _bead_stack_phantom()
    truth = _three_beam_truth(beam_ratio, 0.97)
    raw = simulate_3d(truth, phantom, planes, 16, 0.15, 64)
    est = estimate_sim_parameters(raw, OPTICS, unknown(truth), z_step_um=0.15)
    assert_matches_truth(est, truth, 64)
    resolved, _ = resolve_sim_parameters(est, unknown(truth), policy="fallback")
    for d in range(3):
        assert resolved.modulation[d] == pytest.approx(est.modulation[d])  # not capped at 1
        assert resolved.modulation[d] == pytest.approx(truth.modulation[d], rel=MODULATION_TOL), label


def _drifting_stack(truth: SimIllumination, motion: str) -> np.ndarray:
    from sim_data import simulate_moving_3d

    phantom, _ = _bead_stack_phantom()
    raw, _, _ = simulate_moving_3d(truth, phantom, motion, 16, 0.15, n=64)
    return raw


def test_3d_estimates_on_a_slowly_drifting_stack_match_the_simulators_pattern():
    """0.2 µm of drift over the 1.2 s window (plane after plane, shot after shot)."""
    truth = _three_beam_truth(math.sqrt(2.0), 0.97)
    raw = _drifting_stack(truth, "translation:vx=0.2,vy=0.1")
    est = estimate_sim_parameters(raw, OPTICS, unknown(truth), z_step_um=0.15)
    assert est.all_plausible, est.problems
    for d in range(3):
        assert math.hypot(*np.subtract(est.k_per_um[d], truth.k_per_um[d])) * 6.4 < 0.1  # frequency pixels
        assert abs(wrap_deg(est.phase_rad[d] - truth.phase_rad[d])) < 10.0
        assert est.modulation[d] == pytest.approx(truth.modulation[d], rel=MODULATION_TOL)


def test_the_stores_pattern_wins_and_is_checked_against_a_drifting_estimate():
    """2.4 µm of drift over the window: the estimate is off (or beyond the physical limits);
    the store's values are used by default and the disagreement is reported and warned about."""
    truth = _three_beam_truth(math.sqrt(2.0), 0.97)
    raw = _drifting_stack(truth, "translation:vx=2,vy=1")
    est = estimate_sim_parameters(raw, OPTICS, truth, z_step_um=0.15)
    assert not est.all_plausible
    assert any("fits no beam ratio" in p for p in est.problems), est.problems
    # a plausible estimate that disagrees is evidence against the store; an implausible one
    # leaves the store's values unconfirmed, said in one short line
    bad = ", ".join(str(d) for d in range(3) if not est.plausible[d])
    match = f"used unconfirmed: the window's own estimate was implausible in orientations? {bad} "
    with pytest.warns(UserWarning, match=match):
        resolved, report = resolve_sim_parameters(est, truth)  # default: the store's values
    assert report["policy"] == "configured"
    assert resolved.k_per_um == truth.k_per_um and resolved.phase_rad == truth.phase_rad
    assert resolved.modulation == truth.modulation
    check = report["check"]
    assert check["disagreements"] and all(line.startswith("orientation ") for line in check["disagreements"])
    assert max(check["k_difference_per_um"]) > 0.01
    json.dumps(report)
    # the store's own values agree with themselves: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = SimEstimate(
            three_beam=True, k_per_um=truth.k_per_um, phase_rad=truth.phase_rad, modulation=truth.modulation,
            correlation=(1.0,) * 3, peak_to_background=(10.0,) * 3, phase_step_error_rad=(0.0,) * 3,
            plausible=(True,) * 3, orientation_problems=((),) * 3, expected_k_magnitude_per_um=(None,) * 3,
        )
        _, quiet = resolve_sim_parameters(exact, truth)
    assert quiet["check"]["disagreements"] == []
    # a plausible estimate 10 % off in orientation 1 is evidence: warned about with its numbers
    k_off = tuple(tuple(1.1 * v for v in k) if d == 1 else k for d, k in enumerate(truth.k_per_um))
    with pytest.warns(UserWarning, match="disagrees with the data's estimate.*orientation 1: the store's k_per_um"):
        resolve_sim_parameters(dataclasses.replace(exact, k_per_um=k_off), truth)
