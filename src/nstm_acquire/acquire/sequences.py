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

import math
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import useq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.illumination import sim3d_nyquist_z_step_um

__all__ = ["AcquisitionPlan", "build_sequence", "default_z_step_um", "plane_positions_um"]


class AcquisitionPlan(BaseModel):
    """What to acquire: modality, number of windows, timing and planes.

    Attributes
    ----------
    modality
        ``dpc``, ``sim2d``, ``sim3d`` or ``rolling_shutter`` (a lensless colour camera: one
        shot per colour plane of each frame).
    n_windows
        Number of windows (time points), at least 1.
    window_interval_s
        Start-to-start period of windows in seconds; 0 acquires them back to back.
    exposure_ms
        Exposure per shot (ms); None uses the modality's or camera's configured exposure.
    n_planes, z_step_um, z_centre_um
        SIM3D only: planes of each stack, their spacing (µm) and the stack centre (µm,
        absolute focus position). ``z_step_um=None`` (default) is the Nyquist step of the 3D
        SIM axial passband of the microscope's optics and pattern, set by :meth:`for_setup`
        when the acquisition starts
        (:func:`~nstm_acquire.physics.sim.illumination.sim3d_nyquist_z_step_um`: about
        0.18 µm for the simulated NA 1.4 oil objective).
    plane_order
        SIM3D only: ``"plane_major"`` takes all shots of a plane before moving focus
        (axis order t, z, c); ``"pattern_major"`` takes a z stack per shot (t, c, z).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    modality: Literal["dpc", "sim2d", "sim3d", "rolling_shutter"]
    n_windows: int = Field(default=1, ge=1, le=1_000_000)
    window_interval_s: float = Field(default=0.0, ge=0)
    exposure_ms: float | None = Field(default=None, gt=0)
    n_planes: int = Field(default=1, ge=1)
    z_step_um: float | None = Field(default=None, gt=0)
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

    def for_setup(self, setup: Any) -> AcquisitionPlan:
        """This plan with ``z_step_um`` set for ``setup`` (a modality's ``optics`` and
        ``illumination``) when it is None: the Nyquist step of the 3D SIM axial passband
        (:func:`~nstm_acquire.physics.sim.illumination.sim3d_nyquist_z_step_um`, with the
        pattern's finest ``|k|`` when the illumination gives it)."""
        if self.modality != "sim3d" or self.z_step_um is not None:
            return self
        return self.model_copy(update={"z_step_um": default_z_step_um(setup.optics, setup.illumination)})


def default_z_step_um(optics: Optics, illumination: Any = None) -> float:
    """The Nyquist plane spacing (µm) of three-beam 3D SIM through ``optics`` with
    ``illumination`` (a :class:`~nstm_acquire.physics.sim.illumination.SimIllumination`: its
    excitation wavelength and largest ``|k_per_um|``; None or without ``k_per_um``: the
    default pattern at 0.85 of the cut-off, 488 nm excitation), rounded down to 1 nm."""
    excitation = float(getattr(illumination, "excitation_wavelength_um", None) or 0.488)
    k_per_um = getattr(illumination, "k_per_um", None)
    k = max(math.hypot(*kk) for kk in k_per_um) if k_per_um else None
    step = sim3d_nyquist_z_step_um(optics, excitation, k)
    return math.floor(step * 1000.0) / 1000.0


def plane_positions_um(plan: AcquisitionPlan) -> np.ndarray:
    """Absolute focus positions (µm) of the planes of a stack, increasing."""
    if plan.z_step_um is None:
        if plan.n_planes == 1:
            return np.array([plan.z_centre_um])
        raise ValueError(
            "z_step_um is not set: give it, or set the optics' Nyquist step with plan.for_setup(setup)"
        )
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
