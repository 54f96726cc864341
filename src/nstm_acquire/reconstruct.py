"""Reconstruct stored windows with the NSTM and write FORMAT.md's ``recon/<name>`` group.

Python API:

* :func:`reconstruct_window` -- one :class:`~nstm_acquire.problems.WindowProblem` (arrays in,
  arrays out);
* :func:`reconstruct_dpc` -- DPC straight from arrays (frames, times, optics, LEDs);
* :class:`StoreReconstructor` -- every complete window of a store, in order, each warm-started
  from the previous one, writing the conventional result first and the NSTM result after.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from jax.flatten_util import ravel_pytree

from nstm_acquire.forward.sim_otf import MeasuredPsf, load_psf
from nstm_acquire.illumination import DpcIllumination
from nstm_acquire.nstm.compile_cache import enable_compilation_cache
from nstm_acquire.nstm.config import NSTMConfig, default_config
from nstm_acquire.nstm.fit import FitResult, build_model, fit, render_scenes
from nstm_acquire.nstm.model import Params
from nstm_acquire.optics import Optics
from nstm_acquire.problems import ProblemBuilder, WindowProblem
from nstm_acquire.sim_illumination import SimIllumination
from nstm_acquire.store import ReconWriter, StoreAttributes, StoreError, StoreReader, WindowData

__all__ = [
    "StoreReconstructor",
    "WindowResult",
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
    it (:func:`~nstm_acquire.nstm.fit.fit`)."""
    config = config or default_config()
    model = build_model(
        config,
        problem.scene_shape,
        problem.channels,
        problem.motion_dims,
        nonnegative=bool(getattr(problem.forward, "nonnegative", False)),
        n_shots=len(problem.render_times_s),
    )
    result = fit(
        model, problem.forward, problem.data, init_params, callback, should_stop,
        reference_val_loss=reference_val_loss,
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


def reconstruct_dpc(
    raw: np.ndarray,
    timestamps_s: np.ndarray,
    exposure_s: np.ndarray,
    optics: Optics,
    led_na: np.ndarray,
    shots: Sequence[Sequence[int]],
    background: np.ndarray | None = None,
    config: NSTMConfig | None = None,
) -> WindowResult:
    """DPC from arrays: ``raw`` ``(S, Y, X)`` counts (offset removed), times ``(S,)`` in s.

    ``led_na`` ``(N, 2)`` illumination NA of every LED, ``shots`` the LEDs lit in each shot,
    ``background`` ``(S, Y, X)`` sample-free frames (None: normalise by each frame's mean).
    """
    raw = np.asarray(raw, np.float32)
    if raw.ndim != 3:
        raise ValueError(f"raw has shape {raw.shape}; give (S, Y, X) frames of one window")
    s = raw.shape[0]
    ts = np.asarray(timestamps_s, np.float64).reshape(s, 1)
    ex = np.asarray(exposure_s, np.float64).reshape(s, 1)
    ill = DpcIllumination(led_na=np.asarray(led_na).tolist(), shots=[list(map(int, x)) for x in shots])
    attrs = StoreAttributes.model_validate(
        {
            "format_version": 1,
            "modality": "dpc",
            "optics": optics.to_store(),
            "illumination": ill.to_store(),
            "camera": {"offset_adu": 0.0},
            "acquisition": {},
        }
    )
    bg = None if background is None else np.asarray(background, np.float32)[:, None]
    builder = ProblemBuilder(attrs, raw.shape[-2:], 1, config or default_config(), background=bg)
    problem = builder.problem(WindowData(index=0, raw=raw[:, None], timestamps_s=ts, exposure_s=ex))
    return reconstruct_window(problem, config)


def reconstruct_sim(
    raw: np.ndarray,
    timestamps_s: np.ndarray,
    exposure_s: np.ndarray,
    optics: Optics,
    illumination: SimIllumination,
    config: NSTMConfig | None = None,
    sim_parameters: str = "fallback",
    upsample: int = 2,
    psf: MeasuredPsf | None = None,
) -> WindowResult:
    """SIM from arrays: ``raw`` ``(S, Z, Y, X)`` counts (offset removed), times ``(S, Z)`` in s.

    Shot ``s = d * n_phases + p``; ``Z = 1`` for two-beam 2D SIM (``illumination.three_beam``
    False), the stack's planes ``optics.z_step_um`` µm apart for three-beam 3D SIM. Missing
    ``k_per_um`` / ``phase_rad`` / ``modulation`` are estimated from the window and checked
    (``sim_parameters``: ``"fallback"``, ``"error"``, ``"estimate"`` or ``"configured"``,
    :func:`~nstm_acquire.forward.sim_estimation.resolve_sim_parameters`); the report is in
    ``result.info["sim_parameters"]``. ``psf``: a measured PSF instead of the theoretical OTF
    (:class:`~nstm_acquire.forward.sim_otf.MeasuredPsf`).
    """
    raw = np.asarray(raw, np.float32)
    if raw.ndim != 4:
        raise ValueError(f"raw has shape {raw.shape}; give (S, Z, Y, X) frames of one window (Z = 1 for 2D SIM)")
    modality = "sim3d" if illumination.three_beam else "sim2d"
    if modality == "sim2d" and raw.shape[1] != 1:
        raise ValueError(f"raw has {raw.shape[1]} planes but the illumination is two-beam (2D SIM): give Z = 1")
    ts = np.asarray(timestamps_s, np.float64).reshape(raw.shape[:2])
    ex = np.broadcast_to(np.asarray(exposure_s, np.float64), raw.shape[:2]).copy()
    attrs = StoreAttributes.model_validate(
        {
            "format_version": 1,
            "modality": modality,
            "optics": optics.to_store(),
            "illumination": illumination.to_store(),
            "camera": {"offset_adu": 0.0},
            "acquisition": {},
        }
    )
    builder = ProblemBuilder(
        attrs,
        raw.shape[-2:],
        raw.shape[1],
        config or default_config(),
        sim_parameters=sim_parameters,
        upsample=upsample,
        psf=psf,
    )
    problem = builder.problem(WindowData(index=0, raw=raw, timestamps_s=ts, exposure_s=ex))
    return reconstruct_window(problem, config)


class StoreReconstructor:
    """Reconstruct the complete windows of a store into ``recon/<name>``.

    Parameters
    ----------
    store
        The acquisition store (``NAME.zarr``).
    config
        NSTM configuration (default: :func:`~nstm_acquire.nstm.config.default_config`).
    out
        Write the reconstruction into this store instead (created if missing).
    name
        Group name under ``recon/``.
    overwrite
        Replace an existing ``recon/<name>``.
    warm_start
        Start each window from the previous window's fitted networks.
    write
        Write results into the store (False: only return them, e.g. on a Dask worker whose
        results the client writes).
    sim_parameters
        SIM only: how the illumination pattern is chosen from the first window's estimate and
        the store's configured values (``"fallback"``, ``"error"``, ``"estimate"``,
        ``"configured"``; :func:`~nstm_acquire.forward.sim_estimation.resolve_sim_parameters`).
    """

    def __init__(
        self,
        store: str | Path,
        config: NSTMConfig | None = None,
        out: str | Path | None = None,
        name: str = "nstm",
        overwrite: bool = False,
        warm_start: bool = True,
        write: bool = True,
        sim_parameters: str = "fallback",
    ) -> None:
        enable_compilation_cache()
        self.write = write
        self.reader = StoreReader(store)
        self.config = config or default_config()
        self.out = Path(out) if out is not None else Path(store)
        self.name = name
        self.overwrite = overwrite
        self.warm_start = warm_start
        self.builder = ProblemBuilder(
            self.reader.attrs,
            self.reader.frame_shape,
            self.reader.n_planes,
            self.config,
            background=self.reader.background(),
            sim_parameters=sim_parameters,
            psf=self._measured_psf(store),
        )
        self._writer: ReconWriter | None = None
        self._model_written = False
        self._params: Params | None = None
        self._val_loss: float | None = None
        self._last_window: int | None = None

    def _measured_psf(self, store: str | Path) -> MeasuredPsf | None:
        """SIM: the PSF file the store's ``optics.psf_file`` names (relative to its folder)."""
        if self.reader.attrs.modality == "dpc":
            return None
        try:
            return load_psf(self.reader.optics, folder=str(Path(store).resolve().parent))
        except (OSError, ValueError) as err:
            problem = str(err).removeprefix("optics.psf_file: ")
            raise StoreError(str(store), "optics.psf_file", problem) from None

    def _open_writer(self, problem: WindowProblem) -> ReconWriter:
        if self._writer is None:
            z = problem.scene_shape[0] if len(problem.scene_shape) == 3 else 1
            self._writer = ReconWriter(
                self.out,
                name=self.name,
                scene_shape=(problem.channels, z, *problem.scene_shape[-2:]),
                motion_dims=problem.motion_dims,
                pixel_size_um=problem.pixel_size_um,
                overwrite=self.overwrite,
                method="nstm",
                z_step_um=problem.z_step_um,
                channel_names=problem.channel_names,
            )
            self._writer.set_config(
                {
                    "nstm": self.config.model_dump(mode="json"),
                    "source_store": str(self.reader.path),
                    "warm_start": self.warm_start,
                    "modality": self.reader.modality,
                }
            )
        return self._writer

    def reconstruct(
        self,
        w: int,
        callback: Callable[[int, dict[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_preview: Callable[[int, np.ndarray], None] | None = None,
        extra_info: dict[str, Any] | None = None,
    ) -> WindowResult:
        """Reconstruct window ``w`` (conventional preview first, then the NSTM) and store it.

        ``extra_info`` is added to the window's attributes (the live worker records when the
        window completed and when its reconstruction started); the end time is added here.
        """
        t0 = time.perf_counter()
        if w >= self.reader.n_windows:  # the store grew since it was opened
            self.reader.refresh()
        problem = self.builder.problem(self.reader.window(w))
        writer = self._open_writer(problem) if self.write else None
        if writer is not None:
            writer.write_conventional(w, problem.conventional, info={"preview_wall_s": time.perf_counter() - t0})
        if on_preview is not None:
            on_preview(w, problem.conventional)
        warm = self.warm_start and self._params is not None
        result = reconstruct_window(
            problem,
            self.config,
            init_params=self._params if warm else None,
            window=w,
            callback=callback,
            should_stop=should_stop,
            reference_val_loss=self._val_loss if warm else None,
        )
        result.info["warm_start_from"] = self._last_window if result.fit.warm_start else None
        result.info.update(extra_info or {})
        result.info["reconstruction_end_utc"] = datetime.now(timezone.utc).isoformat()
        if writer is not None:
            writer.write_window(w, result.scene, result.times_s, result.motion, problem.conventional, info=result.info)
            writer.write_network(w, ravel_pytree(result.fit.params)[0])
            if not self._model_written:
                writer.set_attributes(model=model_description(result.fit.model))
                self._model_written = True
        self._params = result.fit.params
        if not result.fit.warm_start:
            # a cold fit (the first window, or one whose warm start was rejected) is the chain's
            # reference; warm windows are not, so the tolerance cannot compound over a chain
            self._val_loss = result.fit.final_val_loss
        self._last_window = w
        return result

    def run(
        self,
        windows: Sequence[int] | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> list[WindowResult]:
        """Reconstruct ``windows`` (default: every complete window) in order."""
        complete = self.reader.complete_windows()
        todo = list(complete if windows is None else windows)
        missing = [w for w in todo if w not in complete]
        if missing:
            raise ValueError(
                f"{self.reader.path}: windows {missing} are not complete (complete: {complete})"
            )
        results = []
        for w in todo:
            cb = None if progress is None else (lambda step, m, w=w: progress(w, step, m))
            results.append(self.reconstruct(w, callback=cb))
        return results
