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
from nstm_acquire.hardware.simulated.dpc_imaging import rolling_row_open_s, rolling_shutter_mean
from nstm_acquire.hardware.simulated.fluorescence_imaging import SimImager
from nstm_acquire.hardware.simulated.noise import CameraNoise
from nstm_acquire.hardware.simulated.sample import MovingSample
from nstm_acquire.hardware.simulated.world import DpcScene, sub_exposure_times
from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.illumination import SimIllumination

__all__ = ["SimulatedSimWindow", "SimulatedWindow", "simulate_dpc_window", "simulate_sim_window"]


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
        ``(S,)`` exposure start (first row opening) and duration (of every row), seconds.
    truth_scene
        ``(S, C, Y, X)`` the sample at each exposure midpoint (DPC: absorption, phase in rad;
        rolling shutter: the middle of the frame, :attr:`midpoints_s`).
    truth_displacement_px
        ``(S, 2, Y, X)`` backward-warp displacement (dy, dx) in pixels at each midpoint:
        ``sample(r, t) = template(r + d(r, t))``.
    illumination, optics
        What the reconstruction needs to model the shots.
    row_time_s, readout_direction
        Rolling shutter: line interval (s) and readout direction; ``row_time_s`` None: global
        shutter (every row exposed together).
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
    row_time_s: float | None = None
    readout_direction: str = "top_to_bottom"

    @property
    def frame_span_s(self) -> np.ndarray:
        """``(S,)`` seconds from each frame's first row opening to its last row closing."""
        if self.row_time_s is None:
            return np.asarray(self.exposure_s, np.float64)
        opened = rolling_row_open_s(self.raw.shape[-2], self.row_time_s, self.readout_direction)
        return np.asarray(self.exposure_s, np.float64) + opened.max()

    @property
    def midpoints_s(self) -> np.ndarray:
        """``(S,)`` the middle of each frame's exposure (of all its rows), s."""
        return self.timestamps_s + 0.5 * self.frame_span_s


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
    row_time_s: float | None = None,
    readout_direction: str = "top_to_bottom",
) -> SimulatedWindow:
    """One DPC window of ``config``'s simulated microscope imaging a moving cell sample.

    ``timestamps_s`` (S,) overrides the regular spacing ``t_start + s * frame_interval``
    (default: the frame's span + 2.5 ms readout/switch). ``sample_options`` update the configured
    phantom options (``simulation.samples.dpc.options``). Noise: Poisson + read noise of the camera
    model (``noise_seed`` None: the same as ``seed``).

    ``row_time_s``: a rolling-shutter camera (line interval, s, rows read in
    ``readout_direction``): row ``y`` integrates the moving sample over its own open interval
    (:func:`~nstm_acquire.hardware.simulated.dpc_imaging.row_integration_weights`, the sample
    rendered ``exposure_subsamples`` times per exposure across the whole frame); None: every row
    over the same exposure (``exposure_subsamples`` instants).
    """
    if config.dpc is None:
        raise ValueError(f"{config.name} has no dpc section")
    dpc = config.dpc
    exp = exposure_s if exposure_s is not None else (dpc.exposure_ms or config.camera.exposure_ms) / 1000.0
    shots = dpc_shots(dpc)
    names = list(dpc.shot_names)
    ill = DpcIllumination(led_na=dpc.led_na_array().tolist(), shots=[shots[n] for n in names])
    n = len(names)
    opened = None if row_time_s is None else rolling_row_open_s(shape[0], row_time_s, readout_direction)
    span = exp if opened is None else exp + float(opened.max())
    if timestamps_s is None:
        interval = frame_interval_s if frame_interval_s is not None else span + 0.0025
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
        if opened is None:
            expected = scene.expected_photons(times, lit, None)
        else:  # rolling shutter: each row over its own interval

            def at(t: float, lit: np.ndarray = lit) -> np.ndarray:
                return scene.expected_photons(np.array([t]), lit, None)

            expected = rolling_shutter_mean(at, float(timestamps_s[s]), exp, opened, exposure_subsamples)
        counts = noise.apply(expected, rng).astype(np.float32) - noise.offset_adu
        raw.append(counts)
        bg = scene.expected_photons(times, lit, None, blank=True) / noise.gain_e_per_adu
        background.append(bg.astype(np.float32))
        mid = float(timestamps_s[s] + 0.5 * span)
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
        row_time_s=row_time_s,
        readout_direction=readout_direction,
    )


@dataclasses.dataclass
class SimulatedSimWindow:
    """One SIM window with its ground truth.

    Attributes
    ----------
    raw
        ``(S, Z, Y, X)`` float32 camera counts with the offset removed (photo-electrons);
        shot ``s = d * n_phases + p``; ``Z = 1`` for 2D SIM.
    timestamps_s, exposure_s
        ``(S, Z)`` exposure start and duration of every frame, seconds.
    planes_um
        ``(Z,)`` focal plane of each frame relative to the sample's z = 0, µm.
    sample
        The moving sample (ground truth at any time: ``sample.on_grid``, ``positions_at``).
    illumination, optics
        The true pattern and the optics (``optics.z_step_um`` set for 3D).
    row_time_s, readout_direction
        Rolling shutter (as :class:`SimulatedWindow`); ``row_time_s`` None: global shutter.
    """

    raw: np.ndarray
    timestamps_s: np.ndarray
    exposure_s: np.ndarray
    planes_um: np.ndarray
    sample: MovingSample
    illumination: SimIllumination
    optics: Optics
    row_time_s: float | None = None
    readout_direction: str = "top_to_bottom"

    @property
    def midpoints_s(self) -> np.ndarray:
        """The middle of each frame's exposure (of all its rows), s, shape of ``timestamps_s``."""
        skew = 0.0
        if self.row_time_s is not None:
            skew = float(rolling_row_open_s(self.raw.shape[-2], self.row_time_s, self.readout_direction).max())
        return self.timestamps_s + 0.5 * (self.exposure_s + skew)


def simulate_sim_window(
    optics: Optics,
    illumination: SimIllumination,
    phantom: Any,
    motion: Any = "static",
    shape: tuple[int, int] = (128, 128),
    n_planes: int = 1,
    z_step_um: float | None = None,
    frame_interval_s: float = 0.012,
    exposure_s: float = 0.01,
    photons: float = 300.0,
    seed: int = 1,
    exposure_subsamples: int = 3,
    noise: CameraNoise | None = None,
    plane_order: str = "pattern_major",
    row_time_s: float | None = None,
    readout_direction: str = "top_to_bottom",
) -> SimulatedSimWindow:
    """One SIM window of a moving fluorescent ``phantom`` through the simulated SIM camera.

    Frames are taken every ``frame_interval_s`` in ``plane_order`` (3D; focal plane ``i`` at
    ``(i - Z // 2) * z_step_um`` µm): ``"pattern_major"`` shot by shot, each shot's planes one
    after the other (each (orientation, phase) stack taken quickly); ``"plane_major"`` plane by
    plane, every shot of a plane one after the other (the acquisition's default order,
    :class:`~nstm_acquire.acquire.sequences.AcquisitionPlan`). ``timestamps_s`` is ``(S, Z)``
    whatever the order;
    each frame averages the sample over ``exposure_subsamples`` times in its exposure.
    ``photons`` scales the density to photo-electrons; camera noise (Poisson, read noise,
    offset) from ``noise`` (default :class:`CameraNoise`), offset removed. ``row_time_s``: a
    rolling-shutter camera (line interval, s, rows read in ``readout_direction``; each row
    integrates over its own open interval, as in :func:`simulate_dpc_window`); the frame
    interval must then cover the frame's span (the pattern changes between frames).
    """
    if n_planes > 1 and z_step_um is None:
        raise ValueError("n_planes > 1 needs z_step_um (µm)")
    if n_planes > 1 and not illumination.three_beam:
        raise ValueError("a z stack needs a three-beam (3D SIM) illumination")
    opened = None if row_time_s is None else rolling_row_open_s(shape[0], row_time_s, readout_direction)
    span = exposure_s if opened is None else exposure_s + float(opened.max())
    if span > frame_interval_s:
        raise ValueError(
            f"frame_interval_s={frame_interval_s} is shorter than a frame's span {span:.4g} s (exposure plus "
            "rolling-shutter skew); give a longer frame interval"
        )
    planes = (np.arange(n_planes) - n_planes // 2) * (z_step_um or 0.0)
    upsample = 2
    fine = (shape[0] * upsample, shape[1] * upsample)
    sample = MovingSample(phantom, motion)
    imager = SimImager(
        optics, illumination, fine, optics.pixel_size_um / upsample, z_um=planes if n_planes > 1 else None
    )
    camera = noise or CameraNoise()
    rng = np.random.default_rng(seed)
    n_shots = illumination.n_shots
    if plane_order == "pattern_major":
        starts = (np.arange(n_shots * n_planes) * frame_interval_s).reshape(n_shots, n_planes)
    elif plane_order == "plane_major":
        starts = (np.arange(n_shots * n_planes) * frame_interval_s).reshape(n_planes, n_shots).T.copy()
    else:
        raise ValueError(f"plane_order={plane_order!r}; give 'pattern_major' or 'plane_major'")
    raw = np.empty((n_shots, n_planes, *shape), np.float32)
    z_arg = planes if n_planes > 1 else None
    for s in range(n_shots):
        for i in range(n_planes):

            def at(t: float, s: int = s, i: int = i) -> np.ndarray:
                density = sample.on_grid(t, shape, optics.pixel_size_um, upsample=upsample, z_um=z_arg)
                return imager.image(density, s, float(planes[i]))

            t0 = float(starts[s, i])
            if opened is None:
                image = np.mean([at(float(t)) for t in sub_exposure_times(t0, exposure_s, exposure_subsamples)], axis=0)
            else:  # rolling shutter: each row over its own interval
                image = rolling_shutter_mean(at, t0, exposure_s, opened, exposure_subsamples)
            counts = camera.apply(image * photons, rng).astype(np.float64)
            raw[s, i] = (counts - camera.offset_adu) * camera.gain_e_per_adu
    optics_out = optics.model_copy(update={"z_step_um": z_step_um}) if n_planes > 1 else optics
    return SimulatedSimWindow(
        raw=raw,
        timestamps_s=starts,
        exposure_s=np.full(starts.shape, exposure_s),
        planes_um=planes,
        sample=sample,
        illumination=illumination,
        optics=optics_out,
        row_time_s=row_time_s,
        readout_direction=readout_direction,
    )
