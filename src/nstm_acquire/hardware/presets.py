"""Write the Micro-Manager configuration-group presets that light each DPC shot's LEDs.

A real LED-array scope selects a DPC pattern through a preset of its ``.cfg``; this writes
those lines from the configured geometry, so the LEDs the hardware lights and the LEDs the
reconstruction models (the store's ``illumination.shots``) come from one source.
"""

from __future__ import annotations

from nstm_acquire.hardware.config import DpcConfig
from nstm_acquire.hardware.microscope import dpc_shots

__all__ = ["dpc_preset_lines"]


def dpc_preset_lines(
    cfg: DpcConfig,
    group: str = "DPC",
    device: str | None = None,
    prop: str = "LEDs",
    separator: str = " ",
    python_device: bool = False,
) -> list[str]:
    """``ConfigGroup`` lines, one per shot, setting ``device.prop`` to the shot's LED indices.

    ``separator`` joins the indices (a ``.cfg`` line is comma-separated, so not ``,``; the
    Illuminate adapter's ``ManualLedList`` uses ``.``). ``python_device`` prefixes the lines
    with ``#py `` so that plain Micro-Manager skips them and pymmcore-plus's UniMMCore reads them.
    """
    if separator == ",":
        raise ValueError("separator ',' would split the .cfg line; use ' ', ';' or '.'")
    shots = dpc_shots(cfg)
    label = device or cfg.led_array_label
    prefix = "#py " if python_device else ""
    return [
        f"{prefix}ConfigGroup,{group},{name},{label},{prop},{separator.join(str(i) for i in shots[name])}"
        for name in cfg.shot_names
    ]
