"""Make docs/figures/napari.png: a store opened in a real napari window through this plugin.

Needs an X server with OpenGL (napari draws with it); without a display use Xvfb::

    xvfb-run -a python -m nstm_acquire.napari.screenshot runs/demo_dpc.zarr docs/figures/napari.png

It opens the store with the plugin's reader, shows the NSTM scene at the last window's last render
time with the motion arrows, docks the acquisition panel (``--panel``) and saves the window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["grab_napari"]


def grab_napari(store: str | Path, path: str | Path, size: tuple[int, int] = (1500, 900), panel: bool = False) -> Path:
    """Open ``store`` in a napari window of ``size`` (width, height) px and save its picture."""
    import napari

    viewer = napari.Viewer(show=True, title=f"napari: {Path(store).name}")
    viewer.window._qt_window.resize(*size)
    layers = viewer.open(str(store), plugin="nstm-acquire")
    if not layers:
        raise RuntimeError(f"the plugin opened no layer from {store}")
    if panel:
        from nstm_acquire.napari.widget import make_panel

        viewer.window.add_dock_widget(make_panel(viewer), name="nstm-acquire", area="right")
    # the newest state: last window, last render time of its shots
    viewer.dims.set_current_step(0, viewer.dims.nsteps[0] - 1)
    viewer.dims.set_current_step(1, viewer.dims.nsteps[1] - 1)
    viewer.scale_bar.visible = True
    for _ in range(5):  # let the dock take its width before fitting the view
        napari.qt.get_qapp().processEvents()
    viewer.reset_view()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        viewer.window._qt_window.repaint()
        napari.qt.get_qapp().processEvents()
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/figures/napari.png"))
    parser.add_argument("--panel", action="store_true", help="dock the acquisition panel too")
    args = parser.parse_args(argv)
    print(f"wrote {grab_napari(args.store, args.out, panel=args.panel)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
