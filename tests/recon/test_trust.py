"""The per-window trust report: known answers for each check, and verdicts on fitted windows.

Pure checks: the Jacobian of analytic fields (translation, uniform scaling, a sine shear that
folds where its slope passes -1), the held-out noise ratio of data drawn from the
Poisson-Gaussian model it predicts (~1), and the verdict's reasons. Fitted: a small simulated
DPC window with a few pixels of motion is ``ok``; the same fit with its scene replaced by noise,
or its motion replaced by a folding field, is ``untrusted`` for the right reason.
"""

import dataclasses

import jax
import numpy as np
import pytest

from nstm_acquire.recon.trust import (
    TrustThresholds,
    divided_data_sigma_adu,
    estimated_sigma,
    fitted_units,
    heldout_noise_ratio,
    jacobian_determinant,
    motion_plausibility,
    poisson_gaussian_sigma_adu,
    residual_map,
    signal_weight,
    verdict,
    window_trust,
)


def test_jacobian_of_translation_and_scaling():
    y, x = np.mgrid[0:16, 0:20].astype(float)
    shift = np.stack([np.full_like(y, 3.5), np.full_like(x, -7.0)])
    np.testing.assert_allclose(jacobian_determinant(shift), 1.0)
    s = 0.2  # u = s x: the map scales by 1 + s on every axis
    z3, y3, x3 = np.mgrid[0:5, 0:6, 0:7].astype(float)
    np.testing.assert_allclose(jacobian_determinant(s * np.stack([z3, y3, x3])), (1 + s) ** 3)
    np.testing.assert_allclose(jacobian_determinant(s * np.stack([y, x])), (1 + s) ** 2)


def test_jacobian_finds_the_fold_of_an_analytic_field():
    # u_x = A sin(k x): det = 1 + A k cos(k x), which folds where cos(k x) < -1 / (A k)
    n, a = 256, 12.0
    k = 2 * np.pi / 64
    y, x = np.mgrid[0:8, 0:n].astype(float)
    motion = np.stack([np.zeros_like(x), a * np.sin(k * x)])
    det = jacobian_determinant(motion)
    analytic = 1 + a * k * np.cos(k * x)
    interior = (slice(None), slice(1, -1))
    np.testing.assert_allclose(det[interior], analytic[interior], atol=0.02)
    report = motion_plausibility(motion[None, :, None])  # (T, D, Z, Y, X)
    folds = 1 - np.arccos(-1 / (a * k)) / np.pi  # share of a period where cos(k x) < -1 / (A k)
    assert folds == pytest.approx(np.mean(analytic <= 0), abs=0.01)
    assert report["folded_fraction"] == pytest.approx(folds, abs=0.02)
    assert report["min_jacobian"] == pytest.approx(1 - a * k, abs=0.02)
    assert report["max_displacement_px"] == 0.0  # one time: nothing moves within the window


def test_a_fold_over_an_empty_background_is_not_judged_a_fold_of_the_sample():
    """The same folding field under a sparse sample with signal only where the map does not
    fold (folded_signal_fraction 0: ok) and under one with signal where it folds (untrusted)."""
    n, a = 256, 12.0
    k = 2 * np.pi / 64
    y, x = np.mgrid[0:8, 0:n].astype(float)
    motion = np.stack([np.zeros_like(x), a * np.sin(k * x)])[None, :, None]  # (T, D, Z, Y, X)
    folds = (1 + a * k * np.cos(k * x)) <= 0  # 18 % of the field
    away = np.cos(k * x) > 0.5  # a third of the field, where the map stretches instead
    for signal_where, expected in ((away, "ok"), (folds, "untrusted")):
        scene = np.where(signal_where, 5.0, 1.0)[None, None, None]  # (T, C, Z, Y, X) on a background of 1
        report = motion_plausibility(motion, weight=signal_weight(scene))
        assert report["folded_fraction"] == pytest.approx(np.mean(folds), abs=0.02)
        assert report["folded_signal_fraction"] == pytest.approx(0.0 if expected == "ok" else 1.0, abs=0.05)
        label, reasons = verdict(report)
        assert label == expected, reasons
    assert "of the sample's signal" in reasons[0]
    with pytest.raises(ValueError, match="one value per motion sample"):
        motion_plausibility(motion, weight=np.ones((1, 1, 8, 8)))


def test_noise_ratio_is_one_for_the_model_that_made_the_data():
    rng = np.random.default_rng(3)
    gain, read = 0.5, 1.5
    yy, xx = np.mgrid[0:64, 0:64]
    signal_adu = 200 + 150 * np.sin(yy / 5.0) * np.cos(xx / 7.0)  # expected counts
    signal = np.broadcast_to(signal_adu, (4, 64, 64))
    electrons = rng.poisson(signal * gain) + rng.normal(0, read, signal.shape)
    measured = electrons / gain
    sigma = poisson_gaussian_sigma_adu(signal, gain, read)
    held = rng.random((64, 64)) < 0.1
    z = (measured - signal) / sigma
    assert heldout_noise_ratio(z, held) == pytest.approx(1.0, abs=0.06)
    assert heldout_noise_ratio(2 * z, held) == pytest.approx(2.0, abs=0.12)  # a worse model
    rmap = residual_map(z, held, 8)
    assert rmap.shape == (8, 8) and np.nanmedian(rmap) == pytest.approx(1.0, abs=0.15)
    flat = 100 + rng.normal(0, 3.0, (2, 64, 64))  # white noise: the estimate is its sigma
    np.testing.assert_allclose(estimated_sigma(flat).ravel(), 3.0, rtol=0.1)
    with pytest.raises(ValueError, match="gain_e_per_adu"):
        poisson_gaussian_sigma_adu(signal, 0.0, read)


def test_noise_ratio_is_one_for_dpc_data_divided_by_a_noisy_background():
    """DPC divides each frame by one measured sample-free frame: its noise is in the data too
    (without it the simulated microscope's demo, 1.12 with it, read 1.56 and was doubtful)."""
    rng = np.random.default_rng(5)
    gain, read = 0.5, 1.5
    yy, xx = np.mgrid[0:64, 0:64]
    background_adu = np.broadcast_to(3000.0 + 20 * xx, (4, 64, 64))  # expected sample-free counts
    ratio = 1.0 + 0.2 * np.sin(yy / 4.0)  # expected raw / background
    def noisy(adu):
        return (rng.poisson(adu * gain) + rng.normal(0, read, adu.shape)) / gain
    raw, background = noisy(ratio * background_adu), noisy(background_adu)
    resid_adu = (raw / background - ratio) * background  # the data's residual in the fit's counts
    held = rng.random((64, 64)) < 0.2
    with_bg = divided_data_sigma_adu(ratio, background, gain, read, scale_frames=1)
    without = divided_data_sigma_adu(ratio, background, gain, read)
    assert heldout_noise_ratio(resid_adu / with_bg, held) == pytest.approx(1.0, abs=0.06)
    assert heldout_noise_ratio(resid_adu / without, held) == pytest.approx(np.sqrt(2.0), abs=0.08)  # var doubles where raw ~ background
    np.testing.assert_allclose(without, poisson_gaussian_sigma_adu(ratio * background, gain, read))


def test_verdict_levels_and_reasons():
    good = {"heldout_noise_ratio": 1.1, "folded_fraction": 0.0, "max_displacement_fraction": 0.03,
            "lowfreq_correlation": 0.97}  # fmt: skip
    assert verdict(good) == ("ok", [])
    label, reasons = verdict({**good, "heldout_noise_ratio": 5.0})
    assert label == "untrusted" and len(reasons) == 1 and "held-out residual" in reasons[0]
    label, reasons = verdict({**good, "max_displacement_fraction": 0.3, "lowfreq_correlation": 0.5})
    assert label == "doubtful" and len(reasons) == 1  # the displacement is reported, not judged
    label, reasons = verdict(
        {**good, "max_displacement_fraction": 0.3, "lowfreq_correlation": 0.5}, TrustThresholds(displacement_doubtful=0.25)
    )
    assert label == "doubtful" and len(reasons) == 2 and "30% of the field" in reasons[0]
    label, _ = verdict({**good, "heldout_noise_ratio": float("nan")})  # not judged
    assert label == "ok"
    label, reasons = verdict(good, TrustThresholds(lowfreq_doubtful=0.99))
    assert label == "doubtful" and "conventional" in reasons[0]
    # motion spanning 3.2 periods of the band's top frequency (a recovered 27 px translation on
    # DPC's 0.5 µm pixels, band top 0.24 /µm): the conventional result is smeared in the band,
    # so its disagreement is not judged; the same disagreement under 1 period is
    moving = {**good, "lowfreq_correlation": 0.4, "lowfreq_motion_periods": 3.2}
    assert verdict(moving) == ("ok", [])
    label, reasons = verdict({**moving, "lowfreq_motion_periods": 0.9})
    assert label == "doubtful" and "conventional" in reasons[0]


def test_background_noise_of_a_sparse_sample_is_not_signal():
    """One bright object over a noisy dark field: the weight lies on the object only, so a
    large motion (or a fold) of the empty corner is neither the sample's displacement nor its fold."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32].astype(float)
    blob = np.exp(-((y - 16) ** 2 + (x - 16) ** 2) / (2 * 2.0**2))
    scene = (blob + 0.03 * rng.standard_normal((3, 32, 32)))[:, None, None]  # (T, C, Z, Y, X)
    w = signal_weight(scene)
    assert np.all(w[:, :, np.hypot(y - 16, x - 16) > 6] == 0)  # the noise floor: 3 % of the peak
    assert np.all(w[:, :, 16, 16] > 0)
    motion = np.zeros((3, 2, 1, 32, 32))
    motion[:, 1, 0] = 0.5 * np.array([-1.0, 0.0, 1.0])[:, None, None]  # the object: +-0.5 px
    motion[:, 1, 0, :8, :8] = 12.0 * np.array([-1.0, 0.0, 1.0])[:, None, None]  # the empty corner: +-12 px
    report = motion_plausibility(motion, weight=w)
    assert report["max_displacement_px"] == pytest.approx(12.0)
    assert report["max_signal_displacement_px"] == pytest.approx(0.5)
    assert report["folded_signal_fraction"] == 0.0 and report["folded_fraction"] > 0  # the corner's edge folds
    th = TrustThresholds(displacement_doubtful=0.25)  # judged only when a limit is given
    assert verdict({"heldout_noise_ratio": 1.0, **report}, th) == ("ok", [])
    # a report without the signal numbers (stored before them) is judged on the whole field
    old = {k: v for k, v in report.items() if "signal" not in k}
    label, reasons = verdict({"heldout_noise_ratio": 1.0, **old}, th)
    assert label == "doubtful" and any("38% of the field" in r for r in reasons)  # 12 px of 32
    label, reasons = verdict({"heldout_noise_ratio": 1.0, **old})  # the default: the displacement not judged
    assert len(reasons) == 1 and "folds" in reasons[0] and "of the field" in reasons[0]


@pytest.fixture(scope="module")
def fitted_window():
    """A 48 x 48 DPC window with ~1.5 px of translation, fitted to convergence (~275 steps; held-out
    pixels on: the default 5 %)."""
    from nstm_acquire.hardware.simulated.setup import simulated_config
    from nstm_acquire.hardware.simulated.windows import simulate_dpc_window
    from nstm_acquire.nstm.config import default_config
    from nstm_acquire.recon.arrays import reconstruct_window
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.store import WindowData

    n = 48
    cfg = simulated_config(frame_shape=(n, n))
    cells = {"n_cells": 8, "cell_radius_um": (4.0, 8.0)}
    win = simulate_dpc_window(cfg, shape=(n, n), motion="translation:vx=15,vy=8", exposure_s=0.03, seed=1,
                              sample_options=cells)  # fmt: skip
    config = default_config().with_fit(max_steps=400)
    builder = ProblemBuilder(win.optics, win.illumination, (n, n), 1, config, background=win.background[:, None])
    problem = builder.problem(WindowData(0, win.raw[:, None], win.timestamps_s[:, None], win.exposure_s[:, None]))
    result = reconstruct_window(problem, config)
    camera = (cfg.camera.gain_e_per_adu or 0.5, cfg.camera.read_noise_e if cfg.camera.read_noise_e is not None else 1.5)
    return problem, result, win.raw[:, None], win.optics.cutoff_per_um, camera


def test_a_good_fit_is_ok(fitted_window):
    problem, result, raw, cutoff, (gain, read) = fitted_window
    report, rmap = window_trust(problem, result, raw, cutoff, gain, read)
    assert report["verdict"] == "ok", report["reasons"]
    assert 0.8 < report["heldout_noise_ratio"] < TrustThresholds().residual_doubtful
    assert report["folded_fraction"] == 0.0
    assert report["lowfreq_correlation"] > 0.9
    assert rmap.ndim == 2 and np.isfinite(rmap).any()
    assert report["noise_model"].startswith("camera")


def test_dpc_fitted_units_give_back_the_camera_counts(fitted_window):
    problem, _, raw, cutoff, _ = fitted_window
    units = fitted_units(problem, raw, cutoff)
    counts = units.counts_per_unit * (np.asarray(problem.data.measurements) + units.offset_units)
    np.testing.assert_allclose(counts, raw[np.asarray(problem.data.shots), 0], rtol=1e-5, atol=1e-3)
    assert units.channel == problem.channel_names.index("phase_rad")
    assert units.band_per_um == pytest.approx((0.1 * cutoff, 0.5 * cutoff))


@pytest.mark.filterwarnings("ignore:SIM parameters:UserWarning")  # a 32 x 32 window's estimate is rough
def test_sim_fitted_units_give_back_the_camera_counts():
    from sim_data import OPTICS, illumination, simulate_moving_2d

    from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
    from nstm_acquire.nstm.config import default_config
    from nstm_acquire.recon.problem import ProblemBuilder

    ill = illumination(False)
    phantom = BeadPhantom((32 * OPTICS.pixel_size_um,) * 2, n_beads=10, seed=2, n_pairs_each=0)
    raw, starts, _ = simulate_moving_2d(ill, phantom, "static", n=32)
    builder = ProblemBuilder(OPTICS, ill, (32, 32), 1, default_config("sim2d"))
    problem = builder.problem_from_arrays(raw, starts, np.full_like(starts, 0.01))
    units = fitted_units(problem, raw, OPTICS.cutoff_per_um)
    counts = units.counts_per_unit * (np.asarray(problem.data.measurements) + units.offset_units)
    np.testing.assert_allclose(counts, raw[:, 0], rtol=1e-5, atol=1e-3)
    assert units.band_per_um == pytest.approx((0.2 * OPTICS.cutoff_per_um, OPTICS.cutoff_per_um))


def test_a_scene_replaced_by_noise_is_untrusted(fitted_window):
    problem, result, raw, cutoff, (gain, read) = fitted_window
    rng = np.random.default_rng(0)
    scene = jax.tree_util.tree_map(
        lambda a: (3 * np.std(a) * rng.standard_normal(a.shape)).astype(a.dtype) if a.size > 1 else a,
        result.fit.params["scene"],
    )
    fit = dataclasses.replace(result.fit, params={**result.fit.params, "scene": scene})
    report, _ = window_trust(problem, dataclasses.replace(result, fit=fit), raw, cutoff, gain, read)
    assert report["verdict"] == "untrusted"
    assert any("held-out residual" in r for r in report["reasons"])
    assert report["heldout_noise_ratio"] > TrustThresholds().residual_untrusted


def test_a_folding_motion_is_untrusted(fitted_window):
    problem, result, raw, cutoff, (gain, read) = fitted_window
    t, _, z, ny, nx = result.motion.shape
    x = np.arange(nx, dtype=np.float32)
    fold = np.zeros_like(result.motion)
    fold[:, 1] = 10.0 * np.sin(2 * np.pi * x / 24)  # slope 2.6 px/px: folds on ~40% of the field
    report, _ = window_trust(problem, dataclasses.replace(result, motion=fold), raw, cutoff, gain, read)
    assert report["verdict"] == "untrusted"
    assert any("folds" in r for r in report["reasons"])


def test_a_trust_failure_never_fails_the_window():
    from types import SimpleNamespace

    from nstm_acquire.recon.chain import StoreReconstructor

    rec = object.__new__(StoreReconstructor)  # only _trust is exercised: no store needed
    camera = SimpleNamespace(gain_e_per_adu=0.5, read_noise_e=1.5)
    rec.reader = SimpleNamespace(attrs=SimpleNamespace(camera=camera), optics=SimpleNamespace(cutoff_per_um=0.5))
    broken = SimpleNamespace(data=None, channel_names=["phase_rad"])
    report, rmap = rec._trust(broken, SimpleNamespace(window=3), np.zeros((4, 1, 8, 8)))
    assert report["verdict"] == "unavailable" and rmap is None
    assert report["reasons"][0].startswith("the trust report could not be computed: ")


def test_trust_report_and_map_round_trip_through_the_store(tmp_path):
    from nstm_acquire.store import ReconReader, ReconWriter

    writer = ReconWriter(tmp_path / "s.zarr", "nstm", scene_shape=(2, 1, 8, 8), motion_dims=2, pixel_size_um=0.5)
    scene, motion = np.zeros((2, 2, 1, 8, 8)), np.zeros((2, 2, 1, 8, 8))
    report = {
        "verdict": "doubtful",
        "reasons": ["a reason."],
        "heldout_noise_ratio": 1.4,
        "folded_fraction": float("nan"),
    }
    writer.write_window(0, scene, np.array([0.0, 0.1]), motion, info={"trust": report})
    rmap = np.array([[1.0, np.nan], [2.0, 0.5]], np.float32)
    writer.write_trust_map(0, rmap)
    reader = ReconReader(tmp_path / "s.zarr", "nstm")
    stored = reader.trust(0)
    assert stored is not None and stored["verdict"] == "doubtful" and stored["reasons"] == ["a reason."]
    assert stored["folded_fraction"] is None  # JSON has no NaN
    np.testing.assert_array_equal(reader.trust_map(0), rmap)
    assert reader.trust_map(1) is None and reader.trust(1) is None
    with pytest.raises(ValueError, match="residual_map"):
        writer.write_trust_map(0, np.zeros(3))
    # shown by `info` and the panel
    from nstm_acquire.cli import _trust_lines
    from nstm_acquire.gui.reconstruction import ReconImage, trust_text

    lines = _trust_lines(reader, reader.windows_done())
    assert lines[0].split() == ["trust", "(window", "verdict):", "0", "doubtful"]
    assert lines[1].strip() == "window 0: a reason."
    image = ReconImage(window=0, kind="nstm", scene=scene, times_s=None, motion=None, pixel_size_um=0.5, trust=stored)
    assert trust_text(image) == "trust: doubtful – a reason."


def test_volumes_agree_in_the_low_band_through_their_axial_projections():
    """Two volumes of the same lateral content whose planes weigh it differently (as a 3D Wiener
    result's missing cone and axial blur do against the NSTM's) agree fully through their axial
    projections though not plane by plane; different content does not; a single plane is
    compared as it is."""
    from nstm_acquire.recon.trust import lowfreq_correlation, projected_lowfreq_correlation

    rng = np.random.default_rng(0)
    k2 = np.fft.fftfreq(64)[:, None] ** 2 + np.fft.fftfreq(64)[None, :] ** 2
    smooth = lambda: np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((64, 64))) * np.exp(-k2 / 0.05**2)))  # noqa: E731
    lateral, other = smooth(), smooth()
    nstm = np.stack([w * lateral for w in (1.0, 1.0, 1.0, 1.0)])
    wiener = np.stack([w * lateral for w in (2.0, -0.5, 1.5, 0.2)]) + 0.2 * np.stack([other, -other, other, -other])
    band = (0.05, 0.5)  # cycles/µm with 1 µm pixels
    assert lowfreq_correlation(nstm, wiener, 1.0, band) < 0.9
    assert projected_lowfreq_correlation(nstm, wiener, 1.0, band) == pytest.approx(1.0, abs=1e-6)
    assert abs(projected_lowfreq_correlation(nstm, np.stack([other] * 4), 1.0, band)) < 0.3
    plane = projected_lowfreq_correlation(nstm[:1], wiener[:1], 1.0, band)
    assert plane == pytest.approx(lowfreq_correlation(nstm[0], wiener[0], 1.0, band))
    with pytest.raises(ValueError, match="volumes"):
        projected_lowfreq_correlation(lateral, lateral, 1.0, band)
