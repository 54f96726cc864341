"""Acquisition: from a plan to frames with exact times in the store.

* :mod:`~nstm_acquire.acquire.sequences`: :class:`AcquisitionPlan` and its useq ``MDASequence``
  (window ``w`` = time point ``t``, shot ``s`` = channel ``c``, plane ``z``);
* :mod:`~nstm_acquire.acquire.engine`: the MDA engine that keeps each snap's timing;
* :mod:`~nstm_acquire.acquire.timing`: each frame's exposure start on the acquisition clock;
* :mod:`~nstm_acquire.acquire.metadata`: the store attributes of a run;
* :mod:`~nstm_acquire.acquire.frames`: the ``frameReady`` handler writing frames, counting windows;
* :mod:`~nstm_acquire.acquire.controller`: :class:`AcquisitionController`, one run on its thread;
* :mod:`~nstm_acquire.acquire.session`: acquisition and near-live reconstruction together.

It talks to the microscope only through :class:`~nstm_acquire.hardware.microscope.Microscope`,
so the simulated microscope and a real one run the same code. The names below are imported
when first used (``from nstm_acquire.acquire import AcquisitionPlan`` does not load the core).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstm_acquire._lazy import lazy_exports

if TYPE_CHECKING:
    from nstm_acquire.acquire.controller import AcquisitionController, AcquisitionSummary, ControllerSignals
    from nstm_acquire.acquire.engine import TimestampingMDAEngine, install_timestamping_engine
    from nstm_acquire.acquire.frames import FrameHandler
    from nstm_acquire.acquire.metadata import store_attributes
    from nstm_acquire.acquire.sequences import AcquisitionPlan, build_sequence, plane_positions_um
    from nstm_acquire.acquire.session import LiveSession, SessionSignals, log_path_for
    from nstm_acquire.acquire.timing import FrameTime, FrameTimer

__all__ = [
    "AcquisitionController",
    "AcquisitionPlan",
    "AcquisitionSummary",
    "ControllerSignals",
    "FrameHandler",
    "FrameTime",
    "FrameTimer",
    "LiveSession",
    "SessionSignals",
    "TimestampingMDAEngine",
    "build_sequence",
    "install_timestamping_engine",
    "log_path_for",
    "plane_positions_um",
    "store_attributes",
]

_MODULE_OF = {
    "AcquisitionController": "controller",
    "AcquisitionSummary": "controller",
    "ControllerSignals": "controller",
    "TimestampingMDAEngine": "engine",
    "install_timestamping_engine": "engine",
    "FrameHandler": "frames",
    "store_attributes": "metadata",
    "AcquisitionPlan": "sequences",
    "build_sequence": "sequences",
    "plane_positions_um": "sequences",
    "FrameTime": "timing",
    "FrameTimer": "timing",
    "LiveSession": "session",
    "SessionSignals": "session",
    "log_path_for": "session",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals(), __all__)
