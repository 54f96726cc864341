"""Row-exact timing for 3D SIM (recon/problem.py ``_row_binned_data``), against known answers.

Every frame's blocks of rows are pieces at their own times, binned in time like frames (two
consecutive blocks per volume by default); a frame's blocks in one bin are one measurement
weighted by their rows. Checked: the pieces' times and rows from hand-computed numbers, and,
on the forward model alone, that the true moving beads at the pieces' times explain a
rolling-shutter z stack far better than at each frame's middle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tests.sim_data import OPTICS, illumination

from nstm_acquire.nstm.config import default_config
from nstm_acquire.physics.rolling_shutter.timing import RowTiming
from nstm_acquire.recon.problem import ProblemBuilder
from nstm_acquire.recon.row_timing import RowBlockTiming, frame_centres_s, piece_time_bins


def test_pieces_are_binned_in_time_and_keep_every_row_once():
    """Blocks 4 ms apart, frames 10 ms apart: a spread of 4.5 ms pairs them in time order, the
    last block of frame 0 with the first of frame 1 (plane-major: frame (1, 0))."""
    mid = np.array([[[0.0, 0.004, 0.008]], [[0.010, 0.014, 0.018]]])  # (S=2, Z=1, B=3)
    bins = piece_time_bins(mid, 0.0045)
    assert bins == [[((0, 0), [0, 1])], [((0, 0), [2]), ((1, 0), [0])], [((1, 0), [1, 2])]]
    assert len(piece_time_bins(mid, 0.0)) == 6
    with pytest.raises(ValueError, match="piece_mid_s"):
        piece_time_bins(mid[:, 0], 0.0)


def test_sim3d_row_blocks_are_at_frame_start_plus_row_offset():
    """8 rows, 1 ms apart, 4 blocks: mean openings 0.5, 2.5, 4.5, 6.5 ms after the frame start;
    2 ms exposures; 30 frames 10 ms apart, plane by plane."""
    n, nz, exposure = 8, 2, 0.002
    ill = illumination(True)
    optics = OPTICS.model_copy(update={"z_step_um": 0.15})
    config = default_config("sim3d").with_fit(exposure_subsamples=1)
    rows = RowBlockTiming(RowTiming(n, 1e-3, exposure), 4)
    builder = ProblemBuilder(optics, ill, (n, n), nz, config, row_timing=rows, time_bin_s=0.0)
    builder.forward = builder.sim_forward(ill)
    y = np.random.default_rng(0).random((15, nz, n, n)).astype(np.float32)
    starts = (np.arange(30) * 0.01).reshape(nz, 15).T  # plane_major: (S, Z)
    exp = np.full(starts.shape, exposure)
    offsets = np.array([0.5e-3, 2.5e-3, 4.5e-3, 6.5e-3])
    # time_bin_s = 0: every block its own volume, at frame start + block offset + exposure / 2
    data, forward, render, info = builder._row_binned_data(y, starts, exp)
    frame_order = np.repeat(np.arange(30), 4)  # frame f = (f % 15, f // 15), in time order
    np.testing.assert_allclose(data.times_s[:, 0], frame_order * 0.01 + np.tile(offsets, 30) + 0.001)
    assert data.measurements.shape == (120, 1, n, n) and data.weights.shape == (120, 1, n)
    np.testing.assert_array_equal(data.measurements[5, 0], y[1, 0])  # frame 1 = shot 1, plane 0
    np.testing.assert_array_equal(data.weights[5, 0], [0, 0, 1, 1, 0, 0, 0, 0])  # its block 1
    assert forward.coef.shape[:2] == (120, 1) and info["row_timing"]["n_blocks"] == 4
    # render at each shot's frame middles (first opening to last closing: 4.5 ms), mean over planes
    np.testing.assert_allclose(render, starts.mean(axis=1) + 0.0045)
    np.testing.assert_allclose(
        render, frame_centres_s(starts.ravel(), exp.ravel(), rows.timing(exp)).reshape(15, 2).mean(1)
    )
    # the default: 1.5 block spacings (3 ms), two consecutive blocks of a frame per volume
    builder.time_bin_s = None
    data, _, _, _ = builder._row_binned_data(y, starts, exp)
    assert builder.bins_info == {"time_bins": 60, "time_bin_s": pytest.approx(0.003)}
    pair = np.repeat(np.arange(30), 2) * 0.01 + np.tile([1.5e-3, 5.5e-3], 30) + 0.001
    np.testing.assert_allclose(data.times_s[:, 0], pair)
    np.testing.assert_array_equal(data.weights[:2, 0], [[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]])
    # every sensor row of every frame is in the loss exactly once
    cover = np.zeros((15, nz, n))
    for k, frames in enumerate(builder._frames_forward[0]):  # the bins' (shot, plane), as built
        for m, (s, z) in enumerate(frames):
            cover[s, z] += data.weights[k, m]
    np.testing.assert_array_equal(cover, 1.0)


@pytest.mark.filterwarnings("ignore:SIM parameters")  # the pattern estimate from a moving window
def test_sim3d_row_blocks_explain_a_rolling_shutter_stack_better():
    """3D SIM, 2 planes x 24 x 24 px, 1 ms exposures, the last row opening 4 ms after the first,
    beads vibrating at 40 Hz (0.1 x 0.05 µm, up to 25 µm/s: 1 px of skew per frame): the true
    beads rendered at the pieces' times explain the frames far better than at each frame's
    middle (no fit: the forward model)."""
    from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
    from nstm_acquire.hardware.simulated.windows import simulate_sim_window

    n, nz, dz, exposure, row_time = 24, 2, 0.15, 0.001, 0.004 / 24
    ill = illumination(True)
    optics = OPTICS.model_copy(update={"z_step_um": dz})
    phantom = BeadPhantom((2.4, 2.4), n_beads=15, diameter_um=0.1, seed=3, z_range_um=(-0.1, 0.1), n_pairs_each=0)
    w = simulate_sim_window(
        optics, ill, phantom, "vibration:ax=0.1,ay=0.05,f=40", (n, n), n_planes=nz, z_step_um=dz, frame_interval_s=0.005,
        exposure_s=exposure, photons=2000.0, seed=3, row_time_s=row_time, plane_order="plane_major",
        exposure_subsamples=2,
    )  # fmt: skip
    timing = RowTiming(n, row_time, exposure)
    centre = frame_centres_s(w.timestamps_s, w.exposure_s, timing).reshape(w.timestamps_s.shape)
    builder = ProblemBuilder(optics, ill, (n, n), nz, default_config("sim3d"), time_bin_s=0.0)
    builder.forward = builder.sim_forward(ill)  # the true pattern
    y = w.raw / w.raw.mean()

    def residual(data, forward):
        scenes = [
            np.mean([w.sample.on_grid(float(t), (n, n), 0.1, upsample=2, z_um=w.planes_um) for t in row], 0)
            for row in data.times_s
        ]
        pred = np.asarray(jax.jit(forward.render)(jnp.asarray(np.stack(scenes)[:, None]), jnp.asarray(data.shots)))
        wt = data.weights.reshape(data.weights.shape + (1,) * (pred.ndim - data.weights.ndim))
        yd = data.measurements
        gain = np.sum(wt * pred * yd) / np.sum(wt * pred * pred)
        return float(np.sqrt(np.sum(wt * (gain * pred - yd) ** 2) / np.sum(wt * yd**2)))

    # frame-level: every frame at its own middle (one volume per frame, the exact frame-level model)
    frame_level = residual(*builder._binned_data(y, centre, w.exposure_s))
    assert builder.bins_info["time_bins"] == 30
    builder.row_timing = RowBlockTiming(timing, 4)
    data, forward, render, info = builder._row_binned_data(y, w.timestamps_s, w.exposure_s)
    row_exact = residual(data, forward)  # every block its own volume
    assert builder.bins_info["time_bins"] == 120 and info["row_timing"]["n_blocks"] == 4
    builder.time_bin_s = None
    data, forward, render, info = builder._row_binned_data(y, w.timestamps_s, w.exposure_s)
    two_blocks = residual(data, forward)  # the default: two blocks per volume
    assert builder.bins_info["time_bins"] == 60
    np.testing.assert_allclose(render, centre.mean(axis=1))
    # measured: frame-level 0.227, row-exact 0.077, two blocks per volume 0.104
    assert row_exact < 0.5 * frame_level, (row_exact, frame_level)
    assert two_blocks < 0.6 * frame_level, (two_blocks, frame_level)
    # the public path: the window's problem records what was modelled
    problem = builder.problem_from_arrays(w.raw, w.timestamps_s, w.exposure_s)
    assert problem.data.measurements.shape == (60, 1, n, n) and problem.info["time_bins"] == 60
    assert problem.info["row_timing"]["row_time_s"] == row_time and "3D SIM" in problem.info["row_timing"]["model"]
    np.testing.assert_allclose(problem.render_times_s, centre.mean(axis=1))
