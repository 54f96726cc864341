"""Large motion within one DPC window: registration of the shots, the motion pre-fit, the fit.

Known answers: a sub-pixel Fourier shift between two images (also through transfer functions of
opposite sign, as DPC's complementary half-circles see the phase); unrelated images do not
register; a 64 x 64 simulated window whose cells travel 24 px across its four shots registers
within 1 px of the simulated motion, and the NSTM started from that registration recovers its
phase (correlation >= 0.9 with the truth). The trust report passes that fit and flags the same
window fitted as if its shots were taken at one instant (the motion network can then not move
the sample between shots: a fit that fails as one with a frozen motion network does).
"""

import dataclasses

import jax
import numpy as np
import pytest

from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import build_model
from nstm_acquire.nstm.prefit_motion import prefit_motion
from nstm_acquire.recon.registration import motion_fields, pair_shift, shot_translations


def _fourier_shift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``image(r - shift)``, periodic."""
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.fftfreq(image.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1]))
    return np.real(np.fft.ifft2(np.fft.fft2(image) * ramp))


def _smooth_random(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.fft.fft2(rng.standard_normal((n, n)))
    k2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2
    return np.real(np.fft.ifft2(f * np.exp(-k2 / 0.1**2)))


def test_pair_shift_finds_a_subpixel_shift_also_through_opposite_transfers():
    a = _smooth_random(64, 0)
    b = _fourier_shift(a, (3.3, -7.6))
    shift, significance = pair_shift(a, b, taper=0.0)  # a periodic shift: no apodisation needed
    np.testing.assert_allclose(shift, [3.3, -7.6], atol=0.1)
    assert significance > 10
    # b seen through the negated transfer (DPC top vs bottom): the plain correlation is negative
    fy = np.fft.fftfreq(64)[:, None] * np.ones((1, 64))
    h = 1j * np.sign(fy) * (np.abs(fy) < 0.3)
    seen_a = np.real(np.fft.ifft2(np.fft.fft2(a) * h))
    seen_b = np.real(np.fft.ifft2(np.fft.fft2(b) * -h))
    shift, _ = pair_shift(seen_a, seen_b, h, -h, taper=0.0)
    np.testing.assert_allclose(shift, [3.3, -7.6], atol=0.1)


def test_unrelated_shots_do_not_register():
    shots = np.stack([_smooth_random(64, s) for s in range(4)])
    shifts, significance = shot_translations(shots)
    assert shifts is None
    assert np.all(significance < 6)
    shifts, _ = shot_translations(shots, times_s=np.arange(4) * 0.03)
    assert shifts is None


# one configuration for every fit here, so the pre-fit and the fit compile once
CONFIG = default_config().with_fit(max_steps=300, motion_start="registration")


def test_motion_prefit_matches_a_translation_at_every_granularity():
    model = build_model(CONFIG, (64, 64), 2)
    params = model.init(jax.random.PRNGKey(0))
    tn = np.array([-0.6, -0.2, 0.2, 0.6], np.float32)
    target = motion_fields((64, 64), np.stack([tn * 9.0, tn * -15.0], axis=1))  # content shift c -> d = -c
    fitted, info = prefit_motion(model, params, tn, target)
    assert info["rms_error_px"] < 0.3 < 5.0 < info["rms_target_px"]
    for alpha in (0.125, 0.5):  # the cold fit's early levels already carry the motion
        _, w_m = model.level_weights(alpha)
        d = np.asarray(model.motion(fitted, jax.numpy.asarray(tn), w_m))
        assert np.sqrt(np.mean((d - target) ** 2)) < 1.0
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(np.all(a == b)), fitted["scene"], params["scene"]))


@pytest.fixture(scope="module")
def travelling_window():
    """A 64 x 64 DPC window whose cells travel 24 x 10 px across its four shots (30 ms
    exposures), its problem, and the phase scorer."""
    from nstm_acquire.hardware.simulated.setup import simulated_config
    from nstm_acquire.hardware.simulated.windows import simulate_dpc_window
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.store import WindowData

    n = 64
    cfg = simulated_config(frame_shape=(n, n))
    # 0.5 µm pixels, 97.5 ms between the first and last midpoints: 125 µm/s is 24.4 px
    win = simulate_dpc_window(cfg, shape=(n, n), motion="translation:vx=125,vy=50", exposure_s=0.03, seed=0)
    config = CONFIG
    builder = ProblemBuilder(win.optics, win.illumination, (n, n), 1, config, background=win.background[:, None])
    problem = builder.problem(WindowData(0, win.raw[:, None], win.timestamps_s[:, None], win.exposure_s[:, None]))
    camera = (cfg.camera.gain_e_per_adu or 0.5, cfg.camera.read_noise_e if cfg.camera.read_noise_e is not None else 1.5)
    return win, problem, config, camera


def _phase_correlation(win, scene: np.ndarray) -> float:
    from nstm_acquire.evaluation.metrics import correlation, crop, highpass

    px, cut = win.optics.pixel_size_um, 0.1 * win.optics.cutoff_per_um
    return float(np.mean([
        correlation(crop(highpass(scene[k, 1, 0], px, cut), 6), crop(highpass(win.truth_scene[k, 1], px, cut), 6))
        for k in range(len(win.raw))
    ]))  # fmt: skip


def test_registration_of_a_24px_travel_is_within_a_pixel(travelling_window):
    win, problem, _, _ = travelling_window
    y = problem.data.measurements
    transfer = np.asarray(problem.forward.h_phi)[problem.data.shots]
    shifts, _ = shot_translations(y, transfer, times_s=win.midpoints_s)
    assert shifts is not None
    truth = win.truth_displacement_px.mean(axis=(2, 3))  # backward displacement d = -c
    truth = truth - truth.mean(0)
    assert np.ptp(truth[:, 1]) > 24
    np.testing.assert_allclose(-shifts, truth, atol=1.0)


def test_row_exact_data_registers_one_frame_per_shot(travelling_window):
    """A rolling-shutter camera's window holds every shot once per block of rows
    (recon.row_timing): the registration takes one frame per shot and gives each of the shot's
    rows the shot's displacement."""
    from nstm_acquire.physics.rolling_shutter.timing import RowTiming
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.recon.registration import window_motion
    from nstm_acquire.recon.row_timing import RowBlockTiming

    win, problem, config, _ = travelling_window
    n = win.raw.shape[-1]
    frame_motion, frame_info = window_motion(problem)
    rows = ProblemBuilder(
        win.optics, win.illumination, (n, n), 1, config, background=win.background[:, None],
        row_timing=RowBlockTiming(RowTiming(n, 1e-6, 0.03), 4),
    ).problem_from_arrays(win.raw[:, None], win.timestamps_s[:, None], win.exposure_s[:, None])  # fmt: skip
    assert rows.data.measurements.shape[0] == 16
    row_motion, row_info = window_motion(rows)
    assert frame_motion is not None and row_motion is not None
    np.testing.assert_allclose(row_info["shot_shift_px"], frame_info["shot_shift_px"], atol=0.05)
    shot_of_row = np.asarray(rows.data.shots)
    np.testing.assert_allclose(row_motion, frame_motion[shot_of_row], atol=0.05)


def test_registered_motion_recovers_a_24px_travel_and_trust_flags_a_static_fit(travelling_window):
    from nstm_acquire.nstm.fit import FitData
    from nstm_acquire.recon.arrays import reconstruct_window
    from nstm_acquire.recon.trust import window_trust

    win, problem, config, (gain, read) = travelling_window
    raw = win.raw[:, None]
    cutoff = win.optics.cutoff_per_um
    registered = reconstruct_window(dataclasses.replace(problem, info=dict(problem.info)), config)
    assert registered.info["motion_start"]["prefit"] is True
    assert _phase_correlation(win, registered.scene) >= 0.9
    report, _ = window_trust(problem, registered, raw, cutoff, gain, read)
    assert report["verdict"] == "ok", report["reasons"]
    # the shots span ~24 px: the conventional result is smeared in the low band, not a reference
    assert report["lowfreq_motion_periods"] > 1 and "smeared" in report["not_judged"][-1]
    # the same window as if every shot were taken at one instant: the motion network (same
    # structure and compiled step) cannot move the sample between shots, so the fit fails
    data = problem.data
    instant = FitData(data.measurements, np.full_like(data.times_s, data.times_s.mean()), data.shots, data.weights)
    static = reconstruct_window(dataclasses.replace(problem, data=instant, info=dict(problem.info)), config)
    assert _phase_correlation(win, static.scene) < 0.6
    report, _ = window_trust(problem, static, raw, cutoff, gain, read)
    assert report["verdict"] != "ok"
    assert report["reasons"]
