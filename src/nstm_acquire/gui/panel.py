"""The acquisition and live-reconstruction panel (PyQt6).

:class:`NstmAcquirePanel` lets a microscopist pick a hardware configuration and a modality,
set the windows, interval and exposure, choose where the store goes, and Start / Pause /
Stop an acquisition that is reconstructed window by window while it runs. It shows the latest
stored camera frame, the latest reconstruction (conventional preview first, then the NSTM,
with a channel selector, a time slider over the window's render times and the motion as
arrows) and the state of both (frames, windows, queue, lag, fit step and loss, errors).

Threads: the acquisition (:class:`~nstm_acquire.acquire.controller.AcquisitionController`)
and the reconstruction (:class:`~nstm_acquire.recon.worker.ReconstructionWorker`) run on their own
threads; their psygnal signals reach this widget through
:class:`~nstm_acquire.gui.bridge.SignalBridge` as queued Qt signals. The GUI thread never waits
for either while a run goes on: the end of the acquisition is noticed by polling
``controller.wait(0)`` on a timer (which also refreshes the camera view at most
``1000 / refresh_interval_ms`` times a second, reading the newest frame from the store).

Follows the pymmcore-widgets convention ``Widget(parent=None, *, mmcore=None)``.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from nstm_acquire.gui.bridge import SignalBridge
from nstm_acquire.gui.images import compose_pixmap, content_displacement, display_limits
from nstm_acquire.gui.views import ImageView

__all__ = ["NstmAcquirePanel", "channel_choices"]

_CONN = Qt.ConnectionType.QueuedConnection
_STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def channel_choices(modality: str, n_channels: int) -> list[tuple[str, int]]:
    """``(label, channel index)`` of a modality's scene channels, in the order to offer them.

    DPC: phase (rad) first, then absorption, at the indices of
    :attr:`~nstm_acquire.physics.dpc.forward.DpcForward.channel_names`; SIM: density. Channels the
    modality does not name are offered as ``channel k``.
    """
    if n_channels < 1:
        raise ValueError(f"n_channels={n_channels} must be at least 1")
    named: list[tuple[str, int]] = []
    if modality == "dpc":
        from nstm_acquire.physics.dpc.forward import DpcForward

        names = list(DpcForward.channel_names)
        for key, label in (("phase_rad", "phase (rad)"), ("absorption", "absorption")):
            if key in names and names.index(key) < n_channels:
                named.append((label, names.index(key)))
    elif modality in ("sim2d", "sim3d") and n_channels >= 1:
        named.append(("density", 0))
    used = {i for _, i in named}
    named += [(f"channel {i}", i) for i in range(n_channels) if i not in used]
    return named


@dataclass
class _Run:
    """Book-keeping of one acquisition + reconstruction run (GUI thread only)."""

    controller: Any
    worker: Any
    store_path: Path
    modality: str
    shot_names: list[str]
    n_windows: int
    n_planes: int
    pixel_size_um: float
    frame_width: int
    started_wall: float = field(default_factory=time.time)
    frames: int = 0
    complete_times: dict[int, float] = field(default_factory=dict)
    done: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    acquisition_done: bool = False
    input_closed: bool = False
    worker_finished: bool = False
    stop_requested: bool = False
    latest_frame: tuple[int, int, int, float] | None = None
    shown_frame: tuple[int, int, int, float] | None = None
    reader: Any = None
    live_view_error: str = ""
    fit_text: str = ""
    pause_frames: int = 0
    pause_frames_seen: int = 0
    pause_time: float = 0.0
    pause_noted: bool = False
    recon_errors: int = 0


@dataclass
class _Recon:
    """What the reconstruction view shows: a preview (T = 1) or an NSTM result."""

    window: int
    kind: str  # "preview" or "nstm"
    scene: np.ndarray  # (T, C, Z, Y, X)
    times_s: np.ndarray | None
    motion: np.ndarray | None  # (T, D, Z, Y, X), output pixels
    pixel_size_um: float | None
    note: str = ""
    limits: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)


class NstmAcquirePanel(QWidget):
    """Acquire DPC/SIM windows and watch them being reconstructed.

    Parameters
    ----------
    parent
        Parent widget.
    mmcore
        A pymmcore-plus core already configured for a *real* microscope (e.g. the host
        application's). Used with non-simulated hardware configurations instead of loading the
        configuration's ``.cfg``; the panel sets its timestamping MDA engine on it and never
        unloads it. A simulated configuration always builds its own simulated core.
    config
        Hardware configuration: a :class:`~nstm_acquire.hardware.config.HardwareConfig`, a YAML
        path, or None for ``hardware_configs/simulated.yaml``.
    out_dir
        Folder for new stores.
    nstm_config
        NSTM configuration of the live reconstruction (default
        :func:`~nstm_acquire.nstm.config.default_config`).
    policy
        Initial reconstruction policy, ``"all"`` or ``"newest"`` (see :mod:`nstm_acquire.recon.worker`).
    refresh_interval_ms
        Period of the status / camera-view refresh timer, ms (100 = at most 10 Hz).
    """

    run_started = pyqtSignal(str)
    """The store path of a run that has started."""
    run_finished = pyqtSignal(object)
    """The run's :class:`~nstm_acquire.acquire.controller.AcquisitionSummary` once acquisition
    and reconstruction have both ended."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        mmcore: Any | None = None,
        config: Any | None = None,
        out_dir: str | Path = "runs",
        nstm_config: Any | None = None,
        policy: str = "all",
        refresh_interval_ms: int = 100,
    ) -> None:
        super().__init__(parent)
        if policy not in ("all", "newest"):
            raise ValueError(f"policy={policy!r} must be 'all' or 'newest'")
        if refresh_interval_ms < 10:
            raise ValueError(f"refresh_interval_ms={refresh_interval_ms} must be at least 10 ms")
        from nstm_acquire.nstm.config import default_config

        self.setWindowTitle("nstm-acquire")
        self._mmcore = mmcore
        self._nstm_config = nstm_config or default_config()
        self._hardware_config: Any = None
        self._microscope: Any = None
        self._owns_microscope = False
        self._setups: dict[str, Any] = {}
        self._run: _Run | None = None
        self._recon: _Recon | None = None
        self.last_summary: Any = None

        self._bridge = SignalBridge(self)
        self._connect_bridge()
        self._build_ui(Path(out_dir), policy)

        self._timer = QTimer(self)
        self._timer.setInterval(int(refresh_interval_ms))
        self._timer.timeout.connect(self._tick)
        self._timer.start()

        self.set_hardware_config(config)

    # ================================================================== UI
    def _build_ui(self, out_dir: Path, policy: str) -> None:
        # ---- acquisition settings
        settings = QGroupBox("Acquisition")
        form = QFormLayout(settings)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.config_edit = QLineEdit()
        self.config_edit.setReadOnly(True)
        self.config_edit.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.config_button = QPushButton("Browse…")
        self.config_button.setToolTip("choose a hardware configuration YAML (hardware_configs/)")
        self.config_button.clicked.connect(self._browse_config)
        row = QHBoxLayout()
        row.addWidget(self.config_edit, 1)
        row.addWidget(self.config_button)
        form.addRow("Hardware", row)

        self.modality_box = QComboBox()
        self.modality_box.currentTextChanged.connect(self._modality_changed)
        form.addRow("Modality", self.modality_box)
        self.patterns_label = QLabel("–")
        self.patterns_label.setWordWrap(True)
        self.patterns_label.setToolTip("the illumination patterns (shots) of one window, in order")
        form.addRow("Patterns", self.patterns_label)

        self.windows_spin = QSpinBox()
        self.windows_spin.setRange(1, 1_000_000)
        self.windows_spin.setValue(4)
        self.windows_spin.setToolTip("number of windows (time points); each window takes every pattern once")
        form.addRow("Windows", self.windows_spin)
        self.interval_spin = QDoubleSpinBox()
        self.interval_spin.setRange(0.0, 86_400.0)
        self.interval_spin.setDecimals(3)
        self.interval_spin.setSuffix(" s")
        self.interval_spin.setSpecialValueText("0 s (back to back)")
        self.interval_spin.setToolTip("start-to-start period of windows; 0 acquires them back to back")
        form.addRow("Interval", self.interval_spin)
        self.exposure_spin = QDoubleSpinBox()
        self.exposure_spin.setRange(0.01, 100_000.0)
        self.exposure_spin.setDecimals(2)
        self.exposure_spin.setSuffix(" ms")
        self.exposure_spin.setToolTip("exposure of every shot")
        form.addRow("Exposure", self.exposure_spin)
        self.planes_spin = QSpinBox()
        self.planes_spin.setRange(2, 512)
        self.planes_spin.setValue(8)
        self.z_step_spin = QDoubleSpinBox()
        self.z_step_spin.setRange(0.001, 100.0)
        self.z_step_spin.setDecimals(3)
        self.z_step_spin.setSuffix(" µm")
        self.z_step_spin.setValue(0.25)
        row = QHBoxLayout()
        row.addWidget(self.planes_spin)
        row.addWidget(QLabel("step"))
        row.addWidget(self.z_step_spin)
        self.planes_row = QWidget()
        self.planes_row.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        self.planes_row.setToolTip("SIM 3D only: planes per stack and their spacing")
        form.addRow("Planes", self.planes_row)
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
        row = QHBoxLayout()
        row.addWidget(self.out_dir_edit, 1)
        row.addWidget(self.out_dir_button)
        form.addRow("Output folder", row)
        self.store_name_edit = QLineEdit()
        self.store_name_edit.setPlaceholderText("automatic: <modality>-<date>-<time>")
        self.store_name_edit.setToolTip("name of the new Zarr store (.zarr is added); it must not exist yet")
        form.addRow("Store name", self.store_name_edit)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("acquire and reconstruct every window as it completes")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("pause the acquisition between frames (reconstruction goes on)")
        self.pause_button.toggled.connect(self.set_paused)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("cancel the acquisition and stop the reconstruction; stored frames stay")
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        form.addRow(buttons)
        self._settings_widgets = [
            self.config_button, self.modality_box, self.windows_spin, self.interval_spin,
            self.exposure_spin, self.planes_row, self.policy_box, self.out_dir_edit,
            self.out_dir_button, self.store_name_edit,
        ]  # fmt: skip

        # ---- status
        status = QGroupBox("Status")
        status_layout = QVBoxLayout(status)
        sform = QFormLayout()
        self.status_fields: dict[str, QLabel] = {}
        for key, label in (
            ("acquisition", "Acquisition"),
            ("frames", "Frames"),
            ("windows", "Windows acquired"),
            ("reconstructed", "Reconstructed"),
            ("waiting", "Waiting"),
            ("lag", "Lag"),
            ("fit", "Fit"),
            ("store", "Store"),
        ):
            value = QLabel("–")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(key in ("fit", "store"))
            sform.addRow(label, value)
            self.status_fields[key] = value
        status_layout.addLayout(sform)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText("messages and errors")
        self.log.setMinimumHeight(70)
        status_layout.addWidget(self.log, 1)

        left = QVBoxLayout()
        left.addWidget(settings)
        left.addWidget(status, 1)
        left_widget = QWidget()
        left_widget.setLayout(left)
        left.setContentsMargins(0, 0, 0, 0)
        left_widget.setMinimumWidth(360)
        left_widget.setMaximumWidth(430)

        # ---- camera view
        raw_box = QGroupBox("Camera: latest stored frame")
        raw_layout = QVBoxLayout(raw_box)
        self.raw_view = ImageView(placeholder="no frame yet")
        self.raw_caption = QLabel("–")
        self.raw_caption.setWordWrap(True)
        raw_layout.addWidget(self.raw_view, 1)
        raw_layout.addWidget(self.raw_caption)

        # ---- reconstruction view
        recon_box = QGroupBox("Reconstruction: latest window")
        recon_layout = QVBoxLayout(recon_box)
        self.recon_view = ImageView(placeholder="no reconstruction yet")
        self.recon_caption = QLabel("–")
        self.recon_caption.setWordWrap(True)
        controls = QGridLayout()
        self.channel_box = QComboBox()
        self.channel_box.setToolTip("scene channel shown")
        self.channel_box.currentIndexChanged.connect(self._recon_controls_changed)
        self.plane_spin = QSpinBox()
        self.plane_spin.setPrefix("plane ")
        self.plane_spin.setEnabled(False)
        self.plane_spin.setVisible(False)
        self.plane_spin.valueChanged.connect(self._recon_controls_changed)
        self.motion_check = QCheckBox("motion arrows")
        self.motion_check.setChecked(True)
        self.motion_check.setToolTip(
            "arrows: how far the sample moved from the window's first shot to the time shown "
            "(magnified; the gain is in the caption)"
        )
        self.motion_check.toggled.connect(self._recon_controls_changed)
        self.time_slider = QSlider(Qt.Orientation.Horizontal)
        self.time_slider.setRange(0, 0)
        self.time_slider.setEnabled(False)
        self.time_slider.setToolTip("render time within the window (one per shot)")
        self.time_slider.valueChanged.connect(self._recon_controls_changed)
        self.time_label = QLabel("t = –")
        self.time_label.setMinimumWidth(150)
        controls.addWidget(QLabel("Channel"), 0, 0)
        controls.addWidget(self.channel_box, 0, 1)
        controls.addWidget(self.plane_spin, 0, 2)
        controls.addWidget(self.motion_check, 0, 3)
        controls.addWidget(QLabel("Time"), 1, 0)
        controls.addWidget(self.time_slider, 1, 1, 1, 2)
        controls.addWidget(self.time_label, 1, 3)
        controls.setColumnStretch(1, 1)
        recon_layout.addWidget(self.recon_view, 1)
        recon_layout.addWidget(self.recon_caption)
        recon_layout.addLayout(controls)

        main = QHBoxLayout(self)
        main.addWidget(left_widget)
        main.addWidget(raw_box, 1)
        main.addWidget(recon_box, 1)
        for caption in (self.raw_caption, self.recon_caption):
            caption.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
            caption.setMinimumHeight(2 * caption.fontMetrics().height() + 4)
        self._set_buttons()

    def _connect_bridge(self) -> None:
        b = self._bridge
        b.frame_stored.connect(self._on_frame_stored, _CONN)
        b.window_complete.connect(self._on_window_complete, _CONN)
        b.acquisition_finished.connect(self._on_acquisition_finished, _CONN)
        b.acquisition_error.connect(self._on_acquisition_error, _CONN)
        b.pause_toggled.connect(self._on_pause_toggled, _CONN)
        b.preview_ready.connect(self._on_preview_ready, _CONN)
        b.window_started.connect(self._on_window_started, _CONN)
        b.progress.connect(self._on_progress, _CONN)
        b.window_done.connect(self._on_window_done, _CONN)
        b.window_skipped.connect(self._on_window_skipped, _CONN)
        b.reconstruction_error.connect(self._on_reconstruction_error, _CONN)
        b.reconstruction_finished.connect(self._on_reconstruction_finished, _CONN)

    # ============================================================ settings
    @property
    def hardware_config(self) -> Any:
        """The :class:`~nstm_acquire.hardware.config.HardwareConfig` in use (None if none loaded)."""
        return self._hardware_config

    @property
    def microscope(self) -> Any:
        """The :class:`~nstm_acquire.hardware.microscope.Microscope` in use (None if none)."""
        return self._microscope

    @property
    def nstm_config(self) -> Any:
        """NSTM configuration used by the next run."""
        return self._nstm_config

    def set_nstm_config(self, config: Any) -> None:
        """Use ``config`` (an :class:`~nstm_acquire.nstm.config.NSTMConfig`) from the next run on."""
        from nstm_acquire.nstm.config import NSTMConfig

        if not isinstance(config, NSTMConfig):
            raise TypeError(f"config is a {type(config).__name__}; give an NSTMConfig (nstm.config.default_config())")
        self._nstm_config = config

    def set_hardware_config(self, config: Any | None) -> bool:
        """Load a hardware configuration (object, YAML path, or None for the simulated one).

        Opens its microscope (closing the previous one the panel opened) and lists its
        modalities. Problems are shown in the status area; returns True on success.
        """
        if self.is_running:
            self._message("a run is going on: stop it before changing the hardware configuration", error=True)
            return False
        from nstm_acquire.hardware.config import HardwareConfig, default_config_path, load_hardware_config

        try:
            if config is None:
                config = default_config_path()
            cfg = config if isinstance(config, HardwareConfig) else load_hardware_config(Path(config))
            microscope, owned = self._open_microscope(cfg)
        except Exception as err:  # noqa: BLE001 - shown to the user, never raised into Qt
            what = config.name if isinstance(config, HardwareConfig) else str(config)
            self._message(f"hardware configuration {what}: {err}", error=True)
            self._set_buttons()
            return False
        self._close_microscope()
        self._hardware_config, self._microscope, self._owns_microscope = cfg, microscope, owned
        self._setups = {}
        where = cfg.source_path if cfg.source_path is not None else "(given in code)"
        self.config_edit.setText(Path(where).name if cfg.source_path is not None else f"{cfg.name} (in memory)")
        self.config_edit.setCursorPosition(0)
        self.config_edit.setToolTip(f"{cfg.name}: {where}")
        self.modality_box.blockSignals(True)
        self.modality_box.clear()
        self.modality_box.addItems(cfg.available_modalities())
        self.modality_box.setCurrentIndex(0)
        self.modality_box.blockSignals(False)
        self._modality_changed(self.modality_box.currentText())
        kind = "simulated microscope" if microscope.simulated else "microscope"
        self._message(f"loaded {cfg.name} ({kind}; modalities {', '.join(cfg.available_modalities())})")
        self._set_buttons()
        return True

    def _open_microscope(self, cfg: Any) -> tuple[Any, bool]:
        from nstm_acquire.hardware.config import ConfigError
        from nstm_acquire.hardware.microscope import Microscope, open_microscope

        if cfg.simulated and cfg.micromanager_config is None:
            if self._mmcore is not None:
                self._message(f"{cfg.name} is simulated: it runs on its own simulated core, not on the given mmcore")
            with _psygnal_core_signals():
                return open_microscope(cfg), True
        if self._mmcore is None:
            with _psygnal_core_signals():
                return open_microscope(cfg), True
        core = self._mmcore
        cam = cfg.camera.label
        if cam not in core.getLoadedDevices():
            raise ConfigError(
                f"{cfg.name}: camera.label {cam!r} is not loaded in the given core "
                f"(loaded: {list(core.getLoadedDevices())})"
            )
        core.setCameraDevice(cam)
        if cfg.shutter_label:
            core.setShutterDevice(cfg.shutter_label)
        return Microscope(cfg, core, None), False

    def _close_microscope(self) -> None:
        if self._microscope is not None and self._owns_microscope:
            self._microscope.close()
        self._microscope = None

    def _modality_changed(self, modality: str) -> None:
        if not modality or self._microscope is None:
            return
        try:
            setup = self._setups.get(modality) or self._microscope.prepare(modality)
        except Exception as err:  # noqa: BLE001 - shown to the user
            self.patterns_label.setText("–")
            self._message(f"modality {modality}: {err}", error=True)
            self._set_buttons()
            return
        self._setups[modality] = setup
        self.patterns_label.setText(f"{setup.n_shots} shots: {', '.join(setup.shot_names)}")
        self.exposure_spin.setValue(float(setup.exposure_ms))
        is_3d = modality == "sim3d"
        self.planes_row.setEnabled(is_3d and not self.is_running)
        if is_3d and setup.optics.z_step_um:
            self.z_step_spin.setValue(float(setup.optics.z_step_um))
        self._set_buttons()

    def _browse_config(self) -> None:
        start = ""
        if self._hardware_config is not None and self._hardware_config.source_path is not None:
            start = str(Path(self._hardware_config.source_path).parent)
        path, _ = QFileDialog.getOpenFileName(self, "Hardware configuration", start, "YAML (*.yaml *.yml)")
        if path:
            self.set_hardware_config(Path(path))

    def _browse_out_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder", self.out_dir_edit.text())
        if path:
            self.out_dir_edit.setText(path)

    def plan(self) -> Any:
        """The :class:`~nstm_acquire.acquire.sequences.AcquisitionPlan` the controls describe.

        Raises ValueError (pydantic's ValidationError) naming the bad field.
        """
        from nstm_acquire.acquire.sequences import AcquisitionPlan

        modality = self.modality_box.currentText()
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
            name = f"{self.modality_box.currentText() or 'run'}-{stamp}"
        if name.endswith(".zarr"):
            name = name[: -len(".zarr")]
        if not _STORE_NAME.match(name):
            raise ValueError(
                f"store name {name!r}: use letters, digits, '.', '_' and '-' only (no folders or spaces)"
            )
        return Path(out_dir).expanduser() / f"{name}.zarr"

    # ================================================================= run
    @property
    def is_running(self) -> bool:
        """True from Start until acquisition and reconstruction have both ended."""
        return self._run is not None

    @property
    def controller(self) -> Any:
        """The running :class:`~nstm_acquire.acquire.controller.AcquisitionController` (None when idle)."""
        return None if self._run is None else self._run.controller

    @property
    def worker(self) -> Any:
        """The running :class:`~nstm_acquire.recon.worker.ReconstructionWorker` (None when idle)."""
        return None if self._run is None else self._run.worker

    def start(self) -> bool:
        """Start acquiring and reconstructing with the current settings; False if it cannot.

        Problems (no microscope, bad settings) are shown in the status area; later ones (the
        store cannot be created, a frame cannot be written, a window cannot be reconstructed)
        arrive from the threads and are shown there too.
        """
        if self._run is not None:
            return False
        if self._microscope is None:
            self._message("no microscope: choose a hardware configuration first", error=True)
            return False
        modality = self.modality_box.currentText()
        setup = self._setups.get(modality)
        if setup is None:
            self._message(f"modality {modality!r} is not ready (see the messages above)", error=True)
            return False
        try:
            plan = self.plan()
            store_path = self.store_path()
        except Exception as err:  # noqa: BLE001 - pydantic ValidationError or ours
            self._message(f"cannot start: {_one_line(err)}", error=True)
            return False
        from nstm_acquire.acquire.controller import AcquisitionController
        from nstm_acquire.recon.worker import ReconstructionWorker

        try:
            controller = AcquisitionController(self._microscope, plan, store_path)
            worker = ReconstructionWorker(store_path, self._nstm_config, policy=self.policy_box.currentData())
        except Exception as err:  # noqa: BLE001
            self._message(f"cannot start: {_one_line(err)}", error=True)
            return False
        core = self._microscope.core
        self._run = _Run(
            controller=controller,
            worker=worker,
            store_path=store_path,
            modality=modality,
            shot_names=list(setup.shot_names),
            n_windows=plan.n_windows,
            n_planes=plan.n_planes,
            pixel_size_um=float(setup.optics.pixel_size_um),
            frame_width=int(core.getImageWidth()),  # read before the acquisition thread uses the core
        )
        # the bridge first, so the GUI hears of a window before the worker can finish it
        self._bridge.attach(controller, worker, core.mda)
        controller.events.window_complete.connect(worker.submit)
        self._recon = None
        self.recon_view.clear("waiting for the first complete window")
        self.raw_view.clear("waiting for the first frame")
        self.raw_caption.setText("–")
        self.recon_caption.setText("–")
        self._reset_recon_controls()
        self.status_fields["store"].setText(str(store_path))
        self.status_fields["fit"].setText("–")
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(False)
        self.pause_button.setText("Pause")
        self.pause_button.blockSignals(False)
        if not self._timer.isActive():  # stopped by an earlier shutdown()
            self._timer.start()
        worker.start()
        controller.start()
        expected = plan.n_windows * setup.n_shots * plan.n_planes
        self._message(
            f"started {modality}: {_n(plan.n_windows, 'window')} x {_n(setup.n_shots, 'shot')}"
            + (f" x {plan.n_planes} planes" if plan.n_planes > 1 else "")
            + f" = {_n(expected, 'frame')} -> {store_path}"
        )
        self._set_buttons()
        self._update_status()
        self.run_started.emit(str(store_path))
        return True

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume (False) the acquisition; the reconstruction goes on."""
        run = self._run
        if run is None or run.acquisition_done:
            return
        try:
            run.controller.set_paused(bool(paused))
        except Exception as err:  # noqa: BLE001
            self._message(f"pause: {_one_line(err)}", error=True)
            return
        run.pause_frames = run.pause_frames_seen = run.frames
        run.pause_time, run.pause_noted = time.monotonic(), False
        self._show_paused(bool(paused))

    def stop(self) -> None:
        """Cancel the acquisition and stop the reconstruction (neither is waited for here)."""
        run = self._run
        if run is None or run.stop_requested:
            return
        run.stop_requested = True
        self._message("stopping: canceling the acquisition and the reconstruction")
        try:
            if not run.acquisition_done:
                run.controller.cancel()
        except Exception as err:  # noqa: BLE001
            self._message(f"cancel: {_one_line(err)}", error=True)
        run.worker.stop()
        self._set_buttons()
        self._update_status()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop any run, wait up to ``timeout_s`` for its threads, release the microscope.

        Used when the window closes; the only place the GUI thread waits for the threads.
        """
        run = self._run
        if run is not None:
            self.stop()
            deadline = time.monotonic() + timeout_s
            run.controller.wait(max(0.0, deadline - time.monotonic()))
            run.worker.close_input()
            if not run.worker.join(max(0.0, deadline - time.monotonic())):
                self._message("the reconstruction thread is still busy; it ends on its own", error=True)
            run.acquisition_done = True
            run.worker_finished = True
            self._finish_run()
        self._timer.stop()
        self._bridge.detach()
        self._close_microscope()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------ run helpers
    def _tick(self) -> None:
        """Timer (GUI thread): notice the acquisition's end, refresh the camera view and status."""
        run = self._run
        if run is None:
            return
        if not run.acquisition_done and run.controller.wait(0):
            run.acquisition_done = True
            self._acquisition_ended(run)
        if run.acquisition_done and not run.input_closed:
            run.input_closed = True
            run.worker.close_input()
            self._set_buttons()
        self._check_pause(run)
        self._refresh_raw_view(run)
        self._update_status()
        self._maybe_finish()

    def _mda_paused(self) -> bool:
        try:
            return bool(self._microscope.core.mda.is_paused())
        except Exception:  # noqa: BLE001 - no microscope, or an MDA runner without it
            return False

    def _check_pause(self, run: _Run) -> None:
        """Make a requested pause happen, or say why it cannot.

        pymmcore-plus pauses between events. A request that arrives while its runner sleeps
        until the next timed event can be lost (the runner goes on acquiring), so while
        frames keep coming the request is repeated; one made during an event is kept until
        the event ends. A hardware-triggered sequence (back-to-back windows on sequenceable
        hardware are one event) can be stopped but not paused: that is said once.
        """
        if not self.pause_button.isChecked() or run.acquisition_done or self._mda_paused():
            return
        if run.frames > run.pause_frames_seen:
            run.pause_frames_seen = run.frames
            try:
                run.controller.set_paused(True)
            except Exception as err:  # noqa: BLE001
                self._message(f"pause: {_one_line(err)}", error=True)
        if (
            not run.pause_noted
            and time.monotonic() - run.pause_time > 1.0
            and run.frames > run.pause_frames + 2 * len(run.shot_names) * run.n_planes
        ):
            run.pause_noted = True
            self._message(
                "pause requested, but frames keep coming: pymmcore-plus pauses only between events, "
                "and back-to-back windows on sequenceable hardware are one hardware-triggered "
                "sequence, which can be stopped but not paused. A window interval > 0 makes each "
                "window its own event."
            )

    def _acquisition_ended(self, run: _Run) -> None:
        summary = run.controller.summary
        status = summary.status if summary.status != "running" else "failed"
        self._message(
            f"acquisition {status}: {summary.frames_written}/{summary.frames_expected} frames, "
            f"{_n(summary.windows_complete, 'complete window')} in {summary.duration_s:.2f} s",
            error=status not in ("completed", "canceled"),
        )
        self._show_paused(False)

    def _maybe_finish(self) -> None:
        run = self._run
        if run is not None and run.acquisition_done and run.worker_finished:
            self._finish_run()

    def _finish_run(self) -> None:
        run = self._run
        if run is None:
            return
        self._bridge.detach()
        try:
            run.controller.events.window_complete.disconnect(run.worker.submit)
        except Exception:  # noqa: BLE001 - already disconnected
            pass
        self._refresh_raw_view(run)
        self._update_status()
        summary = run.controller.summary
        if summary.status == "running":
            summary.status = "failed"
        self.last_summary = summary
        not_done = len(run.complete_times) - len(run.done)
        later = not_done > 0 and not run.recon_errors
        self._message(
            f"run ended: {len(run.done)} of {len(run.complete_times)} acquired windows reconstructed"
            + (f"; reconstruct the rest later with: nstm-acquire reconstruct {run.store_path}" if later else "")
        )
        self._run = None
        self._set_buttons()
        self.status_fields["acquisition"].setText(summary.status)
        self.run_finished.emit(summary)

    def _refresh_raw_view(self, run: _Run) -> None:
        latest = run.latest_frame
        if latest is None or latest == run.shown_frame:
            return
        w, s, z, t_s = latest
        try:
            if run.reader is None:
                from nstm_acquire.store import StoreReader

                run.reader = StoreReader(run.store_path)
            frame = run.reader.frame(w, s, z)
        except Exception as err:  # noqa: BLE001 - the view skips a frame, the run goes on
            text = f"live view: {_one_line(err)}"
            if text != run.live_view_error:
                run.live_view_error = text
                self._message(text, error=True)
            return
        run.shown_frame = latest
        limits = display_limits(frame)
        pixmap, _ = compose_pixmap(frame, limits, pixel_size_um=run.pixel_size_um)
        self.raw_view.set_pixmap(pixmap)
        name = run.shot_names[s] if 0 <= s < len(run.shot_names) else str(s)
        plane = f", plane {z}" if run.n_planes > 1 else ""
        self.raw_caption.setText(
            f"window {w}, shot {s} ({name}){plane}, t = {t_s:.3f} s\n"
            f"{frame.shape[1]} x {frame.shape[0]} px, display {limits[0]:.0f}–{limits[1]:.0f} counts"
        )

    def _update_status(self) -> None:
        run = self._run
        if run is None:
            return
        f = self.status_fields
        c = run.controller
        if run.stop_requested and not run.acquisition_done:
            state = "canceling…"
        elif not run.acquisition_done:
            if not self.pause_button.isChecked():
                state = "running"
            else:
                state = "paused" if self._mda_paused() else "pause requested…"
        else:
            status = c.summary.status if c.summary.status != "running" else "failed"
            state = f"{status}; reconstructing…" if not run.worker_finished else status
        f["acquisition"].setText(state)
        expected = c.summary.frames_expected
        f["frames"].setText(f"{run.frames} / {expected}" if expected else str(run.frames))
        f["windows"].setText(f"{len(run.complete_times)} / {run.n_windows}")
        skipped = f" ({len(run.skipped)} skipped)" if run.skipped else ""
        f["reconstructed"].setText(f"{len(run.done)}{skipped}")
        pending = [t for w, t in run.complete_times.items() if w not in run.done and w not in run.skipped]
        f["waiting"].setText(str(len(pending)))
        f["lag"].setText(f"{time.time() - min(pending):.1f} s" if pending else "0.0 s")
        if run.fit_text:
            f["fit"].setText(run.fit_text)

    def _set_buttons(self) -> None:
        run = self._run
        idle = run is None
        ready = idle and self._microscope is not None and self.modality_box.currentText() in self._setups
        self.start_button.setEnabled(ready)
        acquiring = run is not None and not run.acquisition_done and not run.stop_requested
        self.pause_button.setEnabled(acquiring)
        self.stop_button.setEnabled(run is not None and not run.stop_requested)
        for w in self._settings_widgets:
            w.setEnabled(idle)
        if idle:
            self.planes_row.setEnabled(self.modality_box.currentText() == "sim3d")

    def _show_paused(self, paused: bool) -> None:
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.blockSignals(False)
        self._update_status()

    def _message(self, text: str, error: bool = False) -> None:
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        self.log.appendPlainText(f"{stamp}  {'ERROR: ' if error else ''}{text}")

    # ======================================================= signal handlers
    def _current(self) -> _Run | None:
        """The run, or None once it has been wound up (late signals are then ignored)."""
        return self._run

    def _on_frame_stored(self, w: int, s: int, z: int, t_s: float) -> None:
        run = self._current()
        if run is None:
            return
        run.frames += 1
        run.latest_frame = (w, s, z, t_s)

    def _on_window_complete(self, w: int, wall_s: float) -> None:
        run = self._current()
        if run is not None:
            run.complete_times[w] = wall_s

    def _on_acquisition_finished(self, summary: Any) -> None:
        self.last_summary = summary

    def _on_acquisition_error(self, message: str) -> None:
        self._message(f"acquisition: {message}", error=True)

    def _on_pause_toggled(self, paused: bool) -> None:
        if self._run is not None and not self._run.acquisition_done:
            self._show_paused(paused)

    def _on_preview_ready(self, w: int, conventional: Any) -> None:
        run = self._current()
        if run is None:
            return
        conv = np.asarray(conventional)
        if conv.ndim != 4:
            self._message(f"window {w}: preview has shape {conv.shape}, expected (C, Z, Y, X)", error=True)
            return
        self._set_recon(
            _Recon(
                window=w,
                kind="preview",
                scene=conv[None],
                times_s=None,
                motion=None,
                pixel_size_um=run.pixel_size_um * run.frame_width / conv.shape[-1],
                note="conventional (static-sample) preview; NSTM fitting…",
            ),
            run.modality,
        )

    def _on_window_started(self, w: int) -> None:
        run = self._current()
        if run is None:
            return
        first = "" if run.done else " (the first window also compiles the model)"
        run.fit_text = f"window {w}: preparing{first}"
        self._update_status()

    def _on_progress(self, w: int, step: int, metrics: dict) -> None:
        run = self._current()
        if run is None:
            return
        loss = metrics.get("loss", float("nan"))
        run.fit_text = f"window {w}: step {step}, loss {loss:.3e}"

    def _on_window_done(self, w: int, result: Any) -> None:
        run = self._current()
        if run is None:
            return
        if w not in run.done:
            run.done.append(w)
        fit = getattr(result, "fit", None)
        if fit is not None:
            run.fit_text = f"window {w} done: {fit.steps} steps, loss {fit.final_loss:.2e}"
            self._message(f"window {w} reconstructed: {fit.summary()}")
            note = f"NSTM, {fit.steps} steps, loss {fit.final_loss:.2e}"
        else:
            note = "NSTM"
        scene = np.asarray(result.scene)
        self._set_recon(
            _Recon(
                window=w,
                kind="nstm",
                scene=scene,
                times_s=np.asarray(result.times_s, dtype=np.float64).reshape(-1),
                motion=np.asarray(result.motion),
                pixel_size_um=run.pixel_size_um * run.frame_width / scene.shape[-1],
                note=note,
            ),
            run.modality,
        )
        self._update_status()

    def _on_window_skipped(self, w: int) -> None:
        run = self._current()
        if run is not None and w not in run.skipped:
            run.skipped.append(w)

    def _on_reconstruction_error(self, message: str) -> None:
        if self._run is not None:
            self._run.recon_errors += 1
        self._message(f"reconstruction: {message}", error=True)

    def _on_reconstruction_finished(self) -> None:
        run = self._current()
        if run is None:
            return
        run.worker_finished = True
        self._set_buttons()
        self._maybe_finish()

    # ==================================================== reconstruction view
    def _reset_recon_controls(self) -> None:
        for w in (self.time_slider, self.plane_spin, self.channel_box):
            w.blockSignals(True)
        self.time_slider.setRange(0, 0)
        self.time_slider.setEnabled(False)
        self.plane_spin.setRange(0, 0)
        self.plane_spin.setEnabled(False)
        self.channel_box.clear()
        self.time_label.setText("t = –")
        for w in (self.time_slider, self.plane_spin, self.channel_box):
            w.blockSignals(False)

    def _set_recon(self, recon: _Recon, modality: str) -> None:
        if self._recon is not None and recon.window < self._recon.window:
            return  # an older window arrived late: keep showing the newest
        n_t, n_c, n_z = recon.scene.shape[:3]
        choices = channel_choices(modality, n_c)
        keep_channel = self.channel_box.currentData()
        keep_plane = self.plane_spin.value() if self.plane_spin.isEnabled() else None
        for w in (self.time_slider, self.plane_spin, self.channel_box):
            w.blockSignals(True)
        if [self.channel_box.itemData(i) for i in range(self.channel_box.count())] != [i for _, i in choices]:
            self.channel_box.clear()
            for label, index in choices:
                self.channel_box.addItem(label, index)
        pos = self.channel_box.findData(keep_channel) if keep_channel is not None else -1
        self.channel_box.setCurrentIndex(max(pos, 0))
        self.plane_spin.setRange(0, n_z - 1)
        self.plane_spin.setValue(keep_plane if keep_plane is not None and keep_plane < n_z else n_z // 2)
        self.plane_spin.setEnabled(n_z > 1)
        self.plane_spin.setVisible(n_z > 1)
        self.time_slider.setRange(0, n_t - 1)
        self.time_slider.setValue(n_t - 1)  # the newest state of the sample
        self.time_slider.setEnabled(n_t > 1)
        for w in (self.time_slider, self.plane_spin, self.channel_box):
            w.blockSignals(False)
        self._recon = recon
        self._render_recon()

    def _recon_controls_changed(self, *_: Any) -> None:
        if self._recon is not None:
            self._render_recon()

    def _render_recon(self) -> None:
        recon = self._recon
        if recon is None or self.channel_box.count() == 0:
            return
        n_t = recon.scene.shape[0]
        c = int(self.channel_box.currentData())
        z = int(self.plane_spin.value())
        t = min(int(self.time_slider.value()), n_t - 1)
        key = (c, z)
        if key not in recon.limits:  # one range for all times: scrubbing does not flicker
            recon.limits[key] = display_limits(recon.scene[:, c, z])
        limits = recon.limits[key]
        displacement = None
        if self.motion_check.isChecked() and recon.motion is not None and n_t > 1:
            displacement = content_displacement(recon.motion, t, z)
        pixmap, gain = compose_pixmap(
            recon.scene[t, c, z], limits, displacement=displacement, pixel_size_um=recon.pixel_size_um
        )
        self.recon_view.set_pixmap(pixmap)
        if recon.times_s is not None and n_t > 0:
            self.time_label.setText(f"t = {recon.times_s[t]:.3f} s ({t + 1}/{n_t})")
        else:
            self.time_label.setText("static preview")
        channel = self.channel_box.currentText()
        arrows = ""
        if displacement is not None:
            arrows = f"; arrows ×{gain:.1f}: motion since {recon.times_s[0]:.3f} s" if gain > 0 else "; no motion"
        plane = f", plane {z}" if recon.scene.shape[2] > 1 else ""
        self.recon_caption.setText(
            f"window {recon.window}: {recon.note}\n"
            f"{channel}{plane} {limits[0]:.3g} … {limits[1]:.3g}{arrows}"
        )


@contextmanager
def _psygnal_core_signals() -> Iterator[None]:
    """Create pymmcore-plus cores with psygnal signals while a Qt application runs.

    With a QApplication running, pymmcore-plus would give new cores Qt signals (through the
    ``qtpy`` package, which nstm-acquire does not depend on). The acquisition controller
    expects psygnal's direct calls on its threads, so cores made by the panel use psygnal
    (``PYMM_SIGNALS_BACKEND=psygnal`` while they are created); an explicit setting is kept.
    """
    key = "PYMM_SIGNALS_BACKEND"
    before = os.environ.get(key)
    if before is None:
        os.environ[key] = "psygnal"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)


def _n(count: int, noun: str) -> str:
    """``"1 window"``, ``"2 windows"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _one_line(err: BaseException) -> str:
    """The first line of an error (pydantic: field and message), with its type when bare."""
    try:
        from pydantic import ValidationError

        if isinstance(err, ValidationError):
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            return f"{loc}: {first['msg'].removeprefix('Value error, ')}"
    except ImportError:  # pragma: no cover
        pass
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

