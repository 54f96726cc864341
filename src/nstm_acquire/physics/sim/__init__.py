"""Structured illumination (SIM): the pattern, OTFs, forward models, pattern estimation, Wiener.

In this package "sim" always means structured illumination; the simulated microscope is
:mod:`nstm_acquire.hardware.simulated`.
"""

from nstm_acquire.physics.sim.estimation import (
    SimEstimate,
    SimParameterError,
    estimate_sim_parameters,
    resolve_sim_parameters,
)
from nstm_acquire.physics.sim.forward import Sim2DForward, Sim3DForward
from nstm_acquire.physics.sim.illumination import (
    SimIllumination,
    default_sim_illumination,
    illumination_pattern,
)
from nstm_acquire.physics.sim.otf import MeasuredPsf, load_psf
from nstm_acquire.physics.sim.wiener import wiener_sim_2d, wiener_sim_3d

__all__ = [
    "MeasuredPsf",
    "Sim2DForward",
    "Sim3DForward",
    "SimEstimate",
    "SimIllumination",
    "SimParameterError",
    "default_sim_illumination",
    "estimate_sim_parameters",
    "illumination_pattern",
    "load_psf",
    "resolve_sim_parameters",
    "wiener_sim_2d",
    "wiener_sim_3d",
]
