"""Build a pymmcore-plus core for a hardware configuration: simulated devices or a real ``.cfg``.

The simulated microscope is the same code path as a real one: a ``UniMMCore`` whose devices
happen to be Python objects. :meth:`Microscope.prepare` turns a modality's configuration into
what an acquisition needs: the configuration group and presets that select each shot's
pattern, the optics and illumination description for the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymmcore_plus.experimental.unicore import UniMMCore

from nstm_acquire.acquire.engine import TimestampingMDAEngine
from nstm_acquire.hardware.config import (
    ConfigError,
    DpcConfig,
    HardwareConfig,
    PatternControl,
    SimConfig,
    load_hardware_config,
)
from nstm_acquire.physics.dpc.illumination import DpcIllumination, dpc_half_circle_patterns
from nstm_acquire.physics.optics import Optics

__all__ = ["Microscope", "ModalitySetup", "open_microscope"]


@dataclass
class ModalitySetup:
    """What an acquisition of one modality needs from the microscope."""

    modality: str
    shot_names: list[str]
    channel_group: str
    presets: list[str]
    optics: Optics
    illumination: dict[str, Any]
    exposure_ms: float
    focus_device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
    """A configured core (``UniMMCore``), and the simulated world when there is one."""

    def __init__(self, config: HardwareConfig, core: UniMMCore, world: Any | None = None) -> None:
        self.config = config
        self.core = core
        self.world = world
        engine = TimestampingMDAEngine(core)
        if config.camera.hardware_timestamp_key:
            engine.timestamp_property = config.camera.hardware_timestamp_key
        self.core.mda.set_engine(engine)

    @property
    def simulated(self) -> bool:
        return self.world is not None

    # ------------------------------------------------------------------
    def prepare(self, modality: str) -> ModalitySetup:
        """Check the hardware for ``modality`` and describe how to acquire it."""
        cfg = self.config.modality(modality)
        if self.world is not None:
            self.world.set_modality(modality)
        if isinstance(cfg, DpcConfig):
            return self._prepare_dpc(cfg)
        return self._prepare_sim(modality, cfg)

    def _prepare_dpc(self, cfg: DpcConfig) -> ModalitySetup:
        shots = dpc_shots(cfg)
        names = list(cfg.shot_names)
        led_na = cfg.led_na_array()
        illum = DpcIllumination(led_na=led_na.tolist(), shots=[shots[n] for n in names])
        group, presets = self._pattern_group("dpc", cfg.pattern_control, names)
        return ModalitySetup(
            modality="dpc",
            shot_names=names,
            channel_group=group,
            presets=presets,
            optics=cfg.optics,
            illumination=illum.to_store(),
            exposure_ms=cfg.exposure_ms or self.config.camera.exposure_ms,
        )

    def _prepare_sim(self, modality: str, cfg: SimConfig) -> ModalitySetup:
        names = [f"a{d}p{p}" for d in range(cfg.n_orientations) for p in range(cfg.n_phases)]
        indices = [str(i) for i in range(len(names))]  # PatternIndex-style default values
        group, presets = self._pattern_group(modality, cfg.pattern_control, names, indices)
        illum: dict[str, Any] = {
            "n_orientations": cfg.n_orientations,
            "n_phases": cfg.n_phases,
            "excitation_wavelength_um": cfg.excitation_wavelength_um,
            "three_beam": modality == "sim3d",
        }
        if cfg.k_per_um is not None:
            illum["k_per_um"] = [list(k) for k in cfg.k_per_um]
        if cfg.phase_rad is not None:
            illum["phase_rad"] = list(cfg.phase_rad)
        if cfg.modulation is not None:
            illum["modulation"] = [list(m) for m in cfg.modulation]
        if self.world is not None:
            # the simulator knows its true pattern; record it as the configured one
            true = self.world.scene(modality).illumination.to_store()
            keep = ("k_per_um", "phase_rad", "modulation", "three_beam", "axial_k_per_um")
            illum.update({k: v for k, v in true.items() if k in keep and v is not None})
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
        """Unload every device."""
        try:
            self.core.unloadAllDevices()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass


def _build_simulated(config: HardwareConfig) -> Microscope:
    from nstm_acquire.hardware.simulated.devices import (
        SimulatedCamera,
        SimulatedLEDArray,
        SimulatedShutter,
        SimulatedSIMPatterns,
        SimulatedZStage,
    )
    from nstm_acquire.hardware.simulated.world import SimulatedWorld

    world = SimulatedWorld(config)
    core = UniMMCore()
    cam = config.camera.label
    core.loadPyDevice(cam, SimulatedCamera(world))
    shutter = config.shutter_label or "Shutter"
    core.loadPyDevice(shutter, SimulatedShutter(world))
    if config.dpc is not None:
        shots = dpc_shots(config.dpc)
        n_leds = len(config.dpc.led_na_array())
        core.loadPyDevice(config.dpc.led_array_label, SimulatedLEDArray(world, patterns=shots, n_leds=n_leds))
    sims = [c for c in (config.sim2d, config.sim3d) if c is not None]
    if sims:
        n_patterns = max(c.n_orientations * c.n_phases for c in sims)
        labels = {c.pattern_device_label for c in sims}
        for label in labels:
            core.loadPyDevice(label, SimulatedSIMPatterns(world, n_patterns=n_patterns))
        for focus in {c.focus_device for c in sims}:
            core.loadPyDevice(focus, SimulatedZStage(world))
    core.initializeAllDevices()
    core.setCameraDevice(cam)
    core.setShutterDevice(shutter)
    core.setAutoShutter(False)
    core.setExposure(config.camera.exposure_ms)
    if sims:
        core.setFocusDevice(sims[0].focus_device)
    return Microscope(config, core, world)


def _build_real(config: HardwareConfig, adapter_paths: list[str | Path] | None) -> Microscope:
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
    cam = config.camera.label
    if cam not in core.getLoadedDevices():
        raise ConfigError(
            f"{config.name}: camera.label {cam!r} is not a device of {cfg_path.name} "
            f"(loaded: {list(core.getLoadedDevices())})"
        )
    core.setCameraDevice(cam)
    if config.shutter_label:
        core.setShutterDevice(config.shutter_label)
    core.setAutoShutter(False)
    core.setExposure(config.camera.exposure_ms)
    return Microscope(config, core, None)


def open_microscope(
    config: HardwareConfig | str | Path, adapter_paths: list[str | Path] | None = None
) -> Microscope:
    """Create the core and devices for a hardware configuration (object or YAML path)."""
    if not isinstance(config, HardwareConfig):
        config = load_hardware_config(config)
    # pymmcore-plus picks Qt signals for a core made while a QApplication runs, which needs
    # qtpy; our signals are connected thread-safely ourselves, so use psygnal unless told
    os.environ.setdefault("PYMM_SIGNALS_BACKEND", "psygnal")
    if config.simulated and config.micromanager_config is None:
        return _build_simulated(config)
    return _build_real(config, adapter_paths)
