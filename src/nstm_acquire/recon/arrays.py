"""Reconstruct one window from arrays: frames, per-frame times and physics objects in, images out.

* :func:`reconstruct_window` -- one :class:`~nstm_acquire.recon.problem.WindowProblem`;
* :func:`reconstruct_dpc` -- DPC straight from arrays (frames, times, optics, LEDs);
* :func:`reconstruct_sim` -- 2D or 3D SIM straight from arrays (frames, times, optics, pattern).

No store is read or written here: :mod:`nstm_acquire.recon.chain` does that for a whole store.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nstm_acquire.nstm.config import NSTMConfig, default_config
from nstm_acquire.nstm.fit import FitResult, build_model, fit, render_scenes
from nstm_acquire.nstm.model import Params
from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.rolling_shutter.timing import RowTiming
from nstm_acquire.physics.sim.estimation import SimParameterPolicy
from nstm_acquire.physics.sim.illumination import SimIllumination
from nstm_acquire.physics.sim.otf import MeasuredPsf
from nstm_acquire.recon.problem import ProblemBuilder, WindowProblem, modality_of
from nstm_acquire.recon.row_timing import DEFAULT_ROW_BLOCKS, RowBlockTiming
from nstm_acquire.recon.start import exposure_sampled, start_params, warm_start_params

__all__ = [
    "WindowResult",
    "model_description",
    "reconstruct_dpc",
    "reconstruct_sim",
    "reconstruct_window",
]


@dataclasses.dataclass
class WindowResult:
    """One reconstructed window.

    ``scene`` ``(T, C, Z, Y', X')`` at ``times_s`` ``(T,)``; ``motion`` ``(T, D, Z, Y', X')`` in
    output pixels (``scene(x, t) = template(x + motion(x, t))``); ``conventional``
    ``(C, Z, Y', X')``; ``fit`` the optimisation record.
    """

    window: int
    scene: np.ndarray
    motion: np.ndarray
    times_s: np.ndarray
    conventional: np.ndarray
    fit: FitResult
    info: dict[str, Any]
    channel_names: list[str] = dataclasses.field(default_factory=list)
    pixel_size_um: float = 0.0
    z_step_um: float | None = None


def model_description(model: Any) -> dict[str, Any]:
    """What rebuilds an :class:`~nstm_acquire.nstm.model.NSTMModel` (with its NSTM config)."""
    return {
        "scene_shape": list(model.scene_shape),
        "channels": model.channels,
        "motion_dims": model.motion_dims,
        "nonnegative": model.nonnegative,
        "n_shots": model.n_shots,
    }


def reconstruct_window(
    problem: WindowProblem,
    config: NSTMConfig | None = None,
    init_params: Params | None = None,
    window: int = 0,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    reference_val_loss: float | None = None,
) -> WindowResult:
    """Fit the NSTM to one window and render it at the problem's render times.

    ``init_params`` and ``reference_val_loss`` (the previous window's held-out loss) warm-start
    it (:func:`~nstm_acquire.nstm.fit.fit`). A cold fit renders each shot at several times
    across its exposure where its registration finds fast motion (``fit.exposure_blur_px``,
    :func:`~nstm_acquire.recon.start.exposure_sampled`, a no-op on data sampled so already; a
    chain samples its warm fits' data as its cold fit's)."""
    config = config or default_config()
    if init_params is None:
        problem = exposure_sampled(problem, config)
    model = build_model(
        config,
        problem.scene_shape,
        problem.channels,
        problem.motion_dims,
        nonnegative=bool(getattr(problem.forward, "nonnegative", False)),
        n_shots=len(problem.render_times_s),
    )
    # a cold fit (or the refit of a rejected warm fit) starts from networks pre-fitted to the data
    # where the configuration asks; made only when needed
    start = functools.partial(start_params, model, problem, config)
    if init_params is not None:  # a warm fit's motion may start from a registration against its scene
        init_params = warm_start_params(model, problem, config, init_params)
    result = fit(
        model, problem.forward, problem.data, init_params, callback, should_stop,
        reference_val_loss=reference_val_loss, start_params=start,
    )
    scene, motion = render_scenes(result, problem.render_times_s)
    if len(problem.scene_shape) == 2:  # add the plane axis of FORMAT.md
        scene, motion = scene[:, :, None], motion[:, :, None]
    info = {**result.info(), **problem.info}
    return WindowResult(
        window,
        scene,
        motion,
        problem.render_times_s,
        problem.conventional,
        result,
        info,
        channel_names=list(problem.channel_names),
        pixel_size_um=problem.pixel_size_um,
        z_step_um=problem.z_step_um,
    )


def _without_offset(frames: np.ndarray, offset_adu: float) -> np.ndarray:
    """float32 ``frames`` minus the camera's dark offset (counts)."""
    out = np.asarray(frames, np.float32)
    return out - np.float32(offset_adu) if offset_adu else out


def reconstruct_dpc(
    raw: np.ndarray,
    timestamps_s: np.ndarray,
    exposure_s: np.ndarray,
    optics: Optics,
    led_na: np.ndarray,
    shots: Sequence[Sequence[int]],
    background: np.ndarray | None = None,
    config: NSTMConfig | None = None,
    *,
    led_brightness: Sequence[float] | None = None,
    offset_adu: float = 0.0,
    row_timing: RowTiming | None = None,
    row_blocks: int = DEFAULT_ROW_BLOCKS,
) -> WindowResult:
    """DPC from arrays: ``raw`` ``(S, Y, X)`` camera counts, times ``(S,)`` in s.

    ``led_na`` ``(N, 2)`` illumination NA of every LED, ``shots`` the LEDs lit in each shot
    (:class:`~nstm_acquire.physics.dpc.illumination.DpcIllumination`; ``led_brightness`` the
    optional relative brightness of every LED), ``background`` ``(S, Y, X)`` sample-free
    frames in counts (None: normalise by each frame's mean). ``offset_adu`` is the camera's
    dark offset, subtracted from ``raw`` and ``background`` first (default 0: already removed).
    ``row_timing``: a rolling-shutter camera's rows, fitted in ``row_blocks`` blocks each at its
    own time (:mod:`~nstm_acquire.recon.row_timing`; None: frame-level timing).
    """
    frames = _without_offset(raw, offset_adu)
    if frames.ndim != 3:
        raise ValueError(f"raw has shape {frames.shape}; give (S, Y, X) frames of one window")
    s = frames.shape[0]
    ts = np.asarray(timestamps_s, np.float64).reshape(s, 1)
    ex = np.asarray(exposure_s, np.float64).reshape(s, 1)
    ill = DpcIllumination.model_validate(
        {
            "led_na": np.asarray(led_na).tolist(),
            "shots": [list(map(int, x)) for x in shots],
            "led_brightness": None if led_brightness is None else [float(b) for b in led_brightness],
        }
    )
    bg = None if background is None else _without_offset(background, offset_adu)[:, None]
    rows = None if row_timing is None else RowBlockTiming(row_timing, row_blocks)
    config = config or default_config("dpc")
    builder = ProblemBuilder(optics, ill, frames.shape[-2:], 1, config, background=bg, row_timing=rows)
    return reconstruct_window(builder.problem_from_arrays(frames[:, None], ts, ex), config)


def reconstruct_sim(
    raw: np.ndarray,
    timestamps_s: np.ndarray,
    exposure_s: np.ndarray,
    optics: Optics,
    illumination: SimIllumination,
    config: NSTMConfig | None = None,
    sim_parameters: SimParameterPolicy = "configured",
    upsample: int = 2,
    psf: MeasuredPsf | None = None,
    *,
    offset_adu: float = 0.0,
    time_bin_s: float | None = None,
    row_timing: RowTiming | None = None,
    row_blocks: int = DEFAULT_ROW_BLOCKS,
) -> WindowResult:
    """SIM from arrays: ``raw`` ``(S, Z, Y, X)`` camera counts, times ``(S, Z)`` in s.

    Shot ``s = d * n_phases + p``; ``Z = 1`` for two-beam 2D SIM (``illumination.three_beam``
    False), the stack's planes ``optics.z_step_um`` µm apart for three-beam 3D SIM. Missing
    ``k_per_um`` / ``phase_rad`` / ``modulation`` are estimated from the window and checked
    (``sim_parameters``: ``"configured"`` (default), ``"fallback"``, ``"error"`` or ``"estimate"``,
    :func:`~nstm_acquire.physics.sim.estimation.resolve_sim_parameters`); the report is in
    ``result.info["sim_parameters"]``. ``psf``: a measured PSF instead of the theoretical OTF
    (:class:`~nstm_acquire.physics.sim.otf.MeasuredPsf`). ``offset_adu`` is the camera's dark
    offset, subtracted from ``raw`` first (default 0: already removed). ``time_bin_s``: 3D, the
    frames within this many seconds share one volume (None: two consecutive frames; 0: every
    frame at its own time; :class:`~nstm_acquire.recon.problem.ProblemBuilder`). ``config``
    None: the modality's defaults (``default_config("sim2d")`` for two-beam 2D SIM).
    ``row_timing``: a rolling-shutter camera, as in :func:`reconstruct_dpc` (3D: the blocks of
    rows binned in time, ``time_bin_s`` their spread; docs/rolling_shutter.md).
    """
    config = config or default_config(modality_of(illumination))
    frames = _without_offset(raw, offset_adu)
    if frames.ndim != 4:
        raise ValueError(
            f"raw has shape {frames.shape}; give (S, Z, Y, X) frames of one window (Z = 1 for 2D SIM)"
        )
    if not illumination.three_beam and frames.shape[1] != 1:
        raise ValueError(
            f"raw has {frames.shape[1]} planes but the illumination is two-beam (2D SIM): give Z = 1"
        )
    ts = np.asarray(timestamps_s, np.float64).reshape(frames.shape[:2])
    ex = np.broadcast_to(np.asarray(exposure_s, np.float64), frames.shape[:2]).copy()
    builder = ProblemBuilder(
        optics,
        illumination,
        frames.shape[-2:],
        frames.shape[1],
        config,
        sim_parameters=sim_parameters,
        upsample=upsample,
        psf=psf,
        time_bin_s=time_bin_s,
        row_timing=None if row_timing is None else RowBlockTiming(row_timing, row_blocks),
    )
    return reconstruct_window(builder.problem_from_arrays(frames, ts, ex), config)
