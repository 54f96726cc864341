"""The camera view of the panel: the newest stored frame, read back from the store.

Frames are announced by the acquisition thread (``frame_stored(w, s, z, t_s)``); the view only
notes the newest (:meth:`CameraView.note_frame`) and reads it from the store when the panel's
timer asks (:meth:`CameraView.refresh`), so at most one frame per refresh is read and drawn,
however fast the camera runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PyQt6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from nstm_acquire.gui.images import compose_pixmap, display_limits
from nstm_acquire.gui.levels import LevelsControl
from nstm_acquire.gui.views import ImageView

__all__ = ["CameraView", "FrameSource"]


@dataclass
class FrameSource:
    """Where a run's frames are, and how to label them."""

    store: Path
    shot_names: list[str]
    n_planes: int
    pixel_size_um: float


class CameraView(QGroupBox):
    """The newest stored camera frame (:attr:`view`) and what it is (:attr:`caption`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Camera: latest stored frame", parent)
        layout = QVBoxLayout(self)
        self.view = ImageView(placeholder="no frame yet")
        self.caption = QLabel("–")
        self.caption.setWordWrap(True)
        self.levels = LevelsControl(unit="counts")
        self.levels.changed.connect(self._redraw)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.levels)
        self._source: FrameSource | None = None
        self._reader: Any = None
        self._latest: tuple[int, int, int, float] | None = None
        self._shown: tuple[int, int, int, float] | None = None
        self._last_error = ""

    def begin(self, source: FrameSource) -> None:
        """A new run: forget the previous one's frames."""
        self._source, self._reader = source, None
        self._latest = self._shown = None
        self._last_error = ""
        self.view.clear("waiting for the first frame")
        self.caption.setText("–")

    def note_frame(self, w: int, s: int, z: int, t_s: float) -> None:
        """Frame (window ``w``, shot ``s``, plane ``z``, exposure start ``t_s``, s) is in the store."""
        self._latest = (w, s, z, t_s)

    def _redraw(self) -> None:
        """The levels changed: draw the newest frame again."""
        self._shown = None
        self.refresh()

    def refresh(self) -> str | None:
        """Draw the newest frame if it is not shown yet; returns a new problem to report, else None.

        A frame that cannot be read is skipped (the run goes on); the same problem is reported once.
        """
        latest, source = self._latest, self._source
        if latest is None or latest == self._shown or source is None:
            return None
        w, s, z, t_s = latest
        try:
            if self._reader is None:
                from nstm_acquire.store import StoreReader

                self._reader = StoreReader(source.store)
            frame = self._reader.frame(w, s, z)
        except Exception as err:  # noqa: BLE001 - the view skips a frame, the run goes on
            from nstm_acquire.gui.status import one_line

            text = f"live view: {one_line(err)}"
            if text == self._last_error:
                return None
            self._last_error = text
            return text
        self._shown = latest
        limits = self.levels.limits(display_limits(frame))
        pixmap, _ = compose_pixmap(frame, limits, pixel_size_um=source.pixel_size_um)
        self.view.set_pixmap(pixmap)
        name = source.shot_names[s] if 0 <= s < len(source.shot_names) else str(s)
        plane = f", plane {z}" if source.n_planes > 1 else ""
        self.caption.setText(
            f"window {w}, shot {s} ({name}){plane}, t = {t_s:.3f} s\n"
            f"{frame.shape[1]} x {frame.shape[0]} px, display {limits[0]:.0f}–{limits[1]:.0f} counts"
        )
        return None
