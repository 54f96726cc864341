"""PyQt6 panel: acquisition controls, live camera frame, near-live reconstruction view.

Open it with ``nstm-acquire gui`` (:func:`~nstm_acquire.gui.app.run_gui`) or embed
:class:`~nstm_acquire.gui.panel.NstmAcquirePanel` in another Qt application. See docs/gui.md.
Qt is imported only when these names are first used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NstmAcquirePanel", "run_gui"]


def __getattr__(name: str) -> Any:
    if name == "NstmAcquirePanel":
        from nstm_acquire.gui.panel import NstmAcquirePanel

        return NstmAcquirePanel
    if name == "run_gui":
        from nstm_acquire.gui.app import run_gui

        return run_gui
    raise AttributeError(f"module 'nstm_acquire.gui' has no attribute {name!r}")
