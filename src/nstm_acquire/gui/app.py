"""``nstm-acquire gui``: open the panel in its own window and run the Qt event loop."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["run_gui"]


def run_gui(config: Path | None = None, out_dir: Path = Path("runs")) -> int:
    """Show :class:`~nstm_acquire.gui.panel.NstmAcquirePanel` and run until it is closed.

    ``config`` is a hardware configuration YAML (None: the simulated microscope), ``out_dir``
    the folder for new stores. Creates the ``QApplication`` if there is none yet. Returns the
    event loop's exit code (0 when the window was closed normally).
    """
    from PyQt6.QtWidgets import QApplication

    from nstm_acquire.gui.panel import NstmAcquirePanel
    from nstm_acquire.nstm.compile_cache import enable_compilation_cache

    enable_compilation_cache()  # later sessions start reconstructing without recompiling
    app = QApplication.instance()
    own_app = app is None
    if own_app:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("nstm-acquire")
    panel = NstmAcquirePanel(config=config, out_dir=out_dir)
    panel.resize(1400, 760)
    panel.show()
    code = int(app.exec())
    panel.shutdown()  # idempotent: closing the window already did it
    return code
