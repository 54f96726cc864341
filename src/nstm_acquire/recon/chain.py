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

Per-window isolation. Before a window is fitted its data are checked
(:func:`window_data_problem`): non-finite pixels, pixels outside the camera's range
(``CAMERA_MIN_ADU`` .. ``CAMERA_MAX_ADU`` after adding back the offset), frames more than
``SATURATED_FRACTION`` at the camera's maximum, a window of camera noise only (``NO_SIGNAL_SE``:
the sample out of view or bleached), and non-finite, negative or implausibly late timestamps or
exposures. Such a window, and one whose frames cannot be read or whose fit raises
anything, is recorded as failed with the reason (window, file or field) and
:class:`WindowFailure` is raised for that window only: :meth:`StoreReconstructor.run`, the
near-live worker and the Dask tasks go on with the next window. A window whose final loss,
relative to the flat-prediction loss of its data, is more than ``NEIGHBOUR_FACTOR`` times the
median of the windows before it is kept (``status = "final"``) but flagged ``implausible`` and,
like a failed one, is never a warm-start reference or init.

Resume. With ``resume=True`` an existing ``recon/<name>`` made with the same settings is
continued (:meth:`StoreReconstructor.pending`: the windows not final yet); the first window
redone fits from scratch.
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
from nstm_acquire.physics.sim.estimation import SimParameterError, SimParameterPolicy
from nstm_acquire.physics.sim.otf import MeasuredPsf, load_psf
from nstm_acquire.recon.arrays import WindowResult, model_description, reconstruct_window
from nstm_acquire.recon.problem import ProblemBuilder, WindowProblem, modality_of
from nstm_acquire.recon.rolling_shutter import rolling_shutter_config
from nstm_acquire.recon.start import exposure_sampled
from nstm_acquire.recon.trust import window_trust
from nstm_acquire.store import ReconWriter, StoreError, StoreReader

__all__ = [
    "modality_default_config",
    "COLD_MODALITIES",
    "CAMERA_MAX_ADU",
    "CAMERA_MIN_ADU",
    "EXPLODED_FACTOR",
    "FLAT_FACTOR",
    "NEIGHBOUR_FACTOR",
    "SATURATED_FRACTION",
    "StoreReconstructor",
    "WindowFailure",
    "fit_failure",
    "open_recon_writer",
    "recon_config",
    "resume_conflict",
    "warm_starts",
    "window_data_problem",
]

#: A fit whose final loss is above this many times its first evaluation's loss, or the loss
#: of predicting each measurement by its mean, exploded (module docstring).
EXPLODED_FACTOR = 2.0
FLAT_FACTOR = 10.0
#: A window whose loss / flat-prediction loss is above this many times the median of the
#: windows before it is implausible: kept, flagged, never a warm-start reference.
NEIGHBOUR_FACTOR = 10.0
#: The camera's range in counts (16-bit cameras), offset included; data outside it are not a
#: camera's (a corrupt or foreign store).
CAMERA_MIN_ADU = -1000.0
CAMERA_MAX_ADU = 65535.0
#: A frame with more than this fraction of its pixels at ``CAMERA_MAX_ADU`` is saturated.
SATURATED_FRACTION = 0.05
#: Timestamps beyond this many seconds after the acquisition start are implausible (116 days).
MAX_TIME_S = 1.0e7
#: A window whose mean over the offset is below this many standard errors of the mean (the
#: pixel noise from the median absolute deviation, over the square root of the pixel count) is
#: camera noise only: nothing to reconstruct (SIM would divide by a mean of about zero).
NO_SIGNAL_SE = 10.0


class WindowFailure(Exception):
    """Window ``window`` could not be reconstructed; ``reason`` says why in one line (it is
    recorded in the store as the window's ``failure``)."""

    def __init__(self, window: int, reason: str) -> None:
        self.window = int(window)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"window {self.window}: {self.reason}")


def window_data_problem(window: Any, offset_adu: float = 0.0) -> str | None:
    """What makes a window's data unusable (one line naming the field and frame), or None.

    ``window`` is a :class:`~nstm_acquire.store.reader.WindowData` (``raw`` ``(S, Z, Y, X)`` in
    counts minus ``offset_adu``, ``timestamps_s`` and ``exposure_s`` ``(S, Z)``). The checks are
    in the module docstring.
    """
    raw = np.asarray(window.raw)
    S, Z = raw.shape[:2]
    for s in range(S):
        for z in range(Z):
            frame = raw[s, z]
            where = f"raw frame (shot {s}, plane {z})"
            bad = ~np.isfinite(frame)
            if bad.any():
                return f"{where} has {int(bad.sum())} NaN or infinite pixels"
            counts = frame.astype(np.float64) + offset_adu
            lo, hi = float(counts.min()), float(counts.max())
            if lo < CAMERA_MIN_ADU or hi > CAMERA_MAX_ADU:
                return (
                    f"{where} has counts {lo:.4g}..{hi:.4g}, outside the camera's range "
                    f"{CAMERA_MIN_ADU:g}..{CAMERA_MAX_ADU:g} (a corrupt or foreign store)"
                )
            saturated = float(np.mean(counts >= CAMERA_MAX_ADU))
            if saturated > SATURATED_FRACTION:
                return (
                    f"{where} is saturated: {100 * saturated:.0f}% of its pixels at the camera's "
                    f"maximum {CAMERA_MAX_ADU:g} (lower the exposure or the illumination)"
                )
    # a window of camera noise only (sample out of view, bleached, shutter closed): its mean over
    # the offset is within a few standard errors of zero (noise from the median absolute deviation)
    values = raw.astype(np.float64).ravel()
    noise = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    mean = float(values.mean())
    if values.size > 1 and noise > 0 and mean < NO_SIGNAL_SE * noise / np.sqrt(values.size):
        return (
            f"raw has no signal above the camera noise (mean {mean:.3g} ADU over the offset, noise "
            f"{noise:.3g} ADU): the sample is out of view, out of focus or bleached, or the shutter closed"
        )
    for field, values in (("timestamps_s", window.timestamps_s), ("exposure_s", window.exposure_s)):
        values = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0) | (values > MAX_TIME_S)
        if bad.any():
            s, z = (int(i) for i in np.argwhere(bad)[0])
            return (
                f"{field} of frame (shot {s}, plane {z}) is {float(values[s, z]):g}: "
                f"not a time between 0 and {MAX_TIME_S:.0e} s"
            )
    return None


def _loss_ratio(result: WindowResult, measurements: np.ndarray) -> float | None:
    """The final loss over the flat-prediction loss (comparable between windows), or None."""
    fit = result.fit
    final = fit.final_val_loss if fit.final_val_loss is not None else fit.final_loss
    flat = _constant_prediction_loss(measurements)
    if not (np.isfinite(final) and flat > 0):
        return None
    return float(final / flat)


def resume_conflict(out: str | Path, name: str, config: dict[str, Any]) -> str | None:
    """Why the existing ``recon/<name>`` of ``out`` cannot be continued with ``config``
    (:func:`recon_config`), or None (it can, or it does not exist)."""
    from nstm_acquire.store import ReconReader

    try:
        existing = ReconReader(out, name).config
    except StoreError:
        return None
    old, new = existing.get("nstm"), to_json_config(config).get("nstm")
    if old == new and existing.get("warm_start") == config.get("warm_start"):
        return None
    changed = _first_difference(old, new) if old != new else "warm_start"
    return f"was made with other settings ({changed})"


def to_json_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as stored (JSON types: tuples become lists, non-finite numbers null)."""
    from nstm_acquire.store.layout import to_json

    return cast(dict[str, Any], to_json(config))


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'config'}: {old!r} then, {new!r} now"


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
    resume: bool = False,
) -> ReconWriter:
    """Create ``recon/<name>`` in the store ``out`` for NSTM results and record ``config``.

    ``scene_shape`` is ``(C, Z, Y', X')`` of one scene (the shape of a window's conventional
    result), ``pixel_size_um`` / ``z_step_um`` the output grid, ``config`` the group's
    configuration (:func:`recon_config`). ``resume`` continues an existing group
    (:class:`~nstm_acquire.store.ReconWriter`). Used by the store chain and by the Dask client.
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
        resume=resume,
    )
    writer.set_config(config)
    return writer


#: modalities whose windows are always fitted cold: a lensless video's objects move on between
#: windows, so the last window's scene starts the next one in the wrong place (3 of 3 warm fits of
#: the rolling-shutter demo worse than cold ones: two rejected by the refit guard, the third
#: 24.0 dB against 30.6 dB cold; docs/rolling_shutter.md)
COLD_MODALITIES = ("rolling_shutter",)


def warm_starts(modality: str, warm_start: bool) -> bool:
    """Whether a chain of ``modality`` windows warm-starts when ``warm_start`` is asked for."""
    return bool(warm_start) and modality not in COLD_MODALITIES


class StoreReconstructor:
    """Reconstruct the complete windows of a store into ``recon/<name>``.

    Parameters
    ----------
    store
        The acquisition store (``NAME.zarr``), or a :class:`~nstm_acquire.store.StoreReader` of
        it already opened (used as it is, not opened again).
    config
        NSTM configuration (default: :func:`~nstm_acquire.nstm.config.default_config`).
    out
        Write the reconstruction into this store instead (created if missing).
    name
        Group name under ``recon/``.
    overwrite
        Replace an existing ``recon/<name>``.
    warm_start
        Start each window from the previous window's fitted networks (DPC and SIM; a
        ``rolling_shutter`` store's windows are always fitted cold: :func:`warm_starts`).
    write
        Write results into the store (False: only return them, e.g. on a Dask worker whose
        results the client writes).
    sim_parameters
        SIM only: how the illumination pattern is chosen from the first window's estimate and
        the store's configured values (``"configured"``, the default: present values win and
        are checked against the estimate; ``"fallback"``, ``"error"``, ``"estimate"``; :func:`~nstm_acquire.physics.sim.estimation.resolve_sim_parameters`).
    resume
        Continue an existing ``recon/<name>`` (made with the same settings: else
        :class:`StoreError`) instead of refusing it; ``overwrite`` wins.
    """

    def __init__(
        self,
        store: str | Path | StoreReader,
        config: NSTMConfig | None = None,
        out: str | Path | None = None,
        name: str = "nstm",
        overwrite: bool = False,
        warm_start: bool = True,
        write: bool = True,
        sim_parameters: str = "configured",
        resume: bool = False,
    ) -> None:
        enable_compilation_cache()
        self.write = write
        self.resume = resume and not overwrite
        # a reader the caller already opened is used as it is (opening a large store lists
        # every frame's chunk once: about 2 s for 20,000 frames)
        self.reader = store if isinstance(store, StoreReader) else StoreReader(store)
        store = self.reader.path
        self.config = config or modality_default_config(modality_of(self.reader.attrs.illumination))
        self.out = Path(out) if out is not None else Path(store)
        self.name = name
        self.overwrite = overwrite
        self.warm_start = warm_starts(self.reader.modality, warm_start)
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
        self._exposure_samples = 1  # the chain's last cold fit's samples per exposure
        self._last_window: int | None = None
        self._ratios: list[float] = []  # loss / flat loss of the accepted windows so far
        self._pending_failures: dict[int, tuple[str, dict[str, Any]]] = {}  # before the writer opened
        self.failures: dict[int, str] = {}  # window -> reason, of this run
        if self.write and self.resume:
            conflict = resume_conflict(self.out, name, self._group_config())
            if conflict:
                raise StoreError(
                    str(self.out), f"group recon/{name}",
                    f"{conflict}: pass --overwrite to replace it, or --name to keep both",
                )  # fmt: skip

    def _group_config(self) -> dict[str, Any]:
        return recon_config(self.config, self.reader.path, self.reader.modality, self.warm_start)

    def pending(self, windows: Sequence[int] | None = None) -> list[int]:
        """Of ``windows`` (default: every complete window), those without a final result in
        ``recon/<name>`` yet (missing, preview only, or failed); all of them without ``resume``
        or when the group does not exist."""
        from nstm_acquire.store import ReconReader

        todo = list(self.reader.complete_windows() if windows is None else windows)
        if not (self.resume and self.write):
            return todo
        try:
            done = set(ReconReader(self.out, self.name).windows_done())
        except StoreError:
            return todo
        return [w for w in todo if w not in done]

    def _measured_psf(self, store: str | Path) -> MeasuredPsf | None:
        """SIM: the PSF file the store's ``optics.psf_file`` names (relative to its folder)."""
        if self.reader.attrs.modality in ("dpc", "rolling_shutter"):
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
                config=self._group_config(),
                resume=self.resume,
            )
            for w, (reason, info) in sorted(self._pending_failures.items()):
                self._writer.mark_failed(w, reason, info=info)
            self._pending_failures.clear()
        return self._writer

    def _record_failure(self, w: int, reason: str, info: dict[str, Any]) -> None:
        """Store window ``w`` as failed (kept until the output group exists), forget the chain."""
        self.failures[w] = reason
        self._params, self._val_loss, self._last_window = None, None, None
        if not self.write:
            return
        if self._writer is None:
            self._pending_failures[w] = (reason, info)
        else:
            self._writer.mark_failed(w, reason, info=info)

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

        Raises :class:`WindowFailure` (after recording the window as failed) when the window's
        data are unusable, cannot be read, or anything in its reconstruction raises; the
        reconstructor stays usable for the next window. A
        :class:`~nstm_acquire.physics.sim.estimation.SimParameterError` (``sim_parameters=
        "error"`` and an implausible estimate) is raised as it is: the user asked to stop. A fit that diverged or exploded is
        returned with ``info["status"] == "failed"`` (recorded the same way).
        """
        w = int(w)
        try:
            return self._reconstruct(w, callback, should_stop, on_preview, extra_info)
        except (WindowFailure, SimParameterError):
            raise  # SimParameterError: the user asked to stop on an implausible SIM estimate
        except Exception as err:  # noqa: BLE001 - one window's failure never ends the chain
            from nstm_acquire._logger import logger

            logger.getChild("recon.chain").debug("window %d failed", w, exc_info=True)
            reason = _exception_reason(err)
            info = {**(extra_info or {}), "error_type": type(err).__name__,
                    "reconstruction_end_utc": datetime.now(UTC).isoformat()}  # fmt: skip
            try:
                self._record_failure(w, reason, info)
            except Exception as store_err:  # noqa: BLE001 - e.g. a read-only store
                reason = f"{reason}; recording the failure failed too: {_exception_reason(store_err)}"
            raise WindowFailure(w, reason) from err

    def _reconstruct(
        self,
        w: int,
        callback: Callable[[int, dict[str, float]], None] | None,
        should_stop: Callable[[], bool] | None,
        on_preview: Callable[[int, np.ndarray], None] | None,
        extra_info: dict[str, Any] | None,
    ) -> WindowResult:
        t0 = time.perf_counter()
        if w >= self.reader.n_windows:  # the store grew since it was opened
            self.reader.refresh()
        data = self.reader.window(w)
        problem_in_data = window_data_problem(data, float(self.reader.attrs.camera.offset_adu))
        if problem_in_data:
            info = {**(extra_info or {}), "reconstruction_end_utc": datetime.now(UTC).isoformat()}
            self._record_failure(w, problem_in_data, info)
            raise WindowFailure(w, problem_in_data)
        problem = self.builder.problem(data)
        writer = self._open_writer(problem) if self.write else None
        if writer is not None:
            writer.write_conventional(w, problem.conventional, info={"preview_wall_s": time.perf_counter() - t0})
        if on_preview is not None:
            on_preview(w, problem.conventional)
        warm = self.warm_start and self._params is not None
        # a fast sample rendered across each exposure (cold: as its registration asks; warm: as
        # the chain's cold fit was), here so that the trust report predicts the same data
        problem = exposure_sampled(problem, self.config, self._exposure_samples if warm else None)
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
            self._record_failure(w, failure, result.info)
            return result
        implausible = self._implausible(result, problem.data.measurements)
        if implausible:
            result.info["implausible"] = implausible
        result.info["trust"], trust_map = self._trust(problem, result, data.raw)
        if writer is not None:
            writer.write_window(w, result.scene, result.times_s, result.motion, problem.conventional, info=result.info)
            writer.write_network(w, ravel_pytree(result.fit.params)[0])
            if trust_map is not None:
                writer.write_trust_map(w, trust_map)
            if not self._model_written:
                writer.set_attributes(model=model_description(result.fit.model))
                self._model_written = True
        if implausible:  # kept, but never a warm-start reference or init
            self._params, self._val_loss, self._last_window = None, None, None
            return result
        self._params = result.fit.params
        if not result.fit.warm_start:
            # a cold fit (the first window, or one whose warm start was rejected) is the chain's
            # reference; warm windows are not, so the tolerance cannot compound over a chain
            self._val_loss = result.fit.final_val_loss
            self._exposure_samples = int(result.info.get("exposure_samples", {}).get("samples", 1))
        self._last_window = w
        return result

    def _trust(
        self, problem: WindowProblem, result: WindowResult, raw: np.ndarray
    ) -> tuple[dict[str, Any], np.ndarray | None]:
        """The window's trust report and residual map (recon/trust.py); a failure to compute
        them never fails the window: the report says ``unavailable`` and why."""
        t0 = time.perf_counter()
        camera = self.reader.attrs.camera
        try:
            report, rmap = window_trust(
                problem, result, raw, self.reader.optics.cutoff_per_um, camera.gain_e_per_adu, camera.read_noise_e
            )
        except Exception as err:  # noqa: BLE001 - the reconstruction stands without its report
            from nstm_acquire._logger import logger

            logger.getChild("recon.chain").debug("trust report of window %d failed", result.window, exc_info=True)
            reason = f"the trust report could not be computed: {_exception_reason(err)}"
            return {"verdict": "unavailable", "reasons": [reason]}, None
        report["wall_s"] = time.perf_counter() - t0
        return report, rmap

    def _implausible(self, result: WindowResult, measurements: np.ndarray) -> str | None:
        """Why this window's loss is implausible next to the windows before it, or None;
        a plausible window's loss ratio joins the neighbours."""
        ratio = _loss_ratio(result, measurements)
        if ratio is None:
            return None
        if self._ratios:
            typical = float(np.median(self._ratios[-5:]))
            if typical > 0 and ratio > NEIGHBOUR_FACTOR * typical:
                return (
                    f"loss {ratio:.3g}x its flat prediction, above {NEIGHBOUR_FACTOR:g}x the "
                    f"{typical:.3g}x of the windows before it: not used as a warm-start reference"
                )
        self._ratios.append(ratio)
        return None

    def run(
        self,
        windows: Sequence[int] | None = None,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
    ) -> list[WindowResult]:
        """Reconstruct ``windows`` (default: every complete window) in order.

        A window that raises :class:`WindowFailure` is recorded (``failures``) and skipped;
        the others are returned.
        """
        todo = self.reader.require_complete(windows)
        results = []
        for w in todo:
            cb = None if progress is None else (lambda step, m, w=w: progress(w, step, m))
            try:
                results.append(self.reconstruct(w, callback=cb))
            except WindowFailure:
                continue
        return results


def modality_default_config(modality: str) -> NSTMConfig:
    """The default NSTM configuration of ``modality``: ``rolling_shutter`` has its own
    (:func:`~nstm_acquire.recon.rolling_shutter.rolling_shutter_config`), the others
    :func:`~nstm_acquire.nstm.config.default_config`."""
    if modality == "rolling_shutter":
        return rolling_shutter_config()
    return default_config(modality)


def _exception_reason(err: BaseException) -> str:
    """One line for an exception met while reconstructing a window (type and message)."""
    text = " ".join(str(err).split()) or "no message"
    if isinstance(err, StoreError):
        return text
    if isinstance(err, OSError) and getattr(err, "filename", None):
        return f"{type(err).__name__}: {err.strerror or text} ({err.filename})"
    return f"{type(err).__name__}: {text}"[:500]
