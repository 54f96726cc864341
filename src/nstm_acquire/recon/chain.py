"""Reconstruct the complete windows of a store into FORMAT.md's ``recon/<name>`` group.

:class:`StoreReconstructor` takes every complete window in order, each warm-started from the
previous one (a warm-start chain), writes the conventional result first and the NSTM result
after. The per-window fit itself is :func:`~nstm_acquire.recon.arrays.reconstruct_window`.
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

from nstm_acquire.physics.sim.otf import MeasuredPsf, load_psf
from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.nstm.compile_cache import enable_compilation_cache
from nstm_acquire.nstm.config import NSTMConfig, default_config
from nstm_acquire.nstm.fit import FitResult, build_model, fit, render_scenes
from nstm_acquire.nstm.model import Params
from nstm_acquire.physics.optics import Optics
from nstm_acquire.recon.problem import ProblemBuilder, WindowProblem
from nstm_acquire.physics.sim.illumination import SimIllumination
from nstm_acquire.store import ReconWriter, StoreAttributes, StoreError, StoreReader, WindowData

from nstm_acquire.recon.arrays import WindowResult, model_description, reconstruct_window

__all__ = ["StoreReconstructor"]


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
        ``"configured"``; :func:`~nstm_acquire.physics.sim.estimation.resolve_sim_parameters`).
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
