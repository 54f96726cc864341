"""The microscope as an acquisition sees it: a configured pymmcore-plus core and what it reports.

:class:`Microscope` wraps a ``UniMMCore`` loaded from a real ``.cfg`` (or an existing host core)
and is the one interface the acquisition layer talks to: :meth:`Microscope.prepare` turns a
modality's configuration into what an acquisition needs (the configuration group and presets
that select each shot's pattern, the optics and illumination description for the store), and a
few small methods describe the camera (:meth:`~Microscope.camera_model`,
:meth:`~Microscope.timestamp_source`), mark the run's start (:meth:`~Microscope.acquisition_started`),
take sample-free frames (:meth:`~Microscope.sample_free`) and add run metadata
(:meth:`~Microscope.run_metadata`).

The simulated microscope (:class:`~nstm_acquire.hardware.simulated.microscope.SimulatedMicroscope`)
is a subclass: its devices are Python objects driving a simulated world, and it answers the same
methods from that world. Nothing outside ``hardware/`` needs to know which one it has.

This layer imports nothing from ``acquire/``, ``recon/``, ``store/`` or ``gui/``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pymmcore_plus.experimental.unicore import UniMMCore

from nstm_acquire._logger import logger as _package_logger
from nstm_acquire._validation import first_field_problem
from nstm_acquire.hardware.camera import TimestampSource
from nstm_acquire.hardware.config import (
    ConfigError,
    DpcConfig,
    HardwareConfig,
    PatternControl,
    RollingShutterConfig,
    SimConfig,
    load_hardware_config,
)
from nstm_acquire.physics.dpc.illumination import DpcIllumination, dpc_half_circle_patterns
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.rolling_shutter.shots import LenslessShots
from nstm_acquire.physics.sim.illumination import SimIllumination

__all__ = [
    "HOST_CLOCK_DESCRIPTION",
    "Microscope",
    "ModalitySetup",
    "dpc_shots",
    "open_microscope",
    "use_psygnal_signals",
]

logger = _package_logger.getChild("hardware")

HOST_CLOCK_DESCRIPTION = (
    "host clock (single snaps: just before the snap request; hardware-triggered bursts: "
    "ElapsedTime-ms at buffer arrival minus the exposure)"
)
"""``acquisition.timestamp_source`` of a camera without a hardware timestamp."""


@dataclass
class ModalitySetup:
    """What an acquisition of one modality needs from the microscope."""

    modality: str
    shot_names: list[str]
    channel_group: str
    presets: list[str]
    optics: Optics
    illumination: DpcIllumination | SimIllumination | LenslessShots
    """The physics model of the modality's illumination (the store writer serialises it;
    ``rolling_shutter``: the shot layout, frames x colour planes)."""
    exposure_ms: float
    focus_device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    psf: Any = None
    """``rolling_shutter``: the lensless camera's PSF ``(C, Hp, Wp)`` (numpy), written to the store."""

    @property
    def n_shots(self) -> int:
        return len(self.shot_names)


def dpc_shots(cfg: DpcConfig) -> dict[str, list[int]]:
    """Lit LED indices of every named DPC shot (half circles from the geometry, or explicit)."""
    if isinstance(cfg.shots, dict):
        return {k: list(v) for k, v in cfg.shots.items()}
    halves = dpc_half_circle_patterns(cfg.led_na_array(), cfg.optics.na_detection)
    unknown = [n for n in cfg.shot_names if n not in halves]
    if unknown:
        raise ConfigError(
            f"dpc.shot_names {unknown}: half_circle patterns are named {sorted(halves)}; "
            "give explicit shots for other names"
        )
    return {k: list(v) for k, v in halves.items()}


class Microscope:
    """A configured core (``UniMMCore``) and what an acquisition needs to know about it.

    Parameters
    ----------
    config
        The hardware configuration the core was set up for.
    core
        The core; its camera (and shutter, if configured) are selected.
    owns_core
        True when this object made the core: :meth:`close` unloads its devices. False for a
        core owned by someone else (a host application's ``mmcore``), which is never unloaded.

    A subclass describes other hardware by overriding the reporting methods
    (:meth:`camera_model`, :meth:`timestamp_source`, :meth:`acquisition_started`,
    :meth:`sample_free`, :meth:`run_metadata`, :meth:`default_background`,
    :meth:`calibrated_sim_pattern`); the simulated microscope is one.
    """

    def __init__(self, config: HardwareConfig, core: UniMMCore, owns_core: bool = True) -> None:
        self.config = config
        self.core = core
        self.owns_core = bool(owns_core)

    @property
    def simulated(self) -> bool:
        """True for the simulated microscope (for scoring against its truth; acquisition never asks)."""
        return False

    @property
    def world(self) -> Any | None:
        """The simulated world (ground truth for evaluation), None on a real microscope."""
        return None

    # ------------------------------------------------------------ reporting
    def camera_model(self, modality: str | None = None) -> dict[str, Any]:
        """The store's ``camera`` attributes: ``offset_adu`` (ADU), and ``gain_e_per_adu``
        (electrons per ADU) and ``read_noise_e`` (electrons) where known, as configured, and
        ``rolling_shutter`` (``row_time_s``, ``direction``) where the camera of ``modality``
        reads its rows one after another (``rolling_shutter``: its ``readout``; any other
        modality: ``camera.rolling_shutter`` when configured)."""
        cam = self.config.camera
        model: dict[str, Any] = {"offset_adu": cam.offset_adu}
        if cam.gain_e_per_adu is not None:
            model["gain_e_per_adu"] = cam.gain_e_per_adu
        if cam.read_noise_e is not None:
            model["read_noise_e"] = cam.read_noise_e
        if modality == "rolling_shutter" and self.config.rolling_shutter is not None:
            model["rolling_shutter"] = self.config.rolling_shutter.readout.to_store()
        elif cam.rolling_shutter is not None:
            model["rolling_shutter"] = cam.rolling_shutter.to_store()
        return model

    def lensless_psf(self) -> Any:
        """The lensless camera's measured PSF ``(C, Hp, Wp)`` float32 from ``rolling_shutter.psf_file``.

        A ``.npy`` file of ``(Hp, Wp)`` (shared by every colour) or ``(C, Hp, Wp)``, non-negative.
        Raises :class:`ConfigError` (one line) if it is not configured or not usable.
        """
        rs = self.config.rolling_shutter
        where = f"{self.config.name}: rolling_shutter.psf_file"
        if rs is None or rs.psf_file is None:
            raise ConfigError(
                f"{where} is missing (a lensless reconstruction needs the camera's measured PSF: a .npy of "
                "(C, Hp, Wp) or (Hp, Wp))"
            )
        path = Path(rs.psf_file)
        if not path.is_absolute() and self.config.source_path is not None:
            path = self.config.source_path.parent / path
        return load_psf_file(path, where, len(rs.channels))

    def timestamp_source(self) -> TimestampSource:
        """Where frame times come from: the configured hardware timestamp, else the host clock."""
        cam = self.config.camera
        if cam.hardware_timestamp_key:
            return TimestampSource(
                key=cam.hardware_timestamp_key,
                unit=cam.hardware_timestamp_unit,
                on_acquisition_clock=False,
                description=f"camera hardware timestamp {cam.hardware_timestamp_key!r} (exposure start)",
            )
        return TimestampSource(key=None, description=HOST_CLOCK_DESCRIPTION)

    def acquisition_started(self) -> None:
        """Called by the acquisition just before its first event, at its time zero (real: nothing)."""

    @contextmanager
    def sample_free(self) -> Iterator[None]:
        """Context for background frames without the sample.

        A real microscope cannot remove its sample: the user has moved to an empty area
        before, so this does nothing. The simulated one blanks its sample inside the block.
        """
        yield

    def run_metadata(self) -> dict[str, Any]:
        """Entries for the store's ``acquisition`` attributes: ``simulated`` (bool) and any other."""
        return {"simulated": False}

    def default_background(self, modality: str) -> bool:
        """Whether an acquisition of ``modality`` takes background frames unless told (real: no,
        as the sample would have to be moved away first)."""
        return False

    def calibrated_sim_pattern(self, modality: str) -> dict[str, Any]:
        """The SIM pattern parameters this microscope knows, as store ``illumination`` fields.

        A real microscope knows what its configuration says (``k_per_um``, ``phase_rad``,
        ``modulation``, those given); fields it leaves out are estimated from the data.
        """
        cfg = self.config.modality(modality)
        assert isinstance(cfg, SimConfig)
        known: dict[str, Any] = {}
        if cfg.k_per_um is not None:
            known["k_per_um"] = [list(k) for k in cfg.k_per_um]
        if cfg.phase_rad is not None:
            known["phase_rad"] = list(cfg.phase_rad)
        if cfg.modulation is not None:
            known["modulation"] = [list(m) for m in cfg.modulation]
        return known

    # ------------------------------------------------------------------
    def prepare(self, modality: str) -> ModalitySetup:
        """Check the hardware for ``modality`` and describe how to acquire it."""
        cfg = self.config.modality(modality)
        camera = cfg.camera_label if isinstance(cfg, RollingShutterConfig) else self.config.camera.label
        if camera not in self.core.getLoadedDevices():
            raise ConfigError(
                f"{self.config.name}: {modality} camera {camera!r} is not a loaded device "
                f"(loaded: {list(self.core.getLoadedDevices())})"
            )
        if self.core.getCameraDevice() != camera:
            self.core.setCameraDevice(camera)
        if isinstance(cfg, DpcConfig):
            return self._prepare_dpc(cfg)
        if isinstance(cfg, RollingShutterConfig):
            return self._prepare_rolling_shutter(cfg)
        return self._prepare_sim(modality, cfg)

    def _prepare_rolling_shutter(self, cfg: RollingShutterConfig) -> ModalitySetup:
        shots = LenslessShots(frames_per_window=cfg.frames_per_window, channels=cfg.channels)
        names = [f"f{f}{c}" for f in range(cfg.frames_per_window) for c in cfg.channels]
        planes = [str(c) for _ in range(cfg.frames_per_window) for c in range(len(cfg.channels))]
        pc = cfg.pattern_control
        if pc.values is not None:  # one value per colour channel: repeat it for every frame
            pc = pc.model_copy(update={"values": list(pc.values) * cfg.frames_per_window})
        if pc.presets is not None:
            pc = pc.model_copy(update={"presets": list(pc.presets) * cfg.frames_per_window})
        group, presets = self._pattern_group("rolling_shutter", pc, names, planes)
        return ModalitySetup(
            modality="rolling_shutter",
            shot_names=names,
            channel_group=group,
            presets=presets,
            optics=cfg.optics,
            illumination=shots,
            exposure_ms=cfg.exposure_ms or self.config.camera.exposure_ms,
            psf=self.lensless_psf(),
        )

    def _prepare_dpc(self, cfg: DpcConfig) -> ModalitySetup:
        shots = dpc_shots(cfg)
        names = list(cfg.shot_names)
        led_na = cfg.led_na_array()
        try:
            illum = DpcIllumination.model_validate(
                {"led_na": led_na.tolist(), "shots": [shots[n] for n in names]}
            )
        except ValidationError as err:
            field_name, problem = first_field_problem(err)
            raise ConfigError(f"{self.config.name}: dpc illumination {field_name} {problem}") from None
        group, presets = self._pattern_group("dpc", cfg.pattern_control, names)
        return ModalitySetup(
            modality="dpc",
            shot_names=names,
            channel_group=group,
            presets=presets,
            optics=cfg.optics,
            illumination=illum,
            exposure_ms=cfg.exposure_ms or self.config.camera.exposure_ms,
        )

    def _prepare_sim(self, modality: str, cfg: SimConfig) -> ModalitySetup:
        names = [f"a{d}p{p}" for d in range(cfg.n_orientations) for p in range(cfg.n_phases)]
        indices = [str(i) for i in range(len(names))]  # PatternIndex-style default values
        group, presets = self._pattern_group(modality, cfg.pattern_control, names, indices)
        fields: dict[str, Any] = {
            "n_orientations": cfg.n_orientations,
            "n_phases": cfg.n_phases,
            "excitation_wavelength_um": cfg.excitation_wavelength_um,
            "three_beam": modality == "sim3d",
        }
        fields.update(self.calibrated_sim_pattern(modality))
        try:
            illum = SimIllumination.model_validate(fields)
        except ValidationError as err:
            field_name, problem = first_field_problem(err)
            raise ConfigError(f"{self.config.name}: {modality}.{field_name} {problem}") from None
        focus = cfg.focus_device
        if modality == "sim3d" and focus not in self.core.getLoadedDevices():
            raise ConfigError(f"{self.config.name}: sim3d.focus_device {focus!r} is not a loaded device")
        return ModalitySetup(
            modality=modality,
            shot_names=names,
            channel_group=group,
            presets=presets,
            optics=cfg.optics,
            illumination=illum,
            exposure_ms=cfg.exposure_ms or self.config.camera.exposure_ms,
            focus_device=focus,
        )

    def _pattern_group(
        self, modality: str, pc: PatternControl, names: list[str], default_values: list[str] | None = None
    ) -> tuple[str, list[str]]:
        """The configuration group and presets selecting each shot's pattern.

        ``method: property`` defines a group ``nstm-<modality>`` with one preset per shot
        name; the property takes ``values`` (default: ``default_values``, else the names).
        """
        core = self.core
        if pc.method == "preset":
            assert pc.group is not None and pc.presets is not None
            if pc.group not in core.getAvailableConfigGroups():
                raise ConfigError(
                    f"{self.config.name}: {modality}.pattern_control.group {pc.group!r} is not a configuration "
                    f"group of the .cfg (groups: {list(core.getAvailableConfigGroups())})"
                )
            have = set(core.getAvailableConfigs(pc.group))
            missing = [p for p in pc.presets if p not in have]
            if missing:
                raise ConfigError(
                    f"{self.config.name}: {modality}.pattern_control.presets {missing} are not presets of "
                    f"group {pc.group!r} (presets: {sorted(have)})"
                )
            return pc.group, list(pc.presets)
        assert pc.device is not None and pc.property is not None
        if pc.device not in core.getLoadedDevices():
            raise ConfigError(
                f"{self.config.name}: {modality}.pattern_control.device {pc.device!r} is not loaded "
                f"(loaded: {list(core.getLoadedDevices())})"
            )
        if not core.hasProperty(pc.device, pc.property):
            raise ConfigError(
                f"{self.config.name}: {modality}.pattern_control.property {pc.property!r} is not a property "
                f"of {pc.device!r}"
            )
        values = list(pc.values) if pc.values is not None else (default_values or names)
        group = f"nstm-{modality}"
        if group in core.getAvailableConfigGroups():
            core.deleteConfigGroup(group)
        core.defineConfigGroup(group)
        for name, value in zip(names, values, strict=True):
            core.defineConfig(group, name, pc.device, pc.property, str(value))
        return group, names

    def close(self) -> None:
        """Unload every device of a core this object made; a host's core is left as it is."""
        if not self.owns_core:
            return
        try:
            self.core.unloadAllDevices()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            logger.debug("unloading the devices of %s failed", self.config.name, exc_info=True)


MAX_PSF_FILE_BYTES = 256 * 2**20
"""Largest measured PSF file read (256 MiB)."""


def load_psf_file(path: Path, where: str, n_channels: int) -> Any:
    """A measured lensless PSF from a ``.npy`` file, ``(C, Hp, Wp)`` float32 (C = 1 or ``n_channels``).

    Checked before it is loaded: a regular file of at most :data:`MAX_PSF_FILE_BYTES`, no
    pickled objects. ``where`` names the field in the one-line :class:`ConfigError`.
    """
    import numpy as np

    try:
        info = os.stat(path)
    except OSError:
        raise ConfigError(f"{where}: {path} does not exist (give the measured PSF as .npy)") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PSF_FILE_BYTES:
        raise ConfigError(f"{where}: {path} is not a regular .npy file of at most {MAX_PSF_FILE_BYTES} bytes")
    try:
        psf = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}: {path} is not a .npy array ({type(err).__name__}); save it with numpy.save") from None
    if psf.ndim == 2:
        psf = psf[None]
    if psf.ndim != 3 or psf.shape[0] not in (1, n_channels) or not np.issubdtype(psf.dtype, np.number):
        raise ConfigError(f"{where}: has shape {psf.shape}; give (Hp, Wp) or ({n_channels}, Hp, Wp) real numbers")
    psf = psf.astype(np.float32)
    if not np.all(np.isfinite(psf)) or np.any(psf < 0) or np.any(psf.sum(axis=(1, 2)) <= 0):
        raise ConfigError(f"{where}: must be finite and non-negative with a positive sum per channel")
    return psf


@contextmanager
def use_psygnal_signals() -> Iterator[None]:
    """Cores created inside this block use psygnal signals (``PYMM_SIGNALS_BACKEND=psygnal``).

    With a QApplication running, pymmcore-plus would give a new core Qt signals (through the
    ``qtpy`` package, which nstm-acquire does not depend on). The acquisition connects to a
    core's signals on its own threads and expects psygnal's direct calls, so every core made
    here is made inside this block. A backend the user set explicitly is kept; the variable is
    restored when the block ends (a core keeps the backend it was created with).
    """
    key = "PYMM_SIGNALS_BACKEND"
    before = os.environ.get(key)
    if before is None:
        os.environ[key] = "psygnal"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)


def _select_devices(config: HardwareConfig, core: UniMMCore, where: str) -> None:
    """Select the configured camera (and shutter) on ``core``; ``where`` names the core in errors."""
    cam = config.camera.label
    if cam not in core.getLoadedDevices():
        raise ConfigError(
            f"{config.name}: camera.label {cam!r} is not a device of {where} "
            f"(loaded: {list(core.getLoadedDevices())})"
        )
    core.setCameraDevice(cam)
    if config.shutter_label:
        core.setShutterDevice(config.shutter_label)


def _build_real(config: HardwareConfig, adapter_paths: list[str | Path] | None) -> Microscope:
    with use_psygnal_signals():
        core = UniMMCore()
    if adapter_paths:
        core.setDeviceAdapterSearchPaths([str(p) for p in adapter_paths])
    cfg_path = config.resolved_mm_config()
    assert cfg_path is not None
    try:
        core.loadSystemConfiguration(str(cfg_path))
    except Exception as err:  # the core's messages are multi-line; keep the first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{config.name}: loading {cfg_path.name} failed: {first}") from err
    _select_devices(config, core, cfg_path.name)
    core.setAutoShutter(False)
    core.setExposure(config.camera.exposure_ms)
    return Microscope(config, core, owns_core=True)


def _on_host_core(config: HardwareConfig, core: UniMMCore) -> Microscope:
    """Use a core someone else loaded (e.g. a host application's): select camera and shutter only."""
    _select_devices(config, core, "the given core")
    return Microscope(config, core, owns_core=False)


def open_microscope(
    config: HardwareConfig | str | Path,
    adapter_paths: list[str | Path] | None = None,
    core: UniMMCore | None = None,
) -> Microscope:
    """The microscope of a hardware configuration (object or YAML path).

    Parameters
    ----------
    config
        A :class:`~nstm_acquire.hardware.config.HardwareConfig` or the path of its YAML file.
    adapter_paths
        Micro-Manager device adapter folders for loading the configuration's ``.cfg``.
    core
        An existing core with the hardware already loaded (a host application's ``mmcore``):
        it is used as it is (only the configured camera and shutter are selected) and never
        unloaded by :meth:`Microscope.close`. A simulated configuration ignores it and runs on
        its own simulated core.

    Returns
    -------
    Microscope
        A :class:`~nstm_acquire.hardware.simulated.microscope.SimulatedMicroscope` for a
        simulated configuration without a ``.cfg``, else a :class:`Microscope`.
    """
    if not isinstance(config, HardwareConfig):
        config = load_hardware_config(config)
    if config.simulated and config.micromanager_config is None:
        from nstm_acquire.hardware.simulated.microscope import build_simulated_microscope

        if core is not None:
            logger.warning("%s is simulated: it runs on its own simulated core, not on the given core", config.name)
        microscope: Microscope = build_simulated_microscope(config)
    elif core is not None:
        microscope = _on_host_core(config, core)
    else:
        microscope = _build_real(config, adapter_paths)
    logger.info(
        "opened %s (%s; modalities %s)",
        config.name,
        "simulated" if microscope.simulated else ("host core" if core is not None else "own core"),
        ", ".join(config.available_modalities()),
    )
    return microscope
