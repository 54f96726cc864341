"""The acquisition and live-reconstruction panel (PyQt6).

:class:`NstmAcquirePanel` lets a microscopist pick a hardware configuration and a modality,
set the windows, interval and exposure, choose where the store goes, and Start / Pause /
Stop an acquisition that is reconstructed window by window while it runs. It is composed of
small widgets, each in its own module:

* :class:`~nstm_acquire.gui.settings.RunSettings` -- the form and the Start / Pause / Stop buttons;
* :class:`~nstm_acquire.gui.status.RunStatus` -- frames, windows, queue, lag, fit, messages;
* :class:`~nstm_acquire.gui.camera.CameraView` -- the latest stored camera frame;
* :class:`~nstm_acquire.gui.reconstruction.ReconstructionView` -- the latest window, preview first,
  then the NSTM with a channel selector, a time slider and the motion as arrows;
* :class:`~nstm_acquire.gui.microscope.MicroscopeTools` -- the "Microscope" tab: Snap / Live,
  focus and stage, exposure, configuration groups and device properties, to find and focus a
  field before a run (disabled while a run goes on).

Both image views and the preview have a levels (contrast) control.

A run is one :class:`~nstm_acquire.acquire.session.LiveSession` (acquisition and reconstruction,
each on its own thread); the panel talks to nothing else while it runs. The session's psygnal
signals reach the panel through :class:`~nstm_acquire.gui.bridge.SignalBridge` as queued Qt
signals, so the GUI thread never waits for either thread while a run goes on; a timer refreshes
the camera view and the status at most ``1000 / refresh_interval_ms`` times a second. The
microscope and the hardware configuration are used only to set a run up.

Follows the pymmcore-widgets convention ``Widget(parent=None, *, mmcore=None)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QTabWidget, QVBoxLayout, QWidget

from nstm_acquire.gui.bridge import SignalBridge
from nstm_acquire.gui.camera import CameraView, FrameSource
from nstm_acquire.gui.microscope import MicroscopeTools
from nstm_acquire.gui.reconstruction import ReconstructionView, channel_choices
from nstm_acquire.gui.settings import RunSettings
from nstm_acquire.gui.status import RunStatus, one_line

__all__ = ["NstmAcquirePanel", "channel_choices"]

_CONN = Qt.ConnectionType.QueuedConnection


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

    The widgets: :attr:`settings`, :attr:`status`, :attr:`camera`, :attr:`recon` (tab "Run"),
    :attr:`tools` (tab "Microscope"), in :attr:`tabs`.
    """

    run_started = pyqtSignal(str)
    """The store path of a run that has started."""
    window_reconstructed = pyqtSignal(str, int)
    """The store path and the window whose NSTM result has just been written."""
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
        self.setWindowTitle("nstm-acquire")
        self._mmcore = mmcore
        self._nstm_config = nstm_config  # None: the chosen modality's default_config(modality)
        self._hardware_config: Any = None
        self._microscope: Any = None
        self._setups: dict[str, Any] = {}
        self._session: Any = None
        self.last_summary: Any = None

        self.settings = RunSettings(Path(out_dir), policy)
        self.status = RunStatus()
        self.camera = CameraView()
        self.recon = ReconstructionView()
        self.tools = MicroscopeTools()
        self.tabs = QTabWidget()
        self._layout()
        self._connect_widgets()
        self._bridge = SignalBridge(self)
        self._connect_bridge()

        self._timer = QTimer(self)
        self._timer.setInterval(int(refresh_interval_ms))
        self._timer.timeout.connect(self._tick)
        self._timer.start()

        self.set_hardware_config(config)

    # ================================================================== UI
    def _layout(self) -> None:
        left = QVBoxLayout()
        left.addWidget(self.settings)
        left.addWidget(self.status, 1)
        left.setContentsMargins(0, 0, 0, 0)
        left_widget = QWidget()
        left_widget.setLayout(left)
        left_widget.setMinimumWidth(360)
        left_widget.setMaximumWidth(430)
        run_page = QWidget()
        main = QHBoxLayout(run_page)
        main.addWidget(left_widget)
        main.addWidget(self.camera, 1)
        main.addWidget(self.recon, 1)
        self.tabs.addTab(run_page, "Run")
        self.tabs.addTab(self.tools, "Microscope")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.tabs)
        for caption in (self.camera.caption, self.recon.caption):
            _two_line(caption)
        self._set_buttons()

    def _connect_widgets(self) -> None:
        s = self.settings
        s.config_chosen.connect(self.set_hardware_config)
        s.modality_changed.connect(self._modality_changed)
        s.start_button.clicked.connect(self.start)
        s.pause_button.toggled.connect(self.set_paused)
        s.stop_button.clicked.connect(self.stop)

    def _connect_bridge(self) -> None:
        b = self._bridge
        b.frame_stored.connect(self._on_frame_stored, _CONN)
        b.pause_changed.connect(self._on_pause_changed, _CONN)
        b.acquisition_finished.connect(self._on_acquisition_finished, _CONN)
        b.preview_ready.connect(self._on_preview_ready, _CONN)
        b.window_started.connect(self._on_window_started, _CONN)
        b.progress.connect(self._on_progress, _CONN)
        b.window_done.connect(self._on_window_done, _CONN)
        b.warning.connect(self.status.message, _CONN)
        b.error.connect(self._on_error, _CONN)
        b.finished.connect(self._on_finished, _CONN)

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
        """NSTM configuration used by the next run (the chosen modality's default unless set)."""
        from nstm_acquire.recon.chain import modality_default_config

        return self._nstm_config or modality_default_config(self.settings.plan().modality)

    def set_nstm_config(self, config: Any) -> None:
        """Use ``config`` (an :class:`~nstm_acquire.nstm.config.NSTMConfig`) from the next run on."""
        from nstm_acquire.nstm.config import NSTMConfig

        if not isinstance(config, NSTMConfig):
            raise TypeError(f"config is a {type(config).__name__}; give an NSTMConfig (nstm.config.default_config())")
        self._nstm_config = config

    def set_hardware_config(self, config: Any | None) -> bool:
        """Load a hardware configuration (object, YAML path, or None for the simulated one).

        Opens its microscope (closing the previous one; a host's ``mmcore`` is never unloaded)
        and lists its modalities. Problems are shown in the status area; returns True on success.
        """
        if self.is_running:
            self.status.message("a run is going on: stop it before changing the hardware configuration", error=True)
            return False
        from nstm_acquire.hardware.config import HardwareConfig, default_config_path, load_hardware_config
        from nstm_acquire.hardware.microscope import open_microscope

        try:
            if config is None:
                config = default_config_path()
            cfg = config if isinstance(config, HardwareConfig) else load_hardware_config(Path(config))
            if cfg.simulated and cfg.micromanager_config is None and self._mmcore is not None:
                self.status.message(f"{cfg.name} is simulated: it runs on its own simulated core, not on the given mmcore")
            microscope = open_microscope(cfg, core=self._mmcore)
        except Exception as err:  # noqa: BLE001 - shown to the user, never raised into Qt
            what = config.name if isinstance(config, HardwareConfig) else str(config)
            self.status.message(f"hardware configuration {what}: {err}", error=True)
            self._set_buttons()
            return False
        self._close_microscope()
        self._hardware_config, self._microscope, self._setups = cfg, microscope, {}
        self.tools.set_core(microscope.core)
        self.settings.show_config(cfg)  # prepares the first modality (_modality_changed)
        kind = "simulated microscope" if microscope.simulated else "microscope"
        self.status.message(f"loaded {cfg.name} ({kind}; modalities {', '.join(cfg.available_modalities())})")
        self._set_buttons()
        return True

    def _close_microscope(self) -> None:
        self.tools.set_core(None)
        if self._microscope is not None:
            self._microscope.close()  # leaves a host's core loaded
        self._microscope = None

    def _modality_changed(self, modality: str) -> None:
        if not modality or self._microscope is None:
            return
        try:
            setup = self._setups.get(modality) or self._microscope.prepare(modality)
        except Exception as err:  # noqa: BLE001 - shown to the user
            self.settings.show_setup(None)
            self.status.message(f"modality {modality}: {err}", error=True)
            self._set_buttons()
            return
        self._setups[modality] = setup
        self.tools.set_pixel_size(float(setup.optics.pixel_size_um))
        self.tools.fill_groups()  # preparing a modality may define configuration groups
        self.settings.show_setup(setup)
        self._set_buttons()

    def plan(self) -> Any:
        """The :class:`~nstm_acquire.acquire.sequences.AcquisitionPlan` the controls describe.

        Raises ValueError (pydantic's ValidationError) naming the bad field.
        """
        return self.settings.plan()

    def store_path(self) -> Path:
        """Where the next run's store goes (the name field, or an automatic name)."""
        return self.settings.store_path()

    # ================================================================= run
    @property
    def session(self) -> Any:
        """The running :class:`~nstm_acquire.acquire.session.LiveSession` (None when idle)."""
        return self._session

    @property
    def is_running(self) -> bool:
        """True from Start until acquisition and reconstruction have both ended."""
        return self._session is not None

    @property
    def controller(self) -> Any:
        """The running :class:`~nstm_acquire.acquire.controller.AcquisitionController` (None when idle)."""
        return None if self._session is None else self._session.controller

    @property
    def worker(self) -> Any:
        """The running :class:`~nstm_acquire.recon.worker.ReconstructionWorker` (None when idle)."""
        return None if self._session is None else self._session.worker

    def start(self) -> bool:
        """Start acquiring and reconstructing with the current settings; False if it cannot.

        Problems (no microscope, bad settings) are shown in the status area; later ones (the
        store cannot be created, a frame cannot be written, a window cannot be reconstructed)
        arrive from the threads and are shown there too.
        """
        if self._session is not None:
            return False
        self.tools.set_live(False)  # the run needs the camera
        session = self._new_session()
        if session is None:
            return False
        plan = session.plan
        setup = self._setups[plan.modality]
        pixel_um = float(setup.optics.pixel_size_um)
        self.camera.begin(FrameSource(session.store, list(setup.shot_names), plan.n_planes, pixel_um))
        # the frame width is read before the acquisition thread uses the core
        self.recon.begin(plan.modality, pixel_um, int(self._microscope.core.getImageWidth()))
        self.status.begin(session.store)
        self.settings.show_paused(False)
        if not self._timer.isActive():  # stopped by an earlier shutdown()
            self._timer.start()
        self._bridge.attach(session)  # before the start: the GUI hears of every window
        try:
            session.start()
        except Exception as err:  # noqa: BLE001 - shown to the user
            self._bridge.detach()
            self.status.message(f"cannot start: {one_line(err)}", error=True)
            return False
        self._session = session  # queued signals are handled after this method returns
        self.tools.setEnabled(False)
        frames = plan.n_windows * setup.n_shots * plan.n_planes
        self.status.message(
            f"started {plan.modality}: {_n(plan.n_windows, 'window')} x {_n(setup.n_shots, 'shot')}"
            + (f" x {plan.n_planes} planes" if plan.n_planes > 1 else "")
            + f" = {_n(frames, 'frame')} -> {session.store}"
        )
        self._set_buttons()
        self._update_status()
        self.run_started.emit(str(session.store))
        return True

    def _new_session(self) -> Any:
        """The session the settings describe, or None (the reason is shown)."""
        if self._microscope is None:
            self.status.message("no microscope: choose a hardware configuration first", error=True)
            return None
        modality = self.settings.modality()
        if modality not in self._setups:
            self.status.message(f"modality {modality!r} is not ready (see the messages above)", error=True)
            return None
        from nstm_acquire.acquire.session import LiveSession

        try:
            return LiveSession(
                self._microscope, self.settings.plan(), self.settings.store_path(), self._nstm_config,
                policy=self.settings.policy(),  # type: ignore[arg-type]
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - pydantic ValidationError or ours
            self.status.message(f"cannot start: {one_line(err)}", error=True)
            return None

    def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume (False) the acquisition; the reconstruction goes on."""
        session = self._session
        if session is None or session.acquisition_done:
            return
        try:
            session.set_paused(bool(paused))
        except Exception as err:  # noqa: BLE001
            self.status.message(f"pause: {one_line(err)}", error=True)
            return
        self.settings.show_paused(bool(paused))
        self._update_status()

    def stop(self) -> None:
        """Cancel the acquisition and stop the reconstruction (neither is waited for here)."""
        session = self._session
        if session is None or session.cancel_requested:
            return
        self.status.message("stopping: canceling the acquisition and the reconstruction")
        session.cancel()
        self._set_buttons()
        self._update_status()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop any run, wait up to ``timeout_s`` for its threads, release the microscope.

        Used when the window closes; the only place the GUI thread waits for the threads.
        """
        session = self._session
        if session is not None:
            self.stop()
            if not session.wait(timeout_s):
                self.status.message("the reconstruction thread is still busy; it ends on its own", error=True)
            self._finish_run()
        self._timer.stop()
        self._bridge.detach()
        self._close_microscope()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------ run helpers
    def _tick(self) -> None:
        """Timer (GUI thread): refresh the camera view and the status."""
        if self._session is None:
            return
        problem = self.camera.refresh()
        if problem:
            self.status.message(problem, error=True)
        self._update_status()

    def _finish_run(self) -> None:
        session = self._session
        if session is None:
            return
        self._bridge.detach()
        problem = self.camera.refresh()
        if problem:
            self.status.message(problem, error=True)
        self._update_status()
        summary = session.summary
        if summary.status == "running":  # the acquisition did not end in time (shutdown)
            summary.status = "failed"
        self.last_summary = summary
        acquired, done = len(session.complete), len(session.done)
        recon_failed = any(e.startswith("reconstruction") for e in session.errors)
        later = acquired > done and not recon_failed
        self.status.message(
            f"run ended: {done} of {acquired} acquired windows reconstructed"
            + (f"; reconstruct the rest later with: nstm-acquire reconstruct {session.store}" if later else "")
        )
        self._session = None
        self.tools.setEnabled(self._microscope is not None)
        self.tools.show_positions()
        self._set_buttons()
        self.status.fields["acquisition"].setText(summary.status)
        self.run_finished.emit(summary)

    def _update_status(self) -> None:
        if self._session is not None:
            self.status.show_session(self._session)

    def _set_buttons(self) -> None:
        session = self._session
        idle = session is None
        acquiring = not idle and not session.acquisition_done and not session.cancel_requested
        self.settings.set_state(
            can_start=idle and self._microscope is not None and self.settings.modality() in self._setups,
            idle=idle,
            can_pause=acquiring,
            can_stop=not idle and not session.cancel_requested,
        )

    # ======================================================= signal handlers
    def _on_frame_stored(self, w: int, s: int, z: int, t_s: float) -> None:
        if self._session is not None:
            self.camera.note_frame(w, s, z, t_s)

    def _on_pause_changed(self, paused: bool) -> None:
        if self._session is not None and not self._session.acquisition_done:
            self.settings.show_paused(paused)
            self._update_status()

    def _on_acquisition_finished(self, summary: Any) -> None:
        self.last_summary = summary
        if self._session is None:
            return
        status = summary.status if summary.status != "running" else "failed"
        self.status.message(
            f"acquisition {status}: {summary.frames_written}/{summary.frames_expected} frames, "
            f"{_n(summary.windows_complete, 'complete window')} in {summary.duration_s:.2f} s",
            error=status not in ("completed", "canceled"),
        )
        self.settings.show_paused(False)
        self._set_buttons()
        self._update_status()

    def _on_preview_ready(self, w: int, conventional: Any) -> None:
        if self._session is not None:
            problem = self.recon.show_preview(w, conventional)
            if problem:
                self.status.message(problem, error=True)

    def _on_window_started(self, w: int) -> None:
        if self._session is None:
            return
        first = "" if self._session.done else " (the first window also compiles the model)"
        self.status.fit_text = f"window {w}: preparing{first}"
        self._update_status()

    def _on_progress(self, w: int, step: int, metrics: dict) -> None:
        if self._session is not None:
            from nstm_acquire.nstm.fit import start_text

            loss = metrics.get("loss", float("nan"))
            self.status.fit_text = f"window {w}: step {step}{start_text(metrics)}, loss {loss:.3e}"

    def _on_window_done(self, w: int, result: Any) -> None:
        if self._session is None:
            return
        fit = getattr(result, "fit", None)
        if fit is not None:
            self.status.fit_text = f"window {w} done: {fit.steps} steps, loss {fit.final_loss:.2e}"
            self.status.message(f"window {w} reconstructed: {fit.summary()}")
        self.recon.show_result(w, result)
        self._update_status()
        self.window_reconstructed.emit(str(self._session.store), int(w))

    def _on_error(self, source: str, message: str) -> None:
        self.status.message(f"{source}: {message}", error=True)

    def _on_finished(self, summary: Any) -> None:
        if self._session is not None:
            self._finish_run()


def _two_line(caption: QLabel) -> None:
    """Room for a two-line caption under an image."""
    caption.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    caption.setMinimumHeight(2 * caption.fontMetrics().height() + 4)


def _n(count: int, noun: str) -> str:
    """``"1 window"``, ``"2 windows"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
