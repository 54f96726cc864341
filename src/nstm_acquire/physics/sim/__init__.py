"""Structured illumination (SIM): the pattern, OTFs, forward models, pattern estimation, Wiener.

In this package "sim" always means structured illumination; the simulated microscope is
:mod:`nstm_acquire.hardware.simulated`.

The names below are imported on first use, so that the illumination model (numpy only) can be
used without loading JAX and SciPy: the store layout validates a store's ``illumination`` with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstm_acquire._lazy import lazy_exports

if TYPE_CHECKING:
    from nstm_acquire.physics.sim.estimation import (
        SimEstimate,
        SimParameterError,
        SimParameterPolicy,
        estimate_sim_parameters,
        resolve_sim_parameters,
    )
    from nstm_acquire.physics.sim.forward import Sim2DForward, Sim3DForward, Sim3DFramesForward, frame_time_bins
    from nstm_acquire.physics.sim.illumination import (
        SimIllumination,
        default_sim_illumination,
        illumination_pattern,
    )
    from nstm_acquire.physics.sim.otf import MeasuredPsf, load_psf
    from nstm_acquire.physics.sim.wiener import wiener_sim_2d, wiener_sim_3d

_MODULE_OF = {
    "SimEstimate": "estimation",
    "SimParameterError": "estimation",
    "SimParameterPolicy": "estimation",
    "estimate_sim_parameters": "estimation",
    "resolve_sim_parameters": "estimation",
    "Sim2DForward": "forward",
    "Sim3DForward": "forward",
    "Sim3DFramesForward": "forward",
    "frame_time_bins": "forward",
    "SimIllumination": "illumination",
    "default_sim_illumination": "illumination",
    "illumination_pattern": "illumination",
    "MeasuredPsf": "otf",
    "load_psf": "otf",
    "wiener_sim_2d": "wiener",
    "wiener_sim_3d": "wiener",
}

__all__ = [
    "MeasuredPsf",
    "Sim2DForward",
    "Sim3DForward",
    "Sim3DFramesForward",
    "SimEstimate",
    "SimIllumination",
    "SimParameterError",
    "SimParameterPolicy",
    "default_sim_illumination",
    "estimate_sim_parameters",
    "frame_time_bins",
    "illumination_pattern",
    "load_psf",
    "resolve_sim_parameters",
    "wiener_sim_2d",
    "wiener_sim_3d",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals(), __all__)
