"""A tiny DPC store with a reconstruction, written through the project's writer API."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nstm_acquire.store import ReconWriter, StoreWriter

PIXEL_UM = 0.5
RECON_PIXEL_UM = 0.25
WINDOW_PERIOD_S = 2.0
SHOT_INTERVAL_S = 0.1
SHAPE = (12, 16)  # (Y, X): not square, so a swapped axis shows


def dpc_attrs() -> dict:
    return {
        "format_version": 1,
        "modality": "dpc",
        "optics": {"wavelength_um": 0.52, "na_detection": 0.25, "pixel_size_um": PIXEL_UM},
        "illumination": {
            "led_na": [[0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]],
            "shots": [[0], [1], [2], [3]],
        },
        "acquisition": {"simulated": True},
    }


def shot_time_s(w: int, s: int) -> float:
    return 1.0 + WINDOW_PERIOD_S * w + SHOT_INTERVAL_S * s


def make_dpc_store(path: Path, n_windows: int = 3, velocity_px_per_s: tuple[float, float] = (0.5, -1.0)) -> Path:
    """``n_windows`` windows of 4 shots; recon/nstm at every shot's time, its motion a uniform
    translation of the content at ``velocity_px_per_s`` (dy, dx) in output pixels."""
    rng = np.random.default_rng(0)
    with StoreWriter.create(path, dpc_attrs(), n_shots=4, n_planes=1, frame_shape=SHAPE) as out:
        for w in range(n_windows):
            for s in range(4):
                frame = rng.integers(100, 4000, size=SHAPE).astype(np.uint16)
                out.write_frame(w, s, 0, frame, shot_time_s(w, s), 0.01)
    Y, X = 2 * SHAPE[0], 2 * SHAPE[1]
    rec = ReconWriter(
        path, "nstm", scene_shape=(2, 1, Y, X), motion_dims=2, pixel_size_um=RECON_PIXEL_UM,
        channel_names=["absorption", "phase_rad"],
    )  # fmt: skip
    t0 = shot_time_s(0, 0)
    for w in range(n_windows):
        times = np.array([shot_time_s(w, s) for s in range(4)])
        scene = rng.normal(size=(4, 2, 1, Y, X)).astype(np.float32)
        scene[:, 1] *= 0.3  # phase, rad
        motion = np.zeros((4, 2, 1, Y, X), np.float32)
        for d in range(2):  # scene(x, t) = template(x + motion): content moves by -motion
            motion[:, d] = -velocity_px_per_s[d] * (times - t0)[:, None, None, None]
        rec.write_window(w, scene, times, motion, conventional=scene.mean(axis=0))
    return path
