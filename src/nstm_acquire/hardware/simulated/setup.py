"""Build simulated-microscope configurations from the packaged ``simulated.yaml`` with changes.

Used by the CLI's simulation options, the tests and the benchmarks, so they all describe the
same microscope and differ only where they say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nstm_acquire.hardware.config import (
    HardwareConfig,
    default_config_path,
    load_hardware_config,
    parse_hardware_config,
)

__all__ = ["simulated_config"]


def simulated_config(
    base: HardwareConfig | str | Path | None = None,
    *,
    frame_shape: tuple[int, int] | None = None,
    realtime: bool | None = None,
    seed: int | None = None,
    motion: dict[str, Any] | None = None,
    photons: dict[str, float] | None = None,
    sample_options: dict[str, dict[str, Any]] | None = None,
    timing: dict[str, Any] | None = None,
    exposure_ms: dict[str, float] | None = None,
    replay_frames: int | None = None,
    faults: dict[str, Any] | None = None,
) -> HardwareConfig:
    """A simulated configuration: ``base`` (default ``simulated.yaml``) with the given changes.

    ``motion``, ``photons``, ``sample_options`` and ``exposure_ms`` are keyed by modality
    (``dpc``, ``sim2d``, ``sim3d``); ``timing`` updates ``simulation.timing`` fields,
    ``faults`` the ``simulation.faults`` (:class:`~nstm_acquire.hardware.config.SimulatedFaults`).
    """
    if base is None or isinstance(base, (str, Path)):
        base = load_hardware_config(base or default_config_path())
    data = base.model_dump(mode="json", exclude={"source_path"})
    if data.get("simulation") is None:
        raise ValueError(f"{base.name} has no simulation section; it is not a simulated microscope")
    sim = data["simulation"]
    if frame_shape is not None:
        sim["frame_shape"] = list(frame_shape)
    if realtime is not None:
        sim["timing"]["realtime"] = realtime
    if seed is not None:
        sim["seed"] = seed
    if replay_frames is not None:
        sim["replay_frames"] = replay_frames
    if faults:
        sim["faults"] = {**sim.get("faults", {}), **faults}
    for key, value in (timing or {}).items():
        sim["timing"][key] = value
    for modality, spec in (motion or {}).items():
        sim["samples"][modality]["motion"] = spec
    for modality, value in (photons or {}).items():
        sim["samples"][modality]["photons"] = value
    for modality, opts in (sample_options or {}).items():
        sim["samples"][modality]["options"] = {**sim["samples"][modality].get("options", {}), **opts}
    for modality, value in (exposure_ms or {}).items():
        data[modality]["exposure_ms"] = value
    cfg = parse_hardware_config(data, source=f"{base.name} (modified)")
    return cfg.model_copy(update={"source_path": base.source_path})
