"""Run a multi-shot acquisition: MDA on the core, exact frame times, frames streamed to Zarr.

:class:`AcquisitionController` builds the useq sequence for an :class:`AcquisitionPlan`,
creates the store (``docs/format.md``), runs pymmcore-plus's MDA and writes every frame with
its exposure start and duration as it arrives. It emits psygnal signals (``events``):

* ``frame_stored(w, s, z, t_s)``: a frame and its timestamp are in the store;
* ``window_complete(w)``: every frame of window ``w`` is in the store;
* ``finished(summary)``: the run ended (completed, canceled, incomplete or error), store closed;
* ``error(message)``: something went wrong; frames already written stay readable.

Timestamps (seconds since the acquisition started, one clock): see ``docs/timing.md``.
In order of preference: the camera's hardware timestamp (``camera.hardware_timestamp_key``;
the simulated camera provides one on the simulated clock), else the host clock just before
the snap was requested (single snaps), else the core's ``ElapsedTime-ms`` minus the exposure
(hardware-triggered bursts, where it is taken when the frame reaches the buffer).
"""

from __future__ import annotations

import datetime as _dt
import json
from contextlib import suppress
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal, SignalGroup

import nstm_acquire
from nstm_acquire.acquire.sequences import AcquisitionPlan, build_sequence
from nstm_acquire.hardware.microscope import Microscope, ModalitySetup
from nstm_acquire.store import StoreWriter

__all__ = ["AcquisitionController", "AcquisitionSummary", "ControllerSignals"]

_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


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
        DPC: acquire a background frame per shot (sample-free) before the run. On the
        simulated microscope the sample is removed for it; on a real microscope move to an
        empty area first. ``None`` = on for simulated DPC, off otherwise.
    """

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
            background if background is not None else (microscope.simulated and plan.modality == "dpc")
        )
        self.events = ControllerSignals()
        self.setup: ModalitySetup | None = None
        self.summary = AcquisitionSummary(store=str(self.store_path), modality=plan.modality)
        self._writer: StoreWriter | None = None
        self._frames_in_window: dict[int, int] = {}
        self._t0 = 0.0
        self._hw_offset: float | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failed = False
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

    def cancel(self) -> None:
        """Stop after the current event; everything acquired so far stays in the store."""
        self._cancel_requested = True
        self.microscope.core.mda.cancel()

    def set_paused(self, paused: bool) -> None:
        self.microscope.core.mda.set_paused(paused)

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> AcquisitionSummary:
        """Acquire (blocking). Raises on failure, after closing the store.

        ``finished`` is emitted exactly once, also when the run fails before it starts (for
        example when the store cannot be created).
        """
        try:
            return self._run()
        except BaseException as err:
            if not self._done.is_set():  # failed before the store was set up
                if not self.summary.errors:
                    self._report(f"acquisition could not start: {err}")
                self._finish("error")
            raise

    def _run(self) -> AcquisitionSummary:
        core = self.microscope.core
        setup = self.microscope.prepare(self.plan.modality)
        self.setup = setup
        n_planes = self.plan.n_planes
        expected = self.plan.n_windows * setup.n_shots * n_planes
        self.summary.frames_expected = expected
        sequence = build_sequence(
            self.plan,
            setup.channel_group,
            setup.presets,
            setup.exposure_ms,
            metadata={"shot_names": setup.shot_names},
        )
        optics = setup.optics
        if self.plan.modality == "sim3d":
            optics = optics.model_copy(update={"z_step_um": self.plan.z_step_um})
        cam = self.microscope.config.camera
        camera_attrs: dict[str, Any] = {"offset_adu": cam.offset_adu}
        if cam.gain_e_per_adu is not None:
            camera_attrs["gain_e_per_adu"] = cam.gain_e_per_adu
        if cam.read_noise_e is not None:
            camera_attrs["read_noise_e"] = cam.read_noise_e
        world = self.microscope.world
        if world is not None:
            camera_attrs.setdefault("gain_e_per_adu", world.noise.gain_e_per_adu)
            camera_attrs.setdefault("read_noise_e", world.noise.read_noise_e)
        self.summary.timestamp_source = self._timestamp_source_name()
        acquisition = {
            "start_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "mda_sequence": json.loads(sequence.model_dump_json()),
            "hardware_config": self.microscope.config.name,
            "hardware_config_dump": json.loads(self.microscope.config.model_dump_json()),
            "simulated": world is not None,
            "software": f"nstm-acquire {nstm_acquire.__version__}",
            "shot_names": setup.shot_names,
            "timestamp_source": self.summary.timestamp_source,
            "status": "running",
        }
        if world is not None:
            acquisition["simulation"] = world.ground_truth_description()
        attrs = {
            "format_version": 1,
            "modality": self.plan.modality,
            "optics": optics.to_store(),
            "illumination": setup.illumination,
            "camera": camera_attrs,
            "acquisition": acquisition,
        }
        frame_shape = (core.getImageHeight(), core.getImageWidth())
        dtype = np.uint16 if cam.pixel_type == "uint16" else np.float32
        self._writer = StoreWriter.create(
            self.store_path,
            attrs,
            n_shots=setup.n_shots,
            n_planes=n_planes,
            frame_shape=frame_shape,
            dtype=dtype,
            n_windows_hint=self.plan.n_windows,
            compression=self.compression,
            overwrite=self.overwrite,
        )
        status = "error"
        try:
            if self.background:
                self._acquire_background(setup)
            if core.getShutterDevice():
                core.setShutterOpen(True)
            if world is not None:
                world.clock.restart()
            self._t0 = time.perf_counter()
            core.mda.run(sequence, output=[self])
            status = self._final_status()
        except BaseException as err:
            self._report(f"acquisition failed: {err}")
            raise
        finally:
            with suppress(Exception):
                if core.getShutterDevice():
                    core.setShutterOpen(False)
            self._finish(status)
        return self.summary

    # ------------------------------------------------------------ MDA handler
    def frameReady(self, img: np.ndarray, event: Any, meta: dict) -> None:  # noqa: N802 - MDA protocol
        """Write one frame (runs on pymmcore-plus's relay thread, in acquisition order)."""
        if self._failed:
            return
        try:
            w = int(event.index.get("t", 0))
            s = int(event.index.get("c", 0))
            z = int(event.index.get("z", 0))
            t_s, exposure_s = self._frame_time(event, meta)
            assert self._writer is not None
            img = np.asarray(img)
            if img.dtype != self._writer.dtype:
                if not np.can_cast(img.dtype, self._writer.dtype, casting="safe"):
                    raise TypeError(
                        f"camera frames are {img.dtype} but the store holds {self._writer.dtype}; "
                        "set camera.pixel_type to match the camera"
                    )
                img = img.astype(self._writer.dtype)
            self._writer.write_frame(w, s, z, img, t_s, exposure_s)
        except Exception as err:  # never let the relay thread die silently
            self._report(f"frame {dict(event.index)} could not be stored: {err}")
            self._failed = True
            self.microscope.core.mda.cancel()
            return
        with self._lock:
            self.summary.frames_written += 1
            self.summary.frames_hardware_triggered += bool(meta.get("hardware_triggered"))
            n = self._frames_in_window.get(w, 0) + 1
            self._frames_in_window[w] = n
        self.events.frame_stored.emit(w, s, z, t_s)
        if self.setup is not None and n == self.setup.n_shots * self.plan.n_planes:
            self.summary.windows_complete += 1
            self.events.window_complete.emit(w)

    # ---------------------------------------------------------------- timing
    def _timestamp_source_name(self) -> str:
        cam = self.microscope.config.camera
        if self.microscope.world is not None:
            return "simulated camera hardware clock (exposure start)"
        if cam.hardware_timestamp_key:
            return f"camera hardware timestamp {cam.hardware_timestamp_key!r} (exposure start)"
        return (
            "host clock (single snaps: just before the snap request; hardware-triggered bursts: "
            "ElapsedTime-ms at buffer arrival minus the exposure)"
        )

    def _frame_time(self, event: Any, meta: dict) -> tuple[float, float]:
        """(exposure start on the acquisition clock, exposure duration), seconds."""
        cam = self.microscope.config.camera
        cam_md = meta.get("camera_metadata") or {}
        exposure_s = _float(cam_md.get("HardwareExposure-s"))
        if exposure_s is None:
            exp_ms = event.exposure if event.exposure is not None else meta.get("exposure_ms")
            exposure_s = float(exp_ms) / 1000.0 if exp_ms is not None else self.microscope.core.getExposure() / 1000.0
        software = self._software_time(meta, exposure_s)
        key = cam.hardware_timestamp_key or ("HardwareTimestamp-s" if self.microscope.world is not None else None)
        hw = _float(cam_md.get(key)) if key else None
        if hw is None:
            if key:  # a hardware clock was expected: say so (once), count the frames
                if self.summary.frames_host_clock_fallback == 0:
                    self._report(
                        f"frame {dict(event.index)} has no camera timestamp {key!r}; using the host clock "
                        "for such frames (see acquisition.frames_host_clock_fallback)"
                    )
                self.summary.frames_host_clock_fallback += 1
            return software, exposure_s
        hw *= _UNIT[cam.hardware_timestamp_unit] if cam.hardware_timestamp_key else 1.0
        if self.microscope.world is not None:
            return hw, exposure_s  # the simulated clock was restarted at acquisition start
        if self._hw_offset is None:  # map the camera clock onto ours at the first frame
            self._hw_offset = software - hw
        return hw + self._hw_offset, exposure_s

    def _software_time(self, meta: dict, exposure_s: float) -> float:
        if (t_call := meta.get("nstm_snap_call_s")) is not None:
            return float(t_call) - self._t0
        runner_ms = meta.get("runner_time_ms")
        runner_t0 = meta.get("nstm_runner_t0_s") or self._t0
        if runner_ms is None:
            return time.perf_counter() - self._t0 - exposure_s
        return float(runner_ms) / 1000.0 + (float(runner_t0) - self._t0) - exposure_s

    # ----------------------------------------------------------------- misc
    def _acquire_background(self, setup: ModalitySetup) -> None:
        """One sample-free frame per shot (simulated: sample removed), stored as ``background``."""
        core = self.microscope.core
        world = self.microscope.world
        if core.getShutterDevice():
            core.setShutterOpen(True)
        frames = []
        try:
            if world is not None:
                world.blank = True
            for preset in setup.presets:
                core.setConfig(setup.channel_group, preset)
                core.setExposure(self.plan.exposure_ms or setup.exposure_ms)
                core.waitForSystem()
                core.snapImage()
                frames.append(np.asarray(core.getImage(), dtype=np.float32))
        finally:
            if world is not None:
                world.blank = False
        bg = np.stack(frames)[:, None]  # (S, Z=1, Y, X)
        bg = np.repeat(bg, self.plan.n_planes, axis=1)
        assert self._writer is not None
        self._writer.write_background(bg)

    def _final_status(self) -> str:
        """completed, canceled (by the user), error (a frame could not be stored) or incomplete."""
        if self._failed:
            return "error"
        missing = self.summary.frames_expected - self.summary.frames_written
        if missing == 0:
            return "completed"
        if self._cancel_requested:
            return "canceled"
        self._report(f"{missing} frames were not delivered by the camera; the store holds the rest")
        return "incomplete"

    def _report(self, message: str) -> None:
        self.summary.errors.append(message)
        self.events.error.emit(message)

    def _finish(self, status: str) -> None:
        self.summary.status = status
        self.summary.duration_s = time.perf_counter() - self._t0 if self._t0 else 0.0
        self.summary.frames_missing = self.summary.frames_expected - self.summary.frames_written
        if self._writer is not None:
            with suppress(Exception):
                self._writer.update_acquisition(
                    status=status,
                    end_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(),
                    frames_written=self.summary.frames_written,
                    frames_expected=self.summary.frames_expected,
                    frames_hardware_triggered=self.summary.frames_hardware_triggered,
                    frames_host_clock_fallback=self.summary.frames_host_clock_fallback,
                    errors=list(self.summary.errors),
                )
            with suppress(Exception):
                self._writer.close()
        self._done.set()
        self.events.finished.emit(self.summary)

    def _run_safely(self) -> None:
        try:
            self.run()
        except Exception as err:  # reported through the error signal already, unless early
            if not self.summary.errors:
                self._report(f"acquisition failed: {err}")
        finally:
            self._done.set()


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None
