"""The acquisition panel as a napari dock widget.

:func:`make_panel` is the npe2 widget command: napari calls it with its viewer. The panel is
:class:`~nstm_acquire.gui.panel.NstmAcquirePanel` (pass ``mmcore=`` to drive a host's core, e.g.
napari-micromanager's ``CMMCorePlus.instance()``), compact: napari's canvas replaces the panel's
camera and reconstruction views. While a run goes on, the store's layers appear in the viewer
when the first window is reconstructed and grow with every further one (the layers are updated
in place, so visibility and contrast chosen by the user stay); the run's end updates them once
more.
"""

from __future__ import annotations

from typing import Any

from nstm_acquire.gui.panel import NstmAcquirePanel
from nstm_acquire.napari.reader import read_store

__all__ = ["make_panel", "open_store_in_viewer"]


def open_store_in_viewer(viewer: Any, store: str) -> list[Any]:
    """Show the layers of ``store`` in ``viewer``: a layer of the same name and type gets the new
    data, scale and translation (its display settings stay), others are added."""
    shown = []
    for data, kwargs, layer_type in read_store(store):
        name = kwargs["name"]
        layer = viewer.layers[name] if name in viewer.layers else None
        if layer is not None and type(layer).__name__.lower() == layer_type:
            layer.data = data
            layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
        else:
            if layer is not None:
                viewer.layers.remove(name)
            layer = getattr(viewer, f"add_{layer_type}")(data, **kwargs)
        shown.append(layer)
    return shown


def make_panel(napari_viewer: Any, mmcore: Any | None = None, **panel_options: Any) -> NstmAcquirePanel:
    """The panel for ``napari_viewer``; ``mmcore`` and ``panel_options`` go to
    :class:`~nstm_acquire.gui.panel.NstmAcquirePanel` (``config``, ``out_dir``, ...)."""
    panel = NstmAcquirePanel(mmcore=mmcore, **panel_options)
    panel.camera.hide()  # napari's canvas shows the store
    panel.recon.hide()
    panel.tools.set_compact(True)

    def _show_window(store: str, w: int) -> None:
        open_store_in_viewer(napari_viewer, store)

    def _show_run(summary: Any) -> None:
        store = getattr(summary, "store", None)
        if store and summary.windows_complete:
            open_store_in_viewer(napari_viewer, str(store))

    panel.window_reconstructed.connect(_show_window)
    panel.run_finished.connect(_show_run)
    panel.napari_viewer = napari_viewer  # type: ignore[attr-defined]
    return panel
