"""Hardware: the configuration, the :class:`Microscope`, and the simulated microscope.

* :mod:`~nstm_acquire.hardware.config`: :class:`HardwareConfig` (validated YAML: camera, optics,
  how each modality's patterns are set, the simulation);
* :mod:`~nstm_acquire.hardware.microscope`: :func:`open_microscope` and :class:`Microscope`, the one
  interface the acquisition talks to (setup per modality, camera model, frame clock, background);
* :mod:`~nstm_acquire.hardware.camera`: :class:`TimestampSource`, where frame times come from;
* :mod:`~nstm_acquire.hardware.presets`: Micro-Manager presets lighting each DPC shot's LEDs;
* :mod:`~nstm_acquire.hardware.simulated`: :class:`SimulatedMicroscope` and everything it
  simulates (devices, world, clock, samples, motion, noise, image formation).

This layer imports nothing from ``acquire/``, ``recon/``, ``store/`` or ``gui/``. The names below
are imported when first used (the configuration does not load pymmcore-plus).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstm_acquire._lazy import lazy_exports

if TYPE_CHECKING:
    from nstm_acquire.hardware.camera import TimestampSource
    from nstm_acquire.hardware.config import ConfigError, HardwareConfig, default_config_path, load_hardware_config
    from nstm_acquire.hardware.microscope import (
        Microscope,
        ModalitySetup,
        dpc_shots,
        open_microscope,
        use_psygnal_signals,
    )
    from nstm_acquire.hardware.presets import dpc_preset_lines
    from nstm_acquire.hardware.simulated.microscope import SimulatedMicroscope
    from nstm_acquire.hardware.simulated.setup import simulated_config

__all__ = [
    "ConfigError",
    "HardwareConfig",
    "Microscope",
    "ModalitySetup",
    "SimulatedMicroscope",
    "TimestampSource",
    "default_config_path",
    "dpc_preset_lines",
    "dpc_shots",
    "load_hardware_config",
    "open_microscope",
    "simulated_config",
    "use_psygnal_signals",
]

_MODULE_OF = {
    "TimestampSource": "camera",
    "ConfigError": "config",
    "HardwareConfig": "config",
    "default_config_path": "config",
    "load_hardware_config": "config",
    "Microscope": "microscope",
    "ModalitySetup": "microscope",
    "dpc_shots": "microscope",
    "open_microscope": "microscope",
    "use_psygnal_signals": "microscope",
    "dpc_preset_lines": "presets",
    "SimulatedMicroscope": "simulated.microscope",
    "simulated_config": "simulated.setup",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals(), __all__)
