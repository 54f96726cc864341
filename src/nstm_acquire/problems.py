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

from nstm_acquire.forward.dpc import DpcForward, dpc_normalise
from nstm_acquire.illumination import DpcIllumination
from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.fit import FitData
from nstm_acquire.optics import Optics
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
    ) -> None:
        self.attrs = attrs
        self.modality = attrs.modality
        self.frame_shape = tuple(frame_shape)
        self.n_planes = n_planes
        self.config = config
        self.background = background
        self.tikhonov_reg = tikhonov_reg
        self.optics: Optics = attrs.optics
        if self.modality == "dpc":
            self.illumination = DpcIllumination.from_store(attrs.illumination)
            self.forward = DpcForward.for_illumination(self.frame_shape, self.optics, self.illumination)
        else:
            raise ValueError(
                f"modality {self.modality!r} cannot be reconstructed yet (supported: dpc)"
            )

    def problem(self, window: WindowData) -> WindowProblem:
        """The fitting problem of one complete window."""
        return self._dpc(window)

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
