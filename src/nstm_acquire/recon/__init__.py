"""Reconstruction: window problems from physics objects, the NSTM fit per window, the store chain.

* :mod:`~nstm_acquire.recon.problem`: one window -> forward model, data, times, baseline;
* :mod:`~nstm_acquire.recon.arrays`: arrays in, images out (:func:`reconstruct_dpc`,
  :func:`reconstruct_sim`, :func:`reconstruct_window`);
* :mod:`~nstm_acquire.recon.chain`: every complete window of a store, warm-started in order;
* :mod:`~nstm_acquire.recon.worker`: the near-live worker thread;
* :mod:`~nstm_acquire.recon.distributed`: the same chain spread over Dask workers;
* :mod:`~nstm_acquire.recon.playback`: stored networks rendered at any time, trajectories.
* :mod:`~nstm_acquire.recon.trust`: each window's trust report (held-out residual vs camera
  noise, motion folding and size, agreement with the conventional result; docs/trust.md).
"""

from nstm_acquire.recon.arrays import WindowResult, reconstruct_dpc, reconstruct_sim, reconstruct_window
from nstm_acquire.recon.chain import StoreReconstructor
from nstm_acquire.recon.playback import StoredReconstruction
from nstm_acquire.recon.worker import ReconstructionWorker

__all__ = [
    "ReconstructionWorker",
    "StoreReconstructor",
    "StoredReconstruction",
    "WindowResult",
    "reconstruct_dpc",
    "reconstruct_sim",
    "reconstruct_window",
]
