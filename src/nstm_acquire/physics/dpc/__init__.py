"""LED-array differential phase contrast: illumination, transfer functions, forward model, Tikhonov."""

from nstm_acquire.physics.dpc.forward import (
    DpcForward,
    dpc_normalise,
    dpc_render,
    dpc_tikhonov,
    dpc_transfer_functions,
)
from nstm_acquire.physics.dpc.illumination import (
    DpcIllumination,
    LedArrayGeometry,
    brightfield_leds,
    dpc_half_circle_patterns,
)

__all__ = [
    "DpcForward",
    "DpcIllumination",
    "LedArrayGeometry",
    "brightfield_leds",
    "dpc_half_circle_patterns",
    "dpc_normalise",
    "dpc_render",
    "dpc_tikhonov",
    "dpc_transfer_functions",
]
