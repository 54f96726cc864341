"""Rolling-shutter lensless video by the NSTM against the simulated camera's truth (a small case).

Known answer: the simulated moving RGB scene (``hardware/simulated/lensless.py``, physics written
independently of the forward model). The NSTM video must beat both conventional baselines
(static deconvolution, FISTA with 3D TV) in PSNR against the truth, and the objects' paths
queried from its fitted motion must stay within a few pixels of the true paths.
"""

import numpy as np
import pytest

from nstm_acquire.hardware.simulated.lensless import (
    LenslessCamera,
    MovingRgbScene,
    caustic_psf,
    simulate_lensless_video,
)
from nstm_acquire.physics.rolling_shutter import RowTiming, fista_tv3d
from nstm_acquire.recon.rolling_shutter import (
    reconstruct_rolling_shutter,
    rolling_shutter_config,
    track_points,
    write_trajectories_csv,
)

N, FRAMES, N_TIME = 24, 3, 8
ROW_S, EXPOSURE_S = 1e-4, 6e-4


def _psnr(a, b, peak):
    return 10 * np.log10(peak**2 / np.mean((a - b) ** 2))


@pytest.fixture(scope="module")
def case():
    cam = LenslessCamera((N, N), ROW_S, EXPOSURE_S, photons=2e4)
    scene = MovingRgbScene.random((N, N), 3, speed_px_per_s=1000.0, duration_s=FRAMES * cam.span_s(), seed=1)
    video = simulate_lensless_video(cam, scene, caustic_psf((N, N), seed=0), FRAMES, seed=0)
    timing = RowTiming(N, ROW_S, EXPOSURE_S)
    result = reconstruct_rolling_shutter(
        video.frames, video.psf, timing, video.frame_starts_s, n_time=N_TIME, config=rolling_shutter_config(300)
    )
    return video, timing, result


def test_nstm_beats_both_baselines_and_tracks_points(case, tmp_path):
    video, timing, result = case
    times = result.times_s
    truth = np.stack([video.scene.render(t) for t in times])
    peak = truth.max()
    nstm = np.mean([_psnr(result.video[i], truth[i], peak) for i in range(len(times))])
    static = np.repeat(result.static, N_TIME, axis=0)
    static_psnr = np.mean([_psnr(static[i], truth[i], peak) for i in range(len(times))])
    fista, _ = fista_tv3d(result.forward, result.forward.frames_to_blocks(video.frames), tau=3e-5, n_iter=300)
    fista_psnr = np.mean([_psnr(fista[i], truth[i], peak) for i in range(len(times))])
    assert nstm > static_psnr + 1.0, (nstm, static_psnr)
    assert nstm > fista_psnr + 1.0, (nstm, fista_psnr)
    true_paths = video.scene.positions_yx(times)
    tracks = result.trajectories(true_paths[0], float(times[0]), times)
    error = np.linalg.norm(tracks - true_paths, axis=-1)
    moved = np.linalg.norm(true_paths[-1] - true_paths[0], axis=-1)
    assert moved.max() > 5.0  # the objects really move
    assert error.mean() < 2.0 and error.max() < 4.0, error.max(axis=0)
    path = write_trajectories_csv(tmp_path / "tracks.csv", times, tracks, pixel_size_um=2.0)
    lines = path.read_text().splitlines()
    assert lines[0] == "point,time_s,y_px,x_px,y_um,x_um" and len(lines) == 1 + tracks.shape[0] * tracks.shape[1]


def test_track_points_follows_a_known_warp():
    """A uniform translation by (t, -2t) px: the template coordinate is fixed, the point moves."""
    h = w = 12
    times = np.array([0.0, 1.0, 2.0])
    shift = np.array([[1.0], [-2.0]])
    motion = np.stack([np.broadcast_to((-t * shift)[:, :, None], (2, h, w)) for t in times])
    tracks = track_points(np.array([[4.0, 8.0]]), motion[0], motion)
    np.testing.assert_allclose(tracks[:, 0], [[4, 8], [5, 6], [6, 4]], atol=1e-6)


def test_bad_input_is_named():
    timing = RowTiming(N, ROW_S, EXPOSURE_S)
    frames = np.zeros((1, 3, N, N), np.float32)
    with pytest.raises(ValueError, match="frame_starts_s"):
        reconstruct_rolling_shutter(frames, np.ones((5, 5)), timing, [0.0, 1.0])
    with pytest.raises(ValueError, match="n_time"):
        reconstruct_rolling_shutter(frames + 1, np.ones((5, 5)), timing, [0.0], n_time=5)
    with pytest.raises(ValueError, match="n_rows"):
        reconstruct_rolling_shutter(frames, np.ones((5, 5)), RowTiming(N + 1, ROW_S, EXPOSURE_S), [0.0])


# --------------------------------------------------------------------- from a store, end to end
@pytest.fixture(scope="module")
def reconstructed_store(tmp_path_factory):
    """``acquire --modality rolling_shutter`` then ``reconstruct --steps 300`` (the CLI), one 24 x 24
    window (the acquisition's start, so the objects' phase, differs from run to run: 300 steps keep
    the paths within the trajectory test's tolerance where the converged fit sometimes does not)."""
    from nstm_acquire.cli import main

    store = tmp_path_factory.mktemp("rs_store") / "rs.zarr"
    args = ["--modality", "rolling_shutter", "--fast", "--shape", "24", "24", "--windows", "1", "--out", str(store)]
    assert main(["acquire", *args]) == 0
    assert main(["reconstruct", str(store), "--steps", "300"]) == 0
    return store


def _truth_of(store):
    from nstm_acquire.hardware.config import parse_hardware_config
    from nstm_acquire.hardware.simulated.lensless_camera import lensless_truth
    from nstm_acquire.store import StoreReader

    attrs = StoreReader(store).attrs
    return lensless_truth(parse_hardware_config(attrs.acquisition["hardware_config_dump"]))


def _gain_psnr(x, truth):
    """PSNR after the one brightness gain that fits best (the store's units are counts / scale)."""
    gain = np.sum(x * truth) / np.sum(x * x)
    return _psnr(gain * x, truth, truth.max())


def test_store_reconstruction_beats_static_deconvolution(reconstructed_store):
    from nstm_acquire.store import ReconReader

    recon = ReconReader(reconstructed_store, "nstm")
    assert recon.windows_done() == [0]
    assert recon.attrs["channels"] == ["red", "green", "blue"]
    scene, times, static = recon.scene(0)[:, :, 0], recon.times_s(0), recon.conventional(0)[:, 0]
    assert scene.shape == (3 * N_TIME, 3, N, N)  # 3 frames x 8 time points, RGB
    truth = _truth_of(reconstructed_store)
    true = np.stack([truth.scene.render(t) for t in times])
    nstm = np.mean([_gain_psnr(scene[i], true[i]) for i in range(len(times))])
    conventional = np.mean([_gain_psnr(static, true[i]) for i in range(len(times))])
    assert nstm > conventional + 2.0, (nstm, conventional)


def test_trajectory_command_writes_paths_near_the_truth(reconstructed_store, tmp_path):
    import csv

    from nstm_acquire.cli import main
    from nstm_acquire.store import ReconReader

    times = ReconReader(reconstructed_store, "nstm").times_s(0)
    truth = _truth_of(reconstructed_store)
    start = truth.scene.positions_yx(times[0])  # (P, 2) the objects' centres at the first time
    out = tmp_path / "paths.csv"
    points = [f"{y:.3f},{x:.3f}" for y, x in start]
    stamps = ",".join(f"{t:.9f}" for t in times)
    assert main(["trajectory", str(reconstructed_store), "--points", *points, "--times", stamps, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(start) * len(times)
    found = np.array([[float(r["y_px"]), float(r["x_px"])] for r in rows]).reshape(len(start), len(times), 2)
    true_paths = np.moveaxis(truth.scene.positions_yx(times), 1, 0)  # (P, T, 2)
    error = np.linalg.norm(found - true_paths, axis=-1)
    moved = np.linalg.norm(true_paths[:, -1] - true_paths[:, 0], axis=-1)
    assert moved.max() > 4.0  # the objects really move within the window
    # the acquisition's start time (host clock) sets where the objects are: some variation
    assert error.mean() < 1.5 and error.max() < 4.0, error.max(axis=1)


def test_napari_reader_shows_the_video_in_colour(reconstructed_store):
    from nstm_acquire.napari.reader import read_store

    layers = {kw["name"]: kw for _, kw, kind in read_store(str(reconstructed_store)) if kind == "image"}
    for colour in ("red", "green", "blue"):
        layer = layers[f"nstm {colour}"]
        assert layer["colormap"] == colour and layer["blending"] == "additive" and layer["visible"]


def test_demo_figure_of_a_rolling_shutter_store(reconstructed_store, tmp_path):
    import matplotlib.image as mpimg

    from nstm_acquire.evaluation.demo import rolling_shutter_figure

    path = rolling_shutter_figure(reconstructed_store, tmp_path / "rs.png")
    image = mpimg.imread(path)
    assert image.shape[1] > 4 * image.shape[0]  # six colour panels in a row
    assert image[..., :3].std(axis=(0, 1)).min() > 0.01  # colour content, not a blank page


def test_reconstruct_opens_the_store_once(reconstructed_store, monkeypatch, capsys):
    """Opening a store lists every frame's chunk (about 2 s for 20,000 frames): the CLI's
    argument check and the reconstruction share one reader."""
    from nstm_acquire.cli import main
    from nstm_acquire.store import reader as reader_module

    opened = []
    original = reader_module.StoreReader.__init__

    def counting(self, *args, **kwargs):
        opened.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(reader_module.StoreReader, "__init__", counting)
    # the fixture's settings again: every window is done, nothing to fit
    assert main(["reconstruct", str(reconstructed_store), "--steps", "300"]) == 0
    assert "already reconstructed" in capsys.readouterr().out
    assert len(opened) == 1, opened


def test_back_to_back_frames_render_at_sorted_times(reconstructed_store):
    """Frames taken back to back share their boundary time (one frame's last closing is the next
    one's first opening); frame starts rounded a hair early used to put the rendered times out of
    order, so the window could not be written (the store wants them sorted)."""
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.recon.rolling_shutter import rolling_shutter_config
    from nstm_acquire.store import StoreReader

    reader = StoreReader(reconstructed_store)
    builder = ProblemBuilder.for_store(reader, rolling_shutter_config(5))
    window = reader.window(0)
    starts = window.timestamps_s.copy()
    span = builder._rs_timing(float(window.exposure_s.mean())).frame_span_s
    frames = len(np.unique(starts))
    first = np.unique(starts)[0]
    for k, start in enumerate(np.unique(starts)):  # each frame starts 1e-15 s before the last closes
        starts[starts == start] = first + k * span - (1e-15 if k else 0.0)
    problem = builder.problem_from_arrays(window.raw, starts, window.exposure_s)
    assert frames > 1 and np.any(np.diff(problem.data.times_s.mean(axis=1)) < 0)  # the data's own order
    assert np.all(np.diff(problem.render_times_s) >= 0)


# --------------------------------------------------------------------- trust report
def _store_problem(store, config):
    from nstm_acquire.recon.problem import ProblemBuilder
    from nstm_acquire.store import StoreReader

    reader = StoreReader(store)
    builder = ProblemBuilder.for_store(reader, config)
    window = reader.window(0)
    return reader, builder, window, builder.problem(window)


def test_lensless_fitted_units_give_back_the_camera_counts(reconstructed_store):
    """The trust report's noise model needs the counts behind the fitted row blocks: they are
    the frames over the window's deconvolution scale, not over the frames' mean."""
    from nstm_acquire.recon.rolling_shutter import rolling_shutter_config
    from nstm_acquire.recon.trust import LENSLESS_BAND_PER_PX, fitted_units

    reader, builder, window, problem = _store_problem(reconstructed_store, rolling_shutter_config(5))
    units = fitted_units(problem, window.raw, reader.optics.cutoff_per_um)
    counts = units.counts_per_unit * (np.asarray(problem.data.measurements) + units.offset_units)
    frames = builder.illumination.frames_of(window.raw[:, 0])  # (F, C, Y, X)
    np.testing.assert_allclose(counts, problem.forward.frames_to_blocks(frames), rtol=1e-5, atol=1e-3)
    assert abs(units.counts_per_unit - float(window.raw.mean())) > 0.1 * units.counts_per_unit
    assert units.channel is None  # every colour compared
    px = problem.pixel_size_um
    assert units.band_per_um == pytest.approx((LENSLESS_BAND_PER_PX[0] / px, LENSLESS_BAND_PER_PX[1] / px))


def test_lensless_held_out_pixels_are_drawn_on_the_sensor(reconstructed_store):
    """A window's row blocks hold out a fraction of the sensor's pixels, the same in every frame
    and spread over all its rows (not the same few row-in-block positions of every block)."""
    from nstm_acquire.nstm.fit import holdout_pixels
    from nstm_acquire.recon.rolling_shutter import rolling_shutter_config

    config = rolling_shutter_config(5)
    reader, _, _, problem = _store_problem(reconstructed_store, config)
    held = problem.data.held_out  # (F * n_time, 1, B, W)
    frames = problem.forward.blocks_to_frames(held)  # (F, 1, H, W)
    expected = holdout_pixels(reader.frame_shape, config.fit.validation_fraction, config.fit.seed)
    for f in range(frames.shape[0]):
        np.testing.assert_array_equal(frames[f, 0], expected)
    rows_held = np.flatnonzero(expected.any(axis=1))
    assert expected.sum() >= 0.5 * config.fit.validation_fraction * expected.size and len(rows_held) >= 4


def test_lensless_window_trust_is_above_the_noise_and_flags_frozen_motion(reconstructed_store):
    from nstm_acquire.recon.arrays import reconstruct_window
    from nstm_acquire.recon.rolling_shutter import rolling_shutter_config
    from nstm_acquire.recon.trust import window_trust
    from nstm_acquire.store import ReconReader

    stored = ReconReader(reconstructed_store, "nstm").trust(0)
    # no model explains held-out pixels better than their noise: with the frames' mean as the
    # counts scale (before) such a window read 0.65. This 300-step fit (best of 3 starts) reads
    # about 1.5, a frozen one 4.3-4.6 (docs/trust.md, "Lensless")
    assert stored["heldout_noise_ratio"] > 1.0
    assert stored["lowfreq_channel"] is None
    config = rolling_shutter_config(300).with_fit(lr_motion=1e-12)  # the same fit, no motion
    reader, _, window, problem = _store_problem(reconstructed_store, config)
    frozen = reconstruct_window(problem, config)
    camera = reader.attrs.camera
    report, _ = window_trust(
        problem, frozen, window.raw, reader.optics.cutoff_per_um, camera.gain_e_per_adu, camera.read_noise_e
    )
    assert report["verdict"] == "untrusted" and "held-out residual" in report["reasons"][0]
    assert report["heldout_noise_ratio"] > 1.5 * stored["heldout_noise_ratio"]


def test_lensless_windows_are_fitted_cold(reconstructed_store):
    """The objects move on between windows: the last window's scene would start the next one
    in the wrong place (docs/rolling_shutter.md), so a lensless chain never warm-starts."""
    from nstm_acquire.recon.chain import StoreReconstructor, warm_starts

    assert StoreReconstructor(reconstructed_store, warm_start=True, write=False).warm_start is False
    assert warm_starts("dpc", True) and warm_starts("sim3d", True) and not warm_starts("dpc", False)
