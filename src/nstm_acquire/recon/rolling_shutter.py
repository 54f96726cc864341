"""Rolling-shutter lensless video (DiffuserCam) from arrays, by the NSTM; point trajectories.

:func:`reconstruct_rolling_shutter` turns frames of a rolling-shutter lensless camera, the
frames' start times, the caustic PSF and the sensor's row timing into a video at any times,
fitting the NSTM (:func:`nstm_acquire.nstm.fit.fit`) through
:class:`~nstm_acquire.physics.rolling_shutter.forward.RollingShutterForward`: each measurement is
one block of rows of one frame, predicted from the scene at the few time points while those
rows were open. The fitted motion gives the path of any scene point
(:meth:`RollingShutterResult.trajectories`, :func:`write_trajectories_csv`).

Axis order: frames ``(F, C, H, W)`` (C = 3, RGB); video ``(T, C, Hs, Ws)``; motion
``(T, 2, Hs, Ws)`` in scene pixels (``scene(x, t) = template(x + motion(x, t))``); positions
``(y, x)`` in scene pixels. Times in seconds on the acquisition clock.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from nstm_acquire.nstm.config import FitConfig, MotionNetConfig, NSTMConfig, SceneNetConfig, default_config
from nstm_acquire.nstm.fit import FitData, FitResult, build_model, fit, holdout_pixels, render_scenes
from nstm_acquire.physics.rolling_shutter.deconvolution import tikhonov_deconvolution
from nstm_acquire.physics.rolling_shutter.forward import RollingShutterForward
from nstm_acquire.physics.rolling_shutter.timing import RowTiming

__all__ = [
    "RollingShutterResult",
    "reconstruct_rolling_shutter",
    "rolling_shutter_config",
    "sensor_holdout",
    "track_points",
    "write_trajectories_csv",
]


def sensor_holdout(forward: RollingShutterForward, n_frames: int, fit_config: FitConfig) -> np.ndarray:
    """The held-out pixels of ``n_frames`` frames' row blocks ``(F * n_time, 1, B, W)``: a
    ``validation_fraction`` of the sensor's pixels (:func:`~nstm_acquire.nstm.fit.holdout_pixels`
    of ``(H, W)``), the same in every frame, laid out as :meth:`RollingShutterForward.frames_to_blocks`
    lays out the frames. The default draw over a block's own ``(B, W)`` would hold out the same
    few (row-in-block, column) positions of every block: at 24 rows, 8 blocks of 3 rows, one
    pixel position of 72, on the sensor's edge."""
    held = holdout_pixels(forward.conv.sensor_shape, fit_config.validation_fraction, fit_config.seed)
    return forward.frames_to_blocks(np.broadcast_to(held, (n_frames, 1, *held.shape)))


def rolling_shutter_config(max_steps: int = 1200) -> NSTMConfig:
    """The NSTM settings for rolling-shutter lensless video (``docs/rolling_shutter.md``).

    The default model family with: no border left out of the loss (measurements are row
    blocks, the border rule would drop rows of every block); a template margin of 25 % of the
    field on each side (the fitted warp drifts as a whole; a narrow margin clamps warped
    coordinates at the template's edge and erases objects near the border); a motion grid fine
    enough for several objects moving independently (8 cells across the field, one temporal
    cell per 8 time points), learning rate 1e-3; the scene at 1 cell per pixel at its finest
    (lensless data carry the full-resolution scene in every row); coarse-to-fine over the
    first third of ``max_steps``; patience 8 evaluations (the held-out loss of these noisy,
    underdetermined data is jumpy); the best of 3 random starts by held-out loss.
    """
    base = default_config()
    return base.model_copy(
        update={
            "name": "rolling_shutter",
            "scene": SceneNetConfig(hidden=32, margin_fraction=0.25, finest_cells_per_px=1.0),
            "motion": MotionNetConfig(stride_px=4, spatial_finest_cells=8.0, temporal_cells_per_shot=0.125),
            "fit": base.fit.model_copy(
                update={
                    "max_steps": max_steps,
                    "coarse_to_fine_steps": max(1, max_steps // 3),
                    "loss_margin_px": 0,
                    "lr_motion": 1e-3,
                    "patience": 8,
                    # the fit lands in a good or a poor optimum by its random start (benchmark
                    # window: 26.9-36.4 dB over 4 seeds); the held-out loss ranks them
                    "restarts": 3,
                }
            ),
        }
    )


@dataclasses.dataclass
class RollingShutterResult:
    """The reconstructed video, its motion and the fit.

    ``video`` ``(T, C, Hs, Ws)`` brightness (the frames' units) at ``times_s`` ``(T,)``;
    ``motion`` ``(T, 2, Hs, Ws)`` scene pixels; ``static`` ``(F, C, Hs, Ws)`` the static
    deconvolution of each frame (used to scale the data); ``scale`` the brightness unit the
    networks were fitted in.
    """

    video: np.ndarray
    motion: np.ndarray
    times_s: np.ndarray
    static: np.ndarray
    fit: FitResult
    forward: RollingShutterForward
    scale: float

    def render(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Video ``(T, C, Hs, Ws)`` and motion ``(T, 2, Hs, Ws)`` at any times (s)."""
        scenes, motion = render_scenes(self.fit, np.asarray(times_s, np.float64))
        return scenes * self.scale, motion

    def trajectories(self, points_yx: np.ndarray, reference_time_s: float, times_s: np.ndarray) -> np.ndarray:
        """Paths ``(T, P, 2)`` (scene pixels) of the scene points at ``points_yx`` ``(P, 2)`` at
        ``reference_time_s``, at ``times_s`` ``(T,)`` (:func:`track_points`)."""
        t = np.asarray(times_s, np.float64).reshape(-1)
        _, motion_ref = render_scenes(self.fit, np.array([reference_time_s]))
        _, motion = render_scenes(self.fit, t)
        return track_points(points_yx, motion_ref[0], motion)


def track_points(points_yx: np.ndarray, motion_ref: np.ndarray, motion: np.ndarray, n_refine: int = 5) -> np.ndarray:
    """Where the scene points at ``points_yx`` ``(P, 2)`` (at the reference time) are at other times.

    ``motion_ref`` ``(2, H, W)`` the backward warp at the reference time, ``motion``
    ``(T, 2, H, W)`` at the query times (scene pixels). A point's template coordinate is
    ``p = x0 + d(x0, t_ref)``; at time t it is the ``x`` with ``x + d(x, t) = p``. The fitted
    warp need not be smooth or invertible, so ``x`` is searched on the whole grid (the pixel
    whose mapped coordinate is closest to ``p``, ties broken towards the point's previous
    position), then refined to sub-pixel by ``n_refine`` Newton steps. Returns ``(T, P, 2)``.
    """
    pts = np.asarray(points_yx, np.float64).reshape(-1, 2)
    d_all = np.asarray(motion, np.float64)
    h, w = d_all.shape[-2:]
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij")).reshape(2, -1).T  # (HW, 2)
    template = pts + _sample(np.asarray(motion_ref, np.float64), pts)
    out = np.empty((d_all.shape[0], len(pts), 2))
    prev = pts.copy()
    for i, d in enumerate(d_all):
        mapped = grid + d.reshape(2, -1).T  # (HW, 2): template coordinate seen at each pixel
        for j, p in enumerate(template):
            miss = np.linalg.norm(mapped - p, axis=1) + 0.05 * np.linalg.norm(grid - prev[j], axis=1)
            x = grid[int(np.argmin(miss))].astype(np.float64)
            for _ in range(n_refine):  # Newton on x + d(x) = p, Jacobian by central differences
                r = x + _sample(d, x[None])[0] - p
                jac = np.eye(2)
                for a in range(2):
                    e = np.zeros(2)
                    e[a] = 0.5
                    jac[:, a] += (_sample(d, (x + e)[None])[0] - _sample(d, (x - e)[None])[0]) / 1.0
                try:
                    step = np.linalg.solve(jac, r)
                except np.linalg.LinAlgError:
                    break
                x = np.clip(x - np.clip(step, -1.0, 1.0), 0, [h - 1, w - 1])
            out[i, j] = x
        prev = out[i]
    return out


def _sample(field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Bilinear samples ``(P, D)`` of ``field`` ``(D, H, W)`` at ``pts`` ``(P, 2)`` (clamped to the grid)."""
    h, w = field.shape[-2:]
    y = np.clip(pts[:, 0], 0, h - 1)
    x = np.clip(pts[:, 1], 0, w - 1)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    fy, fx = y - y0, x - x0
    f = np.asarray(field)
    v = (
        f[:, y0, x0] * (1 - fy) * (1 - fx)
        + f[:, y0 + 1, x0] * fy * (1 - fx)
        + f[:, y0, x0 + 1] * (1 - fy) * fx
        + f[:, y0 + 1, x0 + 1] * fy * fx
    )
    return v.T


def write_trajectories_csv(path: str | Path, times_s: np.ndarray, tracks_yx: np.ndarray, pixel_size_um: float = 1.0) -> Path:
    """CSV ``point, time_s, y_px, x_px, y_um, x_um`` of ``tracks_yx`` ``(T, P, 2)`` at ``times_s`` ``(T,)``."""
    tracks = np.asarray(tracks_yx, np.float64)
    t = np.asarray(times_s, np.float64).reshape(-1)
    if tracks.ndim != 3 or tracks.shape[0] != len(t) or tracks.shape[2] != 2:
        raise ValueError(f"tracks_yx has shape {tracks.shape}; give (T, P, 2) with T = len(times_s) = {len(t)}")
    path = Path(path)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["point", "time_s", "y_px", "x_px", "y_um", "x_um"])
        for p in range(tracks.shape[1]):
            for i, ti in enumerate(t):
                y, x = tracks[i, p]
                out.writerow([p, f"{ti:.9f}", f"{y:.4f}", f"{x:.4f}", f"{y * pixel_size_um:.5f}", f"{x * pixel_size_um:.5f}"])
    return path


def reconstruct_rolling_shutter(
    frames: np.ndarray,
    psf: np.ndarray,
    row_timing: RowTiming,
    frame_starts_s: np.ndarray,
    *,
    n_time: int = 16,
    render_times_s: np.ndarray | None = None,
    config: NSTMConfig | None = None,
    scene_shape: tuple[int, int] | None = None,
    static_reg: float = 1e-3,
) -> RollingShutterResult:
    """Video from rolling-shutter lensless frames.

    Parameters
    ----------
    frames
        ``(F, C, H, W)`` sensor frames (C = 3: demosaiced RGB), dark offset removed, any linear unit.
    psf
        ``(Hp, Wp)`` or ``(C, Hp, Wp)`` caustic PSF (normalised here per channel to sum 1).
    row_timing
        The sensor's row time, exposure and readout direction (``n_rows == H``).
    frame_starts_s
        ``(F,)`` seconds: when each frame's first row opened.
    n_time
        Time points (and row blocks) per frame; divides H. Time resolution ``span / (n_time - 1)``.
    render_times_s
        Times of the returned video (default: every time point of every frame).
    config
        NSTM settings (default :func:`rolling_shutter_config`).
    scene_shape
        Scene grid ``(Hs, Ws)`` >= the sensor (default the sensor's).
    static_reg
        Tikhonov weight of the static deconvolution used to set the brightness scale.
    """
    y = np.asarray(frames, np.float32)
    if y.ndim != 4:
        raise ValueError(f"frames have shape {y.shape}; give (F, C, H, W) (C = 3 for RGB)")
    if row_timing.n_rows != y.shape[2]:
        raise ValueError(f"row_timing.n_rows={row_timing.n_rows} must equal the frames' rows {y.shape[2]}")
    starts = np.asarray(frame_starts_s, np.float64).reshape(-1)
    if starts.shape != (y.shape[0],) or not np.all(np.isfinite(starts)):
        raise ValueError(f"frame_starts_s has {starts.size} values; give one finite start (s) per frame ({y.shape[0]})")
    config = config or rolling_shutter_config()
    if config.fit.exposure_subsamples != 1:
        raise ValueError("config.fit.exposure_subsamples must be 1: the forward model integrates each row's exposure")
    forward = RollingShutterForward.build(psf, row_timing, y.shape[3], n_time, scene_shape, channels=y.shape[1])
    static = tikhonov_deconvolution(y, forward.conv, reg=static_reg)
    scale = float(np.percentile(static, 99.5))
    if not scale > 0:
        raise ValueError("the frames deconvolve to an all-zero scene: check the offset and the PSF")
    blocks = forward.frames_to_blocks(y / scale)
    times = forward.times_s(row_timing, starts)
    data = FitData(blocks, times, np.arange(len(times)) % n_time, held_out=sensor_holdout(forward, y.shape[0], config.fit))
    model = build_model(config, forward.conv.scene_shape, y.shape[1], 2, nonnegative=True, n_shots=len(times))
    result = fit(model, forward, data)  # type: ignore[arg-type]  # channels is a frozen field
    out_times = times if render_times_s is None else np.asarray(render_times_s, np.float64).reshape(-1)
    video, motion = render_scenes(result, out_times)
    return RollingShutterResult(video * scale, motion, out_times, static, result, forward, scale)
