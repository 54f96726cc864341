"""Run a multi-shot acquisition: MDA on the core, exact frame times, frames streamed to Zarr.

:class:`AcquisitionController` owns one run and its thread. It asks the
:class:`~nstm_acquire.hardware.microscope.Microscope` for the modality's setup, builds the useq
sequence (:mod:`~nstm_acquire.acquire.sequences`), creates the store with the run's attributes
(:mod:`~nstm_acquire.acquire.metadata`, ``docs/format.md``), installs the timestamping MDA engine
(:mod:`~nstm_acquire.acquire.engine`), takes background frames if asked, and runs pymmcore-plus's
MDA with a :class:`~nstm_acquire.acquire.frames.FrameHandler` that writes every frame with its
exposure start (:mod:`~nstm_acquire.acquire.timing`) as it arrives. It talks to the microscope
only through its interface, so a real and the simulated microscope run the same code.

It emits psygnal signals (``events``):

* ``frame_stored(w, s, z, t_s)``: a frame and its timestamp are in the store;
* ``window_complete(w)``: every frame of window ``w`` is in the store;
* ``finished(summary)``: the run ended (completed, canceled, incomplete or error), store closed;
* ``error(message)``: something went wrong; frames already written stay readable.

Timestamps are seconds since the acquisition started, on one clock (``docs/timing.md``).
"""

from __future__ import annotations

import errno
import threading
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal, SignalGroup

from nstm_acquire._logger import logger as _package_logger
from nstm_acquire.acquire.engine import CameraFault, capture_camera_errors, install_timestamping_engine
from nstm_acquire.acquire.frames import FrameHandler
from nstm_acquire.acquire.metadata import store_attributes, utc_now
from nstm_acquire.acquire.sequences import AcquisitionPlan, build_sequence
from nstm_acquire.acquire.timing import FrameTimer
from nstm_acquire.hardware.microscope import Microscope, ModalitySetup
from nstm_acquire.store import StoreWriter

__all__ = ["AcquisitionController", "AcquisitionSummary", "ControllerSignals", "status_for_error"]

logger = _package_logger.getChild("acquire")


def _is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` (or an exception it was raised from) is "no space left on device"."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def status_for_error(err: BaseException | None) -> str:
    """The ``acquisition.status`` of a run that ``err`` stopped: ``disk_full`` (no space left),
    ``camera_error`` (the camera failed, or a device timed out), else ``error``."""
    if _is_disk_full(err):
        return "disk_full"
    if isinstance(err, (CameraFault, TimeoutError)):
        return "camera_error"
    return "error"


class ControllerSignals(SignalGroup):
    """Signals of an :class:`AcquisitionController` (emitted from the acquisition thread)."""

    frame_stored = Signal(int, int, int, float)
    window_complete = Signal(int)
    finished = Signal(object)
    error = Signal(str)


@dataclass
class AcquisitionSummary:
    """How an acquisition went."""

    store: str
    modality: str
    status: str = "running"
    frames_expected: int = 0
    frames_written: int = 0
    frames_missing: int = 0
    frames_hardware_triggered: int = 0
    frames_host_clock_fallback: int = 0
    windows_complete: int = 0
    duration_s: float = 0.0
    timestamp_source: str = ""
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AcquisitionController:
    """Acquire ``plan`` on ``microscope`` into the store at ``store_path``.

    Parameters
    ----------
    microscope
        A configured microscope (:func:`~nstm_acquire.hardware.microscope.open_microscope`).
    plan
        Modality, windows, timing, planes.
    store_path
        Where to write the Zarr v3 store (``NAME.zarr``).
    overwrite
        Replace an existing store at ``store_path``.
    background
        Acquire a background frame per shot (sample-free, :meth:`Microscope.sample_free`)
        before the run. On the simulated microscope the sample is removed for it; on a real
        microscope move to an empty area first. ``None`` = the microscope's default
        (:meth:`Microscope.default_background`: simulated DPC only).
    compression
        Chunk compression of the store (see :class:`~nstm_acquire.store.StoreWriter`).
    """

    frame_handler_class: type[FrameHandler] = FrameHandler
    """The ``frameReady`` handler made for each run (a subclass may instrument it)."""

    def __init__(
        self,
        microscope: Microscope,
        plan: AcquisitionPlan,
        store_path: str | Path,
        overwrite: bool = False,
        background: bool | None = None,
        compression: str = "none",
    ) -> None:
        self.microscope = microscope
        self.plan = plan
        self.store_path = Path(store_path)
        self.overwrite = overwrite
        self.compression = compression
        self.background = (
            background if background is not None else microscope.default_background(plan.modality)
        )
        self.events = ControllerSignals()
        self.setup: ModalitySetup | None = None
        self.summary = AcquisitionSummary(store=str(self.store_path), modality=plan.modality)
        self._writer: StoreWriter | None = None
        self._handler: FrameHandler | None = None
        self._t0 = 0.0
        self._thread: threading.Thread | None = None
        self._cancel_requested = False
        self._done = threading.Event()

    # ------------------------------------------------------------------ public
    def start(self) -> threading.Thread:
        """Run in a background thread; returns the thread."""
        self._thread = threading.Thread(target=self._run_safely, name="nstm-acquisition", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run has finished (store closed); True if it has.

        Safe to interrupt (Ctrl-C) and call again, unlike ``Thread.join``.
        """
        return self._done.wait(timeout)

    def cancel(self, reason: str | None = None) -> None:
        """Stop after the current event; everything acquired so far stays in the store.

        ``reason`` (e.g. ``"terminated by SIGTERM"``) is recorded in ``acquisition.errors``.
        """
        if reason and reason not in self.summary.errors:
            self.summary.errors.append(reason)
        self._cancel_requested = True
        logger.info("acquisition into %s: cancel requested", self.store_path)
        self.microscope.core.mda.cancel()

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume (False) the MDA between events."""
        self.microscope.core.mda.set_paused(paused)

    @property
    def is_running(self) -> bool:
        """True while the acquisition thread started by :meth:`start` is alive."""
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> AcquisitionSummary:
        """Acquire (blocking). Raises on failure, after closing the store.

        ``finished`` is emitted exactly once, also when the run fails before it starts (for
        example when the store cannot be created). A failure is logged with its traceback.
        """
        try:
            return self._run()
        except BaseException as err:
            if isinstance(err, Exception):
                logger.exception("acquisition into %s failed", self.store_path)
            if not self._done.is_set():  # failed before the store was set up
                if not self.summary.errors:
                    self._report(f"acquisition could not start: {err}")
                self._finish("error")
            raise

    # --------------------------------------------------------- orchestration
    def _run(self) -> AcquisitionSummary:
        core = self.microscope.core
        setup = self.microscope.prepare(self.plan.modality)
        self.setup = setup
        self.plan = self.plan.for_setup(setup)  # sim3d without z_step_um: the optics' Nyquist step
        self.summary.frames_expected = self.plan.n_windows * setup.n_shots * self.plan.n_planes
        sequence = build_sequence(
            self.plan,
            setup.channel_group,
            setup.presets,
            setup.exposure_ms,
            metadata={"shot_names": setup.shot_names},
        )
        source = self.microscope.timestamp_source()
        self.summary.timestamp_source = source.description
        attrs = store_attributes(self.plan, setup, self.microscope, sequence, source.description)
        self._writer = self._create_store(attrs, setup)
        logger.info(
            "acquisition of %s into %s: %d frames (%d windows x %d shots x %d planes), times from the %s",
            self.plan.modality,
            self.store_path,
            self.summary.frames_expected,
            self.plan.n_windows,
            setup.n_shots,
            self.plan.n_planes,
            source.description,
        )
        timer = FrameTimer(source)
        self._handler = self.frame_handler_class(
            self._writer,
            timer,
            self.summary,
            self.events,
            frames_per_window=setup.n_shots * self.plan.n_planes,
            default_exposure_ms=core.getExposure,
            report=self._report,
            on_fault=core.mda.cancel,
        )
        status = "error"
        try:
            engine = install_timestamping_engine(core, source.key)
            engine.camera_errors = []
            if self.background:
                self._acquire_background(setup)
            if core.getShutterDevice():
                core.setShutterOpen(True)
            self.microscope.acquisition_started()
            self._t0 = timer.start()
            with capture_camera_errors(engine.camera_errors):
                core.mda.run(sequence, output=[self._handler])
            status = self._final_status()
        except BaseException as err:
            status = status_for_error(err)
            if status == "camera_error":
                text = " ".join(str(err).split())
                self._report(text if isinstance(err, CameraFault) else f"camera timeout: {text}")
            else:
                self._report(f"acquisition failed: {err}")
            raise
        finally:
            with suppress(Exception):
                if core.getShutterDevice():
                    core.setShutterOpen(False)
            self._finish(status)
        return self.summary

    def _create_store(self, attrs: dict[str, Any], setup: ModalitySetup) -> StoreWriter:
        """The run's store, sized for the core's frames and the configured pixel type."""
        core = self.microscope.core
        dtype = np.dtype(np.uint16 if self.microscope.config.camera.pixel_type == "uint16" else np.float32)
        writer = StoreWriter.create(
            self.store_path,
            attrs,
            n_shots=setup.n_shots,
            n_planes=self.plan.n_planes,
            frame_shape=(core.getImageHeight(), core.getImageWidth()),
            dtype=dtype,
            n_windows_hint=self.plan.n_windows,
            compression=self.compression,  # type: ignore[arg-type]  # StoreWriter checks the name
            overwrite=self.overwrite,
        )
        if setup.psf is not None:  # lensless camera: its PSF, before the first frame
            writer.write_psf(setup.psf)
        return writer

    def _acquire_background(self, setup: ModalitySetup) -> None:
        """One sample-free frame per shot, stored as ``background`` (S, Z, Y, X)."""
        core = self.microscope.core
        if core.getShutterDevice():
            core.setShutterOpen(True)
        frames = []
        with self.microscope.sample_free():
            for preset in setup.presets:
                core.setConfig(setup.channel_group, preset)
                core.setExposure(self.plan.exposure_ms or setup.exposure_ms)
                core.waitForSystem()
                core.snapImage()
                frames.append(np.asarray(core.getImage(), dtype=np.float32))
        bg = np.stack(frames)[:, None]  # (S, Z=1, Y, X)
        bg = np.repeat(bg, self.plan.n_planes, axis=1)
        assert self._writer is not None
        self._writer.write_background(bg)
        logger.info("background: %d sample-free frames stored", len(frames))

    # ------------------------------------------------------------ bookkeeping
    def _final_status(self) -> str:
        """completed, canceled (by the user), disk_full / error (a frame could not be stored)
        or incomplete (frames missing without a known error)."""
        if self._handler is not None and self._handler.failed:
            return status_for_error(self._handler.fault)
        missing = self.summary.frames_expected - self.summary.frames_written
        if missing == 0:
            return "completed"
        if self._cancel_requested:
            return "canceled"
        self._report(f"{missing} frames were not delivered by the camera; the store holds the rest")
        return "incomplete"

    def _report(self, message: str) -> None:
        """Record an error in the summary, log it and emit ``error`` (a listener's fault is logged)."""
        self.summary.errors.append(message)
        logger.error("%s", message)
        try:
            self.events.error.emit(message)
        except Exception:  # noqa: BLE001 - a listener must not hide the error
            logger.exception("a listener of error failed")

    def _finish(self, status: str) -> None:
        self.summary.status = status
        self.summary.duration_s = time.perf_counter() - self._t0 if self._t0 else 0.0
        self.summary.frames_missing = self.summary.frames_expected - self.summary.frames_written
        if self._writer is not None:
            with suppress(Exception):
                self._writer.update_acquisition(
                    status=status,
                    end_utc=utc_now(),
                    frames_written=self.summary.frames_written,
                    frames_expected=self.summary.frames_expected,
                    frames_hardware_triggered=self.summary.frames_hardware_triggered,
                    frames_host_clock_fallback=self.summary.frames_host_clock_fallback,
                    errors=list(self.summary.errors),
                )
            with suppress(Exception):
                self._writer.close()
        logger.info(
            "acquisition into %s %s: %d/%d frames, %d complete windows in %.2f s",
            self.store_path,
            status,
            self.summary.frames_written,
            self.summary.frames_expected,
            self.summary.windows_complete,
            self.summary.duration_s,
        )
        self._done.set()
        self.events.finished.emit(self.summary)

    def _run_safely(self) -> None:
        """The acquisition thread's body: :meth:`run`, its failure logged there and reported."""
        try:
            self.run()
        except Exception as err:  # logged by run(); reported through the error signal already, unless early
            if not self.summary.errors:
                self._report(f"acquisition failed: {err}")
        finally:
            self._done.set()
