"""useq-schema sequences for multi-shot acquisitions.

A *window* is one complete multi-shot measurement (one time point): DPC's 4 half-circle
shots, SIM2D's orientations x phases, SIM3D's orientations x phases x planes. Windows repeat
``n_windows`` times, every ``window_interval_s`` seconds (0: back to back).

Each shot is a useq ``Channel`` whose configuration-group preset selects its pattern, so the
MDA index maps straight onto the store: ``t`` -> window ``w``, ``c`` -> shot ``s``,
``z`` -> plane ``z``. All events of one window share a start time, so pymmcore-plus merges
them into one hardware-triggered burst whenever every device involved is sequenceable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import numpy as np
import useq
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AcquisitionPlan", "build_sequence", "plane_positions_um"]


class AcquisitionPlan(BaseModel):
    """What to acquire: modality, number of windows, timing and planes.

    Attributes
    ----------
    modality
        ``dpc``, ``sim2d`` or ``sim3d``.
    n_windows
        Number of windows (time points), at least 1.
    window_interval_s
        Start-to-start period of windows in seconds; 0 acquires them back to back.
    exposure_ms
        Exposure per shot (ms); None uses the modality's or camera's configured exposure.
    n_planes, z_step_um, z_centre_um
        SIM3D only: planes of each stack, their spacing (µm) and the stack centre (µm,
        absolute focus position).
    plane_order
        SIM3D only: ``"plane_major"`` takes all shots of a plane before moving focus
        (axis order t, z, c); ``"pattern_major"`` takes a z stack per shot (t, c, z).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    modality: Literal["dpc", "sim2d", "sim3d"]
    n_windows: int = Field(default=1, ge=1, le=1_000_000)
    window_interval_s: float = Field(default=0.0, ge=0)
    exposure_ms: float | None = Field(default=None, gt=0)
    n_planes: int = Field(default=1, ge=1)
    z_step_um: float = Field(default=0.25, gt=0)
    z_centre_um: float = 0.0
    plane_order: Literal["plane_major", "pattern_major"] = "plane_major"

    @model_validator(mode="after")
    def _planes(self) -> AcquisitionPlan:
        if self.modality != "sim3d" and self.n_planes != 1:
            raise ValueError(
                f"n_planes={self.n_planes}: only sim3d acquires several planes; use --modality sim3d "
                "or n_planes 1"
            )
        if self.modality == "sim3d" and self.n_planes < 2:
            raise ValueError("n_planes: sim3d needs at least 2 planes per stack")
        return self


def plane_positions_um(plan: AcquisitionPlan) -> np.ndarray:
    """Absolute focus positions (µm) of the planes of a stack, increasing."""
    offsets = (np.arange(plan.n_planes) - (plan.n_planes - 1) / 2) * plan.z_step_um
    return plan.z_centre_um + offsets


def build_sequence(
    plan: AcquisitionPlan,
    channel_group: str,
    presets: list[str],
    exposure_ms: float,
    metadata: dict | None = None,
) -> useq.MDASequence:
    """The useq ``MDASequence`` of ``plan``: one channel per shot, one time point per window."""
    if not presets:
        raise ValueError("presets: at least one shot is needed")
    exposure = plan.exposure_ms or exposure_ms
    channels = [useq.Channel(group=channel_group, config=p, exposure=exposure) for p in presets]
    kwargs: dict = {
        "time_plan": useq.TIntervalLoops(interval=timedelta(seconds=plan.window_interval_s), loops=plan.n_windows),
        "channels": channels,
        "metadata": {"nstm_acquire": {"plan": plan.model_dump(), **(metadata or {})}},
    }
    if plan.modality == "sim3d":
        kwargs["z_plan"] = useq.ZAbsolutePositions(absolute=plane_positions_um(plan).tolist())
        kwargs["axis_order"] = "tpzc" if plan.plane_order == "plane_major" else "tpcz"
    else:
        kwargs["axis_order"] = "tpcz"
    return useq.MDASequence(**kwargs)
