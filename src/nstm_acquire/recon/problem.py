"""Turn one window of frames into what the NSTM fits: forward model, data, times, baseline.

A :class:`WindowProblem` is modality-agnostic: the reconstructor fits ``problem.data``
through ``problem.forward`` on a scene grid of ``problem.scene_shape`` and renders the
result at ``problem.render_times_s``. :class:`ProblemBuilder` makes one per window from
physics objects (:class:`~nstm_acquire.physics.optics.Optics` and the modality's illumination
model) and plain values, and keeps what is the same for every window (transfer functions,
estimated illumination) so windows after the first cost nothing to prepare.
:meth:`ProblemBuilder.for_store` builds one from an acquisition store; nothing else here
knows about stores.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.fit import FitData, exposure_sample_times
from nstm_acquire.physics.dpc.forward import DpcForward, dpc_normalise, row_block_masks
from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.rolling_shutter.deconvolution import tikhonov_deconvolution
from nstm_acquire.physics.rolling_shutter.forward import RollingShutterForward
from nstm_acquire.physics.rolling_shutter.shots import LenslessShots
from nstm_acquire.physics.rolling_shutter.timing import RowTiming
from nstm_acquire.physics.sim.estimation import (
    SimParameterPolicy,
    estimate_sim_parameters,
    resolve_sim_parameters,
)
from nstm_acquire.physics.sim.forward import (
    Sim2DForward,
    Sim3DForward,
    Sim3DFramesForward,
    frame_time_bins,
    lateral_order_fields,
    sim_patterns_2d,
)
from nstm_acquire.physics.sim.illumination import SimIllumination
from nstm_acquire.physics.sim.otf import (
    MeasuredPsf,
    camera_pixel_transfer,
    measured_three_beam_order_otfs,
    otf_2d,
    three_beam_order_otfs,
)
from nstm_acquire.physics.sim.wiener import wiener_sim_2d, wiener_sim_3d
from nstm_acquire.recon.rolling_shutter import sensor_holdout
from nstm_acquire.recon.row_timing import (
    RowBlockTiming,
    auto_piece_bin_s,
    frame_centres_s,
    piece_midpoints_s,
    piece_time_bins,
    row_blocks,
)

if TYPE_CHECKING:
    from nstm_acquire.store import StoreReader, WindowData

__all__ = [
    "ProblemBuilder",
    "WindowProblem",
    "auto_time_bin_s",
    "default_time_points_per_frame",
    "exposure_sample_times",
    "modality_of",
]


def modality_of(illumination: DpcIllumination | SimIllumination | LenslessShots) -> str:
    """``"dpc"``, ``"sim2d"`` (two-beam), ``"sim3d"`` (three-beam) or ``"rolling_shutter"``
    (a lensless camera's shot layout) of an illumination model."""
    if isinstance(illumination, LenslessShots):
        return "rolling_shutter"
    if isinstance(illumination, DpcIllumination):
        return "dpc"
    if isinstance(illumination, SimIllumination):
        return "sim3d" if illumination.three_beam else "sim2d"
    raise TypeError(
        f"illumination is a {type(illumination).__name__}; give a DpcIllumination or a SimIllumination"
    )


@dataclasses.dataclass
class WindowProblem:
    """Everything needed to reconstruct one window.

    Attributes
    ----------
    forward
        The modality's forward model (a pytree with ``render``).
    data
        Measurements (normalised as the forward model expects), their times, shot indices.
    scene_shape
        Spatial output grid: ``(Y', X')`` or ``(Z, Y', X')``.
    channels, channel_names
        Scene channels (DPC: absorption, phase in rad; SIM: density).
    motion_dims
        2 (dy, dx) or 3 (dz, dy, dx), in output pixels.
    render_times_s
        ``(T,)`` times at which the scene is written (default: every shot's exposure midpoint).
    conventional
        ``(C, Z, Y', X')`` the static-sample reconstruction of the window.
    pixel_size_um, z_step_um
        Output grid spacing.
    info
        Per-window facts for the output attributes (e.g. estimated illumination).
    """

    forward: Any
    data: FitData
    scene_shape: tuple[int, ...]
    channels: int
    channel_names: list[str]
    motion_dims: int
    render_times_s: np.ndarray
    conventional: np.ndarray
    pixel_size_um: float
    z_step_um: float | None
    info: dict[str, Any]
    #: the shots' registration once made (recon.registration.window_motion): (motion, found)
    registration: tuple[Any, dict[str, Any]] | None = dataclasses.field(default=None, repr=False, compare=False)


def default_time_points_per_frame(n_rows: int) -> int:
    """Rolling shutter: the default time points (and row blocks) per frame for ``n_rows`` rows.

    The divisor of ``n_rows`` (>= 2) closest to ``n_rows / 3`` (blocks of about 3 rows), at
    most 32: 24 rows -> 8, 32 -> 8, 48 -> 16, 128 -> 32 (``docs/rolling_shutter.md``).
    """
    divisors = [d for d in range(2, min(int(n_rows), 32) + 1) if n_rows % d == 0]
    if not divisors:
        raise ValueError(f"{n_rows} sensor rows have no divisor from 2 to 32; crop the frames to an even height")
    return min(divisors, key=lambda d: (abs(d - n_rows / 3.0), -d))


def auto_time_bin_s(midpoints_s: np.ndarray) -> float:
    """The default time-bin spread of a 3D SIM window, s: 1.5 median frame intervals.

    ``midpoints_s`` ``(S, Z)``. Frames within this spread of a bin's first frame share one
    volume (:func:`~nstm_acquire.physics.sim.forward.frame_time_bins`): two consecutive frames,
    whatever the plane order, so no frame is rendered more than half a frame interval from its
    own time and a window costs ``S Z / 2`` volumes. Measured against per-frame rendering on
    moving beads (docs/model.md): the model error stays below the camera noise under drift and
    vibration, where bins of a whole stack (``Z`` frames) exceed it.
    """
    t = np.sort(np.asarray(midpoints_s, np.float64).reshape(-1))
    steps = np.diff(t)
    interval = float(np.median(steps)) if len(steps) else 0.0
    return 1.5 * interval


class ProblemBuilder:
    """Makes :class:`WindowProblem` s for the windows of one acquisition.

    Parameters
    ----------
    optics
        Optics of the acquisition (``z_step_um`` needed for 3D SIM).
    illumination
        The illumination model; it sets the modality (:func:`modality_of`): a
        :class:`~nstm_acquire.physics.dpc.illumination.DpcIllumination`, or a
        :class:`~nstm_acquire.physics.sim.illumination.SimIllumination` whose missing
        ``k_per_um`` / ``phase_rad`` / ``modulation`` are estimated from the first window.
    frame_shape
        ``(Y, X)`` camera frame shape, pixels.
    n_planes
        Z, planes per window (1 for DPC and 2D SIM).
    config
        NSTM configuration (the exposure sub-samples of the data times come from it).
    background
        DPC: sample-free frames ``(S, Z, Y, X)`` in counts, camera offset removed (None:
        normalise each frame by its mean).
    tikhonov_reg
        DPC: Tikhonov regularisation of the conventional reconstruction.
    sim_parameters
        SIM: how the pattern is chosen from the estimate and the given values.
    upsample
        SIM: output grid refinement (the scene has ``upsample`` times the camera's pixels).
    psf
        SIM: a measured PSF, which replaces the theoretical OTF everywhere.
    time_bin_s
        3D SIM: frames whose exposure midpoints lie within this many seconds of a time bin's
        first frame are predicted from one volume at the bin's mean time (None:
        :func:`auto_time_bin_s`; 0: every frame from the volume at its own time, exact and
        ``Z`` times the network evaluations).
    row_timing
        A rolling-shutter camera's row timing (DPC, 2D and 3D SIM); each block of rows is fitted
        at its own time (:mod:`~nstm_acquire.recon.row_timing`; 3D: the blocks binned in time
        with ``time_bin_s``, default two blocks per volume; None: frame-level timing).
    lensless_psf
        ``rolling_shutter``: the lensless camera's PSF ``(C or 1, Hp, Wp)`` (the store's ``psf``).
    lensless_timing
        ``rolling_shutter``: the row timing of a frame, a :class:`RowTiming` or a function of the
        frames' exposure (s) returning one (``StoreReader.row_timing``).
    time_points_per_frame
        ``rolling_shutter``: time points (= row blocks) per frame, dividing the rows (None:
        :func:`default_time_points_per_frame`).
    static_reg
        ``rolling_shutter``: Tikhonov weight of the static deconvolution (the conventional result).

    Frames given to :meth:`problem` / :meth:`problem_from_arrays` are camera counts with the
    dark offset already removed, axes ``(S, Z, Y, X)``; times are in seconds.
    """

    def __init__(
        self,
        optics: Optics,
        illumination: DpcIllumination | SimIllumination | LenslessShots,
        frame_shape: tuple[int, int],
        n_planes: int,
        config: NSTMConfig,
        *,
        background: np.ndarray | None = None,
        tikhonov_reg: float = 1e-4,
        sim_parameters: SimParameterPolicy = "configured",
        upsample: int = 2,
        psf: MeasuredPsf | None = None,
        time_bin_s: float | None = None,
        row_timing: RowBlockTiming | None = None,
        lensless_psf: np.ndarray | None = None,
        lensless_timing: Any = None,
        time_points_per_frame: int | None = None,
        static_reg: float = 1e-3,
    ) -> None:
        self.modality = modality_of(illumination)
        if self.modality == "sim3d" and optics.z_step_um is None:
            raise ValueError(
                "optics.z_step_um is missing (axial plane spacing in µm; three-beam 3D SIM needs it)"
            )
        self.optics: Optics = optics
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.n_planes = int(n_planes)
        self.config = config
        self.background = background
        self.tikhonov_reg = tikhonov_reg
        self.sim_parameters = sim_parameters
        self.upsample = int(upsample)
        self.psf = psf  # SIM: a measured PSF replaces the theoretical OTF everywhere
        if time_bin_s is not None and not (np.isfinite(time_bin_s) and time_bin_s >= 0):
            raise ValueError(f"time_bin_s={time_bin_s}; give a spread >= 0 s, or None for the default")
        self.time_bin_s = time_bin_s
        self.row_timing = row_timing
        self._frames_forward: tuple[Any, Sim3DFramesForward] | None = None  # 3D: (bins, forward)
        self.bins_info: dict[str, Any] = {}
        self.sim_report: dict[str, Any] | None = None
        # SIM: the pattern used is resolved from the first window (estimated or configured)
        self.illumination: DpcIllumination | SimIllumination | LenslessShots = illumination
        self.lensless_psf = lensless_psf
        self.lensless_timing = lensless_timing
        self.time_points_per_frame = time_points_per_frame
        self.static_reg = float(static_reg)
        self._rs_forward: tuple[RowTiming, RollingShutterForward] | None = None
        if isinstance(illumination, LenslessShots):
            if lensless_psf is None or lensless_timing is None:
                raise ValueError(
                    "rolling_shutter needs lensless_psf (the store's psf array) and lensless_timing "
                    "(the store's camera.rolling_shutter): the store lacks one of them"
                )
            if self.config.fit.exposure_subsamples != 1:
                raise ValueError(
                    "config.fit.exposure_subsamples must be 1 for rolling_shutter: the forward model "
                    "integrates each row's exposure (use recon.rolling_shutter.rolling_shutter_config)"
                )
            self.forward: Any = None
        elif isinstance(illumination, DpcIllumination):
            self.forward = DpcForward.for_illumination(self.frame_shape, self.optics, illumination)
        else:
            self.configured = illumination
            self.forward = None

    @classmethod
    def for_store(
        cls,
        reader: StoreReader,
        config: NSTMConfig,
        *,
        tikhonov_reg: float = 1e-4,
        sim_parameters: SimParameterPolicy = "configured",
        upsample: int = 2,
        psf: MeasuredPsf | None = None,
    ) -> ProblemBuilder:
        """The builder of a store's windows: its optics, illumination, frame shape, planes and
        background (the store's measured PSF, if any, is for the caller to load and pass;
        ``rolling_shutter``: the store's lensless ``psf`` and row timing)."""
        if reader.modality == "rolling_shutter":
            psf_array = reader.psf()
            if psf_array is None:
                from nstm_acquire.store import StoreError

                raise StoreError(
                    str(reader.path), "array psf", "is missing (a rolling_shutter store must hold the lensless PSF)"
                )
            if reader.attrs.camera.rolling_shutter is None:
                from nstm_acquire.store import StoreError

                raise StoreError(
                    str(reader.path),
                    "attribute nstm_acquire.camera.rolling_shutter",
                    "is missing (a rolling_shutter store must give row_time_s and direction)",
                )
            return cls(
                reader.optics, reader.attrs.illumination, reader.frame_shape, reader.n_planes, config,
                lensless_psf=psf_array, lensless_timing=reader.row_timing,
            )  # fmt: skip
        return cls(
            reader.optics,
            reader.attrs.illumination,
            reader.frame_shape,
            reader.n_planes,
            config,
            background=reader.background(),
            tikhonov_reg=tikhonov_reg,
            sim_parameters=sim_parameters,
            upsample=upsample,
            psf=psf,
            row_timing=RowBlockTiming.for_store(reader),
        )

    def problem(self, window: WindowData) -> WindowProblem:
        """The fitting problem of one complete window read from a store."""
        return self.problem_from_arrays(window.raw, window.timestamps_s, window.exposure_s, window.index)

    def problem_from_arrays(
        self, raw: np.ndarray, timestamps_s: np.ndarray, exposure_s: np.ndarray, index: int = 0
    ) -> WindowProblem:
        """The fitting problem of one window given as arrays.

        ``raw`` ``(S, Z, Y, X)`` counts with the camera offset removed; ``timestamps_s`` and
        ``exposure_s`` ``(S, Z)`` exposure starts and durations, s; ``index`` names the window
        in messages.
        """
        raw = np.asarray(raw, np.float32)
        ts = np.asarray(timestamps_s, np.float64)
        exp = np.asarray(exposure_s, np.float64)
        if self.modality == "dpc":
            return self._dpc(raw, ts, exp)
        if self.modality == "rolling_shutter":
            return self._rolling_shutter(raw, ts, exp, index)
        return self._sim(raw, ts, exp, index)

    # ------------------------------------------------------------------ rolling shutter
    def _rs_timing(self, exposure_s: float) -> RowTiming:
        source = self.lensless_timing
        timing = source if isinstance(source, RowTiming) else source(exposure_s)
        if timing is None:
            raise ValueError("the store's camera.rolling_shutter gives no row timing")
        if timing.n_rows != self.frame_shape[0]:
            raise ValueError(f"row timing has {timing.n_rows} rows; the frames have {self.frame_shape[0]}")
        return timing

    def rolling_shutter_forward(self, exposure_s: float) -> RollingShutterForward:
        """``rolling_shutter``: the forward model of frames exposed ``exposure_s`` s per row
        (built once per exposure, so windows share one compiled fit)."""
        timing = self._rs_timing(exposure_s)
        if self._rs_forward is None or self._rs_forward[0] != timing:
            assert isinstance(self.illumination, LenslessShots)
            n_time = self.time_points_per_frame or default_time_points_per_frame(self.frame_shape[0])
            forward = RollingShutterForward.build(
                np.asarray(self.lensless_psf), timing, self.frame_shape[1], n_time,
                channels=self.illumination.n_channels,
            )  # fmt: skip
            self._rs_forward = (timing, forward)
        return self._rs_forward[1]

    def _rolling_shutter(self, raw: np.ndarray, ts: np.ndarray, exp: np.ndarray, index: int) -> WindowProblem:
        # raw (S, 1, Y, X), S = frames x channels; each frame's planes share its timestamp
        shots = self.illumination
        assert isinstance(shots, LenslessShots)
        frames = shots.frames_of(raw[:, 0])  # (F, C, Y, X)
        starts_all = shots.frames_of(ts[:, 0])  # (F, C)
        exp_all = shots.frames_of(exp[:, 0])
        starts = starts_all[:, 0]
        spread = float(np.max(np.abs(starts_all - starts[:, None])))
        if spread > 1e-6:
            raise ValueError(
                f"window {index}: the colour planes of a frame have timestamps up to {spread:.3g} s apart; "
                "timestamps_s of every plane must be its frame's first-row opening"
            )
        if np.any(np.diff(starts) <= 0):
            raise ValueError(f"window {index}: frame starts {starts.tolist()} do not increase (frames out of order)")
        exposure = float(np.mean(exp_all))
        forward = self.rolling_shutter_forward(exposure)
        timing = self._rs_timing(exposure)
        static = np.asarray(tikhonov_deconvolution(frames, forward.conv, reg=self.static_reg))  # (F, C, Y, X)
        scale = float(np.percentile(static, 99.5))
        if not scale > 0:
            raise ValueError(f"window {index} deconvolves to an all-zero scene: check the offset and the psf")
        blocks = forward.frames_to_blocks(frames / scale)
        times = forward.times_s(timing, starts)
        held = sensor_holdout(forward, frames.shape[0], self.config.fit)
        data = FitData(blocks, times, np.arange(len(times)) % forward.n_time, held_out=held)
        conv = static.mean(axis=0)[:, None] / scale  # (C, Z=1, Y, X): the window as if static
        return WindowProblem(
            forward=forward,
            data=data,
            scene_shape=forward.conv.scene_shape,
            channels=shots.n_channels,
            channel_names=list(shots.channels),
            motion_dims=2,
            # sorted: back-to-back frames share their boundary time (one frame's last closing is the
            # next one's first opening), and the starts' rounding can put it a hair out of order;
            # overlapped exposures interleave for real. The store wants each window's times sorted
            render_times_s=np.sort(times),
            conventional=np.asarray(conv, np.float32),
            pixel_size_um=self.optics.pixel_size_um,
            z_step_um=None,
            info={
                "normalisation": f"raw / {scale:.6g}",
                "scale_counts": scale,
                "time_points_per_frame": int(forward.n_time),
                "row_timing": {"row_time_s": timing.row_time_s, "exposure_s": timing.exposure_s,
                               "direction": timing.direction},
                "conventional": "static deconvolution (Tikhonov, non-negative), mean of the window's frames",
            },
        )

    # ------------------------------------------------------------------ SIM
    def _resolve_illumination(self, raw: np.ndarray) -> SimIllumination:
        """Estimate the pattern from the first window; check it; keep it for the others."""
        if self.sim_report is None:
            z_step = self.optics.z_step_um
            estimate = estimate_sim_parameters(
                raw, self.optics, self.configured, z_step_um=z_step, psf=self.psf
            )
            resolved, self.sim_report = resolve_sim_parameters(
                estimate, self.configured, policy=self.sim_parameters
            )
            self.illumination = resolved
            return resolved
        assert isinstance(self.illumination, SimIllumination)
        return self.illumination

    def sim_forward(self, ill: SimIllumination) -> Any:
        """SIM: the forward model of pattern ``ill`` on this builder's grid (2D: one image per
        shot; 3D: :class:`~nstm_acquire.physics.sim.forward.Sim3DForward`, one volume per shot)."""
        u = self.upsample
        fine = (self.frame_shape[0] * u, self.frame_shape[1] * u)
        fine_px = self.optics.pixel_size_um / u
        cam_px = self.optics.pixel_size_um
        if self.modality == "sim2d":
            if self.psf is not None:  # measured: the camera pixel's integration is in it
                transfer = np.asarray(self.psf.otf_2d(fine, fine_px), np.complex64)
            else:
                theory = otf_2d(fine, fine_px, self.optics) * camera_pixel_transfer(fine, fine_px, cam_px)
                transfer = np.asarray(theory, np.float32)
            return Sim2DForward.create(sim_patterns_2d(ill, fine, fine_px), transfer, u)
        n = self.optics.immersion_index
        kz = float(np.mean([ill.axial_k_for_orientation(d, n) for d in range(ill.n_orientations)]))
        # pad z by half the stack so the axial convolution does not wrap round (exact for a
        # sample inside the stack; forward/sim.py)
        pad = self.n_planes // 2
        padded = (self.n_planes + 2 * pad, *fine)
        z_step = self.optics.z_step_um
        assert z_step is not None  # checked in __init__
        if self.psf is not None:
            otfs = measured_three_beam_order_otfs(self.psf, padded, fine_px, z_step, kz)
        else:
            otfs = three_beam_order_otfs(padded, fine_px, z_step, self.optics, kz, camera_pixel_um=cam_px)
        return Sim3DForward.create(lateral_order_fields(ill, fine, fine_px, n), otfs[:2], u, self.n_planes)

    def _sim(self, raw: np.ndarray, ts: np.ndarray, exp: np.ndarray, index: int) -> WindowProblem:
        # raw (S, Z, Y, X); ts, exp (S, Z)
        ill = self._resolve_illumination(raw)
        if self.forward is None:
            self.forward = self.sim_forward(ill)
        scale = float(np.mean(raw))
        if not scale > 0:
            raise ValueError(f"window {index} is dark (mean {scale:.3g} counts): nothing to reconstruct")
        y = raw / scale
        mid = ts + 0.5 * exp  # (S, Z)
        u = self.upsample
        rows: dict[str, Any] = {}  # rolling shutter (recon/row_timing.py)
        if self.modality == "sim2d":
            times = exposure_sample_times(ts[:, 0], exp[:, 0], self.config.fit.exposure_subsamples)
            data = FitData(y[:, 0], times, np.arange(raw.shape[0]), exposure_s=exp[:, 0])
            conv = wiener_sim_2d(raw[:, 0], self.optics, ill, upsample=u, psf=self.psf)[None, None]
            scene_shape: tuple[int, ...] = (self.frame_shape[0] * u, self.frame_shape[1] * u)
            render, z_step, motion_dims = mid[:, 0], None, 2
            if self.row_timing is not None:  # every block of rows at its own time
                data, render, rows = self.row_timing.frame_data(y[:, 0], ts[:, 0], exp[:, 0], self.config)
            forward = self.forward
        else:
            # every frame predicted from the volume at its own time, frames close in time
            # sharing one volume (time bins; docs/model.md), whatever the plane order
            render = mid.mean(axis=1)
            if self.row_timing is None:
                data, forward = self._binned_data(y, mid, exp)
            else:  # rolling shutter: every block of rows at its own time, blocks binned alike
                data, forward, render, rows = self._row_binned_data(y, ts, exp)
            conv = wiener_sim_3d(raw, self.optics, ill, self.optics.z_step_um, upsample=u, psf=self.psf)[None]
            scene_shape = (self.n_planes, self.frame_shape[0] * u, self.frame_shape[1] * u)
            z_step, motion_dims = self.optics.z_step_um, 3
        order = np.argsort(render, kind="stable")
        if np.any(order != np.arange(len(order))):
            raise ValueError("SIM shots were not acquired in shot order; reorder the store's shots")
        return WindowProblem(
            forward=forward,
            data=data,
            scene_shape=scene_shape,
            channels=1,
            channel_names=["density"],
            motion_dims=motion_dims,
            render_times_s=render,
            conventional=np.asarray(conv, np.float32) / scale,
            pixel_size_um=self.optics.pixel_size_um / u,
            z_step_um=z_step,
            info={
                "normalisation": f"raw / {scale:.6g}",
                "sim_parameters": self.sim_report,
                "otf": "measured PSF" if self.psf is not None else "theoretical",
                **(self.bins_info if self.modality == "sim3d" else {}),
                **rows,
            },
        )

    def _binned_data(self, y: np.ndarray, mid: np.ndarray, exp: np.ndarray) -> tuple[FitData, Sim3DFramesForward]:
        """3D: the frames ``y`` ``(S, Z, Y, X)`` grouped into time bins, ``(B, M, Y, X)`` with
        weight 0 on the padding; each bin's volume at the mean of its frames' midpoints ``mid``
        ``(S, Z)``, sampled across the mean exposure ``exp``; and the forward model of the bins
        (cached: the same bins, the same compiled fit)."""
        spread = auto_time_bin_s(mid) if self.time_bin_s is None else self.time_bin_s
        bins = frame_time_bins(mid, spread)
        self.bins_info = {"time_bins": len(bins), "time_bin_s": float(spread)}
        key = tuple(tuple(b) for b in bins)
        if self._frames_forward is None or self._frames_forward[0] != key:
            self._frames_forward = (key, Sim3DFramesForward.create(self.forward, bins))
        n_max = max(len(b) for b in bins)
        frames = np.zeros((len(bins), n_max, *y.shape[2:]), np.float32)
        weights = np.zeros((len(bins), n_max), np.float32)
        t_bin, e_bin = np.empty(len(bins)), np.empty(len(bins))
        for b, members in enumerate(bins):
            s, z = np.array(members).T
            frames[b, : len(members)] = y[s, z]
            frames[b, len(members) :] = y[s[-1], z[-1]]
            weights[b, : len(members)] = 1.0
            t_bin[b], e_bin[b] = mid[s, z].mean(), exp[s, z].mean()
        times = exposure_sample_times(t_bin - 0.5 * e_bin, e_bin, self.config.fit.exposure_subsamples)
        return FitData(frames, times, np.arange(len(bins)), weights), self._frames_forward[1]

    def _row_binned_data(
        self, y: np.ndarray, ts: np.ndarray, exp: np.ndarray
    ) -> tuple[FitData, Sim3DFramesForward, np.ndarray, dict[str, Any]]:
        """3D, rolling shutter: :meth:`_binned_data` with every frame's blocks of rows at their
        own times (``recon/row_timing.py``). Pieces ``(shot, plane, block)`` are binned by their
        exposure midpoints (``time_bin_s``, default :func:`auto_piece_bin_s`: two consecutive
        blocks per volume); a frame's blocks in one bin are one measurement weighted by their
        rows ``(K, M, Y)`` (0 on the padding), so every sensor row is in the loss once. Each
        bin's volume is at the row-weighted mean of its pieces' midpoints. ``ts``, ``exp``
        ``(S, Z)`` first-row openings and exposures, s. Returns the data, the forward model of
        the bins, the render times (each shot's frame middles, mean over planes) and the info."""
        assert self.row_timing is not None
        timing = self.row_timing.timing(exp)
        if timing.n_rows != y.shape[2]:
            raise ValueError(f"row timing has {timing.n_rows} rows; the frames have {y.shape[2]}")
        n_blocks = int(self.row_timing.n_blocks)
        block_of_row, offsets = row_blocks(timing, n_blocks)
        masks = row_block_masks(block_of_row, n_blocks)  # (B, Y)
        rows_per_block = masks.sum(axis=1)
        piece_mid = piece_midpoints_s(ts, exp, offsets)  # (S, Z, B)
        spread = self.time_bin_s
        if spread is None:
            spread = auto_piece_bin_s(offsets)
            if spread is None:  # one block: the frame-level default
                spread = auto_time_bin_s(ts + 0.5 * exp)
        bins = piece_time_bins(piece_mid, spread)
        self.bins_info = {"time_bins": len(bins), "time_bin_s": float(spread)}
        key = tuple(tuple(frame for frame, _ in b) for b in bins)
        if self._frames_forward is None or self._frames_forward[0] != key:
            self._frames_forward = (key, Sim3DFramesForward.create(self.forward, [list(k) for k in key]))
        n_max = max(len(b) for b in bins)
        frames = np.zeros((len(bins), n_max, *y.shape[2:]), np.float32)
        weights = np.zeros((len(bins), n_max, y.shape[2]), np.float32)
        t_bin, e_bin = np.empty(len(bins)), np.empty(len(bins))
        for k, members in enumerate(bins):
            t_sum = n_rows = e_sum = 0.0
            for m, ((s, z), blocks) in enumerate(members):
                frames[k, m] = y[s, z]
                weights[k, m] = masks[blocks].sum(axis=0)
                t_sum += float(np.sum(rows_per_block[blocks] * piece_mid[s, z, blocks]))
                n_rows += float(np.sum(rows_per_block[blocks]))
                e_sum += len(blocks) * float(exp[s, z])
            (s, z), _ = members[-1]
            frames[k, len(members) :] = y[s, z]
            t_bin[k] = t_sum / n_rows
            e_bin[k] = e_sum / sum(len(blocks) for _, blocks in members)
        times = exposure_sample_times(t_bin - 0.5 * e_bin, e_bin, self.config.fit.exposure_subsamples)
        data = FitData(frames, times, np.arange(len(bins)), weights)
        render = frame_centres_s(ts, exp, timing).reshape(ts.shape).mean(axis=1)
        info = {
            "row_timing": {
                "row_time_s": timing.row_time_s,
                "direction": timing.direction,
                "n_blocks": n_blocks,
                "frame_span_s": timing.frame_span_s,
                "model": "3D SIM: (frame, block of rows) pieces at their own times, binned in time",
            }
        }
        return data, self._frames_forward[1], render, info

    # ------------------------------------------------------------------ DPC
    def _dpc(self, raw: np.ndarray, timestamps_s: np.ndarray, exposure_s: np.ndarray) -> WindowProblem:
        raw = raw[:, 0]  # (S, Y, X), offset already removed
        bg = None if self.background is None else self.background[:, 0]
        y = dpc_normalise(raw, bg)
        ts, exp = timestamps_s[:, 0], exposure_s[:, 0]
        times = exposure_sample_times(ts, exp, self.config.fit.exposure_subsamples)
        rows: dict[str, Any] = {}
        data, render = FitData(y, times, np.arange(raw.shape[0]), exposure_s=exp), ts + 0.5 * exp
        if self.row_timing is not None:  # rolling shutter: every block of rows at its own time
            data, render, rows = self.row_timing.frame_data(y, ts, exp, self.config)
        conv = np.asarray(self.forward.conventional(jnp.asarray(y), self.tikhonov_reg))
        return WindowProblem(
            forward=self.forward,
            data=data,
            scene_shape=self.frame_shape,
            channels=2,
            channel_names=list(DpcForward.channel_names),
            motion_dims=2,
            render_times_s=render,
            conventional=conv[:, None],  # (C, Z=1, Y, X)
            pixel_size_um=self.optics.pixel_size_um,
            z_step_um=None,
            info={"normalisation": "background" if bg is not None else "frame mean", **rows},
        )
