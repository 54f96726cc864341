"""The two coordinate networks of the NSTM and how they make the scene at a time.

* motion network ``f_m(t, r) -> d``: hash embedding of (t, [z,] y, x), small MLP, displacement
  in output pixels (planes along z);
* scene network ``f_s(r) -> o``: hash embedding of ([z,] y, x), MLP, ``C`` channels;
* the scene at time ``t``: ``o(r, t) = f_s(r + f_m(t, r))`` (FORMAT.md's ``motion``).

Coordinates are output-grid pixel indices (pixel ``i`` at ``i``), time is normalised to
``[-1, 1]`` over the window (:class:`TimeMap`). Parameters are a plain pytree
``{"scene": {"tables", "mlp"}, "motion": {"tables", "mlp"}}`` so optax and
``jax.tree_util`` handle them directly; :class:`NSTMModel` holds only static structure.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.encoding import (
    GridEncodingConfig,
    LookupPlan,
    coarse_to_fine_weights,
    encode,
    encode_planned,
    level_table_sizes,
    make_lookup,
)
from nstm_acquire.nstm.warp import resample_linear, upsample_linear

__all__ = ["NSTMModel", "TimeMap", "init_mlp", "mlp_apply"]

Params = dict[str, Any]

_ACTIVATIONS = {
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
}


def uniform_arrays(key: jax.Array, shapes: Sequence[tuple[int, ...]], limits: Sequence[float]) -> list[jax.Array]:
    """float32 arrays of ``shapes``, each uniform in ±its ``limit``, from one random draw (one
    compiled draw, not one per array: the draws dominate a model's compile time)."""
    sizes = [int(np.prod(s)) for s in shapes]
    u = jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0)
    out, start = [], 0
    for shape, size, limit in zip(shapes, sizes, limits):
        out.append(u[start : start + size].reshape(shape) * np.float32(limit))
        start += size
    return out


def _mlp_shapes(sizes: Sequence[int]) -> tuple[list[tuple[int, int]], list[float]]:
    shapes = list(zip(sizes[:-1], sizes[1:]))
    return shapes, [float(np.sqrt(6.0 / (n_in + n_out))) for n_in, n_out in shapes]


def _mlp_layers(weights: Sequence[jax.Array]) -> list[dict[str, jax.Array]]:
    return [{"w": w, "b": jnp.zeros((w.shape[1],), jnp.float32)} for w in weights]


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> list[dict[str, jax.Array]]:
    """Glorot-uniform weights and zero biases for a dense chain ``sizes[0] -> ... -> sizes[-1]``."""
    return _mlp_layers(uniform_arrays(key, *_mlp_shapes(sizes)))


def mlp_apply(layers: list[dict[str, jax.Array]], x: jax.Array, activation: str) -> jax.Array:
    """Dense layers with ``activation`` between them (none after the last). ``x``: (N, in)."""
    act = _ACTIVATIONS[activation]
    for layer in layers[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    last = layers[-1]
    return x @ last["w"] + last["b"]


@dataclasses.dataclass(frozen=True)
class TimeMap:
    """Maps acquisition times (s) onto the motion network's time axis ``[-1, 1]``."""

    t_start_s: float
    t_end_s: float

    @classmethod
    def for_times(cls, times_s: np.ndarray, margin: float = 0.25) -> TimeMap:
        """The window's shot times plus ``margin`` x their span on each side (so the motion can
        be evaluated a little before the first and after the last shot, e.g. to join windows)."""
        t = np.asarray(times_s, dtype=np.float64)
        t0, t1 = float(np.min(t)), float(np.max(t))
        if not np.isfinite([t0, t1]).all():
            raise ValueError("times_s contains NaN or infinite values (an incomplete window?)")
        span = t1 - t0
        if span < 1e-9:  # a single time: any span works
            return cls(t0 - 0.5, t0 + 0.5)
        return cls(t0 - margin * span, t1 + margin * span)

    def normalise(self, times_s: np.ndarray) -> jax.Array:
        """Times (s, any float) -> ``[-1, 1]`` over the window; computed in float64 so hours
        of acquisition keep microsecond resolution, then cast to float32."""
        mid = 0.5 * (self.t_start_s + self.t_end_s)
        half = 0.5 * (self.t_end_s - self.t_start_s)
        return jnp.asarray((np.asarray(times_s, np.float64) - mid) / half, jnp.float32)


class NSTMModel:
    """Static structure of an NSTM for one output grid.

    Parameters
    ----------
    config
        Model hyper-parameters.
    scene_shape
        Spatial output grid: ``(Y, X)`` or ``(Z, Y, X)`` (output pixels / planes).
    channels
        Scene channels ``C`` (DPC 2: absorption, phase; SIM 1: density).
    motion_dims
        Displacement components (2: dy, dx; 3: dz, dy, dx).
    nonnegative
        Pass the scene network's output through a softplus (fluorescence density >= 0).
    n_shots
        Render times (shots) per window; with ``motion.temporal_cells_per_shot`` it sets the
        motion's finest temporal resolution (0: not known, the configured one alone).
    """

    def __init__(
        self,
        config: NSTMConfig,
        scene_shape: tuple[int, ...],
        channels: int,
        motion_dims: int | None = None,
        nonnegative: bool = False,
        n_shots: int = 0,
    ) -> None:
        if len(scene_shape) not in (2, 3):
            raise ValueError(f"scene_shape={scene_shape} must be (Y, X) or (Z, Y, X)")
        self.config = config
        self.scene_shape = tuple(int(s) for s in scene_shape)
        self.ndim = len(self.scene_shape)
        self.channels = int(channels)
        self.motion_dims = int(motion_dims or self.ndim)
        self.nonnegative = bool(nonnegative)
        self.n_shots = int(n_shots)
        sc, mc = config.scene, config.motion
        # ---- scene grid: output pixels, padded by a margin on each side
        lateral = self.scene_shape[-2:]
        self.margin_px = tuple(int(np.ceil(sc.margin_fraction * n)) for n in lateral)
        lo: list[float] = [-m for m in self.margin_px]
        hi: list[float] = [n - 1 + m for n, m in zip(lateral, self.margin_px, strict=True)]
        base = [sc.base_cells_per_px * (h - low) for low, h in zip(lo, hi, strict=True)]
        fine = [sc.finest_cells_per_px * (h - low) for low, h in zip(lo, hi, strict=True)]
        if self.ndim == 3:
            nz = self.scene_shape[0]
            lo = [-0.5] + lo
            hi = [nz - 0.5] + hi
            base = [max(1.0, sc.axial_base_cells_per_plane * nz)] + base
            fine = [max(1.0, sc.axial_finest_cells_per_plane * nz)] + fine
        self.scene_encoding = GridEncodingConfig(
            n_dims=self.ndim,
            levels=sc.levels,
            features=sc.features,
            log2_table_size=sc.log2_table_size,
            base_resolution=tuple(max(1.0, b) for b in base),
            finest_resolution=tuple(max(1.0, b, f) for b, f in zip(base, fine)),
            domain_min=tuple(float(v) for v in lo),
            domain_max=tuple(float(v) for v in hi),
        )
        # ---- motion grid: (t, [z,] y, x)
        field_px = max(lateral)
        finest = mc.spatial_finest_cells or max(mc.spatial_min_cells, round(0.012 * field_px))
        if mc.spatial_finest_cells is None and mc.spatial_max_cell_px is not None:
            finest = max(finest, math.ceil(field_px / mc.spatial_max_cell_px))
        m_lo = [-1.0] + ([-0.5] if self.ndim == 3 else []) + [-0.5, -0.5]
        m_hi = [1.0] + ([self.scene_shape[0] - 0.5] if self.ndim == 3 else []) + [
            lateral[0] - 0.5,
            lateral[1] - 0.5,
        ]
        m_base = [mc.temporal_base_cells] + [mc.spatial_base_cells] * self.ndim
        temporal = mc.temporal_finest_cells
        if mc.temporal_cells_per_shot is not None:  # a window of many shots needs more cells in time
            temporal = max(temporal, mc.temporal_cells_per_shot * self.n_shots)
        self.temporal_finest_cells = float(temporal)
        m_fine = [temporal] + [finest] * self.ndim
        self.motion_encoding = GridEncodingConfig(
            n_dims=self.ndim + 1,
            levels=mc.levels,
            features=mc.features,
            log2_table_size=mc.log2_table_size,
            base_resolution=tuple(float(b) for b in m_base),
            finest_resolution=tuple(float(max(b, f)) for b, f in zip(m_base, m_fine)),
            domain_min=tuple(m_lo),
            domain_max=tuple(m_hi),
        )
        if mc.output_scale == "field":
            self.motion_scale = jnp.asarray(
                ([self.scene_shape[0]] if self.motion_dims == 3 else []) + list(lateral), jnp.float32
            )[-self.motion_dims :]
        else:
            self.motion_scale = jnp.ones((self.motion_dims,), jnp.float32)
        # ---- fixed coordinates
        axes = [np.arange(n, dtype=np.float32) for n in self.scene_shape]
        self._grid_axes = axes
        self.output_coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, self.ndim)
        stride = mc.stride_px
        self._motion_axes = [a if (i == 0 and self.ndim == 3) else a[::stride] for i, a in enumerate(axes)]
        if stride > 1:  # make sure the last pixel is covered for interpolation
            self._motion_axes = [
                m if m[-1] == a[-1] else np.append(m, a[-1]) for m, a in zip(self._motion_axes, axes)
            ]
        self.motion_grid_shape = tuple(len(a) for a in self._motion_axes)
        self.motion_coords = np.stack(np.meshgrid(*self._motion_axes, indexing="ij"), axis=-1).reshape(
            -1, self.ndim
        )
        padded_axes = [np.arange(lo_, hi_ + 0.5, 1.0, dtype=np.float32) for lo_, hi_ in zip(lo, hi)]
        if self.ndim == 3:
            padded_axes[0] = axes[0]
        self._padded_axes = padded_axes
        self.padded_shape = tuple(len(a) for a in padded_axes)
        self.padded_origin = tuple(float(a[0]) for a in padded_axes)
        self._scene_plan: LookupPlan | None = None

    # ------------------------------------------------------------------ init
    def init(self, key: jax.Array) -> Params:
        """Random networks for ``key``: tables uniform in ±``init_scale`` (as :func:`init_tables`),
        Glorot-uniform weights and zero biases (as :func:`init_mlp`), all from one random draw in
        one compiled call (drawn op by op, the twenty-odd arrays each compiled on their own:
        3.8 s of a 37 s cold 2D SIM window)."""
        return _compiled_init(self)(key)

    def _init_eager(self, key: jax.Array) -> Params:
        sc, mc = self.config.scene, self.config.motion
        parts = {  # (shapes, limits) of the scene's and the motion's tables and weights
            "scene": (self.scene_encoding, [sc.levels * sc.features] + [sc.hidden] * sc.layers + [self.channels]),
            "motion": (self.motion_encoding, [mc.levels * mc.features] + [mc.hidden] * mc.layers + [self.motion_dims]),
        }
        shapes: list[tuple[int, ...]] = []
        limits: list[float] = []
        counts = []
        for enc, sizes in parts.values():
            table_shapes = [(int(n), enc.features) for n in level_table_sizes(enc)]
            mlp_shapes, mlp_limits = _mlp_shapes(sizes)
            shapes += table_shapes + mlp_shapes
            limits += [enc.init_scale] * len(table_shapes) + mlp_limits
            counts.append((len(table_shapes), len(mlp_shapes)))
        arrays = iter(uniform_arrays(key, shapes, limits))
        params: Params = {}
        for name, (n_tables, n_layers) in zip(parts, counts):
            tables = [next(arrays) for _ in range(n_tables)]
            params[name] = {"tables": tables, "mlp": _mlp_layers([next(arrays) for _ in range(n_layers)])}
        return params

    def level_weights(self, alpha: jax.Array | float) -> tuple[jax.Array, jax.Array]:
        """Coarse-to-fine weights of the scene and motion levels at granularity ``alpha``."""
        return (
            coarse_to_fine_weights(alpha, self.config.scene.levels),
            coarse_to_fine_weights(alpha, self.config.motion.levels),
        )

    # ------------------------------------------------------------------ scene
    def scene_plan(self) -> LookupPlan:
        """Precomputed lookups of the padded scene grid (made once, reused every step)."""
        if self._scene_plan is None:
            self._scene_plan = make_lookup(None, self.scene_encoding, grid_axes=self._padded_axes)
        return self._scene_plan

    def scene_at_coords(self, params: Params, coords: jax.Array, weights: jax.Array) -> jax.Array:
        """Scene network at arbitrary coordinates ``(N, ndim)`` -> ``(N, C)``."""
        feats = encode(params["scene"]["tables"], coords, self.scene_encoding, weights)
        return self._output(mlp_apply(params["scene"]["mlp"], feats, self.config.scene.activation))

    def _output(self, out: jax.Array) -> jax.Array:
        return jax.nn.softplus(out) if self.nonnegative else out

    def scene_on_padded_grid(self, params: Params, weights: jax.Array, plan: LookupPlan) -> jax.Array:
        """Scene network on the padded grid -> ``(C, *padded_shape)``."""
        feats = encode_planned(params["scene"]["tables"], plan, weights)
        out = self._output(mlp_apply(params["scene"]["mlp"], feats, self.config.scene.activation))
        return jnp.moveaxis(out.reshape(*self.padded_shape, self.channels), -1, 0)

    def template(self, params: Params, alpha: float = 1.0, coords: jax.Array | None = None) -> jax.Array:
        """The time-independent template on the output grid -> ``(C, *scene_shape)``.

        ``coords``: the output grid's coordinates (:attr:`output_coords`), given as an argument
        when jitting (closed over, XLA folds the encoding over them at compile time)."""
        w_s, _ = self.level_weights(alpha)
        grid = jnp.asarray(self.output_coords) if coords is None else coords
        out = self.scene_at_coords(params, grid, w_s)
        return jnp.moveaxis(out.reshape(*self.scene_shape, self.channels), -1, 0)

    # ----------------------------------------------------------------- motion
    def motion(self, params: Params, tn: jax.Array, weights: jax.Array) -> jax.Array:
        """Displacement at normalised times ``tn`` (K,) -> ``(K, D, *scene_shape)`` output pixels."""
        coords = jnp.asarray(self.motion_coords)
        n = coords.shape[0]
        k = tn.shape[0]
        txyz = jnp.concatenate(
            [jnp.broadcast_to(tn[:, None, None], (k, n, 1)), jnp.broadcast_to(coords[None], (k, n, self.ndim))],
            axis=-1,
        ).reshape(k * n, self.ndim + 1)
        feats = encode(params["motion"]["tables"], txyz, self.motion_encoding, weights)
        d = mlp_apply(params["motion"]["mlp"], feats, self.config.motion.activation) * self.motion_scale
        d = jnp.moveaxis(d.reshape(k, *self.motion_grid_shape, self.motion_dims), -1, 1)
        if self.motion_grid_shape != self.scene_shape:
            d = upsample_linear(d, self._motion_axes, self._grid_axes)
        return d

    def with_motion_offset(self, params: Params, offset_px: jax.Array | np.ndarray) -> Params:
        """``params`` with a constant displacement ``offset_px`` ``(D,)`` (output pixels, the
        motion's axis order) added to the motion everywhere and at every time: the motion MLP's
        output bias moved by ``offset_px`` over the output scale. Exact; nothing else changes."""
        offset = jnp.asarray(offset_px, jnp.float32).reshape(self.motion_dims)
        layers = list(params["motion"]["mlp"])
        last = layers[-1]
        layers[-1] = {**last, "b": last["b"] + offset / self.motion_scale}
        return {**params, "motion": {**params["motion"], "mlp": layers}}

    # -------------------------------------------------------------- rendering
    def scenes(
        self,
        params: Params,
        tn: jax.Array,
        alpha: jax.Array | float,
        plan: LookupPlan | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Scenes at normalised times ``tn`` (K,): ``((K, C, *scene_shape), motion (K, D, *scene_shape))``."""
        w_s, w_m = self.level_weights(alpha)
        if self.config.fit.scene_sampling == "grid":
            grid = self.scene_on_padded_grid(params, w_s, plan if plan is not None else self.scene_plan())
            return self.warp_grid(params, grid, tn, w_m)
        warped, disp = self._warped_coords(params, tn, w_m)
        k = tn.shape[0]
        coords = jnp.moveaxis(warped, 1, -1).reshape(-1, self.ndim)
        vals = self.scene_at_coords(params, coords, w_s)
        return jnp.moveaxis(vals.reshape(k, *self.scene_shape, self.channels), -1, 1), disp

    def warp_grid(
        self, params: Params, grid: jax.Array, tn: jax.Array, weights: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The padded-grid scene ``grid`` (:meth:`scene_on_padded_grid`) warped to normalised times
        ``tn`` (K,) with the motion at level weights ``weights``: ``(scenes, motion)`` as :meth:`scenes`."""
        warped, disp = self._warped_coords(params, tn, weights)
        origin = jnp.asarray(self.padded_origin, jnp.float32).reshape(1, self.ndim, *([1] * self.ndim))
        # every shot's coordinates in one resampling: (C, K, *scene_shape) -> (K, C, ...)
        return jnp.moveaxis(resample_linear(grid, jnp.moveaxis(warped - origin, 1, 0)), 1, 0), disp

    def _warped_coords(self, params: Params, tn: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Where every output pixel samples the template at times ``tn``: ``(K, ndim, *scene_shape)``
        output-grid coordinates, and the motion ``(K, D, *scene_shape)``."""
        disp = self.motion(params, tn, weights)
        k = tn.shape[0]
        base = jnp.stack(jnp.meshgrid(*[jnp.asarray(a) for a in self._grid_axes], indexing="ij"))
        if self.motion_dims < self.ndim:  # lateral motion only in a volume
            disp_full = jnp.concatenate([jnp.zeros((k, 1, *self.scene_shape)), disp], axis=1)
        else:
            disp_full = disp
        return base[None] + disp_full, disp


@functools.lru_cache(maxsize=16)
def _compiled_init(model: NSTMModel) -> Callable[[jax.Array], Params]:
    return jax.jit(model._init_eager)
