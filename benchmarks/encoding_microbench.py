"""Micro-benchmark of the hash-grid encoding on CPU (not a test).

Times, for the workloads the NSTM reconstructor runs every optimisation step, the forward pass
and the forward + backward pass of ``sum(encode(...) ** 2)`` with respect to the tables, for
each evaluation strategy in ``nstm_acquire.nstm.encoding``:

* ``encode/autodiff``   coordinates traced every call, JAX's gather / scatter-add autodiff
* ``encode/segment``    coordinates traced every call, custom VJP (one segment sum per level)
* ``gather/autodiff``   planned corner gathers, JAX's scatter-add backward
* ``gather/segment``    planned corner gathers, one segment sum per level (custom VJP)
* ``gather/sorted``     planned corner gathers, presorted segment sum (custom VJP)
* ``grid/matmul``       regular grid: gather the touched vertex grid G, then per-axis dense
                        interpolation matrices (``A_y G A_x^T``), all matmuls
* ``grid/lerp``         same, per-axis two-tap row gathers with a sorted segment-sum backward
* ``fold/matmul``       regular grid: the last axis' two taps gathered straight from the table
                        (rows contiguous), the other axes by interpolation matrices
* ``fold/lerp``         same, the other axes by two-tap row gathers
* ``auto``              what ``make_lookup`` picks by default (used by ``encode_planned``)

plus the auto plan feeding a 64-wide tanh layer, and that layer alone, to show the encoding's
share of a network's first layer.

Run: ``/work/venv/bin/python benchmarks/encoding_microbench.py [--repeats 20] [--quick]``.
Numbers are wall-clock milliseconds, jit-compiled, synchronised with ``block_until_ready``,
after compilation; variants are timed round-robin (one call each per round) so that load from
other processes affects them alike; median and minimum over the rounds are printed.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from nstm_acquire.nstm.encoding import (  # noqa: E402
    GridEncodingConfig,
    encode,
    encode_planned,
    init_tables,
    level_is_dense,
    level_resolutions,
    make_lookup,
)


def time_once(fn, *args) -> float:
    """Wall time of one call ``fn(*args)`` in ms, synchronised with ``block_until_ready``."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return 1e3 * (time.perf_counter() - start)


def workloads(quick: bool) -> list[tuple[str, GridEncodingConfig, list[np.ndarray]]]:
    """(name, config, per-axis grid vectors) of the reconstructor's fixed-coordinate lookups."""
    scene_n = 160 if quick else 320
    motion_n = 128 if quick else 256
    scene_axis = np.arange(scene_n, dtype=np.float32)  # pixel centres, 1 µm pixels
    scene = GridEncodingConfig(
        n_dims=2,
        levels=8,
        features=2,
        log2_table_size=16,
        base_resolution=(16.0, 16.0),
        finest_resolution=(2.0 * scene_n, 2.0 * scene_n),
        domain_min=(0.0, 0.0),
        domain_max=(scene_n - 1.0, scene_n - 1.0),
    )
    dense_n = 128 if quick else 256
    dense_axis = np.arange(dense_n, dtype=np.float32)
    dense6 = GridEncodingConfig(
        n_dims=2,
        levels=6,
        features=2,
        log2_table_size=16,
        base_resolution=(8.0, 8.0),
        finest_resolution=(200.0, 200.0),
        domain_min=(0.0, 0.0),
        domain_max=(dense_n - 1.0, dense_n - 1.0),
    )
    motion_axis = np.arange(motion_n, dtype=np.float32)
    shot_times = np.array([0.05, 0.30, 0.55, 0.80], dtype=np.float32)  # s
    motion = GridEncodingConfig(
        n_dims=3,
        levels=8,
        features=2,
        log2_table_size=16,
        base_resolution=(2.0, 2.0, 2.0),
        finest_resolution=(32.0, 8.0, 8.0),
        domain_min=(0.0, 0.0, 0.0),
        domain_max=(1.0, motion_n - 1.0, motion_n - 1.0),
    )
    return [
        (f"scene 2D {scene_n}x{scene_n}, L=8 F=2 T=16, res 16..{2 * scene_n}", scene,
         [scene_axis, scene_axis]),
        (f"6 dense 2D levels {dense_n}x{dense_n}, res 8..200", dense6, [dense_axis, dense_axis]),
        (f"motion (t,y,x) 4x{motion_n}x{motion_n}, res (2..32, 2..8, 2..8)", motion,
         [shot_times, motion_axis, motion_axis]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="smaller grids, fewer variants")
    args = parser.parse_args()

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
    for name, cfg, axes in workloads(args.quick):
        coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, cfg.n_dims)
        tables = init_tables(cfg, jax.random.PRNGKey(0))
        tables = [t * 1e4 for t in tables]  # O(1) values
        res = level_resolutions(cfg)
        dense = level_is_dense(cfg)
        print(f"\n## {name}: N={coords.shape[0]}")
        print("levels (cells per axis, dense?): "
              + ", ".join(f"{'x'.join(map(str, r))}{'' if d else ' hashed'}"
                          for r, d in zip(res, dense)))
        reference = jax.jit(lambda t, c, cfg=cfg: encode(t, c, cfg))(tables, coords)

        variants: list[tuple[str, object]] = [("encode/autodiff", False), ("encode/segment", True)]
        sep = dict(grid_axes=axes, method="separable")
        plan_kwargs = {
            "gather/autodiff": dict(method="gather", gather_backward="autodiff"),
            "gather/segment": dict(method="gather", gather_backward="segment"),
            "gather/sorted": dict(method="gather", gather_backward="sorted"),
            "grid/matmul": dict(sep, separable="grid", axis_op="matmul"),
            "grid/lerp": dict(sep, separable="grid", axis_op="lerp"),
            "fold/matmul": dict(sep, separable="fold", axis_op="matmul"),
            "fold/lerp": dict(sep, separable="fold", axis_op="lerp"),
            "auto (grid detected)": dict(),
        }
        if args.quick:
            for label in ("gather/sorted", "grid/matmul", "fold/matmul", "encode/autodiff"):
                plan_kwargs.pop(label, None)
            variants = variants[1:]
        for label, kwargs in plan_kwargs.items():
            coords_arg = None if "grid_axes" in kwargs else coords
            variants.append((label, make_lookup(coords_arg, cfg, **kwargs)))

        compiled = []
        for label, plan in variants:
            if isinstance(plan, bool):
                fast = plan
                forward = jax.jit(lambda t, c, cfg=cfg, fast=fast: encode(t, c, cfg,
                                                                          fast_backward=fast))
                loss = jax.jit(jax.value_and_grad(
                    lambda t, c, cfg=cfg, fast=fast: jnp.sum(
                        encode(t, c, cfg, fast_backward=fast) ** 2)))
                arg = jnp.asarray(coords)
                methods = "-"
            else:
                forward = jax.jit(encode_planned)
                loss = jax.jit(jax.value_and_grad(lambda t, p: jnp.sum(encode_planned(t, p) ** 2)))
                arg = plan
                methods = ",".join(m[0] for m in plan.methods)  # s=separable, g=gather
            error = float(jnp.max(jnp.abs(forward(tables, arg) - reference)))
            jax.block_until_ready(loss(tables, arg))
            compiled.append((label, forward, loss, arg, methods, error))
        # What the network sees: the encoding feeding a 64-wide tanh layer, and the layer
        # alone on a constant input of the same shape (the difference is the encoding's share).
        weight = jnp.asarray(
            np.random.default_rng(0).normal(size=(cfg.output_dim, 64)).astype(np.float32) / 8
        )
        auto_plan = compiled[-1][3]
        layer_input = jnp.ones((coords.shape[0], cfg.output_dim), jnp.float32)
        for label, fn, arg in [
            ("auto + 64-wide layer", lambda t, p, w=weight: jnp.tanh(encode_planned(t, p) @ w),
             auto_plan),
            ("64-wide layer alone", lambda t, x, w=weight: jnp.tanh((x + 0 * t[0][0, 0]) @ w),
             layer_input),
        ]:
            forward = jax.jit(fn)
            loss = jax.jit(jax.value_and_grad(lambda t, a, fn=fn: jnp.sum(fn(t, a))))
            jax.block_until_ready(loss(tables, arg))
            compiled.append((label, forward, loss, arg, "", float("nan")))
        # Round-robin over variants so that load from other processes hits all alike.
        samples = {label: ([], []) for label, *_ in compiled}
        for _ in range(args.repeats):
            for label, forward, loss, arg, *_ in compiled:
                samples[label][0].append(time_once(forward, tables, arg))
                samples[label][1].append(time_once(loss, tables, arg))
        print(f"{'variant':<22} {'fwd median':>10} {'fwd min':>8} {'f+b median':>10} "
              f"{'f+b min':>8}  max|diff|  levels")
        for label, *_, methods, error in compiled:
            fwd, both = (np.asarray(v) for v in samples[label])
            print(f"{label:<22} {np.median(fwd):10.2f} {fwd.min():8.2f} {np.median(both):10.2f} "
                  f"{both.min():8.2f}  {error:9.1e}  {methods}")
        print("(fwd+bwd: value and gradient w.r.t. the tables of sum(encoding**2); the layer "
              "rows use sum(tanh(encoding @ W)))")


if __name__ == "__main__":
    main()
