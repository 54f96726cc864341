"""The simulated lensless rolling-shutter colour camera as a Micro-Manager device.

:class:`SimulatedLenslessCamera` is a pymmcore-plus ``unicore`` camera that images the moving RGB
scene of :mod:`.lensless` through its caustic PSF, every sensor row over its own open interval
(:func:`~nstm_acquire.hardware.simulated.lensless.simulate_lensless_video`), with the simulated
microscope's clock, trigger and camera noise. A colour frame reaches the store as one shot per
colour plane (``docs/format.md``): the sequenceable property ``ColourPlane`` selects the plane
the next image returns. Plane 0 exposes a new frame; planes 1, 2, ... return the other colour
planes of that same exposure at once, stamped with the same exposure start (the frame's first
row opening). Frames follow each other back to back: the next frame's first row opens as the
previous frame's last row closes within one sequence (a streaming sensor); a new sequence
starts at the clock's present time.

:class:`LenslessTruth` rebuilds the PSF, the scene and the sensor of a configuration (the
ground truth, also from a store's ``acquisition.hardware_config_dump``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice

from nstm_acquire.hardware.config import HardwareConfig, RollingShutterConfig
from nstm_acquire.hardware.simulated.devices import HARDWARE_TIMESTAMP_KEY, _Sequence, _TriggerSequenced
from nstm_acquire.hardware.simulated.lensless import (
    LenslessCamera,
    MovingRgbScene,
    caustic_psf,
    simulate_lensless_video,
)

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from nstm_acquire.hardware.simulated.world import SimulatedWorld

__all__ = ["LenslessTruth", "SimulatedLenslessCamera", "lensless_truth"]


@dataclasses.dataclass(frozen=True)
class LenslessTruth:
    """The simulated lensless camera of a configuration: PSF ``(3, H, W)``, scene, sensor.

    ``sensor(exposure_s)`` is the :class:`LenslessCamera` for a per-row exposure.
    """

    psf: np.ndarray
    scene: MovingRgbScene
    config: RollingShutterConfig
    photons: float
    steps_per_row: int

    def sensor(self, exposure_s: float) -> LenslessCamera:
        shape = self.scene.shape
        return LenslessCamera(
            shape,
            self.config.readout.row_time_s,
            float(exposure_s),
            direction=self.config.readout.direction,
            photons=self.photons,
        )


def lensless_truth(config: HardwareConfig) -> LenslessTruth:
    """The PSF, scene and sensor the simulated microscope of ``config`` uses for ``rolling_shutter``.

    Deterministic in the configuration (``simulation.seed``, ``frame_shape``, ``lensless``).
    """
    if config.rolling_shutter is None:
        raise ValueError(f"{config.name} has no rolling_shutter section")
    sim = config.simulation
    if sim is None:
        raise ValueError(f"{config.name} has no simulation section; it is not a simulated microscope")
    opts = sim.lensless
    shape = (int(sim.frame_shape[0]), int(sim.frame_shape[1]))
    psf = caustic_psf(shape, seed=sim.seed, correlation_px=opts.psf_correlation_px)
    try:  # circles with one period: inside the field and apart at any acquisition time
        scene = MovingRgbScene.random(
            shape, opts.n_objects, speed_px_per_s=opts.speed_px_per_s, seed=sim.seed + 1, drift=False,
            min_separation_px=5.0,
        )
    except ValueError as err:
        raise ValueError(f"simulation.lensless: {err}") from None
    return LenslessTruth(psf, scene, config.rolling_shutter, opts.photons, opts.steps_per_row)


class SimulatedLenslessCamera(_TriggerSequenced, CameraDevice):
    """A colour rolling-shutter camera behind a diffuser, imaging the simulated RGB scene.

    Property ``ColourPlane`` (sequenceable, 0 .. channels - 1) selects the colour plane of the
    next image; ``HardwareTimestamp-s`` (read-only, and in each image's metadata) is the exposure
    start of the frame's first row on the simulated clock.
    """

    _world: SimulatedWorld  # always attached to a world (unlike the other simulated devices)

    def __init__(self, world: SimulatedWorld, n_channels: int = 3) -> None:
        super().__init__()
        self._world = world
        self._n_channels = int(n_channels)
        self._exposure_ms = 1.0
        self._plane = 0
        self._planes: np.ndarray | None = None
        self._frame_start_s = float("nan")
        self._next_start_s = -np.inf
        self._clock_generation = -1
        self._truth: LenslessTruth | None = None
        self._lock_truth = threading.Lock()
        self._rng = np.random.default_rng(world.sim.seed + 7)
        self._seq = _Sequence(self._select)
        self.frames_exposed = 0
        """Colour frames exposed since the device was created."""
        self.register_property(
            HARDWARE_TIMESTAMP_KEY,
            property_type=float,
            getter=SimulatedLenslessCamera._get_timestamp,
            is_read_only=True,
        )
        self._register_sequenced(
            "ColourPlane",
            default_value=0,
            limits=(0, self._n_channels - 1),
            property_type=int,
            getter=SimulatedLenslessCamera._get_plane,
            setter=SimulatedLenslessCamera._set_plane,
        )

    # -- properties ------------------------------------------------------------
    def _get_timestamp(self) -> float:
        return self._frame_start_s

    def _select(self, value: Any) -> None:
        plane = int(float(value))
        if not 0 <= plane < self._n_channels:
            raise ValueError(f"ColourPlane {plane} out of range 0..{self._n_channels - 1}")
        self._plane = plane

    def _get_plane(self) -> int:
        return self._plane

    def _set_plane(self, value: int) -> None:
        self._select(value)

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        if exposure <= 0:
            raise ValueError(f"Exposure must be positive (ms), got {exposure}")
        self._exposure_ms = float(exposure)

    def shape(self) -> tuple[int, int]:
        return self._world.frame_shape  # type: ignore[return-value]

    def dtype(self) -> DTypeLike:
        return np.uint16

    # -- image formation -------------------------------------------------------
    def truth(self) -> LenslessTruth:
        """The PSF, scene and sensor (built on first use)."""
        with self._lock_truth:
            if self._truth is None:
                self._truth = lensless_truth(self._world.config)
            return self._truth

    def _expose(self, exposure_s: float, streaming: bool) -> None:
        """Expose a new colour frame: every row over its own interval; noisy counts per plane.

        ``streaming``: a later frame of one sequence, which starts as the previous frame's last
        row closes (the sensor streams; rendering time is the simulator's, not the camera's).
        """
        world = self._world
        if self._clock_generation != world.clock.generation:  # a new time base: forget the old
            self._next_start_s = -np.inf
            self._clock_generation = world.clock.generation
        truth = self.truth()
        sensor = truth.sensor(exposure_s)
        t0 = self._next_start_s if streaming and np.isfinite(self._next_start_s) else max(
            world.clock.now(), self._next_start_s
        )
        world.clock.wait_until(t0)
        with world._lock:
            dark = world.blank or not world.shutter_open
        if dark:
            photons = np.zeros((self._n_channels, *sensor.shape))
        else:
            video = simulate_lensless_video(sensor, truth.scene, truth.psf, 1, start_s=t0,
                                            steps_per_row=truth.steps_per_row)
            photons = np.clip(video.clean[0][: self._n_channels], 0, None) * truth.photons
        self._planes = np.stack([world.noise.apply(p, self._rng) for p in photons])
        self._frame_start_s = t0
        self._next_start_s = t0 + sensor.span_s()
        world.clock.wait_until(self._next_start_s)
        self.frames_exposed += 1

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], DTypeLike], np.ndarray]
    ) -> Iterator[Mapping]:
        count = 0
        exposed = 0
        limit = n if n is not None else 2**62
        while count < limit:
            self._world.trigger()  # trigger output: the ColourPlane sequence steps first
            exposure_s = self._exposure_ms / 1000.0
            if self._plane == 0 or self._planes is None:
                self._expose(exposure_s, streaming=exposed > 0)
                exposed += 1
            assert self._planes is not None
            buf = get_buffer(self.shape(), np.uint16)
            buf[:] = self._planes[self._plane]
            count += 1
            yield {
                HARDWARE_TIMESTAMP_KEY: f"{self._frame_start_s:.9f}",
                "HardwareExposure-s": f"{exposure_s:.9f}",
                "Camera": self.get_label(),
            }
