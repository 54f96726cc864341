"""Row-exact timing in the DPC reconstruction (recon/row_timing.py), against known answers.

The layout: one data row per (shot, block of rows), times at each block's mean opening, the
block's rows as weights; summed over the blocks its loss is the loss of the row-exact frame.
A tiny fit: a fast-moving phantom seen by a rolling-shutter camera is recovered better with
row-exact timing than with frame-level timing (against the simulator's ground truth).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from nstm_acquire.evaluation.metrics import correlation, crop, highpass
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import simulate_dpc_window, simulate_sim_window
from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import FitData
from nstm_acquire.physics.dpc.forward import DpcForward, dpc_render_row_blocks
from nstm_acquire.physics.rolling_shutter.timing import RowTiming
from nstm_acquire.recon.arrays import reconstruct_window
from nstm_acquire.recon.problem import ProblemBuilder, exposure_sample_times
from nstm_acquire.recon.row_timing import RowBlockTiming, frame_centres_s, row_block_data, row_blocks
from nstm_acquire.recon.trust import window_trust


def test_row_blocks_split_the_readout_slots():
    timing = RowTiming(8, row_time_s=1e-3, exposure_s=5e-3)
    block, offsets = row_blocks(timing, 4)
    np.testing.assert_array_equal(block, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(offsets, [0.5e-3, 2.5e-3, 4.5e-3, 6.5e-3])
    # centre out: 4 slots (rows 3,4 | 2,5 | 1,6 | 0,7), two blocks of two slots
    block, offsets = row_blocks(RowTiming(8, 1e-3, 5e-3, "centre_out"), 2)
    np.testing.assert_array_equal(block, [1, 1, 0, 0, 0, 0, 1, 1])
    np.testing.assert_allclose(offsets, [0.5e-3, 2.5e-3])
    with pytest.raises(ValueError, match="n_blocks"):
        row_blocks(timing, 9)


def test_row_block_data_loss_is_the_row_exact_frame_loss():
    """Σ over rows of weight x (render at the row's time - frame)² = Σ (row-exact frame - frame)²."""
    rng = np.random.default_rng(0)
    n, s, b = 16, 4, 4
    timing = RowTiming(n, row_time_s=1e-3, exposure_s=4e-3, direction="bottom_to_top")
    ts = np.array([0.0, 0.03, 0.06, 0.09])
    y = rng.standard_normal((s, n, n)).astype(np.float32) * 0.1
    data = row_block_data(y, ts, np.full(s, 4e-3), timing, b, n_sub=2)
    assert data.measurements.shape == (s * b, n, n) and data.weights.shape == (s * b, n)
    np.testing.assert_array_equal(data.shots, np.repeat(np.arange(s), b))
    np.testing.assert_allclose(data.weights.reshape(s, b, n).sum(1), 1.0)
    # bottom to top: block 0 = the bottom rows, opening first; sub-samples across the exposure
    block, offsets = row_blocks(timing, b)
    assert block[-1] == 0 and block[0] == b - 1
    np.testing.assert_allclose(data.times_s[1], ts[0] + offsets[1] + np.array([1e-3, 3e-3]))
    # a scene per (shot, block): the weighted loss equals the row-exact frame's loss
    fwd = DpcForward.for_illumination((n, n), simulated_config(frame_shape=(n, n)).dpc.optics, _illumination())
    scenes = rng.standard_normal((s * b, 2, n, n)).astype(np.float32) * 0.1
    pred = np.asarray(fwd.render(jnp.asarray(scenes), jnp.asarray(data.shots)))
    weighted = np.sum(data.weights[:, :, None] * (pred - data.measurements) ** 2)
    sc = scenes.reshape(s, b, 2, n, n)
    frames = np.asarray(dpc_render_row_blocks(sc[:, :, 0], sc[:, :, 1], fwd.h_mu, fwd.h_phi, block))
    np.testing.assert_allclose(weighted, np.sum((frames - y) ** 2), rtol=1e-4)


def _illumination():
    from nstm_acquire.hardware.microscope import dpc_shots
    from nstm_acquire.physics.dpc.illumination import DpcIllumination

    dpc = simulated_config().dpc
    shots = dpc_shots(dpc)
    return DpcIllumination(led_na=dpc.led_na_array().tolist(), shots=[shots[k] for k in dpc.shot_names])


def test_row_timing_exposure_must_match_the_frames():
    rows = RowBlockTiming(RowTiming(16, 1e-3, 0.03))
    with pytest.raises(ValueError, match="exposure_s"):
        rows.timing(np.full(4, 0.01))
    assert rows.timing(np.full(4, 0.0301)).row_time_s == 1e-3
    with pytest.raises(ValueError, match="n_blocks"):
        RowBlockTiming(RowTiming(16, 1e-3, 0.03), 0)


N = 64
EXPOSURE_S = 0.01
ROW_TIME_S = 0.03 / N  # the last row opens 30 ms after the first: three exposures
MARGIN = 6


def test_row_exact_timing_recovers_a_fast_moving_sample_better():
    """80 px/s across the rows: 2.4 px of rolling-shutter skew per frame, 10 px over the window."""
    cells = {"n_cells": 12, "cell_radius_um": (3.0, 6.0)}
    win = simulate_dpc_window(
        simulated_config(frame_shape=(N, N)), shape=(N, N), motion="translation:vx=40,vy=0",
        exposure_s=EXPOSURE_S, row_time_s=ROW_TIME_S, sample_options=cells, exposure_subsamples=4,
    )  # fmt: skip
    timing = RowTiming(N, ROW_TIME_S, EXPOSURE_S)
    np.testing.assert_allclose(win.midpoints_s, frame_centres_s(win.timestamps_s, win.exposure_s, timing))
    config = default_config().with_fit(max_steps=200, validation_fraction=0.0)
    builder = ProblemBuilder(
        win.optics, win.illumination, (N, N), 1, config, background=win.background[:, None],
        row_timing=RowBlockTiming(timing, 4),
    )  # fmt: skip
    rows = builder.problem_from_arrays(win.raw[:, None], win.timestamps_s[:, None], win.exposure_s[:, None])
    assert rows.data.measurements.shape[0] == 16 and rows.info["row_timing"]["n_blocks"] == 4
    np.testing.assert_allclose(rows.render_times_s, win.midpoints_s)
    # frame-level timing: the same rows with every block at the middle of its frame (one
    # compiled fit serves both; the loss is the frame-level loss times the 4 blocks)
    middle = np.repeat(exposure_sample_times(win.midpoints_s - EXPOSURE_S / 2, win.exposure_s, 1), 4, axis=0)
    frame = dataclasses.replace(rows, data=FitData(rows.data.measurements, middle, rows.data.shots, rows.data.weights))
    px, cut = win.optics.pixel_size_um, 0.1 * win.optics.cutoff_per_um
    hp = lambda a: crop(highpass(a, px, cut), MARGIN)  # noqa: E731

    def score(result):
        return np.mean([correlation(hp(result.scene[k, 1, 0]), hp(win.truth_scene[k, 1])) for k in range(4)])

    frame_level = score(reconstruct_window(frame, config))
    result = reconstruct_window(rows, config)
    row_exact = score(result)
    assert row_exact > frame_level + 0.005, (row_exact, frame_level)
    assert row_exact > 0.97, row_exact
    # the trust report reads one raw frame per data row (4 rows per shot here)
    report, _ = window_trust(rows, result, win.raw[:, None], win.optics.cutoff_per_um, 0.5, 1.5)
    assert report["verdict"] in ("ok", "doubtful", "untrusted"), report


@pytest.mark.filterwarnings("ignore:SIM parameters")  # the pattern estimate from a moving window
def test_sim2d_row_blocks_explain_a_rolling_shutter_window_better():
    """2D SIM: the true moving beads rendered at each block's times explain a rolling-shutter
    window better than the same beads at each frame's middle (no fit: the forward model alone)."""
    from tests.sim_data import OPTICS, illumination

    from nstm_acquire.hardware.simulated.phantoms import BeadPhantom

    n, exposure, row_time = 32, 0.002, 0.006 / 32
    ill = illumination(False)
    phantom = BeadPhantom((3.2, 3.2), n_beads=20, diameter_um=0.1, seed=3, n_pairs_each=0)
    w = simulate_sim_window(
        OPTICS, ill, phantom, "translation:vx=30,vy=5", (n, n), frame_interval_s=0.0085, exposure_s=exposure,
        photons=3000.0, row_time_s=row_time,
    )  # fmt: skip
    timing = RowTiming(n, row_time, exposure)
    config = default_config("sim2d")
    builder = ProblemBuilder(OPTICS, ill, (n, n), 1, config, row_timing=RowBlockTiming(timing, 4))
    problem = builder.problem_from_arrays(w.raw, w.timestamps_s, w.exposure_s)
    data = problem.data
    assert data.measurements.shape == (4 * ill.n_shots, n, n) and problem.info["row_timing"]["n_blocks"] == 4
    np.testing.assert_allclose(problem.render_times_s, w.midpoints_s[:, 0])

    def residual(times_s):
        scenes = np.stack(
            [
                np.mean([w.sample.on_grid(float(t), (n, n), OPTICS.pixel_size_um, upsample=2) for t in row], 0)
                for row in times_s
            ]
        )[:, None]
        pred = np.asarray(problem.forward.render(jnp.asarray(scenes, jnp.float32), jnp.asarray(data.shots)))
        wt = data.weights[:, :, None]
        gain = np.sum(wt * pred * data.measurements) / np.sum(wt * pred * pred)
        return float(np.sqrt(np.sum(wt * (gain * pred - data.measurements) ** 2) / np.sum(wt * data.measurements**2)))

    middle = np.repeat(w.midpoints_s[:, :1], 4, axis=0)
    row_exact, frame_level = residual(data.times_s), residual(middle)
    assert row_exact < 0.5 * frame_level, (row_exact, frame_level)


def test_a_store_with_a_rolling_shutter_camera_gives_row_block_problems(tmp_path):
    """camera.rolling_shutter in the store's attributes: the DPC problem has one row per
    (shot, block), timed from the stored first-row openings; without it, frame-level rows."""
    from nstm_acquire.store import StoreReader, StoreWriter

    n, exposure = 16, 0.01
    attrs = {
        "format_version": 1,
        "modality": "dpc",
        "optics": {"wavelength_um": 0.52, "na_detection": 0.25, "pixel_size_um": 0.65},
        "illumination": {"led_na": [[0.1, 0.0], [-0.1, 0.0]], "shots": [[0], [1]]},
        "camera": {"offset_adu": 0.0, "rolling_shutter": {"row_time_s": 1e-3, "direction": "bottom_to_top"}},
    }
    rng = np.random.default_rng(0)
    for rolling in (True, False):
        path = tmp_path / f"rolling_{rolling}.zarr"
        if not rolling:
            attrs["camera"] = {"offset_adu": 0.0}
        with StoreWriter.create(path, attrs, 2, 1, (n, n)) as out:
            for s in range(2):
                out.write_frame(0, s, 0, rng.integers(900, 1100, (n, n)).astype(np.uint16), 0.1 + 0.03 * s, exposure)
        reader = StoreReader(path)
        problem = ProblemBuilder.for_store(reader, default_config()).problem(reader.window(0))
        if not rolling:
            assert problem.data.measurements.shape[0] == 2 and "row_timing" not in problem.info
            continue
        assert problem.data.measurements.shape[0] == 8 and problem.info["row_timing"]["direction"] == "bottom_to_top"
        block, offsets = row_blocks(RowTiming(n, 1e-3, exposure, "bottom_to_top"), 4)
        np.testing.assert_allclose(
            problem.data.times_s[:, 0], np.repeat([0.1, 0.13], 4) + np.tile(offsets, 2) + exposure / 2
        )
        np.testing.assert_allclose(problem.render_times_s, [0.1 + 0.0125, 0.13 + 0.0125])
