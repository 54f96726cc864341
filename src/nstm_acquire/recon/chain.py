"""Reconstruct the complete windows of a store into FORMAT.md's ``recon/<name>`` group.

:class:`StoreReconstructor` takes every complete window in order, each warm-started from the
previous one (a warm-start chain), writes the conventional result first and the NSTM result
after. The per-window fit itself is :func:`~nstm_acquire.recon.arrays.reconstruct_window`.

Failed fits (:func:`fit_failure`). A window's fit is *failed*, not final, when

* it produced non-finite values: the fit raised
  :class:`~nstm_acquire.nstm.fit.FitDivergedError`, stopped as ``"diverged"``, or its loss,
  held-out loss, scene or motion is not finite; or
* it exploded: its final held-out loss (the training loss without validation) is more than
  ``EXPLODED_FACTOR`` (2) times the loss of its first evaluation (the fit ended far above where
  it started), or more than ``FLAT_FACTOR`` (10) times the loss of predicting every
  measurement by its own mean (the fit is far worse than no model at all: the data's variance
  in the fit's loss units, ``K x`` the mean squared deviation). A short fit that has not yet
  converged can sit a few times above the flat prediction (``--steps 25`` on 3D SIM: 2x), so
  that bound is generous; the exploded fits seen (loss 1e6 on data whose flat loss is ~300) are
  thousands of times above it.

A failed window is stored with ``status = "failed"`` and a one-line ``failure`` reason
(:meth:`~nstm_acquire.store.ReconWriter.mark_failed`; its scene is not written), and it is
never a warm-start reference or init: the next window fits from scratch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from jax.flatten_util import ravel_pytree

from nstm_acquire.nstm.compile_cache import enable_compilation_cache
from nstm_acquire.nstm.config import NSTMConfig, default_config
from nstm_acquire.nstm.fit import FitDivergedError, FitResult
from nstm_acquire.nstm.model import Params, TimeMap
from nstm_acquire.physics.sim.estimation import SimParameterPolicy
from nstm_acquire.physics.sim.otf import MeasuredPsf, load_psf
from nstm_acquire.recon.arrays import WindowResult, model_description, reconstruct_window
from nstm_acquire.recon.problem import ProblemBuilder, WindowProblem
from nstm_acquire.store import ReconWriter, StoreError, StoreReader

__all__ = ["EXPLODED_FACTOR", "FLAT_FACTOR", "StoreReconstructor", "fit_failure", "open_recon_writer", "recon_config"]

#: A fit whose final loss is above this many times its first evaluation's loss, or the loss
#: of predicting each measurement by its mean, exploded (module docstring).
EXPLODED_FACTOR = 2.0
FLAT_FACTOR = 10.0


def _constant_prediction_loss(measurements: np.ndarray) -> float:
    """The fit's loss (``K x`` mean squared residual) of predicting every measurement row by its
    own mean: ``K x`` the mean of the rows' variances. ``measurements`` is ``(K, ...)``."""
    y = np.asarray(measurements, dtype=np.float64)
    k = y.shape[0]
    rows = y.reshape(k, -1)
    return float(k * np.mean(np.var(rows, axis=1)))


def fit_failure(result: WindowResult, measurements: np.ndarray | None = None) -> str | None:
    """Why the fit of ``result`` failed (one line), or None when it may be final.

    The rule is in the module docstring: non-finite values, or a final loss above
    ``EXPLODED_FACTOR`` times the first evaluation's loss or (given the window's
    ``measurements`` ``(K, ...)``) ``FLAT_FACTOR`` times the constant-prediction loss.
    """
    fit = result.fit
    if fit.stop_reason == "diverged":
        return f"the fit diverged (non-finite values by step {fit.steps}, loss {fit.final_loss:.3e})"
    val = fit.final_val_loss
    final = val if val is not None else fit.final_loss
    if not np.isfinite(fit.final_loss) or (val is not None and not np.isfinite(val)):
        return f"the fit produced a non-finite loss ({fit.final_loss}, held-out {val})"
    if not (np.all(np.isfinite(result.scene)) and np.all(np.isfinite(result.motion))):
        return "the fit produced non-finite scene or motion values"
    key = "val" if val is not None else "loss"
    first = fit.history[0].get(key) if fit.history else None
    if first is not None and np.isfinite(first) and first > 0 and final > EXPLODED_FACTOR * first:
        which = "held-out loss" if val is not None else "loss"
        return (
            f"the fit exploded: final {which} {final:.3e} is above {EXPLODED_FACTOR:g}x its first "
            f"evaluation {first:.3e}"
        )
    if measurements is not None:
        flat = _constant_prediction_loss(measurements)
        if flat > 0 and final > FLAT_FACTOR * flat:
            return (
                f"the fit exploded: final loss {final:.3e} is above {FLAT_FACTOR:g}x the loss "
                f"{flat:.3e} of predicting each frame by its mean"
            )
    return None


def _diverged_result(problem: WindowProblem, w: int, error: FitDivergedError) -> WindowResult:
    """A failed :class:`WindowResult` for a fit that raised (no networks: NaN scene, zero motion)."""
    times = np.asarray(problem.render_times_s)
    conventional = np.asarray(problem.conventional)
    n = times.shape[0]
    scene = np.full((n, *conventional.shape), np.nan, np.float32)
    motion = np.zeros((n, problem.motion_dims, *conventional.shape[1:]), np.float32)
    record = FitResult(
        params=cast(Params, {}),
        model=cast(Any, None),
        time_map=TimeMap.for_times(np.asarray(problem.data.times_s)),
        steps=0,
        best_step=0,
        final_loss=float("nan"),
        final_val_loss=None,
        wall_s=0.0,
        compile_s=0.0,
        stop_reason="diverged",
        warm_start=False,
        history=[],
    )
    info = {**record.info(), **problem.info, "error": str(error)}
    return WindowResult(
        w, scene, motion, times, conventional, record, info,
        channel_names=list(problem.channel_names), pixel_size_um=problem.pixel_size_um, z_step_um=problem.z_step_um,
    )  # fmt: skip


def recon_config(
    config: NSTMConfig, source_store: str | Path, modality: str, warm_start: bool, **more: Any
) -> dict[str, Any]:
    """The ``config`` attribute of a ``recon/<name>`` group: every NSTM hyper-parameter, the
    source store, the modality, whether windows were warm-started, and ``more``."""
    return {
        "nstm": config.model_dump(mode="json"),
        "source_store": str(source_store),
        "warm_start": warm_start,
        "modality": modality,
        **more,
    }


def open_recon_writer(
    out: str | Path,
    name: str,
    *,
    scene_shape: tuple[int, int, int, int],
    motion_dims: int,
    pixel_size_um: float,
    z_step_um: float | None,
    channel_names: Sequence[str],
    overwrite: bool,
    config: dict[str, Any],
) -> ReconWriter:
    """Create ``recon/<name>`` in the store ``out`` for NSTM results and record ``config``.

    ``scene_shape`` is ``(C, Z, Y', X')`` of one scene (the shape of a window's conventional
    result), ``pixel_size_um`` / ``z_step_um`` the output grid, ``config`` the group's
    configuration (:func:`recon_config`). Used by the store chain and by the Dask client.
    """
    writer = ReconWriter(
        out,
        name=name,
        scene_shape=scene_shape,
        motion_dims=motion_dims,
        pixel_size_um=pixel_size_um,
        overwrite=overwrite,
        method="nstm",
        z_step_um=z_step_um,
        channel_names=list(channel_names),
    )
    writer.set_config(config)
    return writer


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
        the store's configured values (``"configured"``, the default: present values win and
        are checked against the estimate; ``"fallback"``, ``"error"``, ``"estimate"``; :func:`~nstm_acquire.physics.sim.estimation.resolve_sim_parameters`).
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
        sim_parameters: str = "configured",
    ) -> None:
        enable_compilation_cache()
        self.write = write
        self.reader = StoreReader(store)
        self.config = config or default_config()
        self.out = Path(out) if out is not None else Path(store)
        self.name = name
        self.overwrite = overwrite
        self.warm_start = warm_start
        self.builder = ProblemBuilder.for_store(
            self.reader,
            self.config,
            # checked when the pattern is resolved (resolve_sim_parameters names the choices)
            sim_parameters=cast(SimParameterPolicy, sim_parameters),
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
            self._writer = open_recon_writer(
                self.out,
                self.name,
                scene_shape=(problem.channels, z, problem.scene_shape[-2], problem.scene_shape[-1]),
                motion_dims=problem.motion_dims,
                pixel_size_um=problem.pixel_size_um,
                z_step_um=problem.z_step_um,
                channel_names=problem.channel_names,
                overwrite=self.overwrite,
                config=recon_config(self.config, self.reader.path, self.reader.modality, self.warm_start),
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
        try:
            result = reconstruct_window(
                problem,
                self.config,
                init_params=self._params if warm else None,
                window=w,
                callback=callback,
                should_stop=should_stop,
                reference_val_loss=self._val_loss if warm else None,
            )
        except FitDivergedError as err:
            result = _diverged_result(problem, w, err)
        failure = fit_failure(result, problem.data.measurements)
        result.info["status"] = "failed" if failure else "final"
        if failure:
            result.info["failure"] = failure
        result.info["warm_start_from"] = self._last_window if result.fit.warm_start else None
        result.info.update(extra_info or {})
        result.info["reconstruction_end_utc"] = datetime.now(UTC).isoformat()
        if failure:
            # never a warm-start reference or init: the next window fits from scratch
            if writer is not None:
                writer.mark_failed(w, failure, info=result.info)
            self._params, self._val_loss, self._last_window = None, None, None
            return result
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
        todo = self.reader.require_complete(windows)
        results = []
        for w in todo:
            cb = None if progress is None else (lambda step, m, w=w: progress(w, step, m))
            results.append(self.reconstruct(w, callback=cb))
        return results
