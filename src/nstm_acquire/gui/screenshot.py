"""Make docs/figures/gui.png: a real run on the simulated microscope, grabbed from the panel.

Run (no display needed)::

    QT_QPA_PLATFORM=offscreen python -m nstm_acquire.gui.screenshot docs/figures/gui.png

It acquires ``--windows`` windows of ``--modality`` (default DPC) on the default simulated
microscope (128 x 128 pixels, moving cells or beads, real-time camera), reconstructs them near-live with the default NSTM
configuration, waits until the last window's NSTM result is shown and saves ``widget.grab()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["grab_microscope_tab", "grab_panel_after_run"]


def grab_microscope_tab(path: str | Path, size: tuple[int, int] = (1400, 760), preset: str = "top") -> Path:
    """Save the panel's Microscope tab after a Snap with ``preset`` of the simulated microscope's
    first configuration group (its DPC LED patterns), the focus moved by +2 µm."""
    from PyQt6.QtWidgets import QApplication

    from nstm_acquire.gui.panel import NstmAcquirePanel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    panel = NstmAcquirePanel()
    panel.resize(*size)
    panel.show()
    tools = panel.tools
    group = next(iter(tools.group_boxes))
    tools.set_preset(group, preset)
    tools.z_step.setValue(2.0)
    tools.z_up.click()
    if tools.snap() is None:
        raise RuntimeError(f"snap failed: {tools.caption.text()}")
    panel.tabs.setCurrentWidget(tools)
    return _save_and_close(app, panel, path)


def grab_panel_after_run(
    path: str | Path,
    n_windows: int = 4,
    size: tuple[int, int] = (1400, 760),
    timeout_s: float = 600.0,
    config: object | None = None,
    nstm_config: object | None = None,
    modality: str = "dpc",
) -> Path:
    """Run ``n_windows`` windows of ``modality`` in a fresh panel, then save its picture (PNG).

    ``size`` is the panel's (width, height) in pixels; ``config`` the hardware configuration
    (default: the simulated one); ``nstm_config`` the NSTM configuration (default: default).
    Raises RuntimeError if the run does not end within ``timeout_s`` seconds or fails.
    """
    from PyQt6.QtWidgets import QApplication

    from nstm_acquire.gui.panel import NstmAcquirePanel

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="nstm-gui-") as tmp:
        panel = NstmAcquirePanel(config=config, out_dir=tmp, nstm_config=nstm_config)
        panel.resize(*size)
        panel.show()
        form = panel.settings
        if form.modality_box.findText(modality) < 0:
            raise ValueError(f"modality={modality!r} is not offered by this configuration")
        form.modality_box.setCurrentText(modality)
        form.windows_spin.setValue(n_windows)
        form.store_name_edit.setText(f"{modality}-demo")
        ended: list[object] = []
        panel.run_finished.connect(ended.append)
        if not panel.start():
            raise RuntimeError("the panel could not start: " + panel.status.last_message())
        deadline = time.monotonic() + timeout_s
        while not ended and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        if not ended:
            panel.shutdown()
            raise RuntimeError(f"the run did not end within {timeout_s} s")
        summary = ended[0]
        if getattr(summary, "status", None) != "completed":
            raise RuntimeError(f"the run ended {getattr(summary, 'status', '?')}: {panel.status.log.toPlainText()}")
        return _save_and_close(app, panel, path)


def _save_and_close(app: Any, panel: Any, path: str | Path) -> Path:
    """Let the last repaints happen, write the panel's PNG at ``path`` and close the panel."""
    for _ in range(5):
        app.processEvents()
        time.sleep(0.02)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(path), "PNG"):
        raise RuntimeError(f"could not write {path}")
    panel.shutdown()
    panel.deleteLater()
    app.processEvents()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/figures/gui.png"))
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--modality", choices=["dpc", "sim2d", "sim3d"], default="dpc")
    parser.add_argument("--tab", choices=["run", "microscope"], default="run",
                        help="run: after a run (default); microscope: the Microscope tab after a Snap")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.tab == "microscope":
        path = grab_microscope_tab(args.out)
    else:
        path = grab_panel_after_run(args.out, n_windows=args.windows, modality=args.modality)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
