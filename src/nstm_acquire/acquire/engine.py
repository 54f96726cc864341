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

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, cast

from pymmcore_plus import CMMCorePlus
from pymmcore_plus.mda import MDAEngine
from useq import MDAEvent

__all__ = ["HARDWARE_TIMESTAMP_PROPERTY", "TimestampingMDAEngine", "install_timestamping_engine"]

HARDWARE_TIMESTAMP_PROPERTY = "HardwareTimestamp-s"

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
    """Re-yield ``gen``'s items through ``transform``, passing ``send`` values (cancel/pause) on."""
    it: Iterator[Any] = iter(gen)
    is_gen = isinstance(it, Generator)
    try:
        item = next(it)
        while True:
            signal = yield (transform(item) if item is not None else None)
            item = cast(Generator[Any, Any, Any], it).send(signal) if is_gen else next(it)
    except StopIteration:
        return


class TimestampingMDAEngine(MDAEngine):
    """``MDAEngine`` that records when each snap was requested and the runner's time zero."""

    timestamp_property: str = HARDWARE_TIMESTAMP_PROPERTY

    def exec_event(self, event: MDAEvent) -> Iterable[Any]:
        runner_t0 = event.metadata.get("runner_t0")

        def add(payload: Any) -> Any:
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
        for payload in super().exec_single_event(event):
            if payload is not None:
                meta = cast(dict[str, Any], payload[2])
                meta["nstm_snap_call_s"] = t_call
                if has_prop:
                    cam_md = dict(meta.get("camera_metadata") or {})
                    cam_md[prop] = core.getProperty(cam, prop)
                    meta["camera_metadata"] = cam_md
            yield payload


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
