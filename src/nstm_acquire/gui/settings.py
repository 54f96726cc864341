"""The run-settings form of the panel: hardware, modality, windows, timing, output, Start/Pause/Stop.

:class:`RunSettings` only holds and validates what the user typed; it knows nothing of runs.
The panel fills it from the microscope (:meth:`RunSettings.show_config`,
:meth:`RunSettings.show_setup`), reads it when a run starts (:meth:`RunSettings.plan`,
:meth:`RunSettings.store_path`, :meth:`RunSettings.policy`) and enables its controls
(:meth:`RunSettings.set_state`).
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

__all__ = ["RunSettings"]

_STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _row(*widgets: QWidget, stretch_first: bool = True) -> QHBoxLayout:
    row = QHBoxLayout()
    for i, w in enumerate(widgets):
        row.addWidget(w, 1 if (i == 0 and stretch_first) else 0)
    return row


class RunSettings(QGroupBox):
    """The acquisition settings and the Start / Pause / Stop buttons.

    Signals: ``config_chosen(Path)`` (a YAML picked with Browse…), ``modality_changed(str)``;
    the buttons (:attr:`start_button`, :attr:`pause_button` (checkable), :attr:`stop_button`)
    are connected by the panel.
    """

    config_chosen = pyqtSignal(object)
    modality_changed = pyqtSignal(str)

    def __init__(self, out_dir: Path, policy: str, parent: QWidget | None = None) -> None:
        super().__init__("Acquisition", parent)
        self._config_dir = ""
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self._build_hardware_rows(form)
        self._build_timing_rows(form)
        self._build_output_rows(form, out_dir, policy)
        self._build_buttons(form)
        self._inputs: list[QWidget] = [
            self.config_button, self.modality_box, self.windows_spin, self.interval_spin,
            self.exposure_spin, self.planes_row, self.policy_box, self.out_dir_edit,
            self.out_dir_button, self.store_name_edit,
        ]  # fmt: skip

    # ------------------------------------------------------------- building
    def _build_hardware_rows(self, form: QFormLayout) -> None:
        self.config_edit = QLineEdit()
        self.config_edit.setReadOnly(True)
        self.config_edit.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.config_button = QPushButton("Browse…")
        self.config_button.setToolTip("choose a hardware configuration YAML (hardware_configs/)")
        self.config_button.clicked.connect(self._browse_config)
        form.addRow("Hardware", _row(self.config_edit, self.config_button))
        self.modality_box = QComboBox()
        self.modality_box.currentTextChanged.connect(self.modality_changed)
        form.addRow("Modality", self.modality_box)
        self.patterns_label = QLabel("–")
        self.patterns_label.setWordWrap(True)
        self.patterns_label.setToolTip("the illumination patterns (shots) of one window, in order")
        form.addRow("Patterns", self.patterns_label)

    def _build_timing_rows(self, form: QFormLayout) -> None:
        self.windows_spin = QSpinBox()
        self.windows_spin.setRange(1, 1_000_000)
        self.windows_spin.setValue(4)
        self.windows_spin.setToolTip("number of windows (time points); each window takes every pattern once")
        form.addRow("Windows", self.windows_spin)
        self.interval_spin = _double_spin(0.0, 86_400.0, 3, " s", "start-to-start period of windows; 0 acquires "
                                          "them back to back")  # fmt: skip
        self.interval_spin.setSpecialValueText("0 s (back to back)")
        form.addRow("Interval", self.interval_spin)
        self.exposure_spin = _double_spin(0.01, 100_000.0, 2, " ms", "exposure of every shot")
        form.addRow("Exposure", self.exposure_spin)
        self.planes_spin = QSpinBox()
        self.planes_spin.setRange(2, 512)
        self.planes_spin.setValue(8)
        self.z_step_spin = _double_spin(0.001, 100.0, 3, " µm", "")
        self.z_step_spin.setValue(0.25)
        row = _row(self.planes_spin, QLabel("step"), self.z_step_spin, stretch_first=False)
        row.setContentsMargins(0, 0, 0, 0)
        self.planes_row = QWidget()
        self.planes_row.setLayout(row)
        self.planes_row.setToolTip("SIM 3D only: planes per stack and their spacing")
        form.addRow("Planes", self.planes_row)

    def _build_output_rows(self, form: QFormLayout, out_dir: Path, policy: str) -> None:
        self.policy_box = QComboBox()
        self.policy_box.addItem("every window, in order", "all")
        self.policy_box.addItem("newest window only", "newest")
        self.policy_box.setCurrentIndex(0 if policy == "all" else 1)
        self.policy_box.setToolTip(
            "when reconstruction is slower than acquisition: reconstruct every window (the lag "
            "grows) or always the newest (older waiting windows are skipped)"
        )
        form.addRow("Reconstruct", self.policy_box)
        self.out_dir_edit = QLineEdit(str(out_dir))
        self.out_dir_button = QPushButton("Browse…")
        self.out_dir_button.clicked.connect(self._browse_out_dir)
        form.addRow("Output folder", _row(self.out_dir_edit, self.out_dir_button))
        self.store_name_edit = QLineEdit()
        self.store_name_edit.setPlaceholderText("automatic: <modality>-<date>-<time>")
        self.store_name_edit.setToolTip("name of the new Zarr store (.zarr is added); it must not exist yet")
        form.addRow("Store name", self.store_name_edit)

    def _build_buttons(self, form: QFormLayout) -> None:
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("acquire and reconstruct every window as it completes")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("pause the acquisition between frames (reconstruction goes on)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("cancel the acquisition and stop the reconstruction; stored frames stay")
        form.addRow(_row(self.start_button, self.pause_button, self.stop_button, stretch_first=False))

    # ---------------------------------------------------------------- filling
    def show_config(self, cfg: Any) -> None:
        """Show a :class:`~nstm_acquire.hardware.config.HardwareConfig` and offer its modalities.

        Selects the first modality (``modality_changed`` is emitted once for it).
        """
        where = cfg.source_path
        self.config_edit.setText(Path(where).name if where is not None else f"{cfg.name} (in memory)")
        self.config_edit.setCursorPosition(0)
        self.config_edit.setToolTip(f"{cfg.name}: {where if where is not None else '(given in code)'}")
        self._config_dir = str(Path(where).parent) if where is not None else ""
        self.modality_box.blockSignals(True)
        self.modality_box.clear()
        self.modality_box.addItems(cfg.available_modalities())
        self.modality_box.setCurrentIndex(0)
        self.modality_box.blockSignals(False)
        self.modality_changed.emit(self.modality_box.currentText())

    def show_setup(self, setup: Any | None) -> None:
        """Show a modality's :class:`~nstm_acquire.hardware.microscope.ModalitySetup` (None: not ready)."""
        if setup is None:
            self.patterns_label.setText("–")
            return
        self.patterns_label.setText(f"{setup.n_shots} shots: {', '.join(setup.shot_names)}")
        self.exposure_spin.setValue(float(setup.exposure_ms))
        if self.modality() == "sim3d" and setup.optics.z_step_um:
            self.z_step_spin.setValue(float(setup.optics.z_step_um))

    def set_state(self, *, can_start: bool, idle: bool, can_pause: bool, can_stop: bool) -> None:
        """Enable the buttons, and the inputs only while no run goes on."""
        self.start_button.setEnabled(can_start)
        self.pause_button.setEnabled(can_pause)
        self.stop_button.setEnabled(can_stop)
        for w in self._inputs:
            w.setEnabled(idle)
        if idle:
            self.planes_row.setEnabled(self.modality() == "sim3d")

    def show_paused(self, paused: bool) -> None:
        """Check the Pause button (labelled Resume) or uncheck it, without emitting ``toggled``."""
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.blockSignals(False)

    # ---------------------------------------------------------------- reading
    def modality(self) -> str:
        return self.modality_box.currentText()

    def policy(self) -> str:
        """``"all"`` or ``"newest"``."""
        return str(self.policy_box.currentData())

    def plan(self) -> Any:
        """The :class:`~nstm_acquire.acquire.sequences.AcquisitionPlan` the controls describe.

        Raises ValueError (pydantic's ValidationError) naming the bad field.
        """
        from nstm_acquire.acquire.sequences import AcquisitionPlan

        modality = self.modality()
        kw: dict[str, Any] = {
            "modality": modality,
            "n_windows": self.windows_spin.value(),
            "window_interval_s": self.interval_spin.value(),
            "exposure_ms": self.exposure_spin.value(),
        }
        if modality == "sim3d":
            kw["n_planes"] = self.planes_spin.value()
            kw["z_step_um"] = self.z_step_spin.value()
        return AcquisitionPlan(**kw)

    def store_path(self) -> Path:
        """Where the next run's store goes (the name field, or an automatic name)."""
        out_dir = self.out_dir_edit.text().strip()
        if not out_dir:
            raise ValueError("output folder is empty: choose a folder for the store")
        name = self.store_name_edit.text().strip()
        if not name:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            name = f"{self.modality() or 'run'}-{stamp}"
        name = name.removesuffix(".zarr")
        if not _STORE_NAME.match(name):
            raise ValueError(
                f"store name {name!r}: use letters, digits, '.', '_' and '-' only (no folders or spaces)"
            )
        return Path(out_dir).expanduser() / f"{name}.zarr"

    # ---------------------------------------------------------------- dialogs
    def _browse_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Hardware configuration", self._config_dir, "YAML (*.yaml *.yml)")
        if path:
            self.config_chosen.emit(Path(path))

    def _browse_out_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder", self.out_dir_edit.text())
        if path:
            self.out_dir_edit.setText(path)


def _double_spin(low: float, high: float, decimals: int, suffix: str, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(decimals)
    spin.setSuffix(suffix)
    if tip:
        spin.setToolTip(tip)
    return spin
