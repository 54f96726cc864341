"""Simulated SIM data with known truth for the estimation, Wiener and NSTM SIM tests.

The simulated microscope's SIM camera (``SimImager``) with camera noise (``CameraNoise``).
"""

from __future__ import annotations

import numpy as np

from nstm_acquire.hardware.simulated.fluorescence_imaging import SimImager
from nstm_acquire.hardware.simulated.noise import CameraNoise
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
from nstm_acquire.hardware.simulated.sample import MovingSample
from nstm_acquire.hardware.simulated.windows import simulate_sim_window
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.illumination import SimIllumination, default_sim_illumination

# emission 0.52 µm, NA 1.2 water: cut-off 2NA/λ = 4.62 cycles/µm, camera Nyquist 5 cycles/µm
OPTICS = Optics(wavelength_um=0.52, na_detection=1.2, pixel_size_um=0.1, immersion_index=1.33)
EXCITATION_UM = 0.488


def illumination(three_beam: bool) -> SimIllumination:
    """The true pattern: 0.85 of the cut-off, orientations 0.1 + d·60° rad, set phases."""
    return default_sim_illumination(
        OPTICS,
        EXCITATION_UM,
        three_beam=three_beam,
        modulation=0.9 if three_beam else 0.8,
        phase_rad=[0.3, 1.7, -2.2],
    )


def unknown(ill: SimIllumination, keep_k: bool = False) -> SimIllumination:
    """``ill`` with the fields to estimate removed (``keep_k``: the configured k stays)."""
    return ill.replace(k_per_um=ill.k_per_um if keep_k else None, phase_rad=None, modulation=None)


def noisy(photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera counts with the offset removed, in photo-electrons (float32, like a window)."""
    cam = CameraNoise()
    counts = cam.apply(photons, rng).astype(np.float64)
    return ((counts - cam.offset_adu) * cam.gain_e_per_adu).astype(np.float32)


def simulate_2d(
    ill: SimIllumination,
    phantom,
    n: int = 128,
    photons: float = 300.0,
    motion="static",
    shot_interval_s: float = 0.01,
    seed: int = 1,
) -> np.ndarray:
    """``(S, 1, n, n)`` noisy frames; shot ``s`` images the sample at ``s * shot_interval_s``."""
    sample = MovingSample(phantom, motion)
    imager = SimImager(OPTICS, ill, (2 * n, 2 * n), OPTICS.pixel_size_um / 2)
    rng = np.random.default_rng(seed)
    frames = []
    for s in range(ill.n_shots):
        rho = sample.on_grid(s * shot_interval_s, (n, n), OPTICS.pixel_size_um, upsample=2)
        frames.append(noisy(imager.image(rho, s) * photons, rng))
    return np.array(frames)[:, None]


def simulate_3d(
    ill: SimIllumination, phantom: BeadPhantom, planes_um, nz: int, z_step_um: float, n: int = 64
) -> np.ndarray:
    """``(S, nz, n, n)`` noisy z stacks, focal plane ``i`` at ``(i - nz // 2) * z_step_um``."""
    planes = np.asarray(planes_um, dtype=np.float64)
    imager = SimImager(OPTICS, ill, (2 * n, 2 * n), OPTICS.pixel_size_um / 2, z_um=planes)
    rho = MovingSample(phantom, "static").on_grid(
        0.0, (n, n), OPTICS.pixel_size_um, upsample=2, z_um=planes
    )
    rng = np.random.default_rng(3)
    out = np.empty((ill.n_shots, nz, n, n), np.float32)
    for s in range(ill.n_shots):
        for i in range(nz):
            out[s, i] = noisy(imager.image(rho, s, (i - nz // 2) * z_step_um) * 400.0, rng)
    return out


def simulate_moving_2d(
    ill: SimIllumination,
    phantom,
    motion,
    n: int = 64,
    photons: float = 300.0,
    shot_interval_s: float = 0.012,
    exposure_s: float = 0.01,
    seed: int = 1,
) -> tuple[np.ndarray, np.ndarray, MovingSample]:
    """Noisy frames ``(S, 1, n, n)`` of a moving sample, each averaged over its exposure
    (3 sub-samples), exposure starts ``(S, 1)`` s, and the moving sample (the truth)."""
    w = simulate_sim_window(
        OPTICS, ill, phantom, motion, (n, n), frame_interval_s=shot_interval_s, exposure_s=exposure_s,
        photons=photons, seed=seed,
    )
    return w.raw, w.timestamps_s, w.sample


def simulate_moving_3d(
    ill: SimIllumination,
    phantom,
    motion,
    nz: int,
    z_step_um: float,
    n: int = 32,
    photons: float = 400.0,
    frame_interval_s: float = 0.005,
    seed: int = 3,
) -> tuple[np.ndarray, np.ndarray, MovingSample]:
    """Noisy z stacks ``(S, nz, n, n)`` of a moving 3D sample, shot by shot (each shot's stack
    acquired plane after plane, focal plane ``i`` at ``(i - nz // 2) * z_step_um``); frame
    start times ``(S, nz)`` s (instantaneous exposures) and the moving sample (the truth)."""
    w = simulate_sim_window(
        OPTICS, ill, phantom, motion, (n, n), n_planes=nz, z_step_um=z_step_um, frame_interval_s=frame_interval_s,
        exposure_s=1e-4, photons=photons, seed=seed, exposure_subsamples=1,
    )
    return w.raw, w.timestamps_s, w.sample
