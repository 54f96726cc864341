"""Turn one stored window into what the NSTM fits: forward model, data, times, baseline.

A :class:`WindowProblem` is modality-agnostic: the reconstructor fits ``problem.data``
through ``problem.forward`` on a scene grid of ``problem.scene_shape`` and renders the
result at ``problem.render_times_s``. :class:`ProblemBuilder` makes one per window for a
store's modality and keeps what is the same for every window (transfer functions, estimated
illumination) so windows after the first cost nothing to prepare.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from nstm_acquire.physics.dpc.forward import DpcForward, dpc_normalise
from nstm_acquire.physics.sim.forward import (
    Sim2DForward,
    Sim3DForward,
    lateral_order_fields,
    sim_patterns_2d,
)
from nstm_acquire.physics.sim.estimation import estimate_sim_parameters, resolve_sim_parameters
from nstm_acquire.physics.sim.otf import (
    MeasuredPsf,
    camera_pixel_transfer,
    measured_three_beam_order_otfs,
    otf_2d,
    three_beam_order_otfs,
)
from nstm_acquire.physics.sim.wiener import wiener_sim_2d, wiener_sim_3d
from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.fit import FitData
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.illumination import SimIllumination
from nstm_acquire.store import StoreAttributes, WindowData

__all__ = ["ProblemBuilder", "WindowProblem", "exposure_sample_times"]


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


def exposure_sample_times(timestamps_s: np.ndarray, exposure_s: np.ndarray, n_sub: int) -> np.ndarray:
    """``(K, n_sub)`` times (s) at the midpoints of ``n_sub`` equal parts of each exposure."""
    t = np.asarray(timestamps_s, np.float64).reshape(-1)
    e = np.asarray(exposure_s, np.float64).reshape(-1)
    return t[:, None] + (np.arange(n_sub)[None, :] + 0.5) / n_sub * e[:, None]


class ProblemBuilder:
    """Makes :class:`WindowProblem` s for the windows of one store."""

    def __init__(
        self,
        attrs: StoreAttributes,
        frame_shape: tuple[int, int],
        n_planes: int,
        config: NSTMConfig,
        background: np.ndarray | None = None,
        tikhonov_reg: float = 1e-4,
        sim_parameters: str = "fallback",
        upsample: int = 2,
        psf: MeasuredPsf | None = None,
    ) -> None:
        self.attrs = attrs
        self.modality = attrs.modality
        self.frame_shape = tuple(frame_shape)
        self.n_planes = n_planes
        self.config = config
        self.background = background
        self.tikhonov_reg = tikhonov_reg
        self.optics: Optics = attrs.optics
        self.sim_parameters = sim_parameters
        self.upsample = int(upsample)
        self.psf = psf  # SIM: a measured PSF replaces the theoretical OTF everywhere
        self.sim_report: dict[str, Any] | None = None
        if self.modality == "dpc":
            self.illumination = DpcIllumination.from_store(attrs.illumination)
            self.forward = DpcForward.for_illumination(self.frame_shape, self.optics, self.illumination)
        else:  # SIM: the pattern is resolved from the first window (estimated or configured)
            self.configured = SimIllumination.from_store(attrs.illumination, modality=self.modality)
            self.forward = None

    def problem(self, window: WindowData) -> WindowProblem:
        """The fitting problem of one complete window."""
        if self.modality == "dpc":
            return self._dpc(window)
        return self._sim(window)

    # ------------------------------------------------------------------ SIM
    def _resolve_illumination(self, raw: np.ndarray) -> SimIllumination:
        """Estimate the pattern from the first window; check it; keep it for the others."""
        if self.sim_report is None:
            z_step = self.optics.z_step_um
            estimate = estimate_sim_parameters(
                raw, self.optics, self.configured, z_step_um=z_step, psf=self.psf
            )
            self.illumination, self.sim_report = resolve_sim_parameters(
                estimate, self.configured, policy=self.sim_parameters  # type: ignore[arg-type]
            )
        return self.illumination

    def _sim_forward(self, ill: SimIllumination) -> Any:
        u = self.upsample
        fine = (self.frame_shape[0] * u, self.frame_shape[1] * u)
        fine_px = self.optics.pixel_size_um / u
        cam_px = self.optics.pixel_size_um
        if self.modality == "sim2d":
            if self.psf is not None:  # measured: the camera pixel's integration is in it
                transfer = jnp.asarray(self.psf.otf_2d(fine, fine_px), jnp.complex64)
            else:
                theory = otf_2d(fine, fine_px, self.optics) * camera_pixel_transfer(fine, fine_px, cam_px)
                transfer = jnp.asarray(theory, jnp.float32)
            return Sim2DForward(jnp.asarray(sim_patterns_2d(ill, fine, fine_px)), transfer, u)
        n = self.optics.immersion_index
        kz = float(np.mean([ill.axial_k_for_orientation(d, n) for d in range(ill.n_orientations)]))
        # pad z by half the stack so the axial convolution does not wrap round (exact for a
        # sample inside the stack; forward/sim.py)
        pad = self.n_planes // 2
        padded = (self.n_planes + 2 * pad, *fine)
        if self.psf is not None:
            otfs = measured_three_beam_order_otfs(self.psf, padded, fine_px, self.optics.z_step_um, kz)
        else:
            otfs = three_beam_order_otfs(padded, fine_px, self.optics.z_step_um, self.optics, kz, camera_pixel_um=cam_px)
        return Sim3DForward.create(lateral_order_fields(ill, fine, fine_px, n), otfs[:2], u, self.n_planes)

    def _sim(self, window: WindowData) -> WindowProblem:
        raw = window.raw  # (S, Z, Y, X)
        ill = self._resolve_illumination(raw)
        if self.forward is None:
            self.forward = self._sim_forward(ill)
        scale = float(np.mean(raw))
        if not scale > 0:
            raise ValueError(f"window {window.index} is dark (mean {scale:.3g} counts): nothing to reconstruct")
        y = raw / scale
        ts, exp = window.timestamps_s, window.exposure_s
        mid = ts + 0.5 * exp  # (S, Z)
        u = self.upsample
        if self.modality == "sim2d":
            times = exposure_sample_times(ts[:, 0], exp[:, 0], self.config.fit.exposure_subsamples)
            data = FitData(y[:, 0], times, np.arange(raw.shape[0]))
            conv = wiener_sim_2d(raw[:, 0], self.optics, ill, upsample=u, psf=self.psf)[None, None]
            scene_shape: tuple[int, ...] = (self.frame_shape[0] * u, self.frame_shape[1] * u)
            render, z_step, motion_dims = mid[:, 0], None, 2
        else:
            # the 3D speed-up: every (orientation, phase) stack is one volume at one time, the
            # mean of its planes' exposure times (docs/model.md)
            t_stack = ts.mean(axis=1)
            times = exposure_sample_times(t_stack, exp.mean(axis=1), self.config.fit.exposure_subsamples)
            data = FitData(y, times, np.arange(raw.shape[0]))
            conv = wiener_sim_3d(raw, self.optics, ill, self.optics.z_step_um, upsample=u, psf=self.psf)[None]
            scene_shape = (self.n_planes, self.frame_shape[0] * u, self.frame_shape[1] * u)
            render, z_step, motion_dims = mid.mean(axis=1), self.optics.z_step_um, 3
        order = np.argsort(render, kind="stable")
        if np.any(order != np.arange(len(order))):
            raise ValueError("SIM shots were not acquired in shot order; reorder the store's shots")
        return WindowProblem(
            forward=self.forward,
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
            },
        )

    # ------------------------------------------------------------------ DPC
    def _dpc(self, window: WindowData) -> WindowProblem:
        raw = window.raw[:, 0]  # (S, Y, X), offset already removed
        bg = None if self.background is None else self.background[:, 0]
        y = dpc_normalise(raw, bg)
        ts, exp = window.timestamps_s[:, 0], window.exposure_s[:, 0]
        times = exposure_sample_times(ts, exp, self.config.fit.exposure_subsamples)
        data = FitData(y, times, np.arange(raw.shape[0]))
        conv = np.asarray(self.forward.conventional(jnp.asarray(y), self.tikhonov_reg))
        return WindowProblem(
            forward=self.forward,
            data=data,
            scene_shape=self.frame_shape,
            channels=2,
            channel_names=list(DpcForward.channel_names),
            motion_dims=2,
            render_times_s=ts + 0.5 * exp,
            conventional=conv[:, None],  # (C, Z=1, Y, X)
            pixel_size_um=self.optics.pixel_size_um,
            z_step_um=None,
            info={"normalisation": "background" if bg is not None else "frame mean"},
        )
