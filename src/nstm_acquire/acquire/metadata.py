"""The store attributes of a run (``docs/format.md``), from the plan, the setup and the microscope.

:func:`store_attributes` gathers what the store records about an acquisition before its first
frame: the modality, optics and illumination (from the :class:`ModalitySetup`), the camera's noise
model and the frame clock (from the :class:`Microscope`), and the ``acquisition`` object (start
time, the useq sequence, the hardware configuration, the software version, the run metadata the
microscope adds). The controller updates ``acquisition.status`` and the counts when the run ends.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import useq

import nstm_acquire
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.hardware.microscope import Microscope, ModalitySetup
from nstm_acquire.store.layout import FORMAT_VERSION, writer_process

__all__ = ["store_attributes", "utc_now"]


def utc_now() -> str:
    """The current UTC time, ISO 8601 (``acquisition.start_utc`` / ``end_utc``)."""
    return _dt.datetime.now(_dt.UTC).isoformat()


def store_attributes(
    plan: AcquisitionPlan,
    setup: ModalitySetup,
    microscope: Microscope,
    sequence: useq.MDASequence,
    timestamp_source: str,
) -> dict[str, Any]:
    """The root attributes of the store of ``plan`` acquired on ``microscope`` with ``sequence``.

    ``timestamp_source`` is the one-line description of the frame clock
    (:attr:`TimestampSource.description`). SIM3D's optics take the plan's plane spacing.
    """
    optics = setup.optics
    if plan.modality == "sim3d":
        optics = optics.model_copy(update={"z_step_um": plan.z_step_um})
    run = dict(microscope.run_metadata())
    acquisition: dict[str, Any] = {
        "start_utc": utc_now(),
        "mda_sequence": json.loads(sequence.model_dump_json()),
        "hardware_config": microscope.config.name,
        "hardware_config_dump": json.loads(microscope.config.model_dump_json()),
        "simulated": bool(run.pop("simulated", False)),
        "software": f"nstm-acquire {nstm_acquire.__version__}",
        "shot_names": setup.shot_names,
        "timestamp_source": timestamp_source,
        "status": "running",
        **writer_process(),
        **run,
    }
    return {
        "format_version": FORMAT_VERSION,
        "modality": plan.modality,
        "optics": optics.to_store(),
        "illumination": setup.illumination,  # the physics object; the writer serialises it once
        "camera": microscope.camera_model(plan.modality),
        "acquisition": acquisition,
    }
