"""nstm-acquire: multi-shot DPC and SIM acquisition with motion-resolved NSTM reconstruction.

The public API, by layer (``docs/api.md`` shows each entry point with a runnable example):

* physics: :class:`Optics`, :class:`DpcIllumination`, :class:`LedArrayGeometry`,
  :class:`SimIllumination`;
* reconstruction: :func:`reconstruct_dpc`, :func:`reconstruct_sim` (arrays in, images out),
  :class:`StoreReconstructor` (every window of a store), :class:`ReconstructionWorker`
  (near-live), :class:`StoredReconstruction` (stored networks at any time), :class:`NSTMConfig`,
  :func:`default_config`;
* acquisition: :class:`AcquisitionPlan`, :class:`AcquisitionController`, :class:`LiveSession`
  (acquisition and near-live reconstruction together);
* hardware: :func:`open_microscope`, :class:`Microscope`, :func:`load_hardware_config`,
  :func:`simulated_config`;
* store: :class:`StoreReader`, :class:`StoreWriter`, :class:`ReconReader`, :class:`StoreError`;
* :data:`logger`, the package logger.

Names are imported on first use, so ``import nstm_acquire`` loads neither JAX nor the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstm_acquire._lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from nstm_acquire._logger import logger
    from nstm_acquire.acquire.controller import AcquisitionController, AcquisitionSummary
    from nstm_acquire.acquire.sequences import AcquisitionPlan
    from nstm_acquire.acquire.session import LiveSession
    from nstm_acquire.hardware.config import HardwareConfig, load_hardware_config
    from nstm_acquire.hardware.microscope import Microscope, open_microscope
    from nstm_acquire.hardware.simulated.setup import simulated_config
    from nstm_acquire.nstm.config import NSTMConfig, default_config
    from nstm_acquire.physics.dpc.illumination import DpcIllumination, LedArrayGeometry
    from nstm_acquire.physics.optics import Optics
    from nstm_acquire.physics.sim.illumination import SimIllumination
    from nstm_acquire.recon.arrays import WindowResult, reconstruct_dpc, reconstruct_sim
    from nstm_acquire.recon.chain import StoreReconstructor
    from nstm_acquire.recon.playback import StoredReconstruction
    from nstm_acquire.recon.worker import ReconstructionWorker
    from nstm_acquire.store.layout import StoreError
    from nstm_acquire.store.reader import StoreReader
    from nstm_acquire.store.recon import ReconReader
    from nstm_acquire.store.writer import StoreWriter

_MODULE_OF = {
    "logger": "_logger",
    "AcquisitionController": "acquire.controller",
    "AcquisitionSummary": "acquire.controller",
    "AcquisitionPlan": "acquire.sequences",
    "LiveSession": "acquire.session",
    "HardwareConfig": "hardware.config",
    "load_hardware_config": "hardware.config",
    "Microscope": "hardware.microscope",
    "open_microscope": "hardware.microscope",
    "simulated_config": "hardware.simulated.setup",
    "NSTMConfig": "nstm.config",
    "default_config": "nstm.config",
    "DpcIllumination": "physics.dpc.illumination",
    "LedArrayGeometry": "physics.dpc.illumination",
    "Optics": "physics.optics",
    "SimIllumination": "physics.sim.illumination",
    "WindowResult": "recon.arrays",
    "reconstruct_dpc": "recon.arrays",
    "reconstruct_sim": "recon.arrays",
    "StoreReconstructor": "recon.chain",
    "StoredReconstruction": "recon.playback",
    "ReconstructionWorker": "recon.worker",
    "StoreError": "store.layout",
    "StoreReader": "store.reader",
    "ReconReader": "store.recon",
    "StoreWriter": "store.writer",
}

__all__ = [
    "__version__",
    "AcquisitionController",
    "AcquisitionPlan",
    "AcquisitionSummary",
    "DpcIllumination",
    "HardwareConfig",
    "LedArrayGeometry",
    "LiveSession",
    "Microscope",
    "NSTMConfig",
    "Optics",
    "ReconReader",
    "ReconstructionWorker",
    "SimIllumination",
    "StoreError",
    "StoreReader",
    "StoreReconstructor",
    "StoreWriter",
    "StoredReconstruction",
    "WindowResult",
    "default_config",
    "load_hardware_config",
    "logger",
    "open_microscope",
    "reconstruct_dpc",
    "reconstruct_sim",
    "simulated_config",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals(), __all__)
