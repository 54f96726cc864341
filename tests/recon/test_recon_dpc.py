"""NSTM DPC reconstruction against simulated ground truth (small cases that run in CI).

A 64 x 64 cell sample moves during one four-shot window; the conventional (Tikhonov) phase
smears, the NSTM phase at every shot time must match the truth much better, the recovered
motion must match the true displacement, and on a static sample the two must agree.
"""

import numpy as np
import pytest

from nstm_acquire.evaluation.metrics import correlation, crop, highpass, relative_motion_error_px, structure_mask
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import simulate_dpc_window
from nstm_acquire.nstm.config import default_config
from nstm_acquire.recon.arrays import reconstruct_window
from nstm_acquire.recon.problem import ProblemBuilder
from nstm_acquire.store import WindowData

N = 64
MARGIN = 6


def small_config():
    """The default model with a CI-sized step budget (same for every case: compiled once)."""
    return default_config().with_fit(max_steps=200, validation_fraction=0.0)


def run_case(motion: str, seed: int = 0):
    cfg = simulated_config(frame_shape=(N, N))
    # small, dense cells so that the 32 µm field has structure everywhere
    cells = {"n_cells": 12, "cell_radius_um": (4.0, 9.0)}
    win = simulate_dpc_window(cfg, shape=(N, N), motion=motion, exposure_s=0.03, seed=seed, sample_options=cells)
    config = small_config()
    builder = ProblemBuilder(win.optics, win.illumination, (N, N), 1, config, background=win.background[:, None])
    data = WindowData(0, win.raw[:, None], win.timestamps_s[:, None], win.exposure_s[:, None])
    result = reconstruct_window(builder.problem(data), config)
    px = win.optics.pixel_size_um
    cut = 0.1 * win.optics.cutoff_per_um  # DPC does not see the phase below ~0.1 NA/λ

    def score(phase, k):
        a = crop(highpass(phase, px, cut), MARGIN)
        b = crop(highpass(win.truth_scene[k, 1], px, cut), MARGIN)
        return correlation(a, b)

    nstm = np.array([score(result.scene[k, 1, 0], k) for k in range(4)])
    conv = np.array([score(result.conventional[1, 0], k) for k in range(4)])
    # motion is observable where the sample has structure
    mask = structure_mask(win.truth_scene[0, 1])
    epe = relative_motion_error_px(result.motion[:, :, 0], win.truth_displacement_px, MARGIN, mask)
    true_motion = np.abs(win.truth_displacement_px - win.truth_displacement_px.mean(0)).max()
    return nstm, conv, epe, true_motion, result


MOVING = {
    "translation": "translation:vx=30,vy=15",
    "rotation": "rotation:omega=1.2",
    "shear": "shear:rate=1.5",
    "swirl": "swirl:omega=3.0,radius=8",
}


@pytest.mark.parametrize("name", list(MOVING))
def test_nstm_beats_the_conventional_reconstruction_on_moving_samples(name):
    nstm, conv, epe, true_motion, _ = run_case(MOVING[name])
    assert true_motion > 1.0, "the case must move the sample by more than a pixel"
    assert conv.mean() < 0.97, "the conventional result must visibly degrade"
    assert nstm.min() > 0.97, (nstm, conv)
    assert nstm.mean() > conv.mean() + 0.02, (nstm, conv)
    assert epe < 0.35 * true_motion, (epe, true_motion)


def test_nstm_matches_the_conventional_reconstruction_on_a_static_sample():
    nstm, conv, epe, true_motion, result = run_case("static")
    assert true_motion == 0.0
    assert nstm.mean() > conv.mean() - 0.01, (nstm, conv)
    assert epe < 0.2
    # a static sample's scene is the same at every shot time (inside the margin the loss ignores)
    phase = crop(result.scene[:, 1, 0], MARGIN)
    change = phase - phase.mean(0)
    assert np.sqrt(np.mean(change**2)) < 0.03 * phase.std()
    assert np.abs(change).max() < 0.1 * np.abs(phase).max()


def test_reconstruct_dpc_from_arrays_without_store_attributes():
    """The array API takes frames, times, optics and LEDs (camera counts with their dark offset)
    and never builds store attributes: recon/arrays.py does not import the store."""
    import ast
    import inspect

    from nstm_acquire.recon import arrays

    imported = [
        node.module or ""
        for node in ast.walk(ast.parse(inspect.getsource(arrays)))
        if isinstance(node, ast.ImportFrom)
    ]
    assert not [m for m in imported if m.startswith("nstm_acquire.store")], imported

    win = simulate_dpc_window(simulated_config(frame_shape=(N, N)), shape=(N, N), motion="static", exposure_s=0.03)
    ill, offset = win.illumination, 100.0
    config = small_config()
    result = arrays.reconstruct_dpc(
        win.raw + offset,
        win.timestamps_s,
        win.exposure_s,
        win.optics,
        ill.led_na_array(),
        ill.shots,
        background=win.background + offset,
        config=config,
        led_brightness=ill.led_brightness,
        offset_adu=offset,
    )
    builder = ProblemBuilder(win.optics, ill, (N, N), 1, config, background=win.background[:, None])
    problem = builder.problem_from_arrays(win.raw[:, None], win.timestamps_s[:, None], win.exposure_s[:, None])
    np.testing.assert_allclose(result.conventional, problem.conventional, rtol=1e-4, atol=1e-5)
    assert result.scene.shape == (4, 2, 1, N, N) and result.channel_names == ["absorption", "phase_rad"]
    np.testing.assert_allclose(result.times_s, win.timestamps_s + win.exposure_s / 2)
