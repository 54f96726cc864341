"""Hardware configuration files (``hardware_configs/*.yaml``): schema, loading, validation.

A hardware configuration describes one microscope: the Micro-Manager ``.cfg`` it loads (or
``simulated: true``), the camera, and for each modality it can run (``dpc``, ``sim2d``,
``sim3d``) the optics, the illumination and *how a pattern is set on the hardware*:

* ``method: property`` -- one device property takes one value per shot (for example a
  Python LED-array device's ``Pattern`` property); sequenceable properties give
  hardware-triggered bursts;
* ``method: preset`` -- one configuration-group preset per shot (defined in the ``.cfg``).

Every problem is reported as one line naming the file and the field, for example
``simulated.yaml: modalities.dpc.optics.na_detection: Input should be greater than 0``.

Configuration files are read with limits (a regular file of at most
:data:`MAX_CONFIG_BYTES`, UTF-8, YAML without anchors/aliases, so an "alias bomb" is refused
before it expands), and no error message quotes the file's content. A Micro-Manager ``.cfg``
named by ``micromanager_config`` is loaded by Micro-Manager itself: its ``#py`` lines import
Python code, so a ``.cfg`` is trusted code (``docs/reliability.md``); the simulated microscope
(``simulated: true``) loads no ``.cfg`` at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nstm_acquire._validation import UserInputError, error_lines
from nstm_acquire.physics.dpc.illumination import LedArrayGeometry
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.rolling_shutter.timing import RollingShutterReadout

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_SIMULATED_FRAME_SIDE",
    "CameraConfig",
    "ConfigError",
    "SimulatedFaults",
    "DpcConfig",
    "HardwareConfig",
    "PatternControl",
    "RollingShutterConfig",
    "SimConfig",
    "SimulatedLensless",
    "SimulationConfig",
    "SimulatedTiming",
    "load_hardware_config",
    "default_config_path",
]

Modality = Literal["dpc", "sim2d", "sim3d"]
"""The microscope modalities with a simulated sample (``simulation.samples``)."""

MODALITY_NAMES = ("dpc", "sim2d", "sim3d", "rolling_shutter")
"""Every modality a configuration may describe (``rolling_shutter``: the lensless camera)."""


MAX_CONFIG_BYTES = 1 * 2**20
"""Largest hardware configuration file read (1 MiB; the examples are a few kB)."""

MAX_SIMULATED_FRAME_SIDE = 4096
"""Largest side of the simulated camera's frame, pixels (it renders every frame in Python)."""


class ConfigError(UserInputError):
    """A hardware configuration problem: one line naming the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Strict):
    """Camera settings shared by all modalities.

    ``hardware_timestamp_key`` names the per-frame metadata key (sequenced bursts) or the
    camera property (single snaps) that holds the exposure start on the camera's own clock,
    in ``hardware_timestamp_unit``; without one the controller uses the host clock (see
    ``docs/timing.md`` for the accuracy of each).
    """

    label: str = "Camera"
    exposure_ms: float = Field(default=10.0, gt=0)
    offset_adu: float = Field(default=0.0, ge=0)
    gain_e_per_adu: float | None = Field(default=None, gt=0)
    read_noise_e: float | None = Field(default=None, ge=0)
    pixel_type: Literal["uint16", "float32"] = "uint16"
    hardware_timestamp_key: str | None = None
    hardware_timestamp_unit: Literal["s", "ms", "us"] = "s"
    rolling_shutter: RollingShutterReadout | None = Field(
        default=None,
        description="the sensor reads its rows one after another: row_time_s (line interval, s) and "
        "direction (top_to_bottom, bottom_to_top, centre_out); recorded as the store's camera.rolling_shutter",
    )


class PatternControl(_Strict):
    """How the illumination pattern of each shot is set.

    ``method: property``: ``device``/``property`` take ``values[s]`` for shot ``s``.
    ``method: preset``: configuration group ``group`` takes preset ``presets[s]``.
    """

    method: Literal["property", "preset"]
    device: str | None = None
    property: str | None = None
    values: list[str | int | float] | None = None
    group: str | None = None
    presets: list[str] | None = None

    @model_validator(mode="after")
    def _complete(self) -> PatternControl:
        if self.method == "property":
            missing = [f for f in ("device", "property") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    f"method 'property' needs {' and '.join(missing)} (the device label and "
                    "property that select the pattern)"
                )
        else:
            if self.group is None or not self.presets:
                raise ValueError(
                    "method 'preset' needs group (a configuration group of the .cfg) and "
                    "presets (one preset name per shot)"
                )
        return self

    def n_values(self) -> int | None:
        """Number of per-shot values given, or None when they are derived (property names)."""
        if self.method == "preset":
            return len(self.presets or [])
        return None if self.values is None else len(self.values)


class DpcConfig(_Strict):
    """LED-array DPC: optics, LED array geometry, the lit LEDs of every shot."""

    optics: Optics
    led_array_label: str = "LEDArray"
    led_array: LedArrayGeometry | None = None
    led_na: list[tuple[float, float]] | None = Field(
        default=None,
        description="explicit [na_y, na_x] of every LED in the controller's numbering, "
        "instead of led_array (for arrays numbered other than row-major, or mirrored)",
    )
    shots: Literal["half_circle"] | dict[str, list[int]] = "half_circle"
    shot_names: list[str] = ["top", "bottom", "left", "right"]
    pattern_control: PatternControl
    exposure_ms: float | None = Field(default=None, gt=0)

    def led_na_array(self) -> np.ndarray:
        """``(N, 2)`` illumination NA of every LED, in the controller's numbering."""
        if self.led_na is not None:
            return np.asarray(self.led_na, dtype=np.float64).reshape(-1, 2)
        assert self.led_array is not None
        return self.led_array.led_na()

    @model_validator(mode="after")
    def _shot_names(self) -> DpcConfig:
        if (self.led_array is None) == (self.led_na is None):
            raise ValueError(
                "give exactly one of led_array (the array geometry) or led_na (every LED's "
                "[na_y, na_x])"
            )
        if isinstance(self.shots, dict):
            unknown = [n for n in self.shot_names if n not in self.shots]
            if unknown:
                raise ValueError(
                    f"shot_names {unknown} are not keys of shots {sorted(self.shots)}; list the "
                    "shots to acquire by their names in shots"
                )
        n = self.pattern_control.n_values()
        if n is not None and n != len(self.shot_names):
            raise ValueError(
                f"pattern_control gives {n} values for {len(self.shot_names)} shots "
                f"{self.shot_names}; give one per shot"
            )
        return self


class SimConfig(_Strict):
    """Structured illumination: optics (emission), excitation, pattern device, focus."""

    optics: Optics
    excitation_wavelength_um: float = Field(gt=0, lt=5)
    n_orientations: int = Field(default=3, ge=1)
    n_phases: int = Field(default=3, ge=3)
    k_per_um: list[tuple[float, float]] | None = None
    phase_rad: list[float] | None = None
    modulation: list[list[float]] | None = None
    pattern_device_label: str = "SIMPatterns"
    pattern_control: PatternControl
    focus_device: str = "Z"
    exposure_ms: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _counts(self) -> SimConfig:
        n_shots = self.n_orientations * self.n_phases
        n = self.pattern_control.n_values()
        if n is not None and n != n_shots:
            raise ValueError(
                f"pattern_control gives {n} values for {n_shots} shots "
                f"({self.n_orientations} orientations x {self.n_phases} phases)"
            )
        for name in ("k_per_um", "phase_rad", "modulation"):
            val = getattr(self, name)
            if val is not None and len(val) != self.n_orientations:
                raise ValueError(
                    f"{name} has {len(val)} entries for n_orientations={self.n_orientations}; "
                    "give one per orientation or leave it out to estimate it from the data"
                )
        return self


class RollingShutterConfig(_Strict):
    """A rolling-shutter lensless colour camera (DiffuserCam), ``docs/rolling_shutter.md``.

    Each camera frame is stored as one shot per colour plane (``docs/format.md``): the
    configuration group ``nstm-rolling_shutter`` selects colour plane ``c`` for shot
    ``frame * n_channels + c`` through ``pattern_control`` (default: the lensless camera's
    ``ColourPlane`` property, values ``0..n_channels-1``).
    """

    optics: Optics = Field(description="wavelength_um (green), na_detection, pixel_size_um: the scene pixel")
    camera_label: str = "LenslessCamera"
    readout: RollingShutterReadout = Field(description="row_time_s (line interval, s) and direction")
    frames_per_window: int = Field(default=3, ge=1, le=1000)
    channels: tuple[str, ...] = ("red", "green", "blue")
    pattern_control: PatternControl = PatternControl(method="property", device="LenslessCamera", property="ColourPlane")
    exposure_ms: float | None = Field(default=None, gt=0, description="per-row exposure, ms")
    psf_file: Path | None = Field(
        default=None,
        description="measured PSF .npy (C, Hp, Wp) or (Hp, Wp), relative to the YAML's folder; "
        "the simulated microscope uses its own caustic PSF",
    )

    @model_validator(mode="after")
    def _counts(self) -> RollingShutterConfig:
        if not 1 <= len(self.channels) <= 4 or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels {list(self.channels)}: give 1 to 4 distinct colour names")
        n = self.pattern_control.n_values()
        if n is not None and n != len(self.channels):
            raise ValueError(
                f"pattern_control gives {n} values for {len(self.channels)} colour channels; give one per channel"
            )
        return self


class SimulatedLensless(_Strict):
    """The simulated lensless camera's scene and diffuser (``hardware/simulated/lensless.py``).

    Objects circle at about ``speed_px_per_s`` (one angular speed, so one period), inside the
    field and apart from each other at any acquisition time.
    """

    n_objects: int = Field(default=3, ge=1, le=5)
    speed_px_per_s: float = Field(default=1000.0, ge=0)
    photons: float = Field(default=2e4, gt=0, description="photo-electrons per pixel for brightness 1")
    psf_correlation_px: float = Field(default=6.0, gt=0)
    steps_per_row: int = Field(default=2, ge=1, le=16)


class SimulatedTiming(_Strict):
    """Timing of the simulated hardware, milliseconds.

    ``realtime: true`` makes the simulated camera take as long as a real one (the clock is
    the host clock); ``false`` runs as fast as the computer allows while the simulated
    clock still advances by every exposure, readout and delay.
    """

    realtime: bool = True
    readout_ms: float = Field(default=2.0, ge=0)
    pattern_switch_ms: float = Field(default=0.5, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    exposure_subsamples: int = Field(default=3, ge=1, le=64)


class SimulatedSample(_Strict):
    """A synthetic sample of the simulated microscope for one modality."""

    phantom: Literal["cells", "beads", "filaments"]
    motion: str | dict[str, Any] | list[Any] = "static"
    options: dict[str, Any] = {}
    photons: float = Field(default=2000.0, gt=0, description="photo-electrons per pixel at background / mean")


class SimulatedFaults(_Strict):
    """Faults the simulated camera can be told to produce (fault tests, ``docs/reliability.md``).

    Frames are counted from the camera's creation (background frames included).
    """

    camera_error_after_frames: int | None = Field(
        default=None, ge=0, description="after this many frames every further frame fails with camera_error_message"
    )
    camera_error_message: str = Field(default="simulated sensor readout failure", max_length=200)
    camera_stall_after_frames: int | None = Field(
        default=None, ge=0, description="after this many frames the camera delivers nothing (a device timeout)"
    )
    camera_stall_s: float = Field(default=30.0, gt=0, le=3600, description="how long a stall lasts, s")


class SimulationConfig(_Strict):
    """What the simulated microscope images and how its hardware behaves."""

    frame_shape: tuple[int, int] = (128, 128)
    seed: int = 0
    samples: dict[Modality, SimulatedSample] = {
        "dpc": SimulatedSample(phantom="cells"),
        "sim2d": SimulatedSample(phantom="beads"),
        "sim3d": SimulatedSample(phantom="beads", options={"z_range_um": (-1.0, 1.0)}),
    }
    timing: SimulatedTiming = SimulatedTiming()
    render_upsample: int = Field(default=2, ge=1, le=4)
    replay_frames: int = Field(
        default=0, ge=0, le=100_000, description="if > 0, render this many frames once and replay them (throughput tests)"
    )
    faults: SimulatedFaults = SimulatedFaults()
    lensless: SimulatedLensless = SimulatedLensless()

    @model_validator(mode="after")
    def _shape(self) -> SimulationConfig:
        if min(self.frame_shape) < 16:
            raise ValueError(f"frame_shape {self.frame_shape} is too small; use at least 16 x 16 pixels")
        if max(self.frame_shape) > MAX_SIMULATED_FRAME_SIDE:
            raise ValueError(
                f"frame_shape {self.frame_shape} is too large; the simulated camera renders at most "
                f"{MAX_SIMULATED_FRAME_SIDE} x {MAX_SIMULATED_FRAME_SIDE} pixels"
            )
        return self


class HardwareConfig(_Strict):
    """One microscope: see ``hardware_configs/*.yaml`` for annotated examples."""

    name: str
    simulated: bool = False
    micromanager_config: Path | None = None
    camera: CameraConfig = CameraConfig()
    shutter_label: str | None = None
    dpc: DpcConfig | None = None
    sim2d: SimConfig | None = None
    sim3d: SimConfig | None = None
    rolling_shutter: RollingShutterConfig | None = None
    simulation: SimulationConfig | None = None
    source_path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistency(self) -> HardwareConfig:
        if not any((self.dpc, self.sim2d, self.sim3d, self.rolling_shutter)):
            raise ValueError("no modality configured: add at least one of dpc, sim2d, sim3d, rolling_shutter")
        if not self.simulated and self.micromanager_config is None:
            raise ValueError(
                "micromanager_config: a real microscope needs the Micro-Manager .cfg to load "
                "(or set simulated: true)"
            )
        if self.sim3d is not None and self.sim3d.n_phases < 5:
            raise ValueError(
                f"sim3d.n_phases={self.sim3d.n_phases}: three-beam 3D SIM has 5 orders to separate; "
                "set n_phases: 5"
            )
        return self

    def modality(self, name: str) -> DpcConfig | SimConfig | RollingShutterConfig:
        """The configuration of one modality, or a ConfigError listing the configured ones."""
        if name not in MODALITY_NAMES:
            raise ConfigError(f"modality {name!r} is not one of {', '.join(MODALITY_NAMES)}")
        cfg = getattr(self, name)
        if cfg is None:
            raise ConfigError(
                f"{self.name}: modality {name!r} is not configured; available: "
                f"{', '.join(self.available_modalities())}"
            )
        return cfg

    def available_modalities(self) -> list[str]:
        return [m for m in MODALITY_NAMES if getattr(self, m) is not None]

    def resolved_mm_config(self) -> Path | None:
        """The ``.cfg`` path, relative paths taken from the YAML file's folder."""
        if self.micromanager_config is None:
            return None
        p = Path(self.micromanager_config)
        if not p.is_absolute() and self.source_path is not None:
            p = self.source_path.parent / p
        return p


def _format_validation_error(source: str, err: ValidationError) -> str:
    """The first ``<source>: <field>: <message>`` problem, naming up to three others after it."""
    lines = error_lines(err, source)
    first = lines[0]
    if len(lines) > 1:
        others = [line.removeprefix(f"{source}: ").split(": ", 1)[0] for line in lines[1:4]]
        first += f" (also wrong: {', '.join(others)}{', ...' if len(lines) > 4 else ''})"
    return first


def parse_hardware_config(data: dict[str, Any], source: str = "<config>") -> HardwareConfig:
    """Validate a configuration mapping; raises :class:`ConfigError` naming the bad field(s)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields at the top level, got {type(data).__name__}")
    try:
        return HardwareConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(source, err)) from None


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases (``&a`` / ``*a``).

    A few nested aliases expand to gigabytes (an "alias bomb"); a hardware configuration never
    needs them.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(event.start_mark)
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise _AliasRefused(event.start_mark)
        return super().compose_node(parent, index)


class _AliasRefused(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__()
        self.mark = mark


def _mark(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"


def load_yaml_limited(path: Path, what: str = "hardware configuration") -> Any:
    """The YAML document in ``path``, read with limits; :class:`ConfigError` (one line) if not.

    The file must be a regular file of at most :data:`MAX_CONFIG_BYTES`, UTF-8 text, YAML
    without anchors or aliases. Messages name the file and the position, never its content.
    """
    name = path.name or str(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: no such {what}; the examples are in hardware_configs/ "
            "(hardware_configs/simulated.yaml runs without a microscope)"
        )
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the {what} file (.yaml)")
    if not path.is_file():
        raise ConfigError(f"{path}: is not a regular file; give the {what} file (.yaml)")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}: has {size} bytes, more than the {MAX_CONFIG_BYTES} a {what} may have")
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: is not UTF-8 text (a binary file?); give the {what} (.yaml)") from None
    except OSError as err:
        raise ConfigError(f"{name}: cannot be read ({err.strerror})") from None
    if "\x00" in text:
        raise ConfigError(f"{name}: is not a text file (it holds NUL bytes); give the {what} (.yaml)")
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    except _AliasRefused as err:
        raise ConfigError(
            f"{name}: YAML anchors and aliases are not allowed in a {what} ({_mark(err.mark)}); write the values out"
        ) from None
    except yaml.MarkedYAMLError as err:
        problem = " ".join(str(err.problem or err.context or "invalid syntax").split())
        raise ConfigError(f"{name}: not valid YAML: {problem} ({_mark(err.problem_mark)})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}: not valid YAML ({type(err).__name__})") from None
    except RecursionError:
        raise ConfigError(f"{name}: is nested too deeply to be a {what}") from None
    finally:
        loader.dispose()


def load_hardware_config(path: str | Path) -> HardwareConfig:
    """Load and validate a YAML hardware configuration file (limits: :func:`load_yaml_limited`)."""
    p = Path(path)
    data = load_yaml_limited(p)
    cfg = parse_hardware_config(data, source=p.name)
    cfg = cfg.model_copy(update={"source_path": p.resolve()})
    mm = cfg.resolved_mm_config()
    if mm is not None and not mm.exists():
        raise ConfigError(f"{p.name}: micromanager_config: {mm} does not exist")
    return cfg


def default_config_path() -> Path:
    """``hardware_configs/simulated.yaml`` of a source checkout, or the packaged copy."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "hardware_configs" / "simulated.yaml"
        if cand.exists():
            return cand
    packaged = here.parent / "configs" / "simulated.yaml"
    return packaged
