"""LED-array differential phase contrast: illumination, transfer functions, forward model, Tikhonov.

The names below are imported on first use, so that the illumination model (numpy only) can be
used without loading JAX: the store layout validates a store's ``illumination`` with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstm_acquire._lazy import lazy_exports

if TYPE_CHECKING:
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

_MODULE_OF = {
    "DpcForward": "forward",
    "dpc_normalise": "forward",
    "dpc_render": "forward",
    "dpc_tikhonov": "forward",
    "dpc_transfer_functions": "forward",
    "DpcIllumination": "illumination",
    "LedArrayGeometry": "illumination",
    "brightfield_leds": "illumination",
    "dpc_half_circle_patterns": "illumination",
}

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


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals(), __all__)
