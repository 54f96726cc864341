"""Row-exact DPC rendering and the simulated rolling-shutter camera, against known answers.

* ``dpc_render_row_blocks``: a static scene gives the frame-level frame; a scene translated by a
  whole number of pixels per block gives, row by row, the frame-level frame rolled by that
  block's shift (the circular DPC model commutes with a circular shift).
* The simulator's row timing agrees with the reconstruction's ``RowTiming`` (two independent
  implementations of docs/conventions.md), and its row integration is exact for a linear change.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from nstm_acquire.hardware.simulated.dpc_imaging import (
    rolling_row_open_s,
    rolling_shutter_frame,
    row_integration_weights,
)
from nstm_acquire.physics.dpc.forward import (
    dpc_render,
    dpc_render_row_blocks,
    dpc_transfer_functions,
    row_block_masks,
)
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.rolling_shutter.timing import RowTiming

N = 32
OPTICS = Optics(wavelength_um=0.53, na_detection=0.4, pixel_size_um=0.5)
LED_NA = np.array([[0.0, 0.2], [0.0, -0.2], [0.2, 0.0], [-0.2, 0.0]])
SHOTS = [[0], [1], [2], [3]]


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return 0.05 * rng.standard_normal((N, N)), 0.3 * rng.standard_normal((N, N))


def _transfer() -> tuple[jnp.ndarray, jnp.ndarray]:
    h_mu, h_phi = dpc_transfer_functions((N, N), OPTICS, LED_NA, SHOTS)
    return jnp.asarray(h_mu), jnp.asarray(h_phi)


def test_static_scene_gives_the_frame_level_frame():
    mu, phi = _scene()
    h_mu, h_phi = _transfer()
    blocks = np.repeat(np.arange(4), N // 4)
    stack = lambda a: np.broadcast_to(a, (4, 4, N, N))  # noqa: E731  (shot, block, y, x)
    rows = dpc_render_row_blocks(stack(mu), stack(phi), h_mu, h_phi, blocks)
    frame = dpc_render(mu, phi, h_mu, h_phi)
    np.testing.assert_allclose(np.asarray(rows), np.asarray(frame), atol=1e-5)


@pytest.mark.parametrize("direction", ["top_to_bottom", "centre_out"])
def test_translating_scene_gives_rows_shifted_by_their_block_time(direction):
    """The sample moves 1 px in x per block time: block b's rows are the frame rolled by b px."""
    mu, phi = _scene(1)
    h_mu, h_phi = _transfer()
    timing = RowTiming(N, row_time_s=1e-4, exposure_s=1e-3, direction=direction)
    blocks = (timing.slots() * 4) // timing.n_slots  # 4 blocks of consecutive readout slots
    shifts = np.arange(4)  # px, = velocity x block time
    mu_b = np.stack([np.roll(mu, s, axis=1) for s in shifts])
    phi_b = np.stack([np.roll(phi, s, axis=1) for s in shifts])
    rows = np.asarray(dpc_render_row_blocks(np.stack([mu_b] * 4), np.stack([phi_b] * 4), h_mu, h_phi, blocks))
    frame = np.asarray(dpc_render(mu, phi, h_mu, h_phi))  # (S, Y, X) at time 0
    expected = np.stack([np.roll(frame, s, axis=-1) for s in shifts])[blocks, :, np.arange(N)]  # (Y, S, X)
    np.testing.assert_allclose(rows, expected.transpose(1, 0, 2), atol=1e-5)
    # and it differs from any single-time render: the rows really come from different times
    assert np.abs(rows - frame).max() > 0.1 * np.abs(frame).max()


def test_row_block_masks_reject_bad_blocks():
    np.testing.assert_array_equal(row_block_masks([0, 1, 1], 2), [[1, 0, 0], [0, 1, 1]])
    with pytest.raises(ValueError, match="n_blocks"):
        row_block_masks([0, 2], 2)


@pytest.mark.parametrize("direction", ["top_to_bottom", "bottom_to_top", "centre_out"])
@pytest.mark.parametrize("n_rows", [7, 8])
def test_simulator_row_openings_match_the_row_timing(direction, n_rows):
    timing = RowTiming(n_rows, row_time_s=2e-5, exposure_s=1e-3, direction=direction)
    np.testing.assert_allclose(rolling_row_open_s(n_rows, 2e-5, direction), timing.open_offsets_s())


def test_simulator_row_integration_is_exact_for_a_linear_change():
    """Pixel values rising linearly in time: each row's mean is the value at its interval's middle."""
    opened = rolling_row_open_s(16, 1e-3, "top_to_bottom") + 0.0137
    exposure = 4e-3
    grid = 0.0137 + np.linspace(0.0, 15e-3 + exposure, 9)  # coarse: 2.4 ms steps, off the rows
    weights = row_integration_weights(opened, exposure, grid)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    rate = np.linspace(1.0, 2.0, 5)  # per column, per second
    images = 3.0 + grid[:, None, None] * rate[None, None, :] * np.ones((1, 16, 1))
    frame = rolling_shutter_frame(images, weights)
    expected = 3.0 + (opened + exposure / 2)[:, None] * rate[None, :]
    np.testing.assert_allclose(frame, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="cover"):
        row_integration_weights(opened, exposure, grid[:-1])


def test_simulated_camera_with_a_rolling_shutter_exposes_each_row_at_its_time():
    """camera.rolling_shutter in the configuration: the simulated microscope's frame is, row by
    row, the global-shutter frame of an exposure starting when that row opens (and a static
    sample gives the global-shutter frame)."""
    from nstm_acquire.hardware.simulated.setup import simulated_config
    from nstm_acquire.hardware.simulated.world import SimulatedWorld
    from nstm_acquire.physics.rolling_shutter.timing import RollingShutterReadout

    n, row_time, exposure, t0 = 24, 5e-4, 4e-3, 0.05
    rows = [0, n // 2, n - 1]
    for motion in ("static", "translation:vx=200,vy=50"):
        base = simulated_config(frame_shape=(n, n), motion={"dpc": motion}, timing={"exposure_subsamples": 8})
        readout = RollingShutterReadout(row_time_s=row_time, direction="bottom_to_top")
        rolling = base.model_copy(update={"camera": base.camera.model_copy(update={"rolling_shutter": readout})})
        worlds = [SimulatedWorld(cfg, "dpc") for cfg in (base, rolling)]
        for w in worlds:
            w.lit_leds = np.arange(3)
        frame = worlds[1].expected_photons(t0, exposure)
        opened = rolling_row_open_s(n, row_time, "bottom_to_top")
        per_row = np.stack([worlds[0].expected_photons(t0 + opened[y], exposure)[y] for y in rows])
        tol = 0.02 * np.abs(frame).max()
        np.testing.assert_allclose(frame[rows], per_row, atol=tol if motion != "static" else 1e-9 * tol)
        if motion != "static":  # the rows really come from different times
            assert np.abs(frame[rows] - worlds[0].expected_photons(t0, exposure)[rows]).max() > 5 * tol
