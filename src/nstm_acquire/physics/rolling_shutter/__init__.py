"""Rolling-shutter lensless (DiffuserCam) imaging: row timing, forward model, conventional baselines.

The names below are imported on first use, so that the row timing (numpy only) can be used
without loading JAX. See ``docs/rolling_shutter.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstm_acquire._lazy import lazy_exports

if TYPE_CHECKING:
    from nstm_acquire.physics.rolling_shutter.deconvolution import (
        anisotropic_tv,
        fista_tv3d,
        prox_tv_nonnegative,
        tikhonov_deconvolution,
    )
    from nstm_acquire.physics.rolling_shutter.forward import (
        LenslessConvolution,
        RollingShutterForward,
        hat_weights,
    )
    from nstm_acquire.physics.rolling_shutter.shots import LenslessShots
    from nstm_acquire.physics.rolling_shutter.timing import ReadoutDirection, RollingShutterReadout, RowTiming

_MODULE_OF = {
    "anisotropic_tv": "deconvolution",
    "fista_tv3d": "deconvolution",
    "prox_tv_nonnegative": "deconvolution",
    "tikhonov_deconvolution": "deconvolution",
    "LenslessConvolution": "forward",
    "RollingShutterForward": "forward",
    "hat_weights": "forward",
    "LenslessShots": "shots",
    "ReadoutDirection": "timing",
    "RollingShutterReadout": "timing",
    "RowTiming": "timing",
}

__all__ = [
    "LenslessConvolution",
    "LenslessShots",
    "ReadoutDirection",
    "RollingShutterForward",
    "RollingShutterReadout",
    "RowTiming",
    "anisotropic_tv",
    "fista_tv3d",
    "hat_weights",
    "prox_tv_nonnegative",
    "tikhonov_deconvolution",
]

__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals(), __all__)
