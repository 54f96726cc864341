"""The simulated microscope: the :class:`~nstm_acquire.hardware.microscope.Microscope` interface
answered by a :class:`~nstm_acquire.hardware.simulated.world.SimulatedWorld`.

Its core is a ``UniMMCore`` whose devices are Python objects (``devices.py``) driving one world,
so an acquisition runs the same MDA code path as on a real microscope. Every simulator behaviour
the acquisition relies on lives here, behind the methods a real microscope answers too:

* :meth:`SimulatedMicroscope.camera_model`: the simulated camera's gain and read noise;
* :meth:`SimulatedMicroscope.timestamp_source`: the camera's ``HardwareTimestamp-s``, already on
  the acquisition clock because :meth:`SimulatedMicroscope.acquisition_started` restarts the
  simulated clock;
* :meth:`SimulatedMicroscope.sample_free`: the world blanks its sample (background frames);
* :meth:`SimulatedMicroscope.run_metadata`: the ground-truth description for the store;
* :meth:`SimulatedMicroscope.calibrated_sim_pattern`: the simulator knows its true SIM pattern,
  and reports it the way a calibrated real microscope reports the pattern of its configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymmcore_plus.experimental.unicore import UniMMCore

from nstm_acquire.hardware.camera import TimestampSource
from nstm_acquire.hardware.config import HardwareConfig
from nstm_acquire.hardware.microscope import Microscope, ModalitySetup, dpc_shots, use_psygnal_signals
from nstm_acquire.hardware.simulated.devices import (
    HARDWARE_TIMESTAMP_KEY,
    SimulatedCamera,
    SimulatedLEDArray,
    SimulatedShutter,
    SimulatedSIMPatterns,
    SimulatedZStage,
)
from nstm_acquire.hardware.simulated.lensless_camera import SimulatedLenslessCamera, lensless_truth
from nstm_acquire.hardware.simulated.world import SimScene, SimulatedWorld

__all__ = ["SIMULATED_CLOCK_DESCRIPTION", "SimulatedMicroscope", "build_simulated_microscope"]

SIMULATED_CLOCK_DESCRIPTION = "simulated camera hardware clock (exposure start)"
"""``acquisition.timestamp_source`` of the simulated microscope."""

_TRUE_PATTERN_FIELDS = ("k_per_um", "phase_rad", "modulation", "three_beam", "axial_k_per_um")


class SimulatedMicroscope(Microscope):
    """A microscope whose devices drive ``world``; the world holds the ground truth.

    Build it with :func:`build_simulated_microscope` (or
    :func:`~nstm_acquire.hardware.microscope.open_microscope`).
    """

    def __init__(self, config: HardwareConfig, core: UniMMCore, world: SimulatedWorld) -> None:
        super().__init__(config, core, owns_core=True)
        self._world = world

    @property
    def simulated(self) -> bool:
        return True

    @property
    def world(self) -> SimulatedWorld:
        """The simulated world: devices' state, the clock and the samples' ground truth."""
        return self._world

    # ------------------------------------------------------------ reporting
    def camera_model(self, modality: str | None = None) -> dict[str, Any]:
        """The configured values, completed with the simulated camera's gain and read noise."""
        model = super().camera_model(modality)
        model.setdefault("gain_e_per_adu", self._world.noise.gain_e_per_adu)
        model.setdefault("read_noise_e", self._world.noise.read_noise_e)
        return model

    def timestamp_source(self) -> TimestampSource:
        """The simulated camera's exposure start on the simulated clock (restarted at time zero)."""
        cam = self.config.camera
        return TimestampSource(
            key=cam.hardware_timestamp_key or HARDWARE_TIMESTAMP_KEY,
            unit=cam.hardware_timestamp_unit if cam.hardware_timestamp_key else "s",
            on_acquisition_clock=True,
            description=SIMULATED_CLOCK_DESCRIPTION,
        )

    def acquisition_started(self) -> None:
        """Restart the simulated clock: its time zero is the acquisition's."""
        self._world.clock.restart()

    @contextmanager
    def sample_free(self) -> Iterator[None]:
        """The world renders without its sample inside the block."""
        self._world.blank = True
        try:
            yield
        finally:
            self._world.blank = False

    def run_metadata(self) -> dict[str, Any]:
        """``simulated: true`` and the ground-truth description (``simulation``)."""
        return {"simulated": True, "simulation": self._world.ground_truth_description()}

    def default_background(self, modality: str) -> bool:
        """DPC takes background frames by default: the simulator can remove its sample."""
        return modality == "dpc"

    def calibrated_sim_pattern(self, modality: str) -> dict[str, Any]:
        """The configured fields, replaced by the simulator's true pattern where it has one."""
        known = super().calibrated_sim_pattern(modality)
        scene = self._world.scene(modality)
        assert isinstance(scene, SimScene), f"{modality} is not a SIM modality"
        true = scene.illumination.to_store()
        known.update({k: v for k, v in true.items() if k in _TRUE_PATTERN_FIELDS and v is not None})
        return known

    def lensless_psf(self) -> Any:
        """The simulated lensless camera's caustic PSF ``(3, Y, X)`` (it knows its diffuser)."""
        return lensless_truth(self.config).psf

    # ------------------------------------------------------------------
    def prepare(self, modality: str) -> ModalitySetup:
        """Switch the world to ``modality`` (its scene and sample), then prepare as any microscope."""
        self._world.set_modality(modality)
        return super().prepare(modality)


def build_simulated_microscope(config: HardwareConfig) -> SimulatedMicroscope:
    """A new simulated core with the configuration's devices, and its world.

    Loads the camera and shutter, the LED array (DPC), the SIM pattern SLM and focus stage
    (SIM2D/SIM3D) as Python devices of one :class:`SimulatedWorld`.
    """
    world = SimulatedWorld(config)
    with use_psygnal_signals():
        # every device is a Python object: no Micro-Manager installation is needed, so name an
        # adapter folder instead of letting the core search for one (and log an error if none)
        core = UniMMCore(mm_path=str(Path(__file__).resolve().parent))
    cam = config.camera.label
    core.loadPyDevice(cam, SimulatedCamera(world))
    shutter = config.shutter_label or "Shutter"
    core.loadPyDevice(shutter, SimulatedShutter(world))
    if config.dpc is not None:
        shots = dpc_shots(config.dpc)
        n_leds = len(config.dpc.led_na_array())
        core.loadPyDevice(config.dpc.led_array_label, SimulatedLEDArray(world, patterns=shots, n_leds=n_leds))
    sims = [c for c in (config.sim2d, config.sim3d) if c is not None]
    if sims:
        n_patterns = max(c.n_orientations * c.n_phases for c in sims)
        for label in {c.pattern_device_label for c in sims}:
            core.loadPyDevice(label, SimulatedSIMPatterns(world, n_patterns=n_patterns))
        for focus in {c.focus_device for c in sims}:
            core.loadPyDevice(focus, SimulatedZStage(world))
    if config.rolling_shutter is not None:
        lensless = SimulatedLenslessCamera(world, n_channels=len(config.rolling_shutter.channels))
        core.loadPyDevice(config.rolling_shutter.camera_label, lensless)
    core.initializeAllDevices()
    core.setCameraDevice(cam)
    core.setShutterDevice(shutter)
    core.setAutoShutter(False)
    core.setExposure(config.camera.exposure_ms)
    if sims:
        core.setFocusDevice(sims[0].focus_device)
    return SimulatedMicroscope(config, core, world)
