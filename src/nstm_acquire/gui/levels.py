"""Contrast (display levels) control shared by the panel's image views.

:class:`LevelsControl`: "auto" (the 0.5-99.5 percentiles of what is shown, the default) or a
fixed low/high in the image's own unit (camera counts, rad, density), typed or kept from the
last automatic levels when "auto" is unticked.
"""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

__all__ = ["LevelsControl"]


class LevelsControl(QWidget):
    """Auto or manual display limits; :attr:`changed` fires when the user changes them."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None, unit: str = "") -> None:
        super().__init__(parent)
        self.auto_check = QCheckBox("auto levels")
        self.auto_check.setChecked(True)
        self.auto_check.setToolTip("display from the 0.5th to the 99.5th percentile of the image")
        self.low_spin, self.high_spin = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, what in ((self.low_spin, "black"), (self.high_spin, "white")):
            spin.setRange(-1e9, 1e9)
            spin.setDecimals(4)
            spin.setKeyboardTracking(False)
            spin.setEnabled(False)
            spin.setToolTip(f"value shown {what}{f' ({unit})' if unit else ''}")
            spin.valueChanged.connect(self._manual_changed)
        self.auto_check.toggled.connect(self._auto_toggled)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Levels"))
        layout.addWidget(self.auto_check)
        layout.addWidget(self.low_spin, 1)
        layout.addWidget(QLabel("…"))
        layout.addWidget(self.high_spin, 1)

    @property
    def auto(self) -> bool:
        """Whether the levels follow each image."""
        return self.auto_check.isChecked()

    def set_manual(self, low: float, high: float) -> None:
        """Fix the levels at ``low`` … ``high`` (``high > low``)."""
        if not high > low:
            raise ValueError(f"levels {low} … {high}: the white level must be above the black level")
        self.auto_check.setChecked(False)
        for spin, value in ((self.low_spin, low), (self.high_spin, high)):
            spin.blockSignals(True)
            spin.setValue(float(value))
            spin.blockSignals(False)
        self.changed.emit()

    def limits(self, automatic: tuple[float, float]) -> tuple[float, float]:
        """The limits to display with: ``automatic`` in auto mode (also shown in the boxes),
        else the boxes' values (``automatic`` if they do not make a range)."""
        if self.auto:
            for spin, value in ((self.low_spin, automatic[0]), (self.high_spin, automatic[1])):
                spin.blockSignals(True)
                spin.setValue(float(value))
                spin.blockSignals(False)
            return automatic
        low, high = self.low_spin.value(), self.high_spin.value()
        return (low, high) if high > low else automatic

    def _auto_toggled(self, auto: bool) -> None:
        self.low_spin.setEnabled(not auto)
        self.high_spin.setEnabled(not auto)
        self.changed.emit()

    def _manual_changed(self, *_: float) -> None:
        if not self.auto:
            self.changed.emit()
