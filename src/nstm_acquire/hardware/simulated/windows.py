"""Synthesise one multi-shot window straight from the simulated microscope's physics.

The same image formation as the simulated camera (:mod:`.world`), without pymmcore-plus or a
store: for tests, benchmarks and method development that need many windows with known ground
truth quickly. Frames are taken at given (or regularly spaced) exposure starts; the truth is
the sample and its displacement at each exposure midpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from nstm_acquire.hardware.config import HardwareConfig, SimulatedSample
from nstm_acquire.hardware.microscope import dpc_shots
from nstm_acquire.hardware.simulated.noise import CameraNoise
from nstm_acquire.hardware.simulated.world import DpcScene, sub_exposure_times
from nstm_acquire.illumination import DpcIllumination
from nstm_acquire.optics import Optics

__all__ = ["SimulatedWindow", "simulate_dpc_window"]


@dataclasses.dataclass
class SimulatedWindow:
    """One window of shots with its ground truth.

    Attributes
    ----------
    raw
        ``(S, Y, X)`` float32 camera counts with the offset removed.
    background
        ``(S, Y, X)`` float32 sample-free frames (noise-free), same units.
    timestamps_s, exposure_s
        ``(S,)`` exposure start and duration, seconds.
    truth_scene
        ``(S, C, Y, X)`` the sample at each exposure midpoint (DPC: absorption, phase in rad).
    truth_displacement_px
        ``(S, 2, Y, X)`` backward-warp displacement (dy, dx) in pixels at each midpoint:
        ``sample(r, t) = template(r + d(r, t))``.
    illumination, optics
        What the reconstruction needs to model the shots.
    """

    raw: np.ndarray
    background: np.ndarray
    timestamps_s: np.ndarray
    exposure_s: np.ndarray
    truth_scene: np.ndarray
    truth_displacement_px: np.ndarray
    illumination: DpcIllumination
    optics: Optics
    scene: Any

    @property
    def midpoints_s(self) -> np.ndarray:
        return self.timestamps_s + 0.5 * self.exposure_s


def simulate_dpc_window(
    config: HardwareConfig,
    shape: tuple[int, int] = (128, 128),
    motion: Any = "static",
    t_start_s: float = 0.0,
    frame_interval_s: float | None = None,
    exposure_s: float | None = None,
    timestamps_s: np.ndarray | None = None,
    photons: float = 2000.0,
    seed: int = 0,
    noise_seed: int | None = None,
    exposure_subsamples: int = 3,
    sample_options: dict[str, Any] | None = None,
) -> SimulatedWindow:
    """One DPC window of ``config``'s simulated microscope imaging a moving cell sample.

    ``timestamps_s`` (S,) overrides the regular spacing ``t_start + s * frame_interval``
    (default: exposure + 2.5 ms readout/switch). ``sample_options`` update the configured
    phantom options (``simulation.samples.dpc.options``). Noise: Poisson + read noise of the camera
    model (``noise_seed`` None: the same as ``seed``).
    """
    if config.dpc is None:
        raise ValueError(f"{config.name} has no dpc section")
    dpc = config.dpc
    exp = exposure_s if exposure_s is not None else (dpc.exposure_ms or config.camera.exposure_ms) / 1000.0
    shots = dpc_shots(dpc)
    names = list(dpc.shot_names)
    ill = DpcIllumination(led_na=dpc.led_na_array().tolist(), shots=[shots[n] for n in names])
    n = len(names)
    if timestamps_s is None:
        interval = frame_interval_s if frame_interval_s is not None else exp + 0.0025
        timestamps_s = t_start_s + interval * np.arange(n)
    timestamps_s = np.asarray(timestamps_s, np.float64)
    configured = config.simulation.samples.get("dpc") if config.simulation is not None else None
    options = {**(configured.options if configured is not None else {}), **(sample_options or {})}
    sample_cfg = SimulatedSample(phantom="cells", motion=motion, options=options, photons=photons)
    scene = DpcScene(dpc, sample_cfg, shape, seed)
    noise = CameraNoise(
        gain_e_per_adu=config.camera.gain_e_per_adu or 0.5,
        read_noise_e=config.camera.read_noise_e if config.camera.read_noise_e is not None else 1.5,
        offset_adu=config.camera.offset_adu,
    )
    rng = np.random.default_rng(seed if noise_seed is None else noise_seed)
    raw, background, truth, disp = [], [], [], []
    px = dpc.optics.pixel_size_um
    for s in range(n):
        lit = np.asarray(ill.shots[s], int)
        times = sub_exposure_times(float(timestamps_s[s]), exp, exposure_subsamples)
        expected = scene.expected_photons(times, lit, None)
        counts = noise.apply(expected, rng).astype(np.float32) - noise.offset_adu
        raw.append(counts)
        bg = scene.expected_photons(times, lit, None, blank=True) / noise.gain_e_per_adu
        background.append(bg.astype(np.float32))
        mid = float(timestamps_s[s] + 0.5 * exp)
        mu, phi = scene.sample.on_grid(mid, shape, px)
        truth.append(np.stack([mu, phi]))
        disp.append(scene.sample.displacement_on_grid(mid, shape, px) / px)
    return SimulatedWindow(
        raw=np.stack(raw),
        background=np.stack(background),
        timestamps_s=timestamps_s,
        exposure_s=np.full(n, exp),
        truth_scene=np.stack(truth).astype(np.float32),
        truth_displacement_px=np.stack(disp).astype(np.float32),
        illumination=ill,
        optics=dpc.optics,
        scene=scene,
    )
