"""Multiresolution hash embedding (Müller et al. 2022) for the Neural Space-Time Model, in JAX.

A coordinate ``x`` (``(n_dims,)``, in the units of the domain: µm for space, s for time) is
mapped, at each of ``L`` levels, onto a regular grid of ``res_l`` cells per axis spanning
``[domain_min, domain_max]``. The ``2**n_dims`` vertices of the cell holding ``x`` each own a
row of ``F`` trainable features in that level's table; the level's output is the multilinear
interpolation of those rows. The ``L`` outputs are concatenated level-major into ``(L * F,)``.

Indexing of the vertex ``v`` (integers, ``0 <= v_a <= res_a``):

* dense level (``prod(res + 1) <= 2**T``): row-major index over the ``(res + 1)`` vertex grid,
  one table row per vertex, no collisions;
* hashed level: ``XOR_a (v_a * prime_a) mod 2**T`` in uint32 arithmetic with the primes
  ``(1, 2654435761, 805459861, 3674653429)`` for axes ``0, 1, 2, 3``.

Coordinates outside the domain are clamped to its edge (in floating point, before any integer
cast), so a negative coordinate can never wrap around through an unsigned cast.

Two ways to evaluate:

* :func:`encode` for coordinates that change from call to call (differentiable with respect to
  the tables and the coordinates; the table gradient is one segment sum per level);
* :func:`make_lookup` + :func:`encode_planned` for coordinates that stay fixed over a fit (for
  example a pixel grid). The plan precomputes vertex rows and interpolation weights and picks,
  per level, the fastest evaluation measured on CPU (see ``benchmarks/encoding_microbench.py``):

  - ``"separable"`` (coordinates on a regular grid): the two taps of the last axis are gathered
    straight from the table for the touched vertices only, then the other axes are
    interpolated one at a time, with a small dense matrix product (few vertices) or a two-tap
    row gather (many vertices); ``separable="grid"`` instead gathers the whole touched vertex
    grid ``G`` and interpolates every axis (``A_y @ G @ A_x^T`` in 2D). Backward passes are
    matrix products and row-wise segment sums, no per-point scatter;
  - ``"gather"``: per-point corner gathers whose backward is a single segment sum (used for
    scattered coordinates and for levels as fine as the query grid).

Both return ``(N, L * F)`` behind an optimisation barrier (see :func:`_assemble_levels`).

Axis order of coordinates follows ``docs/conventions.md``: ``(y, x)``, ``(t, y, x)``,
``(z, y, x)`` or ``(t, z, y, x)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: An array of either library: the lookup helpers run on numpy (planning) and on JAX (traced).
AnyArray = jax.Array | np.ndarray

__all__ = [
    "HASH_PRIMES",
    "GridEncodingConfig",
    "LookupPlan",
    "coarse_to_fine_weights",
    "encode",
    "encode_planned",
    "grid_positions",
    "init_tables",
    "level_is_dense",
    "level_resolutions",
    "level_table_sizes",
    "make_lookup",
    "vertex_table_index",
]

#: Per-axis multipliers of the spatial hash (axis 0 gets 1), as in instant-NGP.
HASH_PRIMES: tuple[int, ...] = (1, 2654435761, 805459861, 3674653429)

_MAX_RESOLUTION = 2**24


class GridEncodingConfig(BaseModel):
    """Static description of a multiresolution hash grid.

    Attributes
    ----------
    n_dims
        Number of input axes: 2 ``(y, x)``, 3 ``(t, y, x)`` or ``(z, y, x)``, 4 ``(t, z, y, x)``.
    levels
        Number of resolution levels ``L``.
    features
        Features per level ``F``; the encoding has ``L * F`` outputs.
    log2_table_size
        ``T``: a hashed level has ``2**T`` rows; a level whose ``(res + 1)**d`` vertices fit in
        ``2**T`` rows is stored densely instead.
    base_resolution
        Cells per axis at level 0 (length ``n_dims``).
    finest_resolution
        Cells per axis at level ``L - 1``; per axis the resolution grows geometrically in
        between (rounded to the nearest integer).
    domain_min, domain_max
        Coordinates (domain units: µm, s, ...) mapped onto the grid's first and last vertex
        per axis. Coordinates outside are clamped to the edge.
    init_scale
        Tables start uniform in ``(-init_scale, init_scale)``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_dims: int = Field(ge=2, le=4, description="input axes: 2 (y,x), 3 (t,y,x)/(z,y,x), 4")
    levels: int = Field(default=8, ge=1, le=64, description="resolution levels L")
    features: int = Field(default=2, ge=1, le=64, description="features per level F")
    log2_table_size: int = Field(default=16, ge=2, le=30, description="log2 of hashed table rows")
    base_resolution: tuple[float, ...] = Field(description="cells per axis at level 0")
    finest_resolution: tuple[float, ...] = Field(description="cells per axis at level L-1")
    domain_min: tuple[float, ...] = Field(description="coordinate of the first vertex per axis")
    domain_max: tuple[float, ...] = Field(description="coordinate of the last vertex per axis")
    init_scale: float = Field(default=1e-4, gt=0, description="half-width of the uniform init")

    @model_validator(mode="after")
    def _check_axes(self) -> GridEncodingConfig:
        for name in ("base_resolution", "finest_resolution", "domain_min", "domain_max"):
            value = getattr(self, name)
            if len(value) != self.n_dims:
                raise ValueError(
                    f"{name} has {len(value)} entries but n_dims={self.n_dims}; give one value "
                    f"per axis"
                )
            if not all(math.isfinite(v) for v in value):
                raise ValueError(f"{name}={value} must be finite numbers")
        for axis, (b, f) in enumerate(zip(self.base_resolution, self.finest_resolution)):
            if b < 1:
                raise ValueError(
                    f"base_resolution[{axis}]={b} must be at least 1 cell; raise it"
                )
            if f < b:
                raise ValueError(
                    f"finest_resolution[{axis}]={f} is below base_resolution[{axis}]={b}; the "
                    "finest level must have at least as many cells as the base level"
                )
            if f > _MAX_RESOLUTION:
                raise ValueError(
                    f"finest_resolution[{axis}]={f} exceeds {_MAX_RESOLUTION} cells; lower it"
                )
        for axis, (lo, hi) in enumerate(zip(self.domain_min, self.domain_max)):
            if not hi > lo:
                raise ValueError(
                    f"domain_max[{axis}]={hi} must be greater than domain_min[{axis}]={lo}; "
                    "swap or widen them"
                )
        return self

    @property
    def output_dim(self) -> int:
        """Length ``L * F`` of the encoding of one coordinate."""
        return self.levels * self.features


# ----------------------------------------------------------------------------------------
# Static level geometry (numpy, evaluated once per config)
# ----------------------------------------------------------------------------------------


def level_resolutions(cfg: GridEncodingConfig) -> np.ndarray:
    """Cells per axis at each level, ``(L, n_dims)`` int64.

    ``res[l, a] = round(base_a * (finest_a / base_a) ** (l / (L - 1)))`` (at least 1), so
    level 0 has ``base_resolution`` cells and level ``L - 1`` ``finest_resolution`` cells (up
    to rounding), growing geometrically in between, independently per axis. With ``L = 1``
    the single level uses ``base_resolution``.
    """
    base = np.asarray(cfg.base_resolution, dtype=np.float64)
    finest = np.asarray(cfg.finest_resolution, dtype=np.float64)
    if cfg.levels == 1:
        scales = base[None, :]
    else:
        exponent = np.arange(cfg.levels, dtype=np.float64)[:, None] / (cfg.levels - 1)
        scales = base[None, :] * (finest / base)[None, :] ** exponent
    return np.maximum(np.floor(scales + 0.5), 1).astype(np.int64)


def _vertex_count(resolution: Sequence[int]) -> int:
    return math.prod(int(r) + 1 for r in resolution)


def level_is_dense(cfg: GridEncodingConfig) -> np.ndarray:
    """``(L,)`` bool: True where the level's ``prod(res + 1)`` vertices fit in ``2**T`` rows.

    Dense levels index vertices directly (row-major), hashed levels through the XOR hash.
    """
    capacity = 2**cfg.log2_table_size
    return np.array([_vertex_count(r) <= capacity for r in level_resolutions(cfg)], dtype=bool)


def level_table_sizes(cfg: GridEncodingConfig) -> np.ndarray:
    """``(L,)`` int64: rows of each level's table (vertex count if dense, else ``2**T``)."""
    capacity = 2**cfg.log2_table_size
    return np.array(
        [min(_vertex_count(r), capacity) for r in level_resolutions(cfg)], dtype=np.int64
    )


def init_tables(cfg: GridEncodingConfig, key: jax.Array) -> list[jax.Array]:
    """Feature tables, one per level: ``(rows_l, F)`` float32, uniform in ±``init_scale``.

    ``rows_l`` is given by :func:`level_table_sizes`. All levels are drawn in one random call
    and split (one compiled draw instead of one per level: the draws dominate a model's
    compile time).
    """
    sizes = [int(n) for n in level_table_sizes(cfg)]
    rows = jax.random.uniform(
        key, (sum(sizes), cfg.features), dtype=jnp.float32, minval=-cfg.init_scale, maxval=cfg.init_scale
    )
    return list(jnp.split(rows, np.cumsum(sizes)[:-1].tolist()))


def coarse_to_fine_weights(alpha: float | jax.Array, levels: int) -> jax.Array:
    """Per-level weights of the coarse-to-fine schedule, ``(levels,)`` float32.

    ``w_l = (1 - cos(pi * clip(alpha * L - l, 0, 1))) / 2``: at ``alpha = 0`` every level is
    off, at ``alpha = 1`` every level is on, and level ``l`` ramps on while ``alpha * L``
    goes from ``l`` to ``l + 1``. ``alpha`` (dimensionless granularity) may be traced.
    """
    if levels < 1:
        raise ValueError(f"levels={levels} must be at least 1")
    ramp = jnp.clip(
        jnp.asarray(alpha, jnp.float32) * levels - jnp.arange(levels, dtype=jnp.float32), 0, 1
    )
    return (1.0 - jnp.cos(jnp.pi * ramp)) / 2.0


def _axis_scales(cfg: GridEncodingConfig) -> tuple[np.ndarray, np.ndarray]:
    """``lo`` ``(d,)`` and ``cells per domain unit`` ``(L, d)`` as float32 constants."""
    lo = np.asarray(cfg.domain_min, dtype=np.float64)
    hi = np.asarray(cfg.domain_max, dtype=np.float64)
    scale = level_resolutions(cfg).astype(np.float64) / (hi - lo)[None, :]
    return lo.astype(np.float32), scale.astype(np.float32)


def _grid_position(
    coords: AnyArray, lo: np.ndarray, scale: np.ndarray, resolution: np.ndarray, xp=jnp
) -> AnyArray:
    """Continuous vertex coordinate ``clip((x - lo) * scale, 0, res)`` (float32, cells).

    One subtraction then one product, each rounded once in float32, so the numpy version
    (``xp=np``, used for planning) and the JAX version give identical bits.
    """
    u = (coords - xp.asarray(lo, xp.float32)) * xp.asarray(scale, xp.float32)
    return xp.clip(u, xp.float32(0.0), xp.asarray(resolution, xp.float32))


def _cell_and_fraction(
    u: AnyArray, resolution: np.ndarray, xp=jnp
) -> tuple[AnyArray, AnyArray]:
    """Lower vertex (int32, ``0..res-1``) and fractional offset in ``[0, 1]`` of ``u``."""
    cell = xp.clip(xp.floor(u), xp.float32(0.0), xp.asarray(resolution - 1, xp.float32))
    return cell.astype(xp.int32), u - cell


def grid_positions(coords: jax.Array, cfg: GridEncodingConfig, level: int) -> jax.Array:
    """Continuous grid position of coordinates at one level, in cells.

    Parameters
    ----------
    coords
        ``(..., n_dims)`` coordinates in domain units.
    level
        Level index ``0 <= level < L``.

    Returns
    -------
    ``(..., n_dims)`` float32 in ``[0, res_l]`` (clamped): vertex ``k`` of axis ``a`` sits at
    ``domain_min[a] + k * (domain_max[a] - domain_min[a]) / res_l[a]``.
    """
    if not 0 <= level < cfg.levels:
        raise ValueError(f"level={level} must be in [0, {cfg.levels})")
    lo, scale = _axis_scales(cfg)
    res = level_resolutions(cfg)[level]
    return jnp.asarray(_grid_position(jnp.asarray(coords, jnp.float32), lo, scale[level], res))


def _vertex_index(
    vertices: AnyArray, resolution: np.ndarray, dense: bool, log2_table_size: int, xp=jnp
) -> AnyArray:
    """Table rows (int32) of integer vertices ``(..., d)``; see :func:`vertex_table_index`."""
    if dense:
        strides = np.cumprod(np.concatenate([[1], (resolution[::-1] + 1)[:-1]]))[::-1]
        index = vertices[..., 0] * xp.int32(strides[0])
        for axis in range(1, vertices.shape[-1]):
            index = index + vertices[..., axis] * xp.int32(strides[axis])
        return index.astype(xp.int32)
    # uint32 products wrap modulo 2**32, which keeps the low T bits of the exact product.
    unsigned = vertices.astype(xp.uint32)
    hashed = unsigned[..., 0] * xp.uint32(HASH_PRIMES[0])
    for axis in range(1, vertices.shape[-1]):
        hashed = hashed ^ (unsigned[..., axis] * xp.uint32(HASH_PRIMES[axis]))
    return (hashed & xp.uint32(2**log2_table_size - 1)).astype(xp.int32)


def vertex_table_index(vertices: jax.Array, cfg: GridEncodingConfig, level: int) -> jax.Array:
    """Table row of integer grid vertices at one level.

    Parameters
    ----------
    vertices
        ``(..., n_dims)`` integer vertex coordinates, ``0 <= v_a <= res_l[a]``.
    level
        Level index.

    Returns
    -------
    ``(...)`` int32 rows: row-major ``sum_a v_a * stride_a`` on a dense level, the XOR hash
    ``XOR_a (v_a * prime_a) mod 2**T`` (uint32 arithmetic) on a hashed level.
    """
    if not 0 <= level < cfg.levels:
        raise ValueError(f"level={level} must be in [0, {cfg.levels})")
    vertices = jnp.asarray(vertices)
    if vertices.shape[-1] != cfg.n_dims or not jnp.issubdtype(vertices.dtype, jnp.integer):
        raise ValueError(
            f"vertices must be integers of shape (..., {cfg.n_dims}); got {vertices.dtype} "
            f"{vertices.shape}"
        )
    res = level_resolutions(cfg)[level]
    rows = _vertex_index(
        vertices.astype(jnp.int32), res, bool(level_is_dense(cfg)[level]), cfg.log2_table_size
    )
    return jnp.asarray(rows)


def _corner_offsets(n_dims: int) -> np.ndarray:
    """``(2**d, d)`` int: the binary offsets of a cell's corners (axis 0 most significant)."""
    return np.array(
        [[(c >> (n_dims - 1 - a)) & 1 for a in range(n_dims)] for c in range(2**n_dims)],
        dtype=np.int32,
    )


def _check_tables(tables: Sequence[jax.Array], cfg: GridEncodingConfig) -> None:
    if len(tables) != cfg.levels:
        raise ValueError(
            f"tables has {len(tables)} levels but cfg.levels={cfg.levels}; build them with "
            "init_tables(cfg, key)"
        )
    for level, (table, rows) in enumerate(zip(tables, level_table_sizes(cfg))):
        if tuple(table.shape) != (int(rows), cfg.features):
            raise ValueError(
                f"tables[{level}] has shape {tuple(table.shape)}, expected ({int(rows)}, "
                f"{cfg.features}); build them with init_tables(cfg, key)"
            )


def _check_level_weights(level_weights: jax.Array | None, levels: int) -> jax.Array | None:
    if level_weights is None:
        return None
    level_weights = jnp.asarray(level_weights, jnp.float32)
    if level_weights.shape != (levels,):
        raise ValueError(
            f"level_weights has shape {level_weights.shape}, expected ({levels},); use "
            "coarse_to_fine_weights(alpha, levels)"
        )
    return level_weights


def _assemble_levels(
    per_level: Sequence[jax.Array], level_weights: jax.Array | None, features_per_level: int
) -> jax.Array:
    """Concatenate per-level ``(N, F)`` features into ``(N, L*F)``, times the level weights.

    The result is materialised behind an optimisation barrier: without it XLA:CPU fuses the
    concatenation into a following matrix product (the network's first layer) and runs that
    product about 4x slower (measured: 200 ms instead of 45 ms for 262144 x 16 @ 16 x 64).
    """
    features = jnp.concatenate(per_level, axis=-1)
    if level_weights is not None:
        features = features * jnp.repeat(level_weights, features_per_level)[None, :]
    return jax.lax.optimization_barrier(features)


# ----------------------------------------------------------------------------------------
# Gather primitives whose backward pass is one segment sum instead of JAX's scatter-add
# ----------------------------------------------------------------------------------------


def _take_rows(values: jax.Array, rows: jax.Array) -> jax.Array:
    """``values[rows]`` along axis 0 for indices known to be in bounds (no clamping)."""
    return jnp.asarray(values).at[rows].get(mode="promise_in_bounds")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _interpolate_corners(
    num_rows: int,
    presorted: bool,
    table: jax.Array,
    corner_rows: jax.Array,
    corner_weights: jax.Array,
    backward: tuple,
) -> jax.Array:
    """``sum_c corner_weights[c, :, None] * table[corner_rows[c]]`` -> ``(N, F)``.

    ``corner_rows``/``corner_weights``: ``(C, N)``. The table cotangent is a single segment
    sum over all ``C * N`` contributions (in the presorted order ``backward = (perm,
    sorted_rows)`` when ``presorted``); the weight cotangent is returned too, so gradients
    flow to coordinates through the weights.
    """
    return _interpolate_corners_fwd(
        num_rows, presorted, table, corner_rows, corner_weights, backward
    )[0]


def _interpolate_corners_fwd(num_rows, presorted, table, corner_rows, corner_weights, backward):
    gathered = [_take_rows(table, rows) for rows in corner_rows]
    value = None
    for weight, corner_values in zip(corner_weights, gathered):
        term = weight[:, None] * corner_values
        value = term if value is None else value + term
    # The gathered corner values serve the weight (coordinate) cotangent; when nothing asks
    # for it, XLA drops them again.
    return value, (gathered, corner_rows, corner_weights, backward)


def _dot_features(a: jax.Array, b: jax.Array) -> jax.Array:
    """``sum(a * b, axis=-1)`` for ``(N, F)`` arrays, as ``F`` elementwise products."""
    total = a[:, 0] * b[:, 0]
    for f in range(1, a.shape[-1]):
        total = total + a[:, f] * b[:, f]
    return total


def _interpolate_corners_bwd(num_rows, presorted, residuals, g):
    gathered, corner_rows, corner_weights, backward = residuals
    contributions = (corner_weights[:, :, None] * g[None, :, :]).reshape(-1, g.shape[-1])
    if presorted:
        perm, sorted_rows = backward
        grad_table = jax.ops.segment_sum(
            _take_rows(contributions, perm), sorted_rows, num_rows, indices_are_sorted=True
        )
    else:
        grad_table = jax.ops.segment_sum(contributions, corner_rows.reshape(-1), num_rows)
    # d value[n] / d weight[c, n] = table[rows[c, n]].
    # (A sum over the few features as explicit adds: XLA:CPU's reduce of a fused gather over
    # a short minor axis is several times slower.)
    grad_weights = jnp.stack([_dot_features(values, g) for values in gathered])
    return grad_table, None, grad_weights, None


_interpolate_corners.defvjp(_interpolate_corners_fwd, _interpolate_corners_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _gather_rows(num_rows: int, table: jax.Array, rows: jax.Array) -> jax.Array:
    """``table[rows]`` whose table cotangent is a segment sum over ``rows``."""
    return _take_rows(table, rows)


def _gather_rows_fwd(num_rows, table, rows):
    return _take_rows(table, rows), rows


def _gather_rows_bwd(num_rows, rows, g):
    return jax.ops.segment_sum(g, rows, num_rows), None


_gather_rows.defvjp(_gather_rows_fwd, _gather_rows_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lerp_rows(
    num_rows: int,
    indices_sorted: bool,
    values: jax.Array,
    lower: jax.Array,
    upper_weight: jax.Array,
) -> jax.Array:
    """Two-tap interpolation along axis 0: ``(1-w) * values[lower] + w * values[lower + 1]``.

    ``values`` ``(U, R)``, ``lower`` ``(n,)`` int32 in ``[0, U-2]``, ``upper_weight`` ``(n,)``
    -> ``(n, R)``. The backward pass is two row segment sums (flagged sorted when ``lower``
    is monotone, as on a regular grid).
    """
    below = _take_rows(values, lower)
    above = _take_rows(values, lower + 1)
    return below + upper_weight[:, None] * (above - below)


def _lerp_rows_fwd(num_rows, indices_sorted, values, lower, upper_weight):
    return _lerp_rows(num_rows, indices_sorted, values, lower, upper_weight), (lower, upper_weight)


def _lerp_rows_bwd(num_rows, indices_sorted, residuals, g):
    lower, upper_weight = residuals
    to_upper = upper_weight[:, None] * g
    grad = jax.ops.segment_sum(g - to_upper, lower, num_rows, indices_are_sorted=indices_sorted)
    grad = grad + jax.ops.segment_sum(
        to_upper, lower + 1, num_rows, indices_are_sorted=indices_sorted
    )
    return grad, None, None


_lerp_rows.defvjp(_lerp_rows_fwd, _lerp_rows_bwd)


def _corner_rows_and_weights(
    u: AnyArray, resolution: np.ndarray, dense: bool, log2_table_size: int, xp=jnp
) -> tuple[AnyArray, AnyArray]:
    """Table rows and multilinear weights of the ``2**d`` corners of each point's cell.

    ``u`` ``(N, d)`` grid positions (cells, already clamped) -> ``(2**d, N)`` int32 rows and
    ``(2**d, N)`` float32 weights (products of ``f`` or ``1 - f`` per axis, axis 0 first).
    """
    cell, frac = _cell_and_fraction(u, resolution, xp)
    upper, lower = frac, xp.float32(1.0) - frac
    rows, weights = [], []
    for corner in _corner_offsets(u.shape[-1]):
        weight = None
        for axis, bit in enumerate(corner):
            factor = upper[:, axis] if bit else lower[:, axis]
            weight = factor if weight is None else weight * factor
        weights.append(weight)
        rows.append(
            _vertex_index(cell + corner[None, :], resolution, dense, log2_table_size, xp)
        )
    return xp.stack(rows), xp.stack(weights)


def encode(
    tables: Sequence[jax.Array],
    coords: jax.Array,
    cfg: GridEncodingConfig,
    level_weights: jax.Array | None = None,
    *,
    fast_backward: bool = True,
) -> jax.Array:
    """Multiresolution hash encoding of arbitrary coordinates.

    Parameters
    ----------
    tables
        Per-level feature tables from :func:`init_tables`, ``(rows_l, F)`` float32.
    coords
        ``(N, n_dims)`` coordinates in domain units (axis order of ``cfg``), clamped into
        ``[domain_min, domain_max]``.
    cfg
        Grid configuration (static).
    level_weights
        Optional ``(L,)`` multipliers of each level's features (coarse-to-fine schedule).
    fast_backward
        True (default): a custom VJP whose table gradient is one segment sum per level
        (reverse mode only: ``grad``/``vjp``/``jacrev``). False: plain JAX autodiff
        (slower backward, but forward mode ``jvp``/``jacfwd`` works too).

    Returns
    -------
    ``(N, L * F)`` float32, level-major: columns ``l*F:(l+1)*F`` are level ``l``'s multilinear
    interpolation of its ``2**n_dims`` cell corners, times ``level_weights[l]``.
    Differentiable with respect to ``tables``, ``coords`` (zero gradient outside the domain)
    and ``level_weights``.
    """
    _check_tables(tables, cfg)
    coords = jnp.asarray(coords, jnp.float32)
    if coords.ndim != 2 or coords.shape[1] != cfg.n_dims:
        raise ValueError(
            f"coords has shape {coords.shape}, expected (N, {cfg.n_dims}) in the axis order of "
            "the config"
        )
    level_weights = _check_level_weights(level_weights, cfg.levels)
    resolutions = level_resolutions(cfg)
    dense = level_is_dense(cfg)
    table_rows = level_table_sizes(cfg)
    lo, scale = _axis_scales(cfg)
    per_level = []
    for level in range(cfg.levels):
        u = _grid_position(coords, lo, scale[level], resolutions[level])
        rows, weights = _corner_rows_and_weights(
            u, resolutions[level], bool(dense[level]), cfg.log2_table_size
        )
        if fast_backward:
            # Materialise the rows: fused into the gathers and the backward segment sum,
            # XLA:CPU would recompute the hash per use.
            rows = jax.lax.optimization_barrier(rows)
            value = _interpolate_corners(
                int(table_rows[level]), False, tables[level], rows, weights, ()
            )
        else:
            value = jnp.einsum(
                "cn,cnf->nf", weights, jnp.take(tables[level], rows, axis=0, mode="clip")
            )
        per_level.append(value)
    return _assemble_levels(per_level, level_weights, cfg.features)


# ----------------------------------------------------------------------------------------
# Lookup plans for fixed coordinates
# ----------------------------------------------------------------------------------------


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["corner_rows", "corner_weights", "backward"],
    meta_fields=["table_rows", "mode"],
)
@dataclasses.dataclass(frozen=True)
class _GatherLevel:
    """Per-point corner gathers: ``sum_c w[c] * table[rows[c]]``.

    ``corner_rows``/``corner_weights``: ``(2**d, N)``. ``mode``: ``"autodiff"`` (JAX's own
    scatter-add backward), ``"segment"`` (one segment sum) or ``"sorted"`` (one segment sum
    over rows presorted at planning time, ``backward = (perm, sorted_rows)``).
    """

    corner_rows: jax.Array
    corner_weights: jax.Array
    backward: tuple
    table_rows: int
    mode: str


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["grid_rows", "axis_lower", "axis_weight", "axis_matrix"],
    meta_fields=[
        "table_rows", "fold_last", "grid_shape", "contraction_order", "axis_ops", "axis_sorted",
    ],
)
@dataclasses.dataclass(frozen=True)
class _SeparableLevel:
    """Regular query grid ``n_0 x ... x n_{d-1}``: gather a small grid, interpolate per axis.

    Only the vertices some query touches are kept: ``U_a`` of them along axis ``a``.

    * ``fold_last=False``: ``grid_rows`` holds the table rows of the ``U_0 x ... x U_{d-1}``
      vertex grid (row-major), or is ``None`` when that grid is the whole dense table in
      order; every axis is then interpolated separably (``A_y @ G @ A_x^T`` in 2D).
    * ``fold_last=True``: the two taps of the last axis are folded into the gather:
      ``grid_rows`` has shape ``(2, U_0, ..., U_{d-2}, n_{d-1})`` (flattened), the taps are
      blended with the last axis' weights, and only axes ``0..d-2`` are interpolated
      separably. This keeps every later step a contiguous row operation.

    Per axis ``a``: ``axis_lower[a]`` ``(n_a,)`` lower vertex (index into the kept vertices),
    ``axis_weight[a]`` ``(n_a,)`` weight of the upper vertex, ``axis_matrix[a]`` ``(n_a, U_a)``
    interpolation matrix (for the last axis ``kron(A, I_F)^T``, ``(U_a*F, n_a*F)``) or
    ``None``; ``axis_ops[a]`` is ``"matmul"`` or ``"lerp"``.
    ``grid_shape`` is the shape after the gather (and tap blend), without the feature axis.
    """

    grid_rows: jax.Array | None
    axis_lower: tuple
    axis_weight: tuple
    axis_matrix: tuple
    table_rows: int
    fold_last: bool
    grid_shape: tuple
    contraction_order: tuple
    axis_ops: tuple
    axis_sorted: tuple


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["level_plans"],
    meta_fields=["n_points", "n_dims", "levels", "features", "grid_shape", "methods"],
)
@dataclasses.dataclass(frozen=True)
class LookupPlan:
    """Precomputed lookups of fixed coordinates (a JAX pytree: pass it into ``jit``).

    Attributes
    ----------
    level_plans
        One entry per level (internal layout).
    n_points
        ``N``, the number of coordinates.
    grid_shape
        ``(n_0, ..., n_{d-1})`` when the coordinates form a regular grid (C order), else None.
    methods
        Per level, how :func:`encode_planned` evaluates it: ``"separable"`` or ``"gather"``.
    """

    level_plans: tuple
    n_points: int
    n_dims: int
    levels: int
    features: int
    grid_shape: tuple | None
    methods: tuple


def _detect_grid(coords: np.ndarray) -> list[np.ndarray] | None:
    """Per-axis vectors if ``coords`` is ``meshgrid(*axes, indexing="ij")`` flattened in C order."""
    n_points, n_dims = coords.shape
    counts = [np.unique(coords[:, a]).size for a in range(n_dims)]
    if math.prod(counts) != n_points:
        return None
    axes = []
    stride = n_points
    for a in range(n_dims):
        stride //= counts[a]
        axes.append(coords[::stride, a][: counts[a]].copy())
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(n_points, n_dims)
    return axes if np.array_equal(mesh, coords) else None


# Plan choice, from per-level timings with benchmarks/encoding_microbench.py on a 2-core AVX2
# CPU (forward + backward). An axis with few touched vertices is interpolated fastest by a
# small dense matrix product, one with many by two-tap row gathers. A separable plan beats
# per-point corner gathers while it gathers clearly fewer table rows than the 2**d corners of
# every point; when it would gather about as many (query grid as fine as the level), the
# plain corner gather has fewer passes and wins. Corner gathers into small tables are slow
# (the segment-sum backward serialises on colliding rows), which the row ratio also avoids.
_MATMUL_MAX_VERTICES = 32
_SEPARABLE_MAX_ROW_RATIO = 0.5


def _plan_gather_level(
    u: AnyArray, resolution: np.ndarray, dense: bool, cfg: GridEncodingConfig,
    table_rows: int, backward: str,
) -> _GatherLevel:
    rows, weights = _corner_rows_and_weights(u, resolution, dense, cfg.log2_table_size, np)
    extra: tuple = ()
    if backward == "sorted":
        flat = rows.reshape(-1)
        perm = np.argsort(flat, kind="stable").astype(np.int32)
        extra = (jnp.asarray(perm), jnp.asarray(flat[perm]))
    return _GatherLevel(
        corner_rows=jnp.asarray(rows), corner_weights=jnp.asarray(weights), backward=extra,
        table_rows=table_rows, mode=backward,
    )


def _plan_separable_level(
    axis_positions: Sequence[AnyArray], resolution: np.ndarray, dense: bool,
    cfg: GridEncodingConfig, table_rows: int, axis_op: str, fold_last: bool,
) -> tuple[_SeparableLevel, int]:
    """Separable plan of one level and the number of table rows it gathers per call."""
    n_dims = cfg.n_dims
    n_query = [int(u.shape[0]) for u in axis_positions]
    cells, lowers, weights, used_per_axis = [], [], [], []
    for axis, u_axis in enumerate(axis_positions):
        cell, frac = _cell_and_fraction(u_axis, resolution[axis : axis + 1], np)
        used = np.unique(np.concatenate([cell, cell + 1]))
        cells.append(cell)
        lowers.append(np.searchsorted(used, cell).astype(np.int32))
        weights.append(frac)
        used_per_axis.append(used)
    separable_axes = list(range(n_dims - 1 if fold_last else n_dims))

    # Table rows of the gathered grid.
    features = cfg.features
    if fold_last:
        taps = []
        for tap in (0, 1):
            mesh = np.meshgrid(*used_per_axis[:-1], cells[-1] + tap, indexing="ij")
            taps.append(np.stack(mesh, axis=-1))
        vertices = np.stack(taps)  # (2, U_0, ..., U_{d-2}, n_{d-1}, d)
        grid_shape = tuple(u.size for u in used_per_axis[:-1]) + (n_query[-1],)
    else:
        vertices = np.stack(np.meshgrid(*used_per_axis, indexing="ij"), axis=-1)
        grid_shape = tuple(u.size for u in used_per_axis)
    grid_rows = _vertex_index(
        vertices.astype(np.int32), resolution, dense, cfg.log2_table_size, np
    ).reshape(-1)
    if not fold_last and dense and np.array_equal(grid_rows, np.arange(table_rows)):
        grid_rows_arg = None  # the whole dense table, in order: a reshape, no gather
    else:
        grid_rows_arg = jnp.asarray(grid_rows)

    ops, matrices = [], []
    for axis in range(n_dims):
        op = axis_op
        if op == "auto":
            op = "matmul" if used_per_axis[axis].size <= _MATMUL_MAX_VERTICES else "lerp"
        matrix = None
        if op == "matmul" and axis in separable_axes:
            frac = np.asarray(weights[axis], dtype=np.float32)
            dense_matrix = np.zeros((n_query[axis], used_per_axis[axis].size), np.float32)
            index = np.arange(n_query[axis])
            dense_matrix[index, lowers[axis]] += 1.0 - frac
            dense_matrix[index, lowers[axis] + 1] += frac
            if axis == n_dims - 1:
                # Last axis (features innermost): (U*F, n*F) = kron(A, I_F)^T, so that
                # (P, U*F) @ it -> (P, n*F) is already in output layout (no transpose).
                dense_matrix = np.kron(dense_matrix, np.eye(features, dtype=np.float32)).T
            matrix = jnp.asarray(dense_matrix)
        ops.append(op)
        matrices.append(matrix)

    # Contract axes in the order that keeps intermediates smallest.
    shape = list(grid_shape)
    remaining = list(separable_axes)
    order = []
    while remaining:
        axis = min(remaining, key=lambda a: n_query[a] / shape[a])
        shape[axis] = n_query[axis]
        order.append(axis)
        remaining.remove(axis)
    plan = _SeparableLevel(
        grid_rows=grid_rows_arg,
        axis_lower=tuple(jnp.asarray(v) for v in lowers),
        axis_weight=tuple(jnp.asarray(w) for w in weights),
        axis_matrix=tuple(matrices),
        table_rows=table_rows,
        fold_last=fold_last,
        grid_shape=grid_shape,
        contraction_order=tuple(order),
        axis_ops=tuple(ops),
        axis_sorted=tuple(bool(np.all(np.diff(v) >= 0)) for v in lowers),
    )
    return plan, 0 if grid_rows_arg is None else int(grid_rows.size)


def make_lookup(
    coords: np.ndarray | jax.Array | None,
    cfg: GridEncodingConfig,
    *,
    grid_axes: Sequence[np.ndarray] | None = None,
    method: Literal["auto", "separable", "gather"] = "auto",
    separable: Literal["fold", "grid"] = "fold",
    axis_op: Literal["auto", "matmul", "lerp"] = "auto",
    gather_backward: Literal["segment", "sorted", "autodiff"] = "segment",
) -> LookupPlan:
    """Precompute vertex rows and interpolation weights for coordinates that stay fixed.

    Parameters
    ----------
    coords
        ``(N, n_dims)`` coordinates in domain units, or ``None`` when ``grid_axes`` is given.
        A regular grid (``meshgrid(*axes, indexing="ij")`` flattened in C order) is detected.
    cfg
        Grid configuration.
    grid_axes
        Optional per-axis coordinate vectors ``(n_a,)`` of a regular grid: the points are
        ``meshgrid(*grid_axes, indexing="ij")`` in C order, ``N = prod(n_a)``. If ``coords``
        is also given it must equal that grid.
    method
        ``"auto"`` (default): per level, ``"separable"`` on a regular grid unless it would
        gather more than half as many table rows as ``"gather"`` (a level as fine as the
        query grid), else ``"gather"``; or force one.
    separable
        ``"fold"`` (default): the last axis' two taps are gathered straight from the table,
        the other axes are interpolated separably. ``"grid"``: gather the whole touched
        vertex grid (or reshape the dense table) and interpolate every axis separably
        (``A_y @ G @ A_x^T``).
    axis_op
        Per-axis interpolation of separable levels: ``"matmul"`` (dense interpolation
        matrix), ``"lerp"`` (two-tap row gather with a segment-sum backward) or ``"auto"``
        (matmul up to 32 touched vertices).
    gather_backward
        Table gradient of ``"gather"`` levels: ``"segment"`` (one segment sum, default),
        ``"sorted"`` (segment sum over an order presorted here) or ``"autodiff"`` (JAX's
        own scatter-add).

    Returns
    -------
    A :class:`LookupPlan` for :func:`encode_planned`; ``encode_planned(tables, plan)`` equals
    ``encode(tables, coords, cfg)`` up to float32 rounding.
    """
    for name, value, allowed in (
        ("method", method, ("auto", "separable", "gather")),
        ("separable", separable, ("fold", "grid")),
        ("axis_op", axis_op, ("auto", "matmul", "lerp")),
        ("gather_backward", gather_backward, ("segment", "sorted", "autodiff")),
    ):
        if value not in allowed:
            raise ValueError(f"{name}={value!r} must be one of {allowed}")
    axes: list[np.ndarray] | None = None
    if grid_axes is not None:
        if len(grid_axes) != cfg.n_dims:
            raise ValueError(
                f"grid_axes has {len(grid_axes)} vectors but cfg.n_dims={cfg.n_dims}; give "
                "one coordinate vector per axis"
            )
        axes = [np.asarray(a, dtype=np.float32).reshape(-1) for a in grid_axes]
        if any(a.size == 0 for a in axes):
            raise ValueError("grid_axes contains an empty axis; every axis needs a coordinate")
        coords_np = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, cfg.n_dims)
        if coords is not None and not np.array_equal(np.asarray(coords, np.float32), coords_np):
            raise ValueError(
                "coords do not equal meshgrid(*grid_axes, indexing='ij') in C order; pass "
                "only one of them or make them agree"
            )
    else:
        if coords is None:
            raise ValueError("give coords (N, n_dims) or grid_axes")
        coords_np = np.asarray(coords, dtype=np.float32)
        if coords_np.ndim != 2 or coords_np.shape[1] != cfg.n_dims:
            raise ValueError(f"coords has shape {coords_np.shape}, expected (N, {cfg.n_dims})")
        if coords_np.shape[0] == 0:
            raise ValueError("coords is empty; give at least one coordinate")
        if method != "gather" and np.all(np.isfinite(coords_np)):
            axes = _detect_grid(coords_np)
    if not np.all(np.isfinite(coords_np)):
        raise ValueError("coords contain NaN or infinity; give finite coordinates")
    if method == "separable" and axes is None:
        raise ValueError(
            "method='separable' needs coordinates on a regular grid; pass grid_axes or use "
            "method='gather'"
        )

    resolutions = level_resolutions(cfg)
    dense = level_is_dense(cfg)
    table_rows = level_table_sizes(cfg)
    lo, scale = _axis_scales(cfg)
    n_points = coords_np.shape[0]
    plans, methods = [], []
    for level in range(cfg.levels):
        res = resolutions[level]
        chosen: tuple[str, _SeparableLevel | _GatherLevel] | None = None
        if axes is not None and method != "gather":
            axis_positions = [
                _grid_position(
                    axes[a][:, None], lo[a : a + 1], scale[level, a : a + 1], res[a : a + 1], np
                )[:, 0]
                for a in range(cfg.n_dims)
            ]
            plan, gathered_rows = _plan_separable_level(
                axis_positions, res, bool(dense[level]), cfg, int(table_rows[level]), axis_op,
                separable == "fold",
            )
            corner_rows = 2**cfg.n_dims * n_points
            if method == "separable" or gathered_rows <= _SEPARABLE_MAX_ROW_RATIO * corner_rows:
                chosen = ("separable", plan)
        if chosen is None:
            u = _grid_position(coords_np, lo, scale[level], res, np)
            chosen = (
                "gather",
                _plan_gather_level(
                    u, res, bool(dense[level]), cfg, int(table_rows[level]), gather_backward
                ),
            )
        methods.append(chosen[0])
        plans.append(chosen[1])
    return LookupPlan(
        level_plans=tuple(plans),
        n_points=n_points,
        n_dims=cfg.n_dims,
        levels=cfg.levels,
        features=cfg.features,
        grid_shape=None if axes is None else tuple(int(a.size) for a in axes),
        methods=tuple(methods),
    )


def _evaluate_gather_level(table: jax.Array, plan: _GatherLevel) -> jax.Array:
    if plan.mode == "autodiff":
        gathered = jnp.take(table, plan.corner_rows, axis=0, mode="clip")
        return jnp.einsum("cn,cnf->nf", plan.corner_weights, gathered)
    return _interpolate_corners(
        plan.table_rows, plan.mode == "sorted", table, plan.corner_rows, plan.corner_weights,
        plan.backward,
    )


def _evaluate_separable_level(table: jax.Array, plan: _SeparableLevel) -> jax.Array:
    features = table.shape[1]
    if plan.grid_rows is None:
        grid = table
    else:
        grid = _gather_rows(plan.table_rows, table, plan.grid_rows)
    if plan.fold_last:
        taps = grid.reshape(2, -1, plan.grid_shape[-1], features)
        upper_weight = plan.axis_weight[-1][None, :, None]
        grid = taps[0] + upper_weight * (taps[1] - taps[0])
    grid = grid.reshape(*plan.grid_shape, features)
    for axis in plan.contraction_order:
        shape = grid.shape
        before, n_vertices = math.prod(shape[:axis]), shape[axis]
        block = grid.reshape(before, n_vertices, -1)
        if plan.axis_ops[axis] == "matmul":
            matrix = plan.axis_matrix[axis]
            if axis == len(plan.grid_shape) - 1:
                # Features innermost: matrix is kron(A, I_F)^T, (U*F, n*F).
                out = (block.reshape(before, -1) @ matrix).reshape(before, -1, features)
            elif before == 1:
                out = (matrix @ block[0])[None]
            elif before * matrix.size <= 2**20:
                # Batched product with the (small) matrix broadcast: result lands in place.
                out = jax.lax.dot_general(
                    jnp.broadcast_to(matrix, (before, *matrix.shape)), block,
                    (((2,), (1,)), ((0,), (0,))),
                )
            else:
                out = jnp.einsum("nu,puq->pnq", matrix, block)
        else:
            rows = jnp.swapaxes(block, 0, 1).reshape(n_vertices, -1)
            out = _lerp_rows(
                n_vertices, plan.axis_sorted[axis], rows, plan.axis_lower[axis],
                plan.axis_weight[axis],
            )
            out = jnp.swapaxes(out.reshape(-1, before, block.shape[-1]), 0, 1)
        grid = out.reshape(*shape[:axis], out.shape[1], *shape[axis + 1 :])
    return grid.reshape(-1, features)


def encode_planned(
    tables: Sequence[jax.Array], plan: LookupPlan, level_weights: jax.Array | None = None
) -> jax.Array:
    """Encoding of the plan's fixed coordinates; equals :func:`encode` on those coordinates.

    Parameters
    ----------
    tables
        Per-level feature tables ``(rows_l, F)`` float32 (as :func:`init_tables`).
    plan
        From :func:`make_lookup` with the same config.
    level_weights
        Optional ``(L,)`` per-level multipliers.

    Returns
    -------
    ``(N, L * F)`` float32 in the order of the plan's coordinates (C order of the grid for
    ``grid_axes``), level-major. Differentiable (reverse mode) with respect to ``tables`` and
    ``level_weights``.
    """
    if len(tables) != plan.levels:
        raise ValueError(f"tables has {len(tables)} levels but the plan was made for {plan.levels}")
    for level, (table, level_plan) in enumerate(zip(tables, plan.level_plans)):
        if tuple(table.shape) != (level_plan.table_rows, plan.features):
            raise ValueError(
                f"tables[{level}] has shape {tuple(table.shape)}, the plan expects "
                f"({level_plan.table_rows}, {plan.features}); use the config the plan was made "
                "with"
            )
    level_weights = _check_level_weights(level_weights, plan.levels)
    per_level = []
    for table, level_plan in zip(tables, plan.level_plans):
        if isinstance(level_plan, _SeparableLevel):
            per_level.append(_evaluate_separable_level(table, level_plan))
        else:
            per_level.append(_evaluate_gather_level(table, level_plan))
    return _assemble_levels(per_level, level_weights, plan.features)
