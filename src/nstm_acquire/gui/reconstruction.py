"""The reconstruction view of the panel: the newest window, preview first, then the NSTM.

:class:`ReconstructionView` shows one :class:`ReconImage` at a time: the conventional
(static-sample) preview as soon as a window is complete, then the NSTM result with its render
times (a slider), its channels (DPC phase and absorption, SIM density), its planes (SIM 3D) and
the motion as arrows. An older window arriving late never replaces a newer one. The
:attr:`~ReconstructionView.window_spin` goes back to any of the last ``HISTORY_WINDOWS``
windows of the run (kept in memory; older ones: open the store in napari, docs/napari.md);
while "newest" is ticked the view follows each new window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from nstm_acquire.gui.images import compose_pixmap, content_displacement, display_limits
from nstm_acquire.gui.levels import LevelsControl
from nstm_acquire.gui.views import ImageView

__all__ = ["RGB_CHANNEL", "ReconImage", "ReconstructionView", "channel_choices"]

RGB_CHANNEL = -1
"""The channel choice that shows channels 0, 1, 2 together as red, green, blue (rolling_shutter)."""


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
    elif modality in ("sim2d", "sim3d"):
        named.append(("density", 0))
    elif modality == "rolling_shutter" and n_channels == 3:  # a colour video: all three first
        named += [("colour (RGB)", RGB_CHANNEL), ("red", 0), ("green", 1), ("blue", 2)]
    used = {i for _, i in named}
    named += [(f"channel {i}", i) for i in range(n_channels) if i not in used]
    return named


@dataclass
class ReconImage:
    """What the reconstruction view shows: a preview (T = 1) or an NSTM result."""

    window: int
    kind: str  # "preview" or "nstm"
    scene: np.ndarray  # (T, C, Z, Y, X)
    times_s: np.ndarray | None  # (T,), s
    motion: np.ndarray | None  # (T, D, Z, Y, X), output pixels
    pixel_size_um: float | None
    note: str = ""
    limits: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    trust: dict | None = None  # the window's trust report (recon/trust.py; docs/trust.md)


HISTORY_WINDOWS = 64
"""Windows whose reconstruction the view keeps to go back to (the newest ones)."""


class ReconstructionView(QGroupBox):
    """The newest reconstructed window (:attr:`view`, :attr:`caption`) and its controls.

    Controls: :attr:`channel_box`, :attr:`plane_spin` (SIM 3D), :attr:`motion_check`,
    :attr:`time_slider` and :attr:`time_label`.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Reconstruction: latest window", parent)
        layout = QVBoxLayout(self)
        self.view = ImageView(placeholder="no reconstruction yet")
        self.caption = QLabel("–")
        self.caption.setWordWrap(True)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        self.trust_label = QLabel("trust: –")  # verdict of the window shown (docs/trust.md)
        self.trust_label.setWordWrap(True)
        self.trust_label.setToolTip("ok / doubtful / untrusted: can this window be believed? (docs/trust.md)")
        layout.addWidget(self.trust_label)
        layout.addLayout(self._build_controls())
        self.levels = LevelsControl(unit="channel's unit")
        self.levels.changed.connect(self._controls_changed)
        layout.addWidget(self.levels)
        self.image: ReconImage | None = None
        self.history: dict[int, ReconImage] = {}  # window -> its latest image (preview, then NSTM)
        self._modality = ""
        self._pixel_size_um = 1.0
        self._frame_width = 1

    def _build_controls(self) -> QGridLayout:
        self.channel_box = QComboBox()
        self.channel_box.setToolTip("scene channel shown")
        self.plane_spin = QSpinBox()
        self.plane_spin.setPrefix("plane ")
        self.plane_spin.setEnabled(False)
        self.plane_spin.setVisible(False)
        self.motion_check = QCheckBox("motion arrows")
        self.motion_check.setChecked(True)
        self.motion_check.setToolTip(
            "arrows: how far the sample moved from the window's first shot to the time shown "
            "(magnified; the gain is in the caption)"
        )
        self.time_slider = QSlider(Qt.Orientation.Horizontal)
        self.time_slider.setRange(0, 0)
        self.time_slider.setEnabled(False)
        self.time_slider.setToolTip("render time within the window (one per shot)")
        self.time_label = QLabel("t = –")
        self.time_label.setMinimumWidth(150)
        self.window_spin = QSpinBox()
        self.window_spin.setPrefix("window ")
        self.window_spin.setEnabled(False)
        self.window_spin.setToolTip(f"window shown (the last {HISTORY_WINDOWS} of the run are kept)")
        self.newest_check = QCheckBox("newest")
        self.newest_check.setChecked(True)
        self.newest_check.setToolTip("follow each new window as it is reconstructed")
        self.window_spin.valueChanged.connect(self._window_chosen)
        self.newest_check.toggled.connect(self._newest_toggled)
        self.channel_box.currentIndexChanged.connect(self._controls_changed)
        self.plane_spin.valueChanged.connect(self._controls_changed)
        self.motion_check.toggled.connect(self._controls_changed)
        self.time_slider.valueChanged.connect(self._controls_changed)
        grid = QGridLayout()
        grid.addWidget(QLabel("Channel"), 0, 0)
        grid.addWidget(self.channel_box, 0, 1)
        grid.addWidget(self.plane_spin, 0, 2)
        grid.addWidget(self.motion_check, 0, 3)
        grid.addWidget(QLabel("Time"), 1, 0)
        grid.addWidget(self.time_slider, 1, 1, 1, 2)
        grid.addWidget(self.time_label, 1, 3)
        grid.addWidget(QLabel("Window"), 2, 0)
        grid.addWidget(self.window_spin, 2, 1)
        grid.addWidget(self.newest_check, 2, 2)
        grid.setColumnStretch(1, 1)
        return grid

    # ----------------------------------------------------------------- runs
    def begin(self, modality: str, pixel_size_um: float, frame_width: int) -> None:
        """A new run: clear the view; camera pixel size (µm) and frame width (px) set the scale."""
        self._modality, self._pixel_size_um, self._frame_width = modality, pixel_size_um, frame_width
        self.image = None
        self.trust_label.setText("trust: –")
        self.history = {}
        with _Blocked(self.window_spin, self.newest_check):
            self.window_spin.setRange(0, 0)
            self.window_spin.setEnabled(False)
            self.newest_check.setChecked(True)
        self.view.clear("waiting for the first complete window")
        self.caption.setText("–")
        with self._controls_blocked():
            self.time_slider.setRange(0, 0)
            self.time_slider.setEnabled(False)
            self.plane_spin.setRange(0, 0)
            self.plane_spin.setEnabled(False)
            self.channel_box.clear()
            self.time_label.setText("t = –")

    def _output_pixel_um(self, nx: int) -> float:
        """Pixel size of an output grid ``nx`` pixels wide, µm (SIM reconstructs on a finer grid)."""
        return self._pixel_size_um * self._frame_width / nx

    def show_preview(self, w: int, conventional: Any) -> str | None:
        """Show window ``w``'s conventional reconstruction ``(C, Z, Y, X)``; returns a problem, else None."""
        conv = np.asarray(conventional)
        if conv.ndim != 4:
            return f"window {w}: preview has shape {conv.shape}, expected (C, Z, Y, X)"
        self.show_image(
            ReconImage(
                window=w, kind="preview", scene=conv[None], times_s=None, motion=None,
                pixel_size_um=self._output_pixel_um(conv.shape[-1]),
                note="conventional (static-sample) preview; NSTM fitting…",
            )
        )  # fmt: skip
        return None

    def show_result(self, w: int, result: Any) -> None:
        """Show window ``w``'s NSTM result (a :class:`~nstm_acquire.recon.arrays.WindowResult`)."""
        fit = getattr(result, "fit", None)
        note = f"NSTM, {fit.steps} steps, loss {fit.final_loss:.2e}" if fit is not None else "NSTM"
        scene = np.asarray(result.scene)
        self.show_image(
            ReconImage(
                window=w, kind="nstm", scene=scene,
                times_s=np.asarray(result.times_s, dtype=np.float64).reshape(-1),
                motion=np.asarray(result.motion), pixel_size_um=self._output_pixel_um(scene.shape[-1]), note=note,
                trust=(getattr(result, "info", None) or {}).get("trust"),
            )
        )  # fmt: skip

    def show_image(self, image: ReconImage) -> None:
        """Keep ``image`` in the history and show it if it is the newest window and the view
        follows the newest ("newest" ticked); keeps the channel and plane chosen."""
        self.history[image.window] = image
        for old in sorted(self.history)[:-HISTORY_WINDOWS]:
            del self.history[old]
        with _Blocked(self.window_spin):
            self.window_spin.setRange(min(self.history), max(self.history))
            self.window_spin.setEnabled(len(self.history) > 1)
        shown = None if self.image is None else self.image.window
        newer = shown is None or image.window > shown
        if not (image.window == shown or (self.newest_check.isChecked() and newer)):
            return  # an older window arrived late, or the user looks at an earlier one
        with _Blocked(self.window_spin):
            self.window_spin.setValue(image.window)
        self._display(image)

    def _window_chosen(self, w: int) -> None:
        image = self.history.get(int(w))
        if image is None:
            return
        if w != max(self.history) and self.newest_check.isChecked():
            with _Blocked(self.newest_check):
                self.newest_check.setChecked(False)
        self._display(image)

    def _newest_toggled(self, newest: bool) -> None:
        if newest and self.history:
            w = max(self.history)
            with _Blocked(self.window_spin):
                self.window_spin.setValue(w)
            self._display(self.history[w])

    def _display(self, image: ReconImage) -> None:
        n_t, n_c, n_z = image.scene.shape[:3]
        choices = channel_choices(self._modality, n_c)
        keep_channel = self.channel_box.currentData()
        keep_plane = self.plane_spin.value() if self.plane_spin.isEnabled() else None
        with self._controls_blocked():
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
        self.image = image
        self._render()

    # ------------------------------------------------------------- drawing
    def _controls_blocked(self) -> _Blocked:
        return _Blocked(self.time_slider, self.plane_spin, self.channel_box)

    def _controls_changed(self, *_: Any) -> None:
        if self.image is not None:
            self._render()

    def _render(self) -> None:
        image = self.image
        if image is None or self.channel_box.count() == 0:
            return
        n_t = image.scene.shape[0]
        c = int(self.channel_box.currentData())
        z = int(self.plane_spin.value())
        t = min(int(self.time_slider.value()), n_t - 1)
        shown = slice(0, 3) if c == RGB_CHANNEL else c  # RGB: channels 0-2 as one colour picture
        if (c, z) not in image.limits:  # one range for all times: scrubbing does not flicker
            image.limits[(c, z)] = display_limits(image.scene[:, shown, z])
        limits = self.levels.limits(image.limits[(c, z)])
        displacement = None
        if self.motion_check.isChecked() and image.motion is not None and n_t > 1:
            displacement = content_displacement(image.motion, t, z)
        pixmap, gain = compose_pixmap(
            image.scene[t, shown, z], limits, displacement=displacement, pixel_size_um=image.pixel_size_um
        )
        self.view.set_pixmap(pixmap)
        if image.times_s is not None and n_t > 0:
            self.time_label.setText(f"t = {image.times_s[t]:.3f} s ({t + 1}/{n_t})")
        else:
            self.time_label.setText("static preview")
        arrows = ""
        if displacement is not None and image.times_s is not None:
            arrows = f"; arrows ×{gain:.1f}: motion since {image.times_s[0]:.3f} s" if gain > 0 else "; no motion"
        plane = f", plane {z}" if image.scene.shape[2] > 1 else ""
        self.trust_label.setText(trust_text(image))
        self.caption.setText(
            f"window {image.window}: {image.note}\n"
            f"{self.channel_box.currentText()}{plane} {limits[0]:.3g} … {limits[1]:.3g}{arrows}"
        )


def trust_text(image: ReconImage) -> str:
    """One line for the trust label: the shown window's verdict and its reasons."""
    if image.kind != "nstm":
        return "trust: – (preview; judged once the NSTM result is in)"
    report = image.trust
    if not report:
        return "trust: not computed"
    reasons = report.get("reasons") or []
    return f"trust: {report.get('verdict', '?')}" + (" – " + " ".join(reasons) if reasons else "")


class _Blocked:
    """``with``: the given widgets emit no signals inside the block."""

    def __init__(self, *widgets: QWidget) -> None:
        self.widgets = widgets

    def __enter__(self) -> None:
        for w in self.widgets:
            w.blockSignals(True)

    def __exit__(self, *exc: object) -> None:
        for w in self.widgets:
            w.blockSignals(False)
