"""Simulated Micro-Manager devices (pymmcore-plus ``unicore`` Python devices).

They behave like the real ones from the core's point of view -- properties, sequences,
hardware triggering -- and drive one :class:`~.world.SimulatedWorld`:

* :class:`SimulatedCamera` exposes frames rendered through the physics at the time of the
  exposure, stamps each with its exposure start on the simulated clock (metadata key and
  read-only property ``HardwareTimestamp-s``), and fires the trigger that steps every
  running device sequence before each exposure, like a camera's trigger output.
* :class:`SimulatedLEDArray` lights named LED sets (property ``Pattern``, sequenceable)
  or any set of LEDs (property ``LEDs``, comma-separated indices).
* :class:`SimulatedSIMPatterns` is an SLM holding the pre-loaded SIM patterns, selected by
  the sequenceable property ``PatternIndex`` (how fast SIM SLMs are driven: running orders
  selected by index and advanced by the camera trigger).
* :class:`SimulatedZStage` and :class:`SimulatedShutter`.

Devices created without a world (for example from a ``.cfg`` with a real DemoCamera) keep
their state to themselves, so the Python LED device also works beside real hardware.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.experimental.unicore import (
    CameraDevice,
    GenericDevice,
    ShutterDevice,
    SLMDevice,
    StageDevice,
)

from nstm_acquire._logger import logger as _package_logger

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from nstm_acquire.hardware.simulated.world import SimulatedWorld

__all__ = [
    "HARDWARE_TIMESTAMP_KEY",
    "SimulatedCamera",
    "SimulatedLEDArray",
    "SimulatedSIMPatterns",
    "SimulatedShutter",
    "SimulatedZStage",
]

logger = _package_logger.getChild("hardware.simulated")

HARDWARE_TIMESTAMP_KEY = "HardwareTimestamp-s"
MAX_SEQUENCE = 100_000


class _Sequence:
    """A loaded device sequence, stepped by the camera trigger."""

    def __init__(self, apply: Callable[[Any], None]) -> None:
        self.values: list[Any] = []
        self.position = 0
        self.apply = apply

    def load(self, values: Sequence[Any]) -> None:
        self.values = list(values)
        self.position = 0

    def advance(self) -> None:
        if self.values:
            self.apply(self.values[self.position % len(self.values)])
            self.position += 1


class _TriggerSequenced:
    """A device property sequence stepped by the world's camera trigger: the ``sequence_loader``,
    ``sequence_starter`` and ``sequence_stopper`` of a sequenceable property (the device sets
    ``_seq``, a :class:`_Sequence`, and ``_world``, None when the device runs without one)."""

    _seq: _Sequence
    _world: SimulatedWorld | None

    def _load_seq(self, values: Sequence[Any]) -> None:
        self._seq.load(values)

    def _start_seq(self) -> None:
        self._seq.position = 0
        if self._world is not None:
            self._world.add_sequencer(self._seq.advance)

    def _stop_seq(self) -> None:
        if self._world is not None:
            self._world.remove_sequencer(self._seq.advance)

    def _register_sequenced(self, name: str, **kwargs: Any) -> None:
        """Register property ``name`` (``kwargs`` as ``register_property``'s) as sequenceable,
        stepped by the camera trigger through this mixin's loader, starter and stopper."""
        cls = type(self)
        self.register_property(  # type: ignore[attr-defined]  # the device base class has it
            name,
            sequence_max_length=MAX_SEQUENCE,
            sequence_loader=cls._load_seq,
            sequence_starter=cls._start_seq,
            sequence_stopper=cls._stop_seq,
            **kwargs,
        )


class SimulatedCamera(CameraDevice):
    """A 16-bit camera imaging the simulated sample, with its own hardware clock.

    ``simulation.faults`` of the configuration makes it fail (raise with a given text) or stall
    (deliver nothing for ``camera_stall_s``) after a number of frames: the fault tests of
    ``docs/reliability.md``.
    """

    def __init__(self, world: SimulatedWorld | None = None) -> None:
        super().__init__()
        self._world = world
        self.frames_delivered = 0
        """Frames this camera has delivered since it was created."""
        self._unstall = threading.Event()
        self._exposure_ms = 10.0
        self._last_timestamp_s = float("nan")
        self._last_end_s = -np.inf
        self._clock_generation = -1
        self.register_property(
            HARDWARE_TIMESTAMP_KEY,
            property_type=float,
            getter=SimulatedCamera._get_last_timestamp,
            is_read_only=True,
        )

    def _get_last_timestamp(self) -> float:
        return self._last_timestamp_s

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        if exposure <= 0:
            raise ValueError(f"Exposure must be positive (ms), got {exposure}")
        self._exposure_ms = float(exposure)

    def shape(self) -> tuple[int, int]:
        return self._world.frame_shape if self._world is not None else (64, 64)  # type: ignore[return-value]

    def dtype(self) -> DTypeLike:
        return np.uint16

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], DTypeLike], np.ndarray]
    ) -> Iterator[Mapping]:
        world = self._world
        if world is None:
            raise RuntimeError("SimulatedCamera was created without a SimulatedWorld")
        timing = world.sim.timing
        rng = np.random.default_rng()
        if self._clock_generation != world.clock.generation:  # a new time base: forget the old
            self._last_end_s = -np.inf
            self._clock_generation = world.clock.generation
        count = 0
        limit = n if n is not None else 2**62
        while count < limit:
            self._inject_fault(world)
            world.trigger()  # trigger output: sequences step before the exposure
            exposure_s = self._exposure_ms / 1000.0
            jitter = abs(rng.normal(0.0, timing.jitter_ms / 1000.0)) if timing.jitter_ms else 0.0
            t0 = max(world.clock.now(), self._last_end_s + timing.readout_ms / 1000.0)
            t0 += timing.pattern_switch_ms / 1000.0 + jitter
            world.clock.wait_until(t0)
            buf = get_buffer(self.shape(), np.uint16)
            try:
                buf[:] = world.render(t0, exposure_s)
            except Exception:  # the core's sequence thread dies on it: keep the traceback in the log
                logger.exception("simulated camera: frame %d of the sequence could not be rendered", count)
                raise
            self._last_end_s = t0 + exposure_s
            world.clock.wait_until(self._last_end_s + timing.readout_ms / 1000.0)
            self._last_timestamp_s = t0
            count += 1
            self.frames_delivered += 1
            yield {
                HARDWARE_TIMESTAMP_KEY: f"{t0:.9f}",
                "HardwareExposure-s": f"{exposure_s:.9f}",
                "Camera": self.get_label(),
            }


    def _inject_fault(self, world: SimulatedWorld) -> None:
        """Fail or stall as ``simulation.faults`` says, before the next frame."""
        faults = getattr(world.sim, "faults", None)
        if faults is None:
            return
        after = faults.camera_error_after_frames
        if after is not None and self.frames_delivered >= after:
            raise RuntimeError(f"{faults.camera_error_message} (after {self.frames_delivered} frames)")
        stall = faults.camera_stall_after_frames
        if stall is not None and self.frames_delivered >= stall:
            logger.warning("simulated camera: stalling for %.1f s (simulation.faults)", faults.camera_stall_s)
            self._unstall.wait(faults.camera_stall_s)
            raise TimeoutError(f"simulated camera delivered no frame for {faults.camera_stall_s:g} s (device timeout)")

    def end_stall(self) -> None:
        """End a stall at once (a test's cleanup)."""
        self._unstall.set()


class SimulatedLEDArray(_TriggerSequenced, GenericDevice):
    """An LED array lighting named sets of LEDs (``Pattern``) or any set (``LEDs``).

    ``LEDs`` takes LED indices separated by commas, semicolons or spaces (spaces in a ``.cfg``
    preset, whose fields are comma-separated).
    """

    def __init__(
        self,
        world: SimulatedWorld | None = None,
        patterns: Mapping[str, Sequence[int]] | None = None,
        n_leds: int | None = None,
    ) -> None:
        super().__init__()
        self._world = world
        self._patterns: dict[str, list[int]] = {"off": []}
        for name, leds in (patterns or {}).items():
            self._patterns[name] = [int(i) for i in leds]
        self._n_leds = n_leds
        self._current = "off"
        self._lit: list[int] = []
        self._seq = _Sequence(self._apply_pattern)
        self._register_sequenced(
            "Pattern",
            default_value="off",
            allowed_values=list(self._patterns),
            getter=SimulatedLEDArray._get_pattern,
            setter=SimulatedLEDArray._set_pattern,
        )
        self.register_property(
            "LEDs",
            default_value="",
            property_type=str,
            getter=SimulatedLEDArray._get_leds,
            setter=SimulatedLEDArray._set_leds,
        )

    @property
    def patterns(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self._patterns.items()}

    def define_pattern(self, name: str, leds: Sequence[int]) -> None:
        """Add a named LED set (becomes an allowed ``Pattern`` value)."""
        self._check_indices(leds)
        self._patterns[name] = [int(i) for i in leds]
        self.set_property_allowed_values("Pattern", list(self._patterns))

    def _check_indices(self, leds: Sequence[int]) -> None:
        if self._n_leds is not None:
            bad = [i for i in leds if not 0 <= int(i) < self._n_leds]
            if bad:
                raise ValueError(f"LED indices {bad} out of range 0..{self._n_leds - 1}")

    def _apply_pattern(self, name: str) -> None:
        self._current = name
        self._light(self._patterns[name])

    def _light(self, leds: Sequence[int]) -> None:
        self._lit = [int(i) for i in leds]
        if self._world is not None:
            with self._world._lock:
                self._world.lit_leds = np.asarray(self._lit, dtype=int)

    def lit(self) -> list[int]:
        return list(self._lit)

    def _get_pattern(self) -> str:
        return self._current

    def _set_pattern(self, value: str) -> None:
        if value not in self._patterns:
            raise ValueError(f"Unknown LED pattern {value!r}; defined: {sorted(self._patterns)}")
        self._apply_pattern(value)

    def _get_leds(self) -> str:
        return ",".join(str(i) for i in self._lit)

    def _set_leds(self, value: str) -> None:
        leds = [int(v) for v in re.split(r"[,;\s]+", str(value).strip()) if v]
        self._check_indices(leds)
        self._current = "custom"
        self._light(leds)



class SimulatedSIMPatterns(_TriggerSequenced, SLMDevice):
    """An SLM with the SIM patterns pre-loaded; ``PatternIndex`` s = orientation * n_phases + phase."""

    def __init__(self, world: SimulatedWorld | None = None, n_patterns: int = 15, shape: tuple[int, int] = (64, 64)):
        super().__init__()
        self._world = world
        self._n = int(n_patterns)
        self._shape = shape
        self._index = 0
        self._image = np.zeros(shape, np.uint8)
        self._exposure_ms = 0.0
        self._seq = _Sequence(self._select)
        self._register_sequenced(
            "PatternIndex",
            default_value=0,
            limits=(0, self._n - 1),
            property_type=int,
            getter=SimulatedSIMPatterns._get_index,
            setter=SimulatedSIMPatterns._set_index,
        )

    def _select(self, index: Any) -> None:
        self._index = int(float(index))
        if self._world is not None:
            with self._world._lock:
                self._world.sim_shot = self._index

    def _get_index(self) -> int:
        return self._index

    def _set_index(self, value: int) -> None:
        self._select(value)


    # SLM API (images are accepted and shown, the physics uses the selected pattern)
    def shape(self) -> tuple[int, ...]:
        return (self._shape[1], self._shape[0])

    def dtype(self) -> DTypeLike:
        return np.uint8

    def set_image(self, pixels: np.ndarray) -> None:
        self._image = np.asarray(pixels, dtype=np.uint8)

    def get_image(self) -> np.ndarray:
        return self._image

    def display_image(self) -> None:
        pass

    def set_exposure(self, interval_ms: float) -> None:
        self._exposure_ms = float(interval_ms)

    def get_exposure(self) -> float:
        return self._exposure_ms


class SimulatedZStage(StageDevice):
    """A focus drive (µm), sequenceable for hardware-triggered z stacks."""

    def __init__(self, world: SimulatedWorld | None = None) -> None:
        super().__init__()
        self._world = world
        self._z = 0.0
        self._seq = _Sequence(self.set_position_um)

    def set_position_um(self, val: float) -> None:
        self._z = float(val)
        if self._world is not None:
            with self._world._lock:
                self._world.z_um = self._z

    def get_position_um(self) -> float:
        return self._z

    def home(self) -> None:
        self.set_position_um(0.0)

    def stop(self) -> None:
        pass

    def set_origin(self) -> None:
        self._z = 0.0

    def get_sequence_max_length(self) -> int:
        return MAX_SEQUENCE

    def send_sequence(self, sequence: tuple[float, ...]) -> None:
        self._seq.load([float(v) for v in sequence])

    def start_sequence(self) -> None:
        self._seq.position = 0
        if self._world is not None:
            self._world.add_sequencer(self._seq.advance)

    def stop_sequence(self) -> None:
        if self._world is not None:
            self._world.remove_sequencer(self._seq.advance)


class SimulatedShutter(ShutterDevice):
    """Gates all illumination of the simulated microscope."""

    def __init__(self, world: SimulatedWorld | None = None) -> None:
        super().__init__()
        self._world = world
        self._open = False

    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)
        if self._world is not None:
            with self._world._lock:
                self._world.shutter_open = self._open
