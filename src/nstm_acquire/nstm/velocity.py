"""A motion that is the flow of one stationary velocity field: where a cold fit finds a deformation.

The NSTM's motion network gives a displacement for every ``(x, t)`` on its own. From zero, a fit
that has to discover a large deformation (a DPC swirl turning its centre by 2.7 rad within one
four-shot window) settles on a wrong motion, although the right one explains the shots better
(docs/model.md, "DPC swirls: a stationary velocity field start"). A sample whose velocity does
not change within the window -- a translation, rotation, shear or swirl at a constant rate --
moves along the flow of one 2D field ``v(x)``: the point at ``r`` at (normalised) time ``t`` is
at ``Φ_{-t}(r)`` at the window's reference time ``t = 0``, where ``Φ_s`` follows ``dx/ds = v(x)``
for a time ``s``. Fitting ``v`` on a coarse grid of control points (a few dozen numbers) instead
of the motion network restricts the search to motions that are consistent in time, and the fit
from zero finds them.

:class:`VelocityFieldModel` is an :class:`~nstm_acquire.nstm.model.NSTMModel` whose motion is
that flow: the scene network is the NSTM's; the motion parameters are ``{"velocity": [(2, gy, gx),
...]}``, levels of control points (coarse to fine) summed into one field at the finest points, output
pixels per unit of normalised time (:class:`~nstm_acquire.nstm.model.TimeMap`), spaced evenly from
the first to the last output pixel, interpolated bilinearly (constant beyond them) and integrated
with midpoint (second-order Runge-Kutta) steps. Any fit runs on it
(:func:`nstm_acquire.nstm.fit.fit`); :mod:`nstm_acquire.recon.start` fits it first where a
window's shots share no common translation and starts the NSTM's motion network from its flow.
2D scenes only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.model import NSTMModel, Params
from nstm_acquire.nstm.warp import upsample_linear

__all__ = ["VelocityFieldModel", "build_velocity_model", "control_grid_shape"]


def control_grid_shape(scene_shape: tuple[int, int], spacing_px: float) -> tuple[int, int]:
    """Control points ``(Gy, Gx)`` about ``spacing_px`` output pixels apart over a 2D field, at
    least 2 per axis (the first and the last pixel)."""
    if spacing_px <= 0:
        raise ValueError(f"spacing_px={spacing_px} must be positive (output pixels between control points)")
    return tuple(max(2, int(round((n - 1) / spacing_px)) + 1) for n in scene_shape)  # type: ignore[return-value]


class VelocityFieldModel(NSTMModel):
    """An NSTM whose motion is the flow of a stationary velocity field (see the module docstring).

    Parameters are those of :class:`~nstm_acquire.nstm.model.NSTMModel` (2D ``scene_shape``,
    ``motion_dims`` 2) and:

    spacing_px
        Output pixels between the velocity's control points (:func:`control_grid_shape`).
    integration_steps
        Midpoint steps from the reference time to a row's time.
    levels
        Levels of control points, coarse to fine, each twice as far apart as the next, summed into
        one field at the finest points (:meth:`control_velocity`): Adam then moves the field's
        broad parts as fast as its details (one level lost the 24 px DPC swirl from one seed in
        three, three found it from every seed tried; docs/model.md).
    """

    def __init__(
        self,
        config: NSTMConfig,
        scene_shape: tuple[int, ...],
        channels: int,
        motion_dims: int | None = None,
        nonnegative: bool = False,
        n_shots: int = 0,
        spacing_px: float = 25.0,
        integration_steps: int = 8,
        levels: int = 3,
    ) -> None:
        super().__init__(config, scene_shape, channels, motion_dims, nonnegative, n_shots)
        if self.ndim != 2 or self.motion_dims != 2:
            raise ValueError(
                f"a velocity-field motion is 2D only (scene_shape={self.scene_shape}, motion_dims="
                f"{self.motion_dims}); set fit.deformation_start='zero' for this modality"
            )
        if integration_steps < 1:
            raise ValueError(f"integration_steps={integration_steps} must be at least 1")
        if levels < 1:
            raise ValueError(f"levels={levels} must be at least 1")
        field = (self.scene_shape[0], self.scene_shape[1])
        self.control_shape = control_grid_shape(field, spacing_px)
        # coarse to fine, each level's control points twice as far apart as the next one's
        self.level_shapes = [control_grid_shape(field, spacing_px * 2 ** (levels - 1 - i)) for i in range(levels)]
        self._control_axes = [np.linspace(0.0, n - 1.0, g) for n, g in zip(field, self.control_shape, strict=True)]
        self.integration_steps = int(integration_steps)

    def init(self, key: jax.Array) -> Params:
        """The NSTM's random scene network for ``key`` and a zero velocity (no motion)."""
        levels = [jnp.zeros((2, *g), jnp.float32) for g in self.level_shapes]
        return {"scene": super().init(key)["scene"], "motion": {"velocity": levels}}

    def control_velocity(self, levels: list[jax.Array]) -> jax.Array:
        """The field at the finest control points ``(2, Gy, Gx)`` from its levels (coarse to
        fine, each ``(2, gy, gx)``, interpolated bilinearly onto the finest points and summed):
        one field, parameterised so that Adam moves its broad parts as fast as its details."""
        total = jnp.zeros((2, *self.control_shape), jnp.float32)
        for level in levels:
            axes = [np.linspace(0.0, n - 1.0, g) for n, g in zip(self.scene_shape, level.shape[1:], strict=True)]
            total = total + upsample_linear(level, axes, self._control_axes)
        return total

    def velocity_at(self, velocity: jax.Array, points: jax.Array) -> jax.Array:
        """The field ``velocity`` ``(2, Gy, Gx)`` (finest control points) at ``points``
        ``(2, ...)`` (output pixels, y x) -> ``(2, ...)``: bilinear between control points, the
        nearest one's beyond them."""
        scale = [(g - 1) / max(n - 1, 1) for g, n in zip(self.control_shape, self.scene_shape, strict=True)]
        at = [points[0] * scale[0], points[1] * scale[1]]
        return jnp.stack([map_coordinates(velocity[d], at, order=1, mode="nearest") for d in range(2)])

    def flow(self, velocity: jax.Array, points: jax.Array, duration: jax.Array) -> jax.Array:
        """``Φ_duration(points)``: where ``points`` ``(2, ...)`` are carried by the field after
        ``duration`` (normalised time units; negative: backwards)."""
        h = duration / self.integration_steps
        x = points
        for _ in range(self.integration_steps):
            x = x + h * self.velocity_at(velocity, x + 0.5 * h * self.velocity_at(velocity, x))
        return x

    def motion(self, params: Params, tn: jax.Array, weights: jax.Array | None = None) -> jax.Array:
        """Displacement at normalised times ``tn`` (K,) -> ``(K, 2, Y, X)`` output pixels:
        ``d(r, t) = Φ_{-t}(r) - r`` (the template is the sample at ``t = 0``), integrated on the
        motion grid (``motion.stride_px``) and interpolated as the NSTM's. ``weights`` (the
        motion network's coarse-to-fine weights) are not used: every control-point level is on
        from the first step."""
        velocity = self.control_velocity(params["motion"]["velocity"])
        base = jnp.stack(jnp.meshgrid(*[jnp.asarray(a) for a in self._motion_axes], indexing="ij"))
        d = jax.vmap(lambda t: self.flow(velocity, base, -t) - base)(jnp.asarray(tn, jnp.float32))
        if self.motion_grid_shape != self.scene_shape:
            d = upsample_linear(d, self._motion_axes, self._grid_axes)
        return d

    def with_motion_offset(self, params: Params, offset_px: jax.Array | np.ndarray) -> Params:
        raise NotImplementedError("a velocity-field motion has no constant offset; move the NSTM's motion instead")


@functools.lru_cache(maxsize=8)
def _cached(
    config_json: str, scene_shape: tuple[int, ...], channels: int, nonnegative: bool, n_shots: int, spacing_px: float
) -> VelocityFieldModel:
    return VelocityFieldModel(
        NSTMConfig.model_validate_json(config_json), scene_shape, channels, 2, nonnegative, n_shots, spacing_px
    )


def build_velocity_model(
    config: NSTMConfig,
    scene_shape: tuple[int, ...],
    channels: int,
    nonnegative: bool = False,
    n_shots: int = 0,
    spacing_px: float = 25.0,
) -> VelocityFieldModel:
    """The (cached: one compiled fit per structure) velocity-field model for a configuration."""
    return _cached(
        config.model_dump_json(), tuple(int(s) for s in scene_shape), int(channels), bool(nonnegative), int(n_shots),
        float(spacing_px),
    )
