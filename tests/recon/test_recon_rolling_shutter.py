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
