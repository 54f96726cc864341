"""Tests of the multiresolution hash embedding (nstm_acquire.nstm.encoding)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError

from nstm_acquire.nstm.encoding import (
    HASH_PRIMES,
    GridEncodingConfig,
    coarse_to_fine_weights,
    encode,
    encode_planned,
    grid_positions,
    init_tables,
    level_is_dense,
    level_resolutions,
    level_table_sizes,
    make_lookup,
    vertex_table_index,
)


def random_tables(cfg: GridEncodingConfig, seed: int = 0) -> list[jax.Array]:
    """O(1) random tables (init_tables values are too small to compare meaningfully)."""
    rng = np.random.default_rng(seed)
    return [
        jnp.asarray(rng.uniform(-1.0, 1.0, (int(n), cfg.features)).astype(np.float32))
        for n in level_table_sizes(cfg)
    ]


def all_vertices(resolution: np.ndarray) -> np.ndarray:
    """Every integer vertex of a grid with ``resolution`` cells per axis, ``(V, d)``."""
    ranges = [np.arange(int(r) + 1) for r in resolution]
    return np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, len(resolution))


# 2D: levels 0-1 dense (<= 2**8 rows), level 2 hashed.
CFG_2D = GridEncodingConfig(
    n_dims=2,
    levels=3,
    features=2,
    log2_table_size=8,
    base_resolution=(4.0, 6.0),
    finest_resolution=(36.0, 24.0),
    domain_min=(-2.0, 1.0),
    domain_max=(6.0, 13.0),
)
# 3D (t, y, x): dense coarse levels, hashed fine level.
CFG_3D = GridEncodingConfig(
    n_dims=3,
    levels=3,
    features=2,
    log2_table_size=9,
    base_resolution=(2.0, 3.0, 3.0),
    finest_resolution=(8.0, 12.0, 16.0),
    domain_min=(0.0, 0.0, 0.0),
    domain_max=(1.0, 20.0, 24.0),
)


# --------------------------------------------------------------------------------------
# Configuration and level geometry
# --------------------------------------------------------------------------------------


def test_config_rejects_bad_fields_naming_them():
    good = CFG_2D.model_dump()
    for field, value in [
        ("base_resolution", (4.0,)),
        ("domain_min", (0.0, 0.0, 0.0)),
        ("finest_resolution", (2.0, 24.0)),  # below base on axis 0
        ("domain_max", (-2.0, 13.0)),  # not above domain_min on axis 0
        ("n_dims", 5),
        ("log2_table_size", 40),
        ("init_scale", 0.0),
        ("base_resolution", (0.5, 6.0)),
    ]:
        with pytest.raises((ValueError, ValidationError), match=field):
            GridEncodingConfig(**{**good, field: value})
    with pytest.raises(ValidationError):
        CFG_2D.levels = 4  # frozen


def test_level_resolutions_grow_geometrically_per_axis():
    cfg = GridEncodingConfig(
        n_dims=3, levels=6, base_resolution=(4.0, 8.0, 2.0),
        finest_resolution=(128.0, 20.0, 2.0), domain_min=(0, 0, 0), domain_max=(1, 1, 1),
    )
    res = level_resolutions(cfg)
    assert res.shape == (6, 3) and np.issubdtype(res.dtype, np.integer)
    np.testing.assert_array_equal(res[0], [4, 8, 2])
    np.testing.assert_array_equal(res[-1], [128, 20, 2])
    # Independent geometric sequence per axis: base * (finest / base) ** (l / (L - 1)).
    growth = (np.array([128.0, 20.0, 2.0]) / np.array([4.0, 8.0, 2.0])) ** (1 / 5)
    exact = np.array([4.0, 8.0, 2.0]) * growth ** np.arange(6)[:, None]
    assert np.all(np.abs(res - exact) <= 0.5)
    # Axis 0 doubles per level exactly: 4, 8, 16, 32, 64, 128.
    np.testing.assert_array_equal(res[:, 0], [4, 8, 16, 32, 64, 128])


def test_dense_versus_hashed_levels_and_table_shapes():
    # 15 cells -> 16**2 = 256 vertices fit 2**8 rows (dense); 16 cells -> 289 do not.
    cfg = GridEncodingConfig(
        n_dims=2, levels=2, features=3, log2_table_size=8, base_resolution=(15.0, 15.0),
        finest_resolution=(16.0, 16.0), domain_min=(0, 0), domain_max=(1, 1), init_scale=0.25,
    )
    np.testing.assert_array_equal(level_is_dense(cfg), [True, False])
    np.testing.assert_array_equal(level_table_sizes(cfg), [256, 256])
    tables = init_tables(cfg, jax.random.PRNGKey(3))
    assert [t.shape for t in tables] == [(256, 3), (256, 3)]
    for table in tables:
        assert table.dtype == jnp.float32
        values = np.asarray(table)
        assert values.min() >= -0.25 and values.max() <= 0.25
        assert values.std() > 0.25 / 4  # spread over the interval, not constant
    # Different keys give different tables.
    assert not np.array_equal(np.asarray(init_tables(cfg, jax.random.PRNGKey(4))[0]),
                              np.asarray(tables[0]))


@pytest.mark.parametrize("cfg", [CFG_2D, CFG_3D])
def test_dense_levels_index_every_vertex_once(cfg):
    for level in np.flatnonzero(level_is_dense(cfg)):
        res = level_resolutions(cfg)[level]
        vertices = all_vertices(res)
        rows = np.asarray(vertex_table_index(jnp.asarray(vertices), cfg, int(level)))
        # Row-major over the (res + 1) vertex grid: exactly 0 .. V-1 in order.
        np.testing.assert_array_equal(rows, np.arange(vertices.shape[0]))
        assert vertices.shape[0] == level_table_sizes(cfg)[level]


def test_hashed_levels_match_xor_of_primes_in_range_and_deterministic():
    cfg4 = GridEncodingConfig(
        n_dims=4, levels=1, log2_table_size=10, base_resolution=(7.0, 9.0, 11.0, 13.0),
        finest_resolution=(7.0, 9.0, 11.0, 13.0), domain_min=(0,) * 4, domain_max=(1,) * 4,
    )
    for cfg, level in [(CFG_2D, 2), (CFG_3D, 2), (cfg4, 0)]:
        assert not level_is_dense(cfg)[level]
        vertices = all_vertices(level_resolutions(cfg)[level])
        rows = np.asarray(vertex_table_index(jnp.asarray(vertices), cfg, level))
        again = np.asarray(vertex_table_index(jnp.asarray(vertices), cfg, level))
        np.testing.assert_array_equal(rows, again)
        assert rows.dtype == np.int32
        assert rows.min() >= 0 and rows.max() < 2**cfg.log2_table_size
        # Independent computation with Python integers (no overflow), then mod 2**T.
        expected = []
        for vertex in vertices.tolist():
            h = 0
            for coordinate, prime in zip(vertex, HASH_PRIMES):
                h ^= coordinate * prime
            expected.append(h % 2**cfg.log2_table_size)
        np.testing.assert_array_equal(rows, expected)
        # A hash spreads vertices over most of the table.
        assert np.unique(rows).size > 0.5 * min(vertices.shape[0], 2**cfg.log2_table_size)


# --------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [CFG_2D, CFG_3D])
def test_multilinear_interpolation_reproduces_affine_functions(cfg):
    rng = np.random.default_rng(1)
    lo, hi = np.array(cfg.domain_min), np.array(cfg.domain_max)
    coords = (lo + (hi - lo) * rng.uniform(0, 1, (200, cfg.n_dims))).astype(np.float32)
    tables = random_tables(cfg)
    dense_levels = np.flatnonzero(level_is_dense(cfg))
    assert dense_levels.size >= 2
    offsets = rng.normal(size=(cfg.levels, cfg.features))
    slopes = rng.normal(size=(cfg.levels, cfg.n_dims, cfg.features))
    for level in dense_levels:
        res = level_resolutions(cfg)[level]
        vertices = all_vertices(res)  # in table-row order for a dense level
        tables[level] = jnp.asarray(
            (offsets[level] + vertices @ slopes[level]).astype(np.float32)
        )
    out = np.asarray(jax.jit(lambda t, c: encode(t, c, cfg))(tables, coords))
    for level in dense_levels:
        res = level_resolutions(cfg)[level]
        u = (coords.astype(np.float64) - lo) / (hi - lo) * res  # cells, float64
        expected = offsets[level] + u @ slopes[level]
        got = out[:, level * cfg.features : (level + 1) * cfg.features]
        np.testing.assert_allclose(got, expected, atol=5e-5 * np.abs(expected).max())


@pytest.mark.parametrize("cfg", [CFG_2D, CFG_3D])
def test_vertices_return_their_table_rows(cfg):
    tables = random_tables(cfg, seed=2)
    rng = np.random.default_rng(2)
    lo, hi = np.array(cfg.domain_min), np.array(cfg.domain_max)
    picked, coords = [], []
    for level in range(cfg.levels):
        res = level_resolutions(cfg)[level]
        vertices = all_vertices(res)
        chosen = vertices[rng.choice(vertices.shape[0], min(40, vertices.shape[0]), replace=False)]
        picked.append(chosen)
        coords.append((lo + chosen / res * (hi - lo)).astype(np.float32))

    @jax.jit
    def evaluate(t, c, v):
        return (
            [encode(t, c[level], cfg) for level in range(cfg.levels)],
            [grid_positions(c[level], cfg, level) for level in range(cfg.levels)],
            [vertex_table_index(v[level], cfg, level) for level in range(cfg.levels)],
        )

    outs, positions, rows = evaluate(tables, coords, picked)
    for level in range(cfg.levels):
        res = level_resolutions(cfg)[level]
        # Round trip: the float32 vertex coordinate maps back onto the integer vertex.
        np.testing.assert_allclose(np.asarray(positions[level]), picked[level],
                                   atol=2e-5 * res.max())
        out = np.asarray(outs[level])[:, level * 2 : level * 2 + 2]
        np.testing.assert_allclose(out, np.asarray(tables[level])[np.asarray(rows[level])],
                                   atol=2e-4)


def test_coordinates_are_clamped_to_the_domain_edges():
    cfg = CFG_2D
    tables = random_tables(cfg, seed=3)
    lo, hi = np.array(cfg.domain_min), np.array(cfg.domain_max)
    inside = np.array([[0.3, 4.0], [5.0, 2.5]], np.float32)
    # Beyond each edge on one axis (including far negative values, which must not wrap
    # around through an unsigned cast) equals the point on that edge.
    beyond = np.array([[-1e6, 4.0], [-2.5, 2.5], [0.3, 1e4], [5.0, -7.0]], np.float32)
    at_edge = np.array([[lo[0], 4.0], [lo[0], 2.5], [0.3, hi[1]], [5.0, lo[1]]], np.float32)
    enc = jax.jit(lambda t, c: encode(t, c, cfg))
    np.testing.assert_array_equal(np.asarray(enc(tables, beyond)), np.asarray(enc(tables, at_edge)))
    # Far outside a corner of the domain is that corner's vertex: its table row, exactly.
    outside_corners = np.array(
        [[lo[0] - 3, lo[1] - 5], [hi[0] + 3, hi[1] + 5], [lo[0] - 3, hi[1] + 5]], np.float32
    )
    out = np.asarray(enc(tables, outside_corners))
    for level in range(cfg.levels):
        res = level_resolutions(cfg)[level]
        vertex = np.array([[0, 0], res, [0, res[1]]])
        rows = np.asarray(vertex_table_index(jnp.asarray(vertex), cfg, level))
        np.testing.assert_allclose(
            out[:, 2 * level : 2 * level + 2], np.asarray(tables[level])[rows], atol=1e-6
        )
    # No gradient flows to a coordinate outside the domain; inside it does.
    coord_grad = jax.jit(jax.grad(lambda c: jnp.sum(encode(tables, c, cfg) ** 2)))
    grad = np.asarray(coord_grad(jnp.asarray(np.concatenate([beyond, inside]))))
    assert np.all(grad[[0, 1], 0] == 0) and np.all(grad[[2, 3], 1] == 0)
    assert np.all(np.abs(grad[4:]) > 0)


def test_coarse_to_fine_weights_schedule():
    np.testing.assert_array_equal(np.asarray(coarse_to_fine_weights(0.0, 8)), np.zeros(8))
    np.testing.assert_allclose(np.asarray(coarse_to_fine_weights(1.0, 8)), np.ones(8), atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(coarse_to_fine_weights(0.5, 8)), [1, 1, 1, 1, 0, 0, 0, 0], atol=1e-7
    )
    # alpha * L = 2.5: level 2 half way, (1 - cos(pi / 2)) / 2 = 0.5.
    np.testing.assert_allclose(
        np.asarray(coarse_to_fine_weights(2.5 / 8, 8)), [1, 1, 0.5, 0, 0, 0, 0, 0], atol=1e-6
    )
    for alpha in np.random.default_rng(4).uniform(-0.2, 1.2, 5):
        ramp = np.clip(alpha * 5 - np.arange(5), 0, 1)
        np.testing.assert_allclose(
            np.asarray(coarse_to_fine_weights(jnp.float32(alpha), 5)),
            (1 - np.cos(np.pi * ramp)) / 2, atol=1e-6,
        )
    # Traceable in alpha.
    assert jax.jit(coarse_to_fine_weights, static_argnums=1)(0.25, 4).shape == (4,)


def test_level_weights_scale_each_level():
    cfg = CFG_2D
    tables = random_tables(cfg, seed=5)
    coords = np.random.default_rng(5).uniform([-2, 1], [6, 13], (64, 2)).astype(np.float32)
    weights = jnp.asarray([0.0, 0.5, 2.0], jnp.float32)
    enc = jax.jit(lambda t, c, w: encode(t, c, cfg, w))
    plain = np.asarray(enc(tables, coords, jnp.ones(3)))
    weighted = np.asarray(enc(tables, coords, weights))
    np.testing.assert_allclose(weighted, plain * np.repeat([0.0, 0.5, 2.0], 2), rtol=1e-6)
    with pytest.raises(ValueError, match="level_weights"):
        encode(tables, coords, cfg, jnp.ones(2))


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------


def test_encode_gradients_match_finite_differences_and_autodiff():
    cfg = CFG_2D
    tables = random_tables(cfg, seed=6)
    rng = np.random.default_rng(6)
    lo, hi = np.array(cfg.domain_min), np.array(cfg.domain_max)
    # Keep points away from cell faces (at every level) so that finite differences stay
    # inside one cell.
    res = level_resolutions(cfg)
    candidates = lo + (hi - lo) * rng.uniform(0, 1, (2000, cfg.n_dims))
    frac = [((candidates - lo) / (hi - lo) * r) % 1.0 for r in res]
    away = np.all([(f > 0.15) & (f < 0.85) for f in frac], axis=(0, 2))
    coords = jnp.asarray(candidates[away][:16].astype(np.float32))
    assert coords.shape == (16, cfg.n_dims)
    weights = jnp.asarray([1.0, 0.7, 0.3])
    cotangent = jnp.asarray(rng.normal(size=(16, cfg.output_dim)).astype(np.float32))

    forward = jax.jit(lambda t, c: encode(t, c, cfg, weights))
    gradient = jax.jit(
        jax.grad(
            lambda t, c, fast: jnp.sum(encode(t, c, cfg, weights, fast_backward=fast) * cotangent),
            argnums=(0, 1),
        ),
        static_argnums=2,
    )
    grad_tables, grad_coords = gradient(tables, coords, True)

    # <r, J v> from the reverse-mode gradient equals the central difference of <r, f> along
    # random directions v, for the coordinates and for the tables.
    def central_difference(shift_tables, shift_coords, eps):
        def shifted(sign):
            return forward(
                [t + sign * eps * d for t, d in zip(tables, shift_tables)],
                coords + sign * eps * shift_coords,
            )

        difference = (np.asarray(shifted(1.0), np.float64)
                      - np.asarray(shifted(-1.0), np.float64)) / (2 * eps)
        return float(np.sum(difference * np.asarray(cotangent)))

    zero_tables = [jnp.zeros_like(t) for t in tables]
    for _ in range(3):
        direction = jnp.asarray(rng.normal(size=coords.shape).astype(np.float32))
        numeric = central_difference(zero_tables, direction, eps=1e-3)
        analytic = float(np.sum(np.asarray(grad_coords, np.float64) * np.asarray(direction)))
        assert abs(numeric - analytic) <= 1e-2 * max(abs(analytic), 1.0), (numeric, analytic)
        table_direction = [jnp.asarray(rng.normal(size=t.shape).astype(np.float32)) for t in tables]
        numeric = central_difference(table_direction, jnp.zeros_like(coords), eps=1e-2)
        analytic = sum(float(np.sum(np.asarray(g, np.float64) * np.asarray(d)))
                       for g, d in zip(grad_tables, table_direction))
        assert abs(numeric - analytic) <= 1e-3 * max(abs(analytic), 1.0), (numeric, analytic)

    # The custom VJP agrees with plain autodiff, for tables and coordinates.
    slow = gradient(tables, coords, False)
    fast = (grad_tables, grad_coords)
    for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(slow)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6 * np.abs(b).max())


# --------------------------------------------------------------------------------------
# Lookup plans for fixed coordinates
# --------------------------------------------------------------------------------------

PLAN_VARIANTS_2D = [
    dict(),
    dict(method="gather", gather_backward="segment"),
    dict(method="gather", gather_backward="sorted"),
    dict(method="gather", gather_backward="autodiff"),
    dict(method="separable", separable="fold", axis_op="matmul"),
    dict(method="separable", separable="fold", axis_op="lerp"),
    dict(method="separable", separable="grid", axis_op="matmul"),
    dict(method="separable", separable="grid", axis_op="lerp"),
]
PLAN_VARIANTS_3D = [
    dict(),
    dict(method="separable", separable="fold", axis_op="lerp"),
    dict(method="separable", separable="grid", axis_op="matmul"),
]


def _compare_plan_to_encode(cfg, axes, variants, seed):
    """encode_planned vs encode (plain autodiff): values and table gradients, per variant."""
    coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, cfg.n_dims)
    tables = random_tables(cfg, seed)
    weights = jnp.asarray(np.linspace(1.0, 0.25, cfg.levels), jnp.float32)
    cotangent = jnp.asarray(
        np.random.default_rng(seed).normal(size=(coords.shape[0], cfg.output_dim)), jnp.float32
    )

    def value_and_table_grad(encoder, t, extra):
        out, pullback = jax.vjp(lambda tt: encoder(tt, extra), t)
        return out, pullback(cotangent)[0]

    reference, reference_grad = jax.jit(
        lambda t, c: value_and_table_grad(
            lambda tt, cc: encode(tt, cc, cfg, weights, fast_backward=False), t, c
        )
    )(tables, coords)
    planned = jax.jit(
        lambda t, p: value_and_table_grad(lambda tt, pp: encode_planned(tt, pp, weights), t, p)
    )
    auto_methods = None
    for kwargs in variants:
        separable = kwargs.get("method") == "separable"
        plan = make_lookup(None if separable else coords, cfg,
                           grid_axes=axes if separable else None, **kwargs)
        if not kwargs:
            auto_methods = plan.methods
        out, grads = planned(tables, plan)
        np.testing.assert_allclose(
            np.asarray(out), np.asarray(reference), atol=1e-6, rtol=0, err_msg=str(kwargs)
        )
        for level, (got, want) in enumerate(zip(grads, reference_grad)):
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(
                np.asarray(got), np.asarray(want), atol=1e-6 * scale, rtol=0,
                err_msg=f"{kwargs} level {level}",
            )
    return auto_methods


def test_encode_planned_equals_encode_on_a_2d_grid_for_every_variant():
    # Grid overhanging the domain on both sides (clamped) and with a coarser and a finer
    # level than the query spacing.
    axes = [np.linspace(-3.0, 7.0, 23, dtype=np.float32), np.linspace(1.0, 13.0, 29,
                                                                     dtype=np.float32)]
    auto_methods = _compare_plan_to_encode(CFG_2D, axes, PLAN_VARIANTS_2D, seed=7)
    # Coarse levels interpolate separably, the hashed level finer than the query grid
    # gathers per point.
    assert auto_methods == ("separable", "separable", "gather")


def test_encode_planned_equals_encode_on_a_3d_grid_with_a_descending_axis():
    axes = [np.array([0.1, 0.35, 0.9], np.float32), np.linspace(0.0, 20.0, 13, dtype=np.float32),
            np.linspace(24.0, 0.0, 17, dtype=np.float32)]
    auto_methods = _compare_plan_to_encode(CFG_3D, axes, PLAN_VARIANTS_3D, seed=8)
    assert auto_methods[0] == "separable"


def test_encode_planned_on_a_single_row_grid():
    # One query row: after interpolating y the grid has a single row before x is done.
    axes = [np.array([2.0], np.float32), np.linspace(0.0, 14.0, 31, dtype=np.float32)]
    _compare_plan_to_encode(CFG_2D, axes, [dict(method="separable", separable="grid",
                                                 axis_op="matmul")], seed=10)


def test_make_lookup_detects_regular_grids_only():
    axes = [np.arange(5, dtype=np.float32), np.linspace(1, 13, 7, dtype=np.float32)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    plan = make_lookup(coords, CFG_2D)
    assert plan.grid_shape == (5, 7) and plan.n_points == 35
    assert "separable" in plan.methods
    # The same points in another order are not a C-order grid: every level gathers, and the
    # output follows the given order.
    order = np.random.default_rng(9).permutation(35)
    shuffled = make_lookup(coords[order], CFG_2D)
    assert shuffled.grid_shape is None and set(shuffled.methods) == {"gather"}
    tables = random_tables(CFG_2D, seed=9)
    planned = jax.jit(encode_planned)
    np.testing.assert_allclose(
        np.asarray(planned(tables, shuffled)), np.asarray(planned(tables, plan))[order],
        atol=1e-6,
    )
    # grid_axes alone gives the same plan as the detected grid.
    from_axes = make_lookup(None, CFG_2D, grid_axes=axes)
    np.testing.assert_array_equal(
        np.asarray(planned(tables, from_axes)), np.asarray(planned(tables, plan))
    )


def test_bad_inputs_raise_value_errors_naming_the_problem():
    tables = random_tables(CFG_2D)
    coords = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="coords"):
        encode(tables, np.zeros((4, 3), np.float32), CFG_2D)
    with pytest.raises(ValueError, match="tables"):
        encode(tables[:2], coords, CFG_2D)
    with pytest.raises(ValueError, match=r"tables\[1\]"):
        encode([tables[0], tables[0], tables[2]], coords, CFG_2D)
    with pytest.raises(ValueError, match="regular grid"):
        make_lookup(np.random.default_rng(0).uniform(0, 1, (10, 2)), CFG_2D, method="separable")
    with pytest.raises(ValueError, match="NaN"):
        make_lookup(np.full((3, 2), np.nan, np.float32), CFG_2D)
    with pytest.raises(ValueError, match="grid_axes"):
        make_lookup(coords, CFG_2D, grid_axes=[np.arange(2.0), np.arange(2.0)])
    with pytest.raises(ValueError, match="method"):
        make_lookup(coords, CFG_2D, method="fastest")
    plan = make_lookup(coords, CFG_2D)
    with pytest.raises(ValueError, match="plan"):
        encode_planned(random_tables(CFG_3D), plan)
    with pytest.raises(ValueError, match="level"):
        vertex_table_index(jnp.zeros((1, 2), jnp.int32), CFG_2D, 3)
