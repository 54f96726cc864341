"""Rolling-shutter lensless video (DiffuserCam): NSTM vs static deconvolution vs FISTA with 3D TV.

One simulated window (``nstm_acquire.hardware.simulated.lensless``: a caustic PSF per colour,
three bright RGB objects on known curved paths over a faint background, every sensor row
integrated over its own open interval, Poisson-Gaussian noise). Each reconstruction runs in
its own process, so its wall time and peak memory are its own. Scores against the truth at
every time point of the window: PSNR per time point (mean, worst) with the truth's peak as the
range; for the NSTM also the objects' paths from the fitted motion (pixels from the truth).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import resource
import time
from typing import Any

import numpy as np

from benchmarks.common import FIGURES, save_result

ROW_TIME_S = 27.52e-6  # the published colour sCMOS, slow-scan rolling shutter
TAU, WEIGHT_T, FISTA_ITER = 3e-6, 10.0, 1000  # FISTA-3DTV: the best of a sweep (docs/rolling_shutter.md)


SPEEDS_PX_PER_ROW = {"moderate": 0.1, "fast": 0.15}  # typical object speed, pixels per row time


def _case(quick: bool, speed: str = "moderate") -> dict[str, Any]:
    n, n_frames, n_time = (24, 3, 8) if quick else (32, 3, 16)
    return {
        "n": n, "n_frames": n_frames, "n_time": n_time, "exposure_rows": n // 4, "speed": speed,
        "speed_px_per_s": SPEEDS_PX_PER_ROW[speed] / ROW_TIME_S, "photons": 2e4,
        "steps": 300 if quick else 1200, "tau": TAU, "weight_t": WEIGHT_T, "fista_iter": FISTA_ITER,
    }


def _simulate(c: dict[str, Any]):
    from nstm_acquire.hardware.simulated.lensless import (
        LenslessCamera,
        MovingRgbScene,
        caustic_psf,
        simulate_lensless_video,
    )

    cam = LenslessCamera((c["n"], c["n"]), ROW_TIME_S, c["exposure_rows"] * ROW_TIME_S, photons=c["photons"])
    scene = MovingRgbScene.random(
        (c["n"], c["n"]), 3, speed_px_per_s=c["speed_px_per_s"], duration_s=c["n_frames"] * cam.span_s(), seed=1
    )
    psf = caustic_psf((c["n"], c["n"]), seed=0)
    return simulate_lensless_video(cam, scene, psf, c["n_frames"], steps_per_row=2, seed=0)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _method(name: str, c: dict[str, Any]) -> dict[str, Any]:
    """One reconstruction in a fresh process: its output, seconds and peak memory."""
    import os

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from nstm_acquire.physics.rolling_shutter import (
        RollingShutterForward,
        RowTiming,
        fista_tv3d,
        tikhonov_deconvolution,
    )
    from nstm_acquire.recon.rolling_shutter import reconstruct_rolling_shutter, rolling_shutter_config

    video = _simulate(c)
    timing = RowTiming(c["n"], ROW_TIME_S, c["exposure_rows"] * ROW_TIME_S)
    base_mib = _peak_mib()
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if name == "nstm":
        res = reconstruct_rolling_shutter(
            video.frames, video.psf, timing, video.frame_starts_s, n_time=c["n_time"],
            config=rolling_shutter_config(c["steps"]),
        )
        out["video"] = res.video
        pos = video.scene.positions_yx(res.times_s)
        out["tracks"] = res.trajectories(pos[0], float(res.times_s[0]), res.times_s)
        out["fit"] = res.fit.summary()
    else:
        fwd = RollingShutterForward.build(video.psf, timing, c["n"], c["n_time"])
        if name == "static":
            static = tikhonov_deconvolution(video.frames, fwd.conv, reg=1e-3)
            out["video"] = np.repeat(static, c["n_time"], axis=0)
        else:
            out["video"], _ = fista_tv3d(
                fwd, fwd.frames_to_blocks(video.frames), tau=c["tau"], n_iter=c["fista_iter"], weight_t=c["weight_t"]
            )
    out["wall_s"] = time.perf_counter() - t0
    out["peak_mib"] = _peak_mib()
    out["start_mib"] = base_mib
    return out


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    return float(10 * np.log10(peak**2 / np.mean((a - b) ** 2)))


def _figure(path, video, truth, outs, times, tracks, true_paths) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(times)
    picks = [0, k // 2, k - 1]
    peak = truth.max()
    rows = [("truth", truth), ("static deconvolution", outs["static"]["video"]),
            ("FISTA 3D TV", outs["fista"]["video"]), ("NSTM", outs["nstm"]["video"])]
    fig, ax = plt.subplots(len(picks), len(rows) + 2, figsize=(2.3 * (len(rows) + 2), 2.4 * len(picks)))
    nt = k // video.frames.shape[0]
    for i, p in enumerate(picks):
        raw = video.frames[p // nt]
        ax[i, 0].imshow(np.clip(np.moveaxis(raw / np.percentile(raw, 99.5), 0, -1), 0, 1))
        ax[i, 0].set_title(f"raw frame {p // nt}" if i == 0 else "", fontsize=8)
        ax[i, 0].set_ylabel(f"t = {1e3 * (times[p] - times[0]):.2f} ms", fontsize=8)
        for j, (name, vid) in enumerate(rows, start=1):
            ax[i, j].imshow(np.clip(np.moveaxis(vid[p] / peak, 0, -1), 0, 1))
            ax[i, j].set_title(name if i == 0 else "", fontsize=8)
        a = ax[i, -1]
        a.imshow(np.clip(np.moveaxis(truth[p] / peak, 0, -1), 0, 1), alpha=0.5)
        a.plot(true_paths[:, :, 1], true_paths[:, :, 0], "w-", lw=1.5)
        a.plot(tracks[:, :, 1], tracks[:, :, 0], "m--", lw=1.2)
        a.set_title("paths: truth (white), NSTM (magenta)" if i == 0 else "", fontsize=7)
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _one(c: dict[str, Any], quick: bool) -> tuple[dict[str, Any], str, str]:
    """Every method on one simulated window: numbers, table rows, figure name."""
    ctx = mp.get_context("spawn")
    outs = {}
    for name in ("static", "fista", "nstm"):
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            outs[name] = pool.submit(_method, name, c).result()
        print(f"  {c['speed']} {name}: {outs[name]['wall_s']:.0f} s, peak {outs[name]['peak_mib']:.0f} MiB", flush=True)
    video = _simulate(c)
    from nstm_acquire.physics.rolling_shutter import RollingShutterForward, RowTiming

    timing = RowTiming(c["n"], ROW_TIME_S, c["exposure_rows"] * ROW_TIME_S)
    fwd = RollingShutterForward.build(video.psf, timing, c["n"], c["n_time"])
    times = fwd.times_s(timing, video.frame_starts_s)
    truth = np.stack([video.scene.render(t) for t in times])
    peak = float(truth.max())
    true_paths = video.scene.positions_yx(times)
    err = np.linalg.norm(outs["nstm"]["tracks"] - true_paths, axis=-1)
    numbers: dict[str, Any] = {"case": c, "methods": {}}
    for name, o in outs.items():
        p = [_psnr(o["video"][i], truth[i], peak) for i in range(len(times))]
        numbers["methods"][name] = {
            "psnr_mean": float(np.mean(p)), "psnr_worst": float(np.min(p)), "psnr": p,
            "wall_s": o["wall_s"], "peak_mib": o["peak_mib"], "start_mib": o["start_mib"],
        }
    lengths = np.linalg.norm(np.diff(true_paths, axis=0), axis=-1).sum(0)
    numbers["trajectory_error_px"] = {
        "mean": float(err.mean()), "max": float(err.max()), "max_per_object": err.max(axis=0).tolist(),
        "path_length_px": lengths.tolist(),
    }
    numbers["nstm_fit"] = outs["nstm"]["fit"]
    fig = f"rolling_shutter_{c['speed']}{'_quick' if quick else ''}.png"
    _figure(FIGURES / fig, video, truth, outs, times, outs["nstm"]["tracks"], true_paths)
    labels = {"static": "static deconvolution (Tikhonov, per frame)", "fista": "FISTA, 3D TV (t, y, x)", "nstm": "NSTM"}
    rows = []
    for key in ("static", "fista", "nstm"):
        m = numbers["methods"][key]
        t = numbers["trajectory_error_px"]
        traj = f"{t['mean']:.1f} ({t['max']:.1f})" if key == "nstm" else "-"
        rows.append(f"| {c['speed']}: paths {', '.join(f'{v:.0f}' for v in lengths)} px | {labels[key]} | "
                    f"{m['psnr_mean']:.2f} | {m['psnr_worst']:.2f} | {traj} | {m['wall_s']:.0f} | "
                    f"{m['peak_mib']:.0f} ({m['start_mib']:.0f}) |")
    return numbers, "\n".join(rows), fig


def run(quick: bool = False) -> dict:
    numbers: dict[str, Any] = {"speeds": {}}
    rows, figs = [], []
    for speed in SPEEDS_PX_PER_ROW:
        c = _case(quick, speed)
        numbers["speeds"][speed], r, fig = _one(c, quick)
        rows.append(r)
        figs.append(f"![rolling shutter, {speed}](figures/{fig})")
    c = _case(quick)
    fits = "; ".join(f"{k}: {v['nstm_fit']}" for k, v in numbers["speeds"].items())
    span_ms = 1e3 * ((c["n"] - 1) * ROW_TIME_S + c["exposure_rows"] * ROW_TIME_S)
    md = "\n".join([
        "## Rolling-shutter lensless video (DiffuserCam): NSTM vs deconvolution vs FISTA-3DTV",
        "",
        f"`python -m benchmarks.run rolling_shutter`. The simulated lensless camera "
        f"(`hardware/simulated/lensless.py`): {c['n']} x {c['n']} px RGB sensor behind a caustic diffuser "
        f"(one PSF per colour), {c['n_frames']} back-to-back frames read top to bottom at the published "
        f"27.52 µs per row, each row open {c['exposure_rows']} row times ({1e6 * c['exposure_rows'] * ROW_TIME_S:.0f} µs; "
        f"a frame spans {span_ms:.2f} ms), three bright objects (Gaussians, σ 1.3-1.8 px) on curved paths that "
        "never come within 6 px of each other, over a faint background; "
        f"{c['photons']:.0f} photo-electrons per unit brightness plus 2 e- read noise. Two speeds: typical "
        f"{SPEEDS_PX_PER_ROW['moderate']} and {SPEEDS_PX_PER_ROW['fast']} px per row time (path lengths over the "
        f"window in the table). Scored at the {c['n_frames'] * c['n_time']} time points of the window "
        f"({c['n_time']} per frame): PSNR against the truth (range: the truth's peak), mean and worst time point. "
        "Static deconvolution: each frame as a static scene (Tikhonov 1e-3, non-negative, 200 FISTA steps), "
        "held over the frame's time points. FISTA-3DTV: the video at the same time points, anisotropic TV "
        f"weight {c['tau']:g}, time axis weighted {c['weight_t']:g}x (the best of a small sweep, docs/rolling_shutter.md), "
        f"{c['fista_iter']} iterations. NSTM: "
        f"`rolling_shutter_config({c['steps']})` ({fits}). *Path error*: the objects' paths queried from the "
        "fitted motion (`RollingShutterResult.trajectories`, started at the true positions at the first time "
        "point), pixels from the truth, mean (max). Wall and peak resident memory of each reconstruction's own "
        "process (in brackets: after imports and simulation, before it); the seconds are this run's, on the "
        "machine named below, and other jobs sharing its cores make them longer."
        + (" Run with `--quick`." if quick else ""),
        "",
        "| case | method | PSNR mean (dB) | PSNR worst (dB) | path error px | wall (s) | peak MiB |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Rows of each figure: the first, middle and last time points of the window; columns: the raw frame "
        "holding that time point, truth, the three reconstructions, and the objects' whole paths.",
        "",
        *figs,
    ])
    save_result("rolling_shutter", numbers, md, order=45)
    return numbers


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)
    from benchmarks.common import build_report

    build_report()
