"""The microscope's own tools in the panel: find and focus a field before a run.

:class:`MicroscopeTools` works on the pymmcore-plus core of the panel's microscope (simulated or
real): Snap and Live into a preview with its own levels, focus (z) and, where the configuration
has one, XY stage moves in µm, the exposure (pymmcore-widgets' ``ExposureWidget``), the
configuration groups (one preset box per group) and every device property in a table.

pymmcore-widgets' buttons, stage widget and property browser are not used: they fetch their
icons from the internet when first shown (a microscope PC is often offline: the stage widget
then fails, the property browser waits on every icon). Its ``GroupPresetTableWidget`` is not
used either: with pymmcore-plus 0.18's Python-device core it raises on the property changes of
every acquisition.
Live snaps one image every ``live_interval_ms`` on the GUI thread (exposures of a few ms to a
few hundred ms), so it needs nothing from the camera beyond ``snapImage``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from nstm_acquire.gui.images import compose_pixmap, display_limits
from nstm_acquire.gui.levels import LevelsControl
from nstm_acquire.gui.views import ImageView

__all__ = ["MicroscopeTools"]


class MicroscopeTools(QWidget):
    """Snap / Live preview, focus and stage, exposure, configuration groups, properties.

    Parameters
    ----------
    parent
        Parent widget.
    mmcore
        The core to drive (None: the tools stay disabled until :meth:`set_core`).
    pixel_size_um
        Camera pixel size referred to the sample, µm, for the preview's scale bar.
    live_interval_ms
        Period of Live, ms.
    """

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        mmcore: Any | None = None,
        pixel_size_um: float | None = None,
        live_interval_ms: int = 100,
    ) -> None:
        super().__init__(parent)
        self._core: Any = None
        self._pixel_size_um = pixel_size_um
        self._frame: np.ndarray | None = None
        self.snap_button = QPushButton("Snap")
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.preview = ImageView(placeholder="Snap or Live to see the camera")
        self.caption = QLabel("–")
        self.levels = LevelsControl(unit="counts")
        self.z_spin = _um_spin("focus position, µm")
        self.z_step = _um_spin("focus step, µm", 1.0)
        self.z_up, self.z_down = QPushButton("z +"), QPushButton("z −")
        self.xy_spins = (_um_spin("stage y, µm"), _um_spin("stage x, µm"))
        self.xy_step = _um_spin("stage step, µm", 10.0)
        self.xy_buttons = {name: QPushButton(name) for name in ("y −", "y +", "x −", "x +")}
        self.properties = QTableWidget(0, 3)
        self.properties.setHorizontalHeaderLabels(["device", "property", "value"])
        self.properties.horizontalHeader().setStretchLastSection(True)
        self.properties.verticalHeader().setVisible(False)
        self._extra: list[QWidget] = []  # pymmcore-widgets made for the current core
        self._extra_box = QVBoxLayout()
        self.groups = QFormLayout()
        self.group_boxes: dict[str, QComboBox] = {}
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(int(live_interval_ms))
        self._live_timer.timeout.connect(self.snap)
        self._build()
        self.set_core(mmcore, pixel_size_um)

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.snap_button)
        buttons.addWidget(self.live_button)
        view = QGroupBox("Camera preview")
        v = QVBoxLayout(view)
        v.addLayout(buttons)
        v.addWidget(self.preview, 1)
        v.addWidget(self.caption)
        v.addWidget(self.levels)
        stage = QGroupBox("Focus and stage")
        g = QGridLayout(stage)
        g.addWidget(QLabel("z (µm)"), 0, 0)
        g.addWidget(self.z_spin, 0, 1)
        g.addWidget(self.z_down, 0, 2)
        g.addWidget(self.z_up, 0, 3)
        g.addWidget(QLabel("step"), 0, 4)
        g.addWidget(self.z_step, 0, 5)
        g.addWidget(QLabel("y, x (µm)"), 1, 0)
        g.addWidget(self.xy_spins[0], 1, 1)
        g.addWidget(self.xy_spins[1], 1, 2)
        for i, name in enumerate(("y −", "y +", "x −", "x +")):
            g.addWidget(self.xy_buttons[name], 2, 1 + i)
        g.addWidget(QLabel("step"), 1, 4)
        g.addWidget(self.xy_step, 1, 5)
        settings = QGroupBox("Exposure and configuration groups")
        settings.setLayout(self._extra_box)
        self._extra_box.addLayout(self.groups)
        props = QGroupBox("Device properties")
        QVBoxLayout(props).addWidget(self.properties)
        layout = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self._main_layout = layout
        layout.addWidget(view, 1)
        right = QVBoxLayout()
        right.addWidget(stage)
        right.addWidget(settings)
        right.addWidget(props, 1)
        layout.addLayout(right, 1)
        self.snap_button.clicked.connect(self.snap)
        self.live_button.toggled.connect(self.set_live)
        self.levels.changed.connect(self._draw)
        self.z_spin.valueChanged.connect(self._z_typed)
        self.z_up.clicked.connect(lambda: self.move_z(self.z_step.value()))
        self.z_down.clicked.connect(lambda: self.move_z(-self.z_step.value()))
        for name, button in self.xy_buttons.items():
            sign = 1.0 if name.endswith("+") else -1.0
            axis = 0 if name.startswith("y") else 1
            button.clicked.connect(lambda _=False, a=axis, s=sign: self.move_xy(a, s * self.xy_step.value()))
        for spin in self.xy_spins:
            spin.valueChanged.connect(self._xy_typed)
        self.properties.itemChanged.connect(self._property_edited)

    def set_compact(self, compact: bool) -> None:
        """Preview above the controls (``True``: for a narrow dock) or beside them."""
        direction = QBoxLayout.Direction.TopToBottom if compact else QBoxLayout.Direction.LeftToRight
        self._main_layout.setDirection(direction)

    # ------------------------------------------------------------------ core
    @property
    def core(self) -> Any:
        """The core in use (None if none)."""
        return self._core

    def set_core(self, mmcore: Any | None, pixel_size_um: float | None = None) -> None:
        """Drive ``mmcore`` (a CMMCorePlus) from now on; None disables the tools."""
        from pymmcore_widgets import ExposureWidget

        self.set_live(False)
        for widget in self._extra:
            self._extra_box.removeWidget(widget)
            widget.deleteLater()
        self._extra = []
        while self.groups.rowCount():
            self.groups.removeRow(0)
        self.group_boxes = {}
        self._core = mmcore
        if pixel_size_um is not None:
            self._pixel_size_um = pixel_size_um
        self.setEnabled(mmcore is not None)
        if mmcore is None:
            return
        self._extra = [ExposureWidget(mmcore=mmcore)]
        self._extra_box.insertWidget(0, self._extra[0])
        self.fill_groups()
        has_z = bool(mmcore.getFocusDevice())
        for w in (self.z_spin, self.z_step, self.z_up, self.z_down):
            w.setEnabled(has_z)
        has_xy = bool(mmcore.getXYStageDevice())
        for w in (*self.xy_spins, self.xy_step, *self.xy_buttons.values()):
            w.setEnabled(has_xy)
        self.show_positions()
        self.fill_properties()

    def set_pixel_size(self, pixel_size_um: float | None) -> None:
        """Camera pixel size referred to the sample, µm (the preview's scale bar)."""
        self._pixel_size_um = pixel_size_um

    def show_positions(self) -> None:
        """Read the focus and stage positions into the boxes."""
        core = self._core
        if core is None:
            return
        if core.getFocusDevice():
            _quiet_set(self.z_spin, core.getPosition())
        if core.getXYStageDevice():
            x, y = core.getXYPosition()
            _quiet_set(self.xy_spins[0], y)
            _quiet_set(self.xy_spins[1], x)

    def move_z(self, delta_um: float) -> None:
        """Move the focus by ``delta_um`` (µm)."""
        core = self._core
        core.setPosition(core.getPosition() + float(delta_um))
        core.waitForDevice(core.getFocusDevice())
        self.show_positions()

    def move_xy(self, axis: int, delta_um: float) -> None:
        """Move the XY stage by ``delta_um`` (µm) along ``axis`` (0 = y, 1 = x)."""
        core = self._core
        x, y = core.getXYPosition()
        core.setXYPosition(x + (delta_um if axis == 1 else 0.0), y + (delta_um if axis == 0 else 0.0))
        core.waitForDevice(core.getXYStageDevice())
        self.show_positions()

    def _z_typed(self, value: float) -> None:
        if self._core is not None and self._core.getFocusDevice():
            self._core.setPosition(float(value))

    def _xy_typed(self, *_: float) -> None:
        if self._core is not None and self._core.getXYStageDevice():
            self._core.setXYPosition(self.xy_spins[1].value(), self.xy_spins[0].value())

    # ------------------------------------------------------------ groups
    def fill_groups(self) -> None:
        """One box per configuration group, showing its current preset; choosing one applies it."""
        core = self._core
        while self.groups.rowCount():
            self.groups.removeRow(0)
        self.group_boxes = {}
        for group in core.getAvailableConfigGroups():
            box = QComboBox()
            box.addItems(list(core.getAvailableConfigs(group)))
            box.setCurrentText(core.getCurrentConfig(group))
            box.textActivated.connect(lambda preset, g=group: self.set_preset(g, preset))
            self.groups.addRow(group, box)
            self.group_boxes[group] = box

    def set_preset(self, group: str, preset: str) -> None:
        """Apply ``preset`` of configuration ``group``."""
        self._core.setConfig(group, preset)
        self._core.waitForConfig(group, preset)
        self.group_boxes[group].setCurrentText(preset)
        self.fill_properties()

    # ------------------------------------------------------------ properties
    def fill_properties(self) -> None:
        """List every device property; read-only ones cannot be edited."""
        from PyQt6.QtCore import Qt

        core = self._core
        rows = [
            (device, prop, core.getProperty(device, prop), core.isPropertyReadOnly(device, prop))
            for device in core.getLoadedDevices()
            for prop in core.getDevicePropertyNames(device)
        ]
        self.properties.blockSignals(True)
        self.properties.setRowCount(len(rows))
        for r, (device, prop, value, read_only) in enumerate(rows):
            for c, text in enumerate((device, prop, str(value))):
                item = QTableWidgetItem(text)
                if c < 2 or read_only:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.properties.setItem(r, c, item)
        self.properties.resizeColumnsToContents()
        self.properties.blockSignals(False)

    def _property_edited(self, item: QTableWidgetItem) -> None:
        if item.column() != 2 or self._core is None:
            return
        device = self.properties.item(item.row(), 0).text()
        prop = self.properties.item(item.row(), 1).text()
        try:
            self._core.setProperty(device, prop, item.text())
            self.caption.setText(f"{device}.{prop} = {item.text()}")
        except Exception as err:  # noqa: BLE001 - shown to the user, the table shows the value again
            self.caption.setText(f"{device}.{prop}: {' '.join(str(err).split())}")
        self.properties.blockSignals(True)
        item.setText(str(self._core.getProperty(device, prop)))
        self.properties.blockSignals(False)

    # ------------------------------------------------------------ snap / live
    def snap(self) -> np.ndarray | None:
        """Take one image with the current settings and show it; returns it (None on failure)."""
        core = self._core
        if core is None:
            return None
        try:
            core.snapImage()
            frame = np.asarray(core.getImage())
        except Exception as err:  # noqa: BLE001 - shown to the user
            self.set_live(False)
            self.caption.setText(f"snap: {' '.join(str(err).split())}")
            return None
        self._frame = frame
        self._draw()
        return frame

    def set_live(self, live: bool) -> None:
        """Start (True) or stop (False) Live."""
        live = bool(live) and self._core is not None
        if self.live_button.isChecked() != live:
            self.live_button.blockSignals(True)
            self.live_button.setChecked(live)
            self.live_button.blockSignals(False)
        self.snap_button.setEnabled(not live)
        if live:
            self._live_timer.start()
        else:
            self._live_timer.stop()

    @property
    def is_live(self) -> bool:
        """Whether Live is on."""
        return self._live_timer.isActive()

    def _draw(self) -> None:
        frame = self._frame
        if frame is None:
            return
        limits = self.levels.limits(display_limits(frame))
        pixmap, _ = compose_pixmap(frame, limits, pixel_size_um=self._pixel_size_um)
        self.preview.set_pixmap(pixmap)
        exposure = self._core.getExposure() if self._core is not None else float("nan")
        self.caption.setText(
            f"{frame.shape[1]} x {frame.shape[0]} px, exposure {exposure:.3g} ms, "
            f"display {limits[0]:.0f}–{limits[1]:.0f} counts"
        )


def _um_spin(tip: str, value: float = 0.0) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(-1e6, 1e6)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setKeyboardTracking(False)
    spin.setToolTip(tip)
    return spin


def _quiet_set(spin: QDoubleSpinBox, value: float) -> None:
    spin.blockSignals(True)
    spin.setValue(float(value))
    spin.blockSignals(False)
