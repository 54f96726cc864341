"""An MDA engine that keeps the timing information every frame needs.

pymmcore-plus's engine times a single snap *after* it returns and drops the metadata a
Python camera attaches to a snapped frame. This subclass adds to every frame's metadata:

* ``nstm_snap_call_s``: host ``perf_counter`` just before the snap was requested (single
  snaps only): the software estimate of the exposure start;
* ``nstm_runner_t0_s``: the runner's time zero (``perf_counter``), so ``runner_time_ms`` can be
  put on the acquisition clock;
* ``camera_metadata[<key>]`` for single snaps too, read from the camera's property of that
  name when the camera exposes a hardware timestamp that way (the simulated camera does).

Sequenced (hardware-triggered) bursts already carry the camera's per-frame metadata.

The acquisition controller installs it on the microscope's core when a run starts
(:func:`install_timestamping_engine`), so a core lent by a host application keeps its own
engine until nstm-acquire acquires on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from pymmcore_plus import CMMCorePlus
from pymmcore_plus.mda import MDAEngine
from useq import MDAEvent

from nstm_acquire._logger import logger as _package_logger

__all__ = [
    "HARDWARE_TIMESTAMP_PROPERTY",
    "CameraFault",
    "TimestampingMDAEngine",
    "capture_camera_errors",
    "install_timestamping_engine",
]

HARDWARE_TIMESTAMP_PROPERTY = "HardwareTimestamp-s"

_log = _package_logger.getChild("acquire.engine")

# public settings of pymmcore-plus's MDAEngine that a replacing engine takes over
_ENGINE_SETTINGS = (
    "use_hardware_sequencing",
    "force_set_xy_position",
    "restore_initial_state",
    "timeout_base",
    "timeout_multiplier",
    "timeout_first_frame",
    "timeout_action",
)


def _forward(gen: Iterable[Any], transform: Callable[[Any], Any]) -> Generator[Any, Any, None]:
    """Re-yield ``gen``'s items (None included) through ``transform``, passing ``send`` values
    (cancel/pause) on."""
    it: Iterator[Any] = iter(gen)
    is_gen = isinstance(it, Generator)
    try:
        item = next(it)
        while True:
            signal = yield transform(item)
            item = cast(Generator[Any, Any, Any], it).send(signal) if is_gen else next(it)
    except StopIteration:
        return


class CameraFault(RuntimeError):
    """The camera failed or stopped delivering frames: the run stops (status ``camera_error``).

    The message is one line with the camera's own error text where the camera gave one.
    """


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class _SnapFailures(logging.Handler):
    """Collects pymmcore-plus's "Failed to snap image" warnings (the camera's text)."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Failed to snap image" in message:
            self.sink.append(_one_line(message))


@contextmanager
def capture_camera_errors(sink: list[str]) -> Iterator[list[str]]:
    """Within the block, put the camera's error texts into ``sink`` (one line each).

    A Python camera that raises during a hardware-triggered sequence ends the core's
    acquisition thread with "Error in device ...: <text>"; a failed single snap is a
    pymmcore-plus warning. Both are caught here (the thread's traceback goes to the log
    instead of the terminal), so the run can stop with the camera's own words.
    """
    previous_hook = threading.excepthook
    snap_handler = _SnapFailures(sink)
    mm_logger = logging.getLogger("pymmcore-plus")

    def hook(args: threading.ExceptHookArgs) -> None:
        text = _one_line(args.exc_value) if args.exc_value is not None else ""
        if args.exc_type is not None and "during sequence acquisition" in text:
            sink.append(text)
            _log.debug("camera thread failed: %s", text, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]
            return
        previous_hook(args)

    threading.excepthook = hook
    mm_logger.addHandler(snap_handler)
    try:
        yield sink
    finally:
        mm_logger.removeHandler(snap_handler)
        if threading.excepthook is hook:
            threading.excepthook = previous_hook


class TimestampingMDAEngine(MDAEngine):
    """``MDAEngine`` that records when each snap was requested and the runner's time zero.

    A frame the camera did not deliver (a sequence that ended early, a failed snap) raises
    :class:`CameraFault`, with the camera's text when :func:`capture_camera_errors` caught one
    into :attr:`camera_errors`: one camera fault stops the run instead of costing every
    remaining window.
    """

    timestamp_property: str = HARDWARE_TIMESTAMP_PROPERTY
    camera_errors: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.camera_errors = []

    def _fault(self, what: str) -> CameraFault:
        text = self.camera_errors[-1] if self.camera_errors else "no error text from the camera (see its log)"
        return CameraFault(f"camera error: {what}: {text}")

    def exec_event(self, event: MDAEvent) -> Iterable[Any]:
        runner_t0 = event.metadata.get("runner_t0")

        def add(payload: Any) -> Any:
            if payload is None:  # the engine's marker of a frame the sequence did not deliver
                raise self._fault("the camera stopped delivering frames" if not event.index else f"frame {dict(event.index)} was not delivered")
            _img, _event, meta = payload
            meta["nstm_runner_t0_s"] = runner_t0
            return payload

        return _forward(super().exec_event(event), add)

    def exec_single_event(self, event: MDAEvent) -> Iterator[Any]:
        core = self.mmcore
        t_call = time.perf_counter()
        cam = core.getCameraDevice()
        prop = self.timestamp_property
        has_prop = bool(cam) and core.hasProperty(cam, prop)
        delivered = False
        for payload in super().exec_single_event(event):
            delivered = delivered or payload is not None
            if payload is not None:
                meta = cast(dict[str, Any], payload[2])
                meta["nstm_snap_call_s"] = t_call
                if has_prop:
                    cam_md = dict(meta.get("camera_metadata") or {})
                    cam_md[prop] = core.getProperty(cam, prop)
                    meta["camera_metadata"] = cam_md
            yield payload
        if not delivered:
            raise self._fault(f"snap of frame {dict(event.index)} failed")


def install_timestamping_engine(core: CMMCorePlus, timestamp_property: str | None) -> TimestampingMDAEngine:
    """Make ``core``'s MDA engine a :class:`TimestampingMDAEngine` (unless it is one); returns it.

    ``timestamp_property`` is the camera property read after single snaps (the hardware
    timestamp key); None keeps the default ``HardwareTimestamp-s``. The settings of the engine it
    replaces (``use_hardware_sequencing``, timeouts, ...) carry over. Call it while no MDA runs.
    """
    engine = core.mda.engine
    if not isinstance(engine, TimestampingMDAEngine):
        previous = engine
        engine = TimestampingMDAEngine(core)
        for name in _ENGINE_SETTINGS:  # keep what was set on the engine it replaces
            if hasattr(previous, name):
                setattr(engine, name, getattr(previous, name))
        core.mda.set_engine(engine)
    engine.timestamp_property = timestamp_property or HARDWARE_TIMESTAMP_PROPERTY
    return engine
