"""The simulated microscope: Python devices over a moving sample whose ground truth is known.

* :mod:`~nstm_acquire.hardware.simulated.microscope`: :class:`SimulatedMicroscope`, the
  :class:`~nstm_acquire.hardware.microscope.Microscope` interface answered by the simulator, and
  :func:`build_simulated_microscope` (``open_microscope`` calls it for a simulated configuration);
* :mod:`~nstm_acquire.hardware.simulated.devices`: camera, LED array, SIM pattern SLM, z stage and
  shutter as pymmcore-plus ``unicore`` devices;
* :mod:`~nstm_acquire.hardware.simulated.world`: :class:`SimulatedWorld`, the devices' shared state
  and the camera's image formation, on one :mod:`~nstm_acquire.hardware.simulated.clock`;
* samples (``phantoms``, ``sample``, ``motion``), camera ``noise``, exact DPC imaging
  (``dpc_imaging``) and fluorescence SIM imaging (``fluorescence_imaging``), whole simulated
  windows (``windows``) and configurations (``setup``).

Its image formation is written independently of ``physics/``'s forward models so it can judge them.
The names below are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstm_acquire._lazy import lazy_exports

if TYPE_CHECKING:
    from nstm_acquire.hardware.simulated.microscope import SimulatedMicroscope, build_simulated_microscope
    from nstm_acquire.hardware.simulated.setup import simulated_config
    from nstm_acquire.hardware.simulated.world import SimulatedWorld

__all__ = ["SimulatedMicroscope", "SimulatedWorld", "build_simulated_microscope", "simulated_config"]

_MODULE_OF = {
    "SimulatedMicroscope": "microscope",
    "build_simulated_microscope": "microscope",
    "simulated_config": "setup",
    "SimulatedWorld": "world",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals(), __all__)
