"""Small widgets of the panel: an aspect-keeping image view."""

from __future__ import annotations

from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QPainter, QPixmap
from PyQt6.QtWidgets import QSizePolicy, QWidget

__all__ = ["ImageView"]


class ImageView(QWidget):
    """Shows one picture (a composed ``QPixmap``) as large as fits, keeping its aspect ratio.

    ``placeholder`` is drawn while there is no picture.
    """

    def __init__(self, parent: QWidget | None = None, *, placeholder: str = "no image yet") -> None:
        super().__init__(parent)
        self._pixmap = QPixmap()
        self._placeholder = placeholder
        self.setMinimumSize(240, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_pixmap(self, pixmap: QPixmap) -> None:
        """Show ``pixmap`` (drawn scaled to the widget, aspect kept)."""
        self._pixmap = QPixmap(pixmap)
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        """Remove the picture; show ``placeholder`` (default: the current one) instead."""
        self._pixmap = QPixmap()
        if placeholder is not None:
            self._placeholder = placeholder
        self.update()

    def pixmap(self) -> QPixmap:
        """The picture shown (a null pixmap when there is none)."""
        return QPixmap(self._pixmap)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(440, 440)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        return False

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), QColor(24, 24, 24))
            if self._pixmap.isNull():
                painter.setPen(QColor(160, 160, 160))
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
                return
            size = self._pixmap.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
            x = (self.width() - size.width()) / 2
            y = (self.height() - size.height()) / 2
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawPixmap(QRectF(x, y, size.width(), size.height()), self._pixmap, QRectF(self._pixmap.rect()))
        finally:
            painter.end()
