"""The physics of the instrument: optics, illumination, forward models and conventional baselines.

Pure numpy/JAX functions of arrays and frozen pydantic descriptions; nothing here imports the
store, the hardware, Qt or the NSTM. One folder per modality:

* :mod:`~nstm_acquire.physics.optics`: :class:`Optics`, pupils and frequency grids;
* :mod:`~nstm_acquire.physics.dpc`: LED-array illumination, weak-object transfer functions,
  the DPC forward model and the Tikhonov reconstruction;
* :mod:`~nstm_acquire.physics.sim`: the structured-illumination pattern, OTFs, forward models
  (2D, three-beam 3D), pattern estimation and the Wiener reconstruction.
"""

from nstm_acquire.physics.optics import Optics

__all__ = ["Optics"]
