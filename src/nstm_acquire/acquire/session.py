"""Acquire and reconstruct at once: the acquisition controller feeds the reconstruction worker.

The acquisition thread never waits for reconstruction: ``window_complete(w)`` only queues ``w``.
"""

from __future__ import annotations

from typing import Any

from nstm_acquire.recon.worker import ReconstructionWorker

__all__ = ["run_live"]


def run_live(controller: Any, worker: ReconstructionWorker, poll_s: float = 0.2) -> None:
    """Acquire with ``controller`` while ``worker`` reconstructs each completed window.

    Blocks until the acquisition has ended and the worker has finished the windows its policy
    keeps. Ctrl-C (KeyboardInterrupt) cancels the acquisition, stops the worker and re-raises.
    """
    controller.events.window_complete.connect(worker.submit)
    worker.start()
    controller.start()
    try:
        while not controller.wait(poll_s):
            pass
        worker.close_input()
        while not worker.join(poll_s):
            pass
    except KeyboardInterrupt:
        controller.cancel()
        worker.stop()
        controller.wait()
        worker.join()
        raise
    finally:
        controller.events.window_complete.disconnect(worker.submit)
