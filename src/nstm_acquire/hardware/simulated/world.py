"""The simulated microscope's state and image formation.

:class:`SimulatedWorld` holds what the simulated devices set (the lit LEDs, the SIM pattern,
the focus position, the shutter) and turns it into camera frames through the real physics
(exact partially coherent imaging for DPC, pattern x density blurred by the detection PSF
for SIM), at the time of each exposure on one :class:`SimulatedClock`. The sample knows its
ground truth, so everything acquired from it can be scored.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from nstm_acquire.hardware.config import (
    ConfigError,
    DpcConfig,
    HardwareConfig,
    SimConfig,
    SimulatedSample,
    SimulationConfig,
)
from nstm_acquire.hardware.simulated.clock import SimulatedClock
from nstm_acquire.hardware.simulated.dpc_imaging import (
    dpc_background,
    dpc_image_exact,
    rolling_row_open_s,
    rolling_shutter_mean,
)
from nstm_acquire.hardware.simulated.fluorescence_imaging import SimImager
from nstm_acquire.hardware.simulated.motion import motion_from_spec
from nstm_acquire.hardware.simulated.noise import CameraNoise
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom, CellPhantom, FilamentPhantom
from nstm_acquire.hardware.simulated.sample import MovingSample
from nstm_acquire.physics.sim.illumination import (
    SimIllumination,
    default_sim_illumination,
    sim3d_nyquist_z_step_um,
)

__all__ = ["SimulatedWorld", "DpcScene", "SimScene", "sub_exposure_times"]


def sub_exposure_times(t_start_s: float, exposure_s: float, n_sub: int) -> np.ndarray:
    """Midpoints of ``n_sub`` equal parts of the exposure ``[t_start, t_start + exposure]``, s."""
    return t_start_s + (np.arange(n_sub) + 0.5) * exposure_s / n_sub


def _field_um(frame_shape: tuple[int, int], pixel_size_um: float) -> tuple[float, float]:
    return (frame_shape[0] * pixel_size_um, frame_shape[1] * pixel_size_um)


class DpcScene:
    """A moving phase/absorption sample under the LED array, imaged exactly."""

    def __init__(self, cfg: DpcConfig, sample_cfg: SimulatedSample, frame_shape: tuple[int, int], seed: int):
        self.optics = cfg.optics
        self.frame_shape = frame_shape
        self.led_na = cfg.led_na_array()
        self.photons = sample_cfg.photons
        field = _field_um(frame_shape, self.optics.pixel_size_um)
        if sample_cfg.phantom != "cells":
            raise ValueError(
                f"simulation.samples.dpc.phantom={sample_cfg.phantom!r}: DPC images phase samples; use 'cells'"
            )
        options = dict(sample_cfg.options)
        # about one cell per 400 µm² over the phantom's region (the field padded by 25 % on every
        # side, 2.25x its area): a sub-confluent culture
        options.setdefault("n_cells", max(6, int(round(2.25 * field[0] * field[1] / 400.0))))
        phantom = CellPhantom(field, seed=seed, **options)
        self.sample = MovingSample(phantom, motion_from_spec(sample_cfg.motion))

    def expected_photons(
        self, times_s: np.ndarray, lit: np.ndarray, brightness: np.ndarray | None, blank: bool = False
    ) -> np.ndarray:
        """Mean photo-electrons per pixel over the sub-exposure times (Y, X)."""
        if lit.size == 0:
            return np.zeros(self.frame_shape)
        na = self.led_na[lit]
        bg = float(np.mean(dpc_background(self.frame_shape, self.optics, na, brightness)))
        if bg <= 0:  # only dark-field LEDs lit: scale as if one bright-field LED were on
            bg = 1.0
        if blank:
            return np.full(self.frame_shape, self.photons * float(np.mean(dpc_background(
                self.frame_shape, self.optics, na, brightness))) / bg)
        acc = np.zeros(self.frame_shape)
        for t in times_s:
            mu, phi = self.sample.on_grid(float(t), self.frame_shape, self.optics.pixel_size_um)
            acc += dpc_image_exact(mu, phi, self.optics, na, brightness)
        return self.photons * acc / (len(times_s) * bg)


class SimScene:
    """A moving fluorescent sample under structured illumination (2D or 3D)."""

    def __init__(
        self,
        cfg: SimConfig,
        sample_cfg: SimulatedSample,
        frame_shape: tuple[int, int],
        seed: int,
        upsample: int,
        three_beam: bool,
        z_planes_um: np.ndarray | None = None,
    ):
        self.optics = cfg.optics
        self.frame_shape = frame_shape
        self.upsample = upsample
        self.three_beam = three_beam
        self.photons = sample_cfg.photons
        self.illumination = sim_illumination_from_config(cfg, three_beam)
        field = _field_um(frame_shape, self.optics.pixel_size_um)
        options = dict(sample_cfg.options)
        if three_beam:
            options.setdefault("z_range_um", (-1.0, 1.0))
        else:
            options.pop("z_range_um", None)
        if sample_cfg.phantom == "beads":  # scale the bead counts with the field of view
            area = field[0] * field[1]
            options.setdefault("n_beads", max(3, int(round(0.25 * area))))
            options.setdefault("n_pairs_each", 0 if min(field) < 6.0 else max(1, int(area // 120)))
        cls = {"beads": BeadPhantom, "filaments": FilamentPhantom}.get(sample_cfg.phantom)
        if cls is None:
            raise ValueError(
                f"simulation.samples phantom={sample_cfg.phantom!r}: SIM images fluorescent samples; "
                "use 'beads' or 'filaments'"
            )
        phantom = cls(field, seed=seed, **options)
        self.sample = MovingSample(phantom, motion_from_spec(sample_cfg.motion))
        self.fine_pixel_um = self.optics.pixel_size_um / upsample
        self.fine_shape = (frame_shape[0] * upsample, frame_shape[1] * upsample)
        if three_beam:
            z0, z1 = options["z_range_um"]
            # half the plane spacing (default: the Nyquist step of the 3D SIM axial passband)
            k_per_um = self.illumination.k_per_um
            k = max(math.hypot(*kk) for kk in k_per_um) if k_per_um else None
            step = cfg.optics.z_step_um or sim3d_nyquist_z_step_um(cfg.optics, cfg.excitation_wavelength_um, k)
            dz = step / 2
            self.sample_z_um = np.arange(z0 - 1.0, z1 + 1.0 + 1e-9, dz)
        else:
            self.sample_z_um = None
        self.imager = SimImager(
            self.optics, self.illumination, self.fine_shape, self.fine_pixel_um, self.sample_z_um
        )
        self._scale = self._photon_scale()

    def _density(self, t_s: float) -> np.ndarray:
        return self.sample.on_grid(
            t_s, self.frame_shape, self.optics.pixel_size_um, upsample=self.upsample, z_um=self.sample_z_um
        )

    def _photon_scale(self) -> float:
        """Photo-electrons per unit image so the brightest structures get ``photons``."""
        img = self.imager.widefield(self._density(0.0), focal_z_um=0.0)
        peak = float(np.percentile(img, 99.9))
        return self.photons / peak if peak > 0 else 1.0

    def expected_photons(self, times_s: np.ndarray, shot: int, focal_z_um: float) -> np.ndarray:
        acc = np.zeros(self.frame_shape)
        for t in times_s:
            acc += self.imager.image(self._density(float(t)), shot, focal_z_um=focal_z_um)
        return self._scale * acc / len(times_s)


def sim_illumination_from_config(cfg: SimConfig, three_beam: bool) -> SimIllumination:
    """The configured SIM pattern, with defaults for the fields a config leaves out."""
    default = default_sim_illumination(
        cfg.optics, cfg.excitation_wavelength_um, three_beam=three_beam, n_phases=cfg.n_phases
    )
    update: dict[str, Any] = {}
    if cfg.k_per_um is not None:
        update["k_per_um"] = [list(k) for k in cfg.k_per_um]
    if cfg.phase_rad is not None:
        update["phase_rad"] = list(cfg.phase_rad)
    if cfg.modulation is not None:
        update["modulation"] = [list(m) for m in cfg.modulation]
    if not update:
        return default
    return SimIllumination.model_validate({**default.model_dump(), **update})


class SimulatedWorld:
    """Shared state of the simulated devices, and the camera's image formation.

    Devices set ``lit_leds``, ``sim_shot``, ``z_um`` and ``shutter_open``; the camera calls
    :meth:`render` at each exposure. Hardware-triggered sequences register an ``advance``
    callback that the camera's trigger output calls before every exposure.
    """

    def __init__(self, config: HardwareConfig, modality: str | None = None) -> None:
        self.config = config
        self.sim: SimulationConfig = config.simulation or SimulationConfig()
        self.clock = SimulatedClock(realtime=self.sim.timing.realtime)
        self.frame_shape = tuple(self.sim.frame_shape)
        cam = config.camera
        self.noise = CameraNoise(
            gain_e_per_adu=cam.gain_e_per_adu or 0.5,
            read_noise_e=cam.read_noise_e if cam.read_noise_e is not None else 1.5,
            offset_adu=cam.offset_adu,
        )
        self._rng = np.random.default_rng(self.sim.seed + 1)
        self._lock = threading.RLock()
        self._scenes: dict[str, DpcScene | SimScene] = {}
        self._sequencers: list[Callable[[], None]] = []
        self.modality = modality or config.available_modalities()[0]
        self.lit_leds = np.zeros(0, dtype=int)
        self.led_brightness: np.ndarray | None = None
        self.sim_shot = 0
        self.z_um = 0.0
        self.shutter_open = True
        self.blank = False
        self.frames_rendered = 0
        self._replay: list[np.ndarray] | None = None

    # -- modality and scenes -------------------------------------------------
    def set_modality(self, modality: str) -> None:
        self.config.modality(modality)  # raises a clear error if not configured
        with self._lock:
            if modality != self.modality:
                self.modality = modality
                self._replay = None

    def scene(self, modality: str | None = None) -> DpcScene | SimScene:
        """The (lazily built) scene of a modality; its ``sample`` is the ground truth."""
        m = modality or self.modality
        with self._lock:
            if m not in self._scenes:
                self._scenes[m] = self._build_scene(m)
            return self._scenes[m]

    def _build_scene(self, m: str) -> DpcScene | SimScene:
        sample_cfg = self.sim.samples.get(m)  # type: ignore[call-overload]
        if sample_cfg is None:
            raise ValueError(f"simulation.samples has no sample for modality {m!r}")
        try:
            return self._make_scene(m, sample_cfg)
        except TypeError as err:  # an unknown phantom option
            raise ConfigError(
                f"{self.config.name}: simulation.samples.{m}.options: {err} "
                "(see docs/simulation.md for each phantom's options)"
            ) from None

    def _make_scene(self, m: str, sample_cfg: SimulatedSample) -> DpcScene | SimScene:
        cfg = self.config.modality(m)
        if m == "dpc":
            assert isinstance(cfg, DpcConfig)
            return DpcScene(cfg, sample_cfg, self.frame_shape, self.sim.seed)
        assert isinstance(cfg, SimConfig)
        return SimScene(
            cfg, sample_cfg, self.frame_shape, self.sim.seed, self.sim.render_upsample, three_beam=(m == "sim3d")
        )

    # -- hardware triggering ---------------------------------------------------
    def add_sequencer(self, advance: Callable[[], None]) -> None:
        with self._lock:
            if advance not in self._sequencers:
                self._sequencers.append(advance)

    def remove_sequencer(self, advance: Callable[[], None]) -> None:
        with self._lock:
            if advance in self._sequencers:
                self._sequencers.remove(advance)

    def trigger(self) -> None:
        """The camera's trigger output: every running sequence steps to its next value."""
        with self._lock:
            sequencers = list(self._sequencers)
        for advance in sequencers:
            advance()

    # -- image formation -------------------------------------------------------
    def expected_photons(self, t_start_s: float, exposure_s: float) -> np.ndarray:
        """Noise-free photo-electrons per pixel for an exposure starting at ``t_start_s``."""
        with self._lock:
            modality, lit, bright = self.modality, self.lit_leds.copy(), self.led_brightness
            shot, z, open_, blank = self.sim_shot, self.z_um, self.shutter_open, self.blank
        if not open_:
            return np.zeros(self.frame_shape)
        times = sub_exposure_times(t_start_s, exposure_s, self.sim.timing.exposure_subsamples)
        scene = self.scene(modality)
        readout = self.config.camera.rolling_shutter
        if readout is not None and not blank:  # each row over its own interval (docs/timing.md)
            opened = rolling_row_open_s(self.frame_shape[0], readout.row_time_s, readout.direction)

            def at(t: float) -> np.ndarray:
                if isinstance(scene, DpcScene):
                    return scene.expected_photons(np.array([t]), lit, bright)
                return scene.expected_photons(np.array([t]), shot, z)

            return rolling_shutter_mean(at, t_start_s, exposure_s, opened, self.sim.timing.exposure_subsamples)
        if isinstance(scene, DpcScene):
            return scene.expected_photons(times, lit, bright, blank=blank)
        return scene.expected_photons(times, shot, z)

    def render(self, t_start_s: float, exposure_s: float) -> np.ndarray:
        """One noisy uint16 camera frame."""
        if self.sim.replay_frames and not self.blank:
            return self._render_replay()
        img = self.noise.apply(self.expected_photons(t_start_s, exposure_s), self._rng)
        self.frames_rendered += 1
        return img

    def _render_replay(self) -> np.ndarray:
        with self._lock:
            if self._replay is None:
                self._replay = [
                    self.noise.apply(self.expected_photons(0.01 * i, 0.01), self._rng)
                    for i in range(self.sim.replay_frames)
                ]
            frame = self._replay[self.frames_rendered % len(self._replay)]
            self.frames_rendered += 1
            return frame

    def ground_truth_description(self) -> dict[str, Any]:
        """What the store records about the simulated sample (to score against it later)."""
        out: dict[str, Any] = {"seed": self.sim.seed, "frame_shape": list(self.frame_shape)}
        for m, s in self.sim.samples.items():
            out[m] = {"phantom": s.phantom, "motion": s.motion, "options": s.options, "photons": s.photons}
        return out
