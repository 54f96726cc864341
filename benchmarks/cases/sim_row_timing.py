"""SIM with a rolling-shutter camera: frame-level vs row-exact timing, against ground truth.

2D: the simulated SIM camera exposes its rows one after another (the last row opens
``SKEW_S`` after the first, as a full sCMOS sensor read out in 10 ms) and each row integrates
the moving beads over its own interval. The same window is fitted with frame-level timing
(every shot rendered at the middle of its frame, the best single time) and with row-exact
timing (``recon/row_timing.py``: 4 blocks of rows, each at its own time). Scores: correlation
with the band-limited truth at each frame's middle (``benchmarks/sim_common.py``), seconds.

3D (forward model only; a fit at 4 x 32 x 32 with every block binned costs several times the
frame-level fit's 3-8 minutes on 2 cores): the true moving beads rendered at the times each
layout gives, relative residual against the frames, and the forward model's value-and-gradient
time per layout.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import FIGURES, save_result
from benchmarks.sim_common import MARGIN, band_limited_truth, score
from nstm_acquire.evaluation.figures import comparison_figure
from nstm_acquire.hardware.simulated.noise import CameraNoise
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import SimulatedSimWindow, simulate_sim_window
from nstm_acquire.hardware.simulated.world import sim_illumination_from_config
from nstm_acquire.nstm.config import NSTMConfig, default_config
from nstm_acquire.physics.rolling_shutter.timing import RowTiming
from nstm_acquire.recon.arrays import WindowResult, reconstruct_sim
from nstm_acquire.recon.problem import ProblemBuilder
from nstm_acquire.recon.row_timing import RowBlockTiming, frame_centres_s

EXPOSURE_S = 0.002
SKEW_S = 0.010  # the last row opens this long after the first
FRAME_S = 0.0125  # frame interval: exposure + skew + 0.5 ms
MOTIONS = {
    "translation across the rows": "translation:vx=10,vy=2",
    "translation along the readout": "translation:vx=2,vy=10",
}
BLOCKS = 4
# 3D forward check: 4 planes x 32 x 32, 1 ms exposures, 3 ms skew, frames 4.2 ms apart
EXPOSURE_3D_S, SKEW_3D_S, FRAME_3D_S, MOTION_3D = 0.001, 0.003, 0.0042, "vibration:ax=0.1,ay=0.05,f=40"
MOTION_3D_FIT = "vibration:ax=0.4,ay=0.2,f=6"  # 3D fits (full run only): slower, so the networks can follow it


def window(n: int, motion: str, seed: int = 1) -> SimulatedSimWindow:
    """Nine 2D SIM shots of beads, ``n`` x ``n`` camera pixels (80 nm), rows read top to bottom."""
    cfg = simulated_config().sim2d
    ill = sim_illumination_from_config(cfg, False)
    field = (n * cfg.optics.pixel_size_um,) * 2
    area = field[0] * field[1]
    phantom = BeadPhantom(
        field, n_beads=int(0.25 * area), diameter_um=0.19, seed=seed, pair_separations_um=(0.2, 0.25, 0.3),
        n_pairs_each=max(1, int(area // 100)),
    )  # fmt: skip
    return simulate_sim_window(
        cfg.optics, ill, phantom, motion, (n, n), frame_interval_s=FRAME_S, exposure_s=EXPOSURE_S, seed=seed,
        row_time_s=SKEW_S / (n - 1), exposure_subsamples=4,
    )  # fmt: skip


def _reconstruct(
    win: SimulatedSimWindow, config: NSTMConfig, exposure_s: float, n_blocks: int | None
) -> tuple[WindowResult, np.ndarray, float]:
    """The window reconstructed with the true pattern, row-exact in ``n_blocks`` blocks or (None)
    frame-level at each frame's middle: ``(result, frame middles (S, Z) s, wall s)``."""
    timing = RowTiming(win.raw.shape[-1], win.row_time_s, exposure_s)
    centre = frame_centres_s(win.timestamps_s, win.exposure_s, timing).reshape(win.timestamps_s.shape)
    starts = win.timestamps_s if n_blocks is not None else centre - 0.5 * exposure_s
    t0 = time.perf_counter()
    result = reconstruct_sim(
        win.raw, starts, win.exposure_s, win.optics, win.illumination, config=config,
        row_timing=None if n_blocks is None else timing, row_blocks=n_blocks or 1,
    )  # fmt: skip
    return result, centre, time.perf_counter() - t0


def fit_case(config: NSTMConfig, win: SimulatedSimWindow, n_blocks: int | None) -> tuple[dict[str, Any], WindowResult]:
    """One reconstruction with the true pattern (``n_blocks`` None: frame-level timing at each
    frame's middle), scored at the frames' middles."""
    result, centre, wall = _reconstruct(win, config, EXPOSURE_S, n_blocks)
    np.testing.assert_allclose(result.times_s, centre[:, 0])  # both rendered at the frame middles
    f = result.fit
    return {
        "blocks": n_blocks,
        **score(win, result),
        "steps": f.steps,
        "best_step": f.best_step,
        "wall_s": wall,
        "compile_s": f.compile_s,
        "s_per_step": (f.wall_s - f.compile_s) / max(f.steps - config.fit.eval_every, 1),
    }, result


def _figure(name: str, win: SimulatedSimWindow, frame: WindowResult, exact: WindowResult) -> str:
    truth = band_limited_truth(win, float(frame.times_s[0]))[0]
    cut = lambda a: a[MARGIN:-MARGIN, MARGIN:-MARGIN]  # noqa: E731  (as scored)

    def scaled(img: np.ndarray) -> np.ndarray:  # the least-squares gain (correlation ignores it)
        a, t = cut(img), cut(truth)
        return a * float(np.sum(a * t) / np.sum(a * a))

    fits = [scaled(frame.scene[0, 0, 0]), scaled(exact.scene[0, 0, 0])]
    errors = [f - cut(truth) for f in fits]
    lim = float(np.percentile(np.abs(errors[0]), 99.5))
    raw = np.kron(win.raw[0, 0], np.ones((2, 2)))
    path = FIGURES / f"sim_row_timing_{name.replace(' ', '_')}.png"
    comparison_figure(
        path,
        [
            ("raw shot 0", cut(raw)),
            ("truth in the SIM band, shot 0", cut(truth)),
            ("frame-level timing", fits[0]),
            (f"row-exact, {BLOCKS} blocks", fits[1]),
            ("error, frame-level", errors[0]),
            ("error, row-exact", errors[1]),
        ],
        shared_range=[1, 2, 3],
        limits={4: (-lim, lim), 5: (-lim, lim)},
        pixel_size_um=win.optics.pixel_size_um / 2,
        title=f"2D SIM, rolling shutter: {name}",
        ncols=3,
    )
    return path.name


def forward_3d(n: int = 32, nz: int = 4) -> list[dict[str, Any]]:
    """3D: residual of the true beads through each layout, and its value-and-gradient time."""
    w = window_3d(n, nz, MOTION_3D)
    optics, ill, row_time = w.optics, w.illumination, w.row_time_s
    timing = RowTiming(n, row_time, EXPOSURE_3D_S)
    centre = frame_centres_s(w.timestamps_s, w.exposure_s, timing).reshape(w.timestamps_s.shape)
    builder = ProblemBuilder(optics, ill, (n, n), nz, default_config("sim3d"))
    builder.forward = builder.sim_forward(ill)  # the true pattern
    y = w.raw / w.raw.mean()
    px = optics.pixel_size_um
    # the residual camera noise alone leaves (Poisson + read noise, raw in photo-electrons),
    # relative to the frames; quantisation (0.5 e- steps) adds about 0.14 e- RMS
    cam = CameraNoise()
    noise_e2 = np.sum(np.maximum(w.raw, 0.0)) + w.raw.size * (cam.read_noise_e**2 + cam.gain_e_per_adu**2 / 12)
    out: list[dict[str, Any]] = [
        {"layout": "camera noise alone", "residual": float(np.sqrt(noise_e2) / np.linalg.norm(w.raw))}
    ]
    layouts = [
        ("frame-level, 2 frames per volume (default)", None, None),
        ("frame-level, every frame its own volume", None, 0.0),
        (f"row-exact, {BLOCKS} blocks, 2 blocks per volume (default)", BLOCKS, None),
        (f"row-exact, {BLOCKS} blocks, every block its own volume", BLOCKS, 0.0),
    ]
    for label, blocks, spread in layouts:
        builder.time_bin_s = spread
        if blocks is None:
            builder.row_timing = None
            data, forward = builder._binned_data(y, centre, w.exposure_s)
        else:
            builder.row_timing = RowBlockTiming(timing, blocks)
            data, forward, _, _ = builder._row_binned_data(y, w.timestamps_s, w.exposure_s)
        scenes = np.stack(
            [
                np.mean([w.sample.on_grid(float(t), (n, n), px, upsample=2, z_um=w.planes_um) for t in r], 0)
                for r in data.times_s
            ]
        )[:, None].astype(np.float32)
        shots = jnp.asarray(data.shots)
        pred = np.asarray(jax.jit(forward.render)(jnp.asarray(scenes), shots))
        wt = data.weights.reshape(data.weights.shape + (1,) * (pred.ndim - data.weights.ndim))
        gain = np.sum(wt * pred * data.measurements) / np.sum(wt * pred * pred)
        resid = float(np.sqrt(np.sum(wt * (gain * pred - data.measurements) ** 2) / np.sum(wt * data.measurements**2)))
        meas, wts = jnp.asarray(data.measurements), jnp.asarray(wt)

        def loss(
            s: jax.Array, fwd: Any = forward, k: jax.Array = shots, m: jax.Array = meas, v: jax.Array = wts
        ) -> jax.Array:
            return jnp.sum(v * (fwd.render(s, k) - m) ** 2)

        grad = jax.jit(jax.value_and_grad(loss))
        x = jnp.asarray(scenes)
        jax.block_until_ready(grad(x))
        t0 = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(grad(x))
        out.append(
            {
                "layout": label,
                "volumes": int(data.measurements.shape[0]),
                "frames_rendered": int(np.sum(np.any(data.weights.reshape(*data.weights.shape[:2], -1) > 0, axis=-1))),
                "residual": resid,
                "value_and_grad_s": (time.perf_counter() - t0) / 3,
            }
        )
    return out


def window_3d(n: int, nz: int, motion: str) -> SimulatedSimWindow:
    """A 3D window (``nz`` planes, plane by plane) of beads on the rolling-shutter camera."""
    cfg = simulated_config().sim3d
    ill = sim_illumination_from_config(cfg, True)
    optics = cfg.optics
    field = (n * optics.pixel_size_um,) * 2
    phantom = BeadPhantom(field, n_beads=int(3 * field[0] * field[1]), diameter_um=0.1, seed=1,
                          z_range_um=(-0.2, 0.2), n_pairs_each=0)  # fmt: skip
    return simulate_sim_window(
        optics, ill, phantom, motion, (n, n), n_planes=nz, z_step_um=optics.z_step_um, frame_interval_s=FRAME_3D_S,
        exposure_s=EXPOSURE_3D_S, photons=400.0, seed=1, row_time_s=SKEW_3D_S / (n - 1), plane_order="plane_major",
        exposure_subsamples=2,
    )  # fmt: skip


def fit_3d(n: int, nz: int, motion: str, n_blocks: int | None) -> dict[str, Any]:
    """A 3D fit (default ``sim3d`` settings, the true pattern; ``n_blocks`` None: frame-level
    timing at each frame's middle, 2 frames per volume), scored in the SIM band."""
    from benchmarks.cases.sim3d_motion import in_sim_band

    win = window_3d(n, nz, motion)
    config = default_config("sim3d")
    result, _, wall = _reconstruct(win, config, EXPOSURE_3D_S, n_blocks)
    f = result.fit
    sc = score(win, in_sim_band(win, result))
    return {
        "blocks": n_blocks, "volumes": int(result.info["time_bins"]), "nstm_corr": sc["nstm_corr"],
        "nstm_corr_worst": sc["nstm_corr_worst"], "wiener_corr": sc["wiener_corr"], "steps": f.steps,
        "best_step": f.best_step, "wall_s": wall,
        "s_per_step": (f.wall_s - f.compile_s) / max(f.steps - config.fit.eval_every, 1),
    }  # fmt: skip


def run(quick: bool = False) -> dict:
    n = 64 if quick else 128
    config = default_config("sim2d")
    numbers: dict[str, Any] = {
        "size": n, "exposure_s": EXPOSURE_S, "skew_s": SKEW_S, "frame_interval_s": FRAME_S,
        "row_time_s": SKEW_S / (n - 1), "blocks": BLOCKS, "cases": {},
    }  # fmt: skip
    rows, figs = [], []
    for name, motion in MOTIONS.items():
        win = window(n, motion)
        speed_px = np.hypot(*[float(v) for v in (p.split("=")[1] for p in motion.split(":")[1].split(","))])
        skew_px = speed_px * SKEW_S / win.optics.pixel_size_um
        travel_px = speed_px * (FRAME_S * (win.raw.shape[0] - 1)) / win.optics.pixel_size_um
        frame, frame_result = fit_case(config, win, None)
        exact, exact_result = fit_case(config, win, BLOCKS)
        numbers["cases"][name] = {"motion": motion, "skew_px": skew_px, "travel_px": travel_px, "fits": [frame, exact]}
        figs.append(f"![{name}](figures/{_figure(name, win, frame_result, exact_result)})")
        for r in (frame, exact):
            label = "frame-level (frame middle)" if r["blocks"] is None else f"row-exact, {r['blocks']} blocks"
            rows.append(
                f"| {name} | {skew_px:.1f} / {travel_px:.0f} | {label} | {r['wiener_corr']:.3f} | **{r['nstm_corr']:.3f}** "
                f"({r['nstm_corr_worst']:.3f}) | {r['resolved_pairs_nstm']} of {r['pairs_total']} | "
                f"{r['steps']} ({r['best_step']}) | {r['wall_s']:.0f} | {r['s_per_step']:.2f} |"
            )
    n3, nz3 = 32, 4
    numbers["forward_3d"] = {"size": [nz3, n3, n3], "exposure_s": EXPOSURE_3D_S, "skew_s": SKEW_3D_S,
                             "frame_interval_s": FRAME_3D_S, "motion": MOTION_3D, "layouts": forward_3d(n3, nz3)}  # fmt: skip
    fits3: list[dict[str, Any]] = []
    if not quick:  # two 3D fits, about 2 and 6 minutes on 2 shared cores
        fits3 = [fit_3d(n3, nz3, MOTION_3D_FIT, None), fit_3d(n3, nz3, MOTION_3D_FIT, BLOCKS)]
    numbers["fits_3d"] = {"size": [nz3, n3, n3], "motion": MOTION_3D_FIT, "fits": fits3}
    rows3fit = [
        f"| {'frame-level (frame middle), 2 frames per volume' if r['blocks'] is None else f'row-exact, {BLOCKS} blocks, 2 blocks per volume'} "
        f"| {r['volumes']} | {r['wiener_corr']:.3f} | **{r['nstm_corr']:.3f}** ({r['nstm_corr_worst']:.3f}) | "
        f"{r['steps']} ({r['best_step']}) | {r['wall_s']:.0f} | {r['s_per_step']:.2f} |"
        for r in fits3
    ]
    fit_md = (
        [
            f"**3D fits** (full run only; the same 3D window with the beads vibrating `{MOTION_3D_FIT}`: up to",
            "about 17 µm/s, 0.6 px of skew, ±6 px over the window; default `sim3d` settings, the true",
            "pattern). Corr.: in the SIM band, as `sim3d_motion` scores it.",
            "",
            "| timing | volumes | Wiener corr. | NSTM corr. (worst) | steps (kept) | wall (s) | s/step |",
            "|---|---|---|---|---|---|---|",
            *rows3fit,
            "",
        ]
        if fits3
        else ["**3D fits**: not run in `--quick`.", ""]
    )
    rows3 = [
        f"| {r['layout']} | {r.get('volumes', '-')} | {r.get('frames_rendered', '-')} | **{r['residual']:.3f}** | "
        + (f"{1000 * r['value_and_grad_s']:.0f} |" if "value_and_grad_s" in r else "- |")
        for r in numbers["forward_3d"]["layouts"]
    ]
    md = "\n".join(
        [
            "## SIM with a rolling-shutter camera: frame-level vs row-exact timing",
            "",
            f"`python -m benchmarks.run sim_row_timing`. **2D**: {n} x {n} camera pixels (80 nm; output grid",
            "40 nm) of the simulated microscope's sim2d optics, 190 nm beads, nine shots of",
            f"{1000 * EXPOSURE_S:g} ms {1000 * FRAME_S:g} ms apart; the camera reads its rows top to bottom and the last row",
            f"opens {1000 * SKEW_S:g} ms after the first; every row integrates the moving beads over its own interval.",
            "*Skew / travel*: how far the beads move between the first and the last row's opening,",
            "and over the window (camera px). *Frame-level*: every shot rendered at the middle of its",
            'frame; *row-exact*: each block of rows at its own time (docs/rolling_shutter.md, "Row-exact',
            'timing for SIM"). The true pattern for both; default `sim2d` NSTM settings (Wiener start).',
            "Corr.: correlation with the truth in the SIM band at each frame's middle (sim_quality's",
            "score, 8 output px of border out), mean over the shots (worst); pairs: resolved bead",
            "pairs summed over shots; wall: whole fit including the Wiener and compilation; s/step",
            "after compilation.",
            "",
            "| motion | skew / travel (px) | timing | Wiener corr. | NSTM corr. | pairs | steps (kept) | wall (s) | s/step |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"**3D, forward model only** ({nz3} planes x {n3} x {n3} px, 60 frames of {1000 * EXPOSURE_3D_S:g} ms,",
            f"{1000 * FRAME_3D_S:g} ms apart, plane by plane, the last row opening {1000 * SKEW_3D_S:g} ms after the",
            f"first, 100 nm beads moving `{MOTION_3D}` (µm, Hz: up to 25 µm/s, 1 px of skew), 400",
            "photo-electrons): the true beads",
            "rendered at the times of each layout, relative residual against the frames (after one",
            "least-squares gain; first row: what the camera noise alone leaves), and the forward model's value and",
            "gradient (ms, mean of 3 after compilation). *Volumes*: scene evaluations per step;",
            "*frames*: frame renders per step.",
            "",
            "| layout | volumes | frames | residual | value+grad (ms) |",
            "|---|---|---|---|---|",
            *rows3,
            "",
            *fit_md,
            "Figures (shot 0 at its frame's middle, output grid, border cut as scored; the NSTM results",
            "times their least-squares gain to the truth, on the truth's range; the errors on one shared range):",
            "",
            *figs,
        ]
    )
    save_result("sim_row_timing", numbers, md, order=43)
    return numbers
