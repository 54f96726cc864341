"""Large drift within one 2D SIM window: registration of the shots' low band, and the fit from it.

Known answers: the simulated beads drift at a constant velocity, several pattern periods
(0.25 µm here) across the nine shots, so every shot's content shift is known; the registration
of the shots' low band (below half the pattern frequency) finds it within half a camera pixel
(one output pixel). A drift the fit from zero does not follow (about a third of the field
across the window) is recovered when the motion network starts from that registration; a small
drift is left to the fit from zero (nothing pre-fitted, as today).
"""

from __future__ import annotations

import numpy as np
import pytest
from sim_data import OPTICS, illumination, simulate_moving_2d

from nstm_acquire.evaluation.metrics import correlation
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import build_model, fit, render_scenes
from nstm_acquire.physics.sim.otf import lateral_cutoff_per_um
from nstm_acquire.recon.problem import ProblemBuilder
from nstm_acquire.recon.registration import (
    PREFIT_MIN_PX,
    SIM_LOW_BAND,
    motion_from_registration,
    pattern_frequency,
    sim_low_band,
    window_motion,
)
from nstm_acquire.recon.start import start_params
from nstm_acquire.store import WindowData

# a drifting window's own pattern estimate disagrees with the true pattern used here (warned)
pytestmark = pytest.mark.filterwarnings("ignore:SIM parameters:UserWarning")

N = 64  # camera pixels (0.1 µm): 128 x 128 output pixels
M = 6  # output pixels of border left out of the scores
STEPS = 50  # the fit runs its 20 steps of ramp and 30 more
# µm/s (vy, vx): 1.0 x 2.5 µm (10 x 25 camera pixels, 10 pattern periods) over the 96 ms between
# the first and last shots' midpoints
FAST = (-10.0, 26.0)


def _window(velocity_um_per_s: tuple[float, float]):
    ill = illumination(three_beam=False)
    phantom = BeadPhantom((N * OPTICS.pixel_size_um,) * 2, n_beads=40, seed=2, n_pairs_each=0)
    motion = f"translation:vy={velocity_um_per_s[0]},vx={velocity_um_per_s[1]}"
    raw, starts, sample = simulate_moving_2d(ill, phantom, motion, n=N, photons=300.0)
    exposure = np.full_like(starts, 0.01)
    return ill, raw, starts, exposure, sample


def _true_shifts_px(starts: np.ndarray, velocity_um_per_s: tuple[float, float]) -> np.ndarray:
    """Content shift of every shot from the window's mean position, camera pixels (dy, dx)."""
    mid = starts[:, 0] + 0.005
    return np.outer(mid - mid.mean(), velocity_um_per_s) / OPTICS.pixel_size_um


def _problem(ill, raw, starts, exposure, config):
    builder = ProblemBuilder(OPTICS, ill, (N, N), 1, config)
    return builder.problem(WindowData(0, raw, starts, exposure))


@pytest.fixture(scope="module")
def fast_drift():
    return _window(FAST)


def test_pattern_frequency_and_low_band_of_the_forward_model(fast_drift):
    ill, raw, starts, exposure, _ = fast_drift
    problem = _problem(ill, raw, starts, exposure, default_config("sim2d"))
    k_fine = pattern_frequency(np.asarray(problem.forward.patterns))  # cycles per output pixel
    k_um = np.abs(np.asarray(ill.k_per_um)[np.arange(9) // 3])  # cycles/µm, per shot
    # the strongest component lies on the FFT grid: within half a frequency pixel of the true k
    np.testing.assert_allclose(np.abs(k_fine) / (OPTICS.pixel_size_um / 2), k_um, atol=0.5 / (2 * N * 0.05))
    # the low band on the camera grid: below SIM_LOW_BAND x |k|, the pattern frequency left out
    k_cam = k_fine * 2
    band = sim_low_band((N, N), k_cam)
    f = np.hypot(np.fft.fftfreq(N)[:, None], np.fft.fftfreq(N)[None, :])
    k_abs = float(np.hypot(*k_cam[0]))
    assert np.all(band[f < 0.9 * SIM_LOW_BAND * k_abs] == 1) and np.all(band[f > 1.1 * SIM_LOW_BAND * k_abs] == 0)
    # unmodulated patterns: every shot is a widefield image, the whole band takes part
    flat = pattern_frequency(np.ones((3, 16, 16)))
    np.testing.assert_array_equal(flat, 0.0)
    np.testing.assert_array_equal(sim_low_band((8, 8), flat), 1.0)


def test_drift_of_several_pattern_periods_registers_within_a_pixel(fast_drift):
    ill, raw, starts, exposure, _ = fast_drift
    problem = _problem(ill, raw, starts, exposure, default_config("sim2d"))
    motion, info = window_motion(problem)
    assert info["registered"] and motion is not None
    truth = _true_shifts_px(starts, FAST)
    period_px = 1 / (float(np.hypot(*ill.k_per_um[0])) * OPTICS.pixel_size_um)
    assert np.ptp(truth[:, 1]) > 9 * period_px  # the drift spans many pattern periods
    found = np.asarray(info["shot_shift_px"])  # camera pixels
    assert np.max(np.abs(found - truth)) < 0.5
    # the motion on the output grid (2x finer) is the backward displacement d = -2c, uniform
    np.testing.assert_allclose(motion[:, :, 10, 20], -2 * found, atol=0.011)  # found: rounded to 0.01


def test_small_drift_is_left_to_the_fit_from_zero():
    slow = (-1.0, 2.0)  # 0.2 µm across the window: 4 output pixels
    ill, raw, starts, exposure, _ = _window(slow)
    config = default_config("sim2d").with_fit(motion_start="registration")
    problem = _problem(ill, raw, starts, exposure, config)
    assert motion_from_registration(None, problem, config, None) is None  # type: ignore[arg-type]
    found = problem.info["motion_start"]
    assert found["registered"] and not found["prefit"]
    assert found["largest_px"] < PREFIT_MIN_PX
    np.testing.assert_allclose(found["shot_shift_px"], _true_shifts_px(starts, slow), atol=0.3)


def test_a_window_without_dpc_transfer_or_2d_patterns_is_refused_in_one_line():
    """3D SIM (a volume per shot) and any other forward model: registration is not implemented."""
    from nstm_acquire.nstm.fit import FitData
    from nstm_acquire.recon.problem import WindowProblem

    class Volumes:  # a forward model with neither h_phi nor 2D patterns
        pass

    data = FitData(np.zeros((2, 8, 8)), np.zeros((2, 1)), np.arange(2))
    problem = WindowProblem(Volumes(), data, (4, 16, 16), 1, ["density"], 3, np.zeros(2), np.zeros((1, 4, 16, 16)), 0.05, 0.1, {})
    with pytest.raises(ValueError, match=r"DPC and 2D SIM windows only .*Volumes.*set fit.motion_start='zero'$"):
        window_motion(problem)


def _score(scenes: np.ndarray, times_s: np.ndarray, sample) -> float:
    """Mean over shots of the correlation of ``scenes`` ``(K, Y', X')`` with the true density at
    ``times_s``, band-limited to the SIM passband."""
    fine = OPTICS.pixel_size_um / 2
    cut = lateral_cutoff_per_um(OPTICS) + float(np.hypot(*illumination(False).k_per_um[0]))
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(2 * N, fine), np.fft.fftfreq(2 * N, fine), indexing="ij"))
    out = []
    for scene, t in zip(scenes, times_s, strict=True):
        truth = np.fft.ifft2(np.fft.fft2(sample.on_grid(t, (N, N), OPTICS.pixel_size_um, upsample=2)) * (q < cut)).real
        out.append(correlation(scene[M:-M, M:-M], truth[M:-M, M:-M]))
    return float(np.mean(out))


def test_fit_from_the_registration_follows_a_drift_the_fit_from_zero_loses(fast_drift):
    """Both fits from the same Wiener-pre-fitted scene (the 2D SIM default's start) and one
    model, so they differ only in the motion network's start (and compile once)."""
    ill, raw, starts, exposure, sample = fast_drift
    config = default_config("sim2d").with_fit(max_steps=STEPS)
    assert config.fit.motion_start == "registration" and config.fit.scene_start == "conventional"
    problem = _problem(ill, raw, starts, exposure, config)
    model = build_model(config, problem.scene_shape, 1, 2, nonnegative=True, n_shots=9)
    from_zero = start_params(model, problem, config.with_fit(motion_start="zero"))
    from_registration = motion_from_registration(model, problem, config, from_zero)
    assert problem.info["motion_start"]["prefit"]
    scores = {}
    for name, start in (("zero", from_zero), ("registration", from_registration)):
        result = fit(model, problem.forward, problem.data, start_params=start)
        scenes, _ = render_scenes(result, problem.render_times_s)
        scores[name] = _score(scenes[:, 0], problem.render_times_s, sample)
    assert scores["registration"] > 0.85
    assert scores["registration"] > scores["zero"] + 0.3, scores
