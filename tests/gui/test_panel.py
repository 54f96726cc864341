"""The PyQt6 panel: image helpers against numpy answers, and real runs on the simulated microscope.

Offscreen Qt (tests/conftest.py sets QT_QPA_PLATFORM). The run tests use a 32 x 48 frame so a
swapped axis shows up as a wrong aspect ratio, and a 50-step NSTM so the first window's
compilation dominates (about 20 s on 2 CPU cores).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PyQt6.QtCore import QTimer  # noqa: E402
from PyQt6.QtGui import QImage  # noqa: E402

from nstm_acquire.gui.images import (  # noqa: E402
    arrow_field,
    arrow_gain,
    compose_pixmap,
    content_displacement,
    display_limits,
    gray_qimage,
    scale_bar_length_um,
    to_uint8,
)
from nstm_acquire.gui.panel import NstmAcquirePanel, channel_choices  # noqa: E402
from nstm_acquire.nstm.config import default_config  # noqa: E402
from nstm_acquire.store import ReconReader, StoreReader  # noqa: E402

SHAPE = (32, 48)  # (Y, X): not square, so the aspect ratio tells the axes apart


def small_nstm():
    return default_config().with_fit(max_steps=50, coarse_to_fine_steps=25, warm_max_steps=25)


def rgb(pixmap) -> np.ndarray:
    """(H, W, 3) uint8 of a QPixmap."""
    img = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    buf = np.frombuffer(img.constBits().asstring(img.sizeInBytes()), np.uint8)
    return buf.reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()


def expected_gray(image: np.ndarray, limits_from: np.ndarray) -> np.ndarray:
    """Independent numpy version of the display mapping: 0.5-99.5 percentiles to 0..255."""
    values = limits_from[np.isfinite(limits_from)].astype(np.float64)
    lo, hi = np.percentile(values, [0.5, 99.5])
    return np.clip(np.rint((image.astype(np.float64) - lo) * 255.0 / (hi - lo)), 0, 255)


# ------------------------------------------------------------------ pure helpers
def test_display_limits_are_the_percentiles_of_finite_values():
    rng = np.random.default_rng(1)
    image = rng.normal(3.0, 2.0, (40, 30))
    image[0, :5] = np.nan
    lo, hi = display_limits(image)
    finite = image[np.isfinite(image)]
    np.testing.assert_allclose([lo, hi], np.percentile(finite, [0.5, 99.5]))
    assert display_limits(np.full((4, 4), 7.0)) == (7.0, 7.0 + 1e-6)
    with pytest.raises(ValueError, match="low_percentile"):
        display_limits(image, 60, 40)


def test_to_uint8_maps_the_limits_linearly_and_clips():
    image = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]])
    out = to_uint8(image, (0.0, 1.0))
    np.testing.assert_array_equal(out, [[0, 0, 128, 255, 255, 0]])
    assert out.dtype == np.uint8
    with pytest.raises(ValueError, match="limits"):
        to_uint8(image, (1.0, 1.0))


def test_gray_qimage_keeps_every_pixel_with_odd_widths(qapp):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (5, 7), dtype=np.uint8)  # 7-byte rows: padded to 8 inside QImage
    q = gray_qimage(a)
    assert (q.width(), q.height()) == (7, 5)
    back = np.array([[q.pixelColor(x, y).red() for x in range(7)] for y in range(5)])
    np.testing.assert_array_equal(back, a)


def test_content_displacement_of_a_known_translation():
    """scene(x, t) = template(x + d(x, t)) with d = -v t: the content moves by +v (t - t0)."""
    times = np.array([0.1, 0.2, 0.35, 0.5])
    v = np.array([3.0, -2.0])  # px/s (y, x)
    T, Z, Y, X = len(times), 2, 6, 5
    motion = np.zeros((T, 2, Z, Y, X), np.float32)
    motion[:, 0] = (-v[0] * times)[:, None, None, None]
    motion[:, 1] = (-v[1] * times)[:, None, None, None]
    for t in range(T):
        d = content_displacement(motion, t, z=1)
        assert d.shape == (2, Y, X)
        np.testing.assert_allclose(d[0], v[0] * (times[t] - times[0]), atol=1e-6)
        np.testing.assert_allclose(d[1], v[1] * (times[t] - times[0]), atol=1e-6)
    # 3D motion (dz, dy, dx): the lateral part is used
    motion3 = np.concatenate([np.ones((T, 1, Z, Y, X), np.float32), motion], axis=1)
    np.testing.assert_allclose(content_displacement(motion3, 3), content_displacement(motion, 3))
    with pytest.raises(ValueError, match="t=4"):
        content_displacement(motion, 4)


def test_arrow_field_samples_the_field_at_grid_points():
    Y, X, step = 10, 13, 4
    yy, xx = np.mgrid[:Y, :X].astype(float)
    field = np.stack([yy * 0.1, -xx * 0.2])  # dy = 0.1 y, dx = -0.2 x
    origins, vectors = arrow_field(field, step)
    ys, xs = np.arange(2, Y, step), np.arange(2, X, step)
    assert len(origins) == len(ys) * len(xs)
    assert {tuple(o) for o in origins} == {(float(y), float(x)) for y in ys for x in xs}
    np.testing.assert_allclose(vectors[:, 0], 0.1 * origins[:, 0])
    np.testing.assert_allclose(vectors[:, 1], -0.2 * origins[:, 1])


def test_arrow_gain_fills_the_grid_spacing_and_is_capped():
    vectors = np.array([[0.0, 0.3], [0.4, 0.0]])  # longest 0.4 px
    assert arrow_gain(vectors, step=8, max_gain=100, fill=0.9) == pytest.approx(0.9 * 8 / 0.4)
    assert arrow_gain(vectors, step=8, max_gain=10) == 10
    assert arrow_gain(np.array([[30.0, 40.0]]), step=10) == pytest.approx(0.9 * 10 / 50)  # shrinks
    assert arrow_gain(np.zeros((3, 2)), step=8) == 0.0


@pytest.mark.parametrize(("field_um", "bar_um"), [(16.0, 2.0), (64.0, 10.0), (300.0, 50.0), (1.2, 0.2)])
def test_scale_bar_is_a_round_length_near_a_fifth_of_the_field(field_um, bar_um):
    assert scale_bar_length_um(field_um) == pytest.approx(bar_um)


def test_compose_pixmap_keeps_the_aspect_and_draws_arrows_only_with_motion(qapp):
    image = np.zeros((20, 40))
    image[:, 20:] = 1.0
    plain, gain0 = compose_pixmap(image, (0.0, 1.0), min_display_px=200)
    assert (plain.width(), plain.height()) == (200, 100) and gain0 == 0.0
    a = rgb(plain)
    np.testing.assert_array_equal(a[50, 10], [0, 0, 0])  # left half black, right half white
    np.testing.assert_array_equal(a[50, 190], [255, 255, 255])
    assert not _yellow(a).any()
    shift = np.zeros((2, 20, 40))
    shift[1] = 0.5  # half a pixel to the right everywhere
    arrows, gain = compose_pixmap(image, (0.0, 1.0), displacement=shift, min_display_px=200)
    step = max(4, round(40 / 10))  # the default: about 10 arrows across, at least 4 px apart
    assert gain == pytest.approx(min(10.0, 0.9 * step / 0.5))
    yellow = _yellow(rgb(arrows))
    assert yellow.sum() > 50
    cols = np.flatnonzero(yellow.any(axis=0))
    # the first arrows start at the centre of pixel column step // 2, (2 + 0.5) * 5 display px,
    # and point right (+x): nothing is drawn left of that but the pen's half width
    assert (step // 2 + 0.5) * 5 - 3 <= cols.min() <= (step // 2 + 0.5) * 5


def _yellow(a: np.ndarray) -> np.ndarray:
    r, g, b = (a[..., i].astype(int) for i in range(3))
    return (r > 180) & (g > 140) & (b < 90)


def test_channel_choices_put_phase_first_for_dpc():
    from nstm_acquire.physics.dpc.forward import DpcForward

    names = list(DpcForward.channel_names)
    assert channel_choices("dpc", 2) == [
        ("phase (rad)", names.index("phase_rad")),
        ("absorption", names.index("absorption")),
    ]
    assert channel_choices("sim2d", 1) == [("density", 0)]
    assert channel_choices("sim3d", 2) == [("density", 0), ("channel 1", 1)]


# ------------------------------------------------------------------ panel runs
@pytest.fixture
def make_panel(qtbot, fast_sim, tmp_path):
    def make(**sim_changes):
        sim_changes.setdefault("frame_shape", SHAPE)
        panel = NstmAcquirePanel(config=fast_sim(**sim_changes), out_dir=tmp_path, nstm_config=small_nstm())
        qtbot.addWidget(panel)  # closed (and its run stopped) at teardown
        panel.resize(1200, 700)
        panel.show()
        return panel

    return make


def test_a_two_window_dpc_run_shows_frames_reconstructions_and_status(qtbot, make_panel, tmp_path):
    panel = make_panel()
    assert panel.settings.modality_box.currentText() == "dpc"
    assert panel.settings.patterns_label.text() == "4 shots: top, bottom, left, right"
    assert panel.settings.start_button.isEnabled() and not panel.settings.stop_button.isEnabled()
    panel.settings.windows_spin.setValue(2)
    panel.settings.store_name_edit.setText("two")

    ticks: list[float] = []  # the GUI thread's event loop must keep turning during the run
    beat = QTimer()
    beat.timeout.connect(lambda: ticks.append(time.monotonic()))
    beat.start(50)
    with qtbot.waitSignal(panel.run_finished, timeout=180_000) as finished:
        assert panel.start()
        assert not panel.settings.start_button.isEnabled() and panel.settings.stop_button.isEnabled()
        assert panel.settings.pause_button.isEnabled() and not panel.settings.windows_spin.isEnabled()
    beat.stop()
    summary = finished.args[0]
    assert summary.status == "completed" and summary.frames_written == 8

    assert max(np.diff(ticks)) < 2.0, "the GUI thread was blocked during the run"
    f = panel.status.fields
    assert f["frames"].text() == "8 / 8"
    assert f["windows"].text() == "2 / 2"
    assert f["reconstructed"].text() == "2"
    assert f["waiting"].text() == "0"
    assert "window 1 done" in f["fit"].text()
    assert panel.settings.start_button.isEnabled() and not panel.settings.stop_button.isEnabled()
    assert not panel.settings.pause_button.isEnabled()

    store = tmp_path / "two.zarr"
    recon = ReconReader(store)
    assert recon.windows_done() == [0, 1]
    n_times = len(recon.times_s(1))
    assert n_times == 4  # one render time per shot
    assert (panel.recon.time_slider.minimum(), panel.recon.time_slider.maximum()) == (0, n_times - 1)
    assert panel.recon.time_slider.value() == n_times - 1  # the newest state is shown first
    assert panel.recon.time_label.text() == f"t = {recon.times_s(1)[-1]:.3f} s (4/4)"

    raw = panel.camera.view.pixmap()
    assert not raw.isNull() and raw.width() * SHAPE[0] == raw.height() * SHAPE[1]
    assert panel.camera.caption.text().startswith("window 1, shot 3 (right)")
    shown = panel.recon.view.pixmap()
    assert not shown.isNull() and shown.width() * SHAPE[0] == shown.height() * SHAPE[1]
    assert panel.recon.caption.text().startswith("window 1: NSTM")

    # the displayed image is the stored scene at the slider's time and the chosen channel
    panel.recon.motion_check.setChecked(False)
    scene = recon.scene(1)  # (T, C, Z, Y, X)
    for label in ("phase (rad)", "absorption"):
        panel.recon.channel_box.setCurrentText(label)
        c = panel.recon.channel_box.currentData()
        for t in (0, n_times - 1):
            panel.recon.time_slider.setValue(t)
            a = rgb(panel.recon.view.pixmap())[..., 0].astype(float)
            k = a.shape[1] // SHAPE[1]
            centres = a[k // 2 :: k, k // 2 :: k][: SHAPE[0], : SHAPE[1]]
            want = expected_gray(scene[t, c, 0], scene[:, c, 0])
            top = slice(0, int(SHAPE[0] * 0.75))  # below: the scale bar
            assert np.abs(centres[top] - want[top]).max() <= 1, (label, t)

    # the camera view shows the last stored frame
    last = StoreReader(store).frame(1, 3, 0)
    a = rgb(panel.camera.view.pixmap())[..., 0].astype(float)
    k = a.shape[1] // SHAPE[1]
    centres = a[k // 2 :: k, k // 2 :: k][: SHAPE[0], : SHAPE[1]]
    top = slice(0, int(SHAPE[0] * 0.75))
    assert np.abs(centres[top] - expected_gray(last, last)[top]).max() <= 1

    # arrows are drawn on the NSTM image when switched on, at a later time than the first
    panel.recon.time_slider.setValue(n_times - 1)
    panel.recon.motion_check.setChecked(True)
    assert _yellow(rgb(panel.recon.view.pixmap())).sum() > 20
    assert f"motion since {recon.times_s(1)[0]:.3f} s" in panel.recon.caption.text()


def test_stop_cancels_a_long_run_cleanly(qtbot, make_panel, tmp_path):
    panel = make_panel(realtime=True)  # a real-time camera: 200 windows would take about 30 s
    panel.settings.windows_spin.setValue(200)
    panel.settings.store_name_edit.setText("long")
    assert panel.start()
    qtbot.waitUntil(lambda: panel.status.fields["frames"].text().split(" / ")[0] not in ("0", "–"), timeout=20_000)
    with qtbot.waitSignal(panel.run_finished, timeout=120_000) as finished:
        panel.settings.stop_button.click()
        assert not panel.settings.stop_button.isEnabled() and not panel.settings.pause_button.isEnabled()
    summary = finished.args[0]
    assert summary.status == "canceled"
    assert 0 < summary.frames_written < summary.frames_expected == 800
    assert StoreReader(tmp_path / "long.zarr").timing_summary()["frames_acquired"] == summary.frames_written
    assert panel.status.fields["acquisition"].text() == "canceled"
    assert panel.settings.start_button.isEnabled()
    assert "ERROR" not in panel.status.log.toPlainText()


def test_pause_holds_the_acquisition_and_resume_continues(qtbot, make_panel):
    panel = make_panel(realtime=True)
    panel.settings.windows_spin.setValue(30)
    panel.settings.interval_spin.setValue(0.3)
    panel.settings.store_name_edit.setText("paused")
    assert panel.start()
    frames = lambda: int(panel.status.fields["frames"].text().split(" / ")[0])  # noqa: E731
    qtbot.waitUntil(lambda: panel.status.fields["frames"].text() not in ("–",) and frames() > 0, timeout=20_000)
    panel.settings.pause_button.click()
    assert panel.settings.pause_button.isChecked() and panel.settings.pause_button.text() == "Resume"
    # the window being acquired ends, then the runner holds (a request pymmcore-plus loses while
    # it sleeps until the next window is repeated by the panel: at most one more window)
    deadline, before, settled = time.monotonic() + 8.0, frames(), False
    while time.monotonic() < deadline and not settled:
        qtbot.wait(700)  # more than two window intervals
        now = frames()
        settled = now == before and panel.status.fields["acquisition"].text() == "paused"
        before = now
    assert settled, "the acquisition did not pause"
    held = frames()
    qtbot.wait(900)  # three window intervals
    assert frames() == held, "frames kept arriving while paused"
    assert held % 4 == 0, "the pause split a window"
    panel.settings.pause_button.click()
    assert panel.settings.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: frames() > held, timeout=10_000)
    with qtbot.waitSignal(panel.run_finished, timeout=120_000):
        panel.stop()


def test_a_pause_that_cannot_take_effect_is_explained(qtbot, make_panel):
    """Back-to-back windows on sequenceable hardware are one hardware-triggered burst, which
    pymmcore-plus can cancel but not pause: the panel must not pretend it paused."""
    panel = make_panel(realtime=True)
    panel.settings.windows_spin.setValue(40)
    panel.settings.store_name_edit.setText("burst")
    assert panel.start()
    qtbot.waitUntil(lambda: panel.controller.summary.frames_written > 0, timeout=20_000)
    panel.settings.pause_button.click()
    qtbot.waitUntil(lambda: "can be stopped but not paused" in panel.status.log.toPlainText(), timeout=10_000)
    assert panel.status.fields["acquisition"].text() == "pause requested…"
    with qtbot.waitSignal(panel.run_finished, timeout=120_000):
        panel.stop()


def test_closing_the_window_during_a_run_stops_it(qtbot, make_panel):
    panel = make_panel(realtime=True)
    panel.settings.windows_spin.setValue(200)
    panel.settings.store_name_edit.setText("closed")
    assert panel.start()
    controller, worker = panel.controller, panel.worker
    qtbot.waitUntil(lambda: controller.summary.frames_written > 0, timeout=20_000)
    panel.close()
    assert controller.wait(0), "the acquisition was still running after the window closed"
    assert panel.last_summary.status == "canceled"
    assert not panel.is_running
    assert worker.join(60), "the reconstruction thread did not end"  # a compile in progress ends first


def test_errors_are_shown_in_the_status_area_not_raised(qtbot, make_panel, tmp_path):
    panel = make_panel()
    # a store that already exists: the acquisition thread refuses it, the panel reports it
    (tmp_path / "taken.zarr").mkdir()
    panel.settings.windows_spin.setValue(1)
    panel.settings.store_name_edit.setText("taken")
    with qtbot.waitSignal(panel.run_finished, timeout=60_000) as finished:
        assert panel.start()
    assert finished.args[0].status == "error"
    log = panel.status.log.toPlainText()
    assert "ERROR: acquisition:" in log and "already exists" in log
    assert panel.status.fields["acquisition"].text() == "error"
    assert panel.settings.start_button.isEnabled()

    # an output folder below a regular file cannot be created
    (tmp_path / "a_file").write_text("not a folder")
    panel.settings.out_dir_edit.setText(str(tmp_path / "a_file" / "runs"))
    panel.settings.store_name_edit.setText("x")
    with qtbot.waitSignal(panel.run_finished, timeout=60_000) as finished:
        assert panel.start()
    assert finished.args[0].status == "error"
    assert panel.status.log.toPlainText().count("ERROR: acquisition:") == 2

    # settings refused before anything starts
    panel.settings.store_name_edit.setText("../escape")
    assert not panel.start() and not panel.is_running
    assert "store name '../escape'" in panel.status.log.toPlainText().splitlines()[-1]
    panel.settings.out_dir_edit.setText("")
    assert not panel.start()
    assert "output folder is empty" in panel.status.log.toPlainText().splitlines()[-1]

    # a missing hardware configuration keeps the one loaded
    before = panel.microscope
    assert not panel.set_hardware_config(tmp_path / "missing.yaml")
    assert "no such hardware configuration" in panel.status.log.toPlainText().splitlines()[-1]
    assert panel.microscope is before and panel.settings.start_button.isEnabled()


def test_a_sim3d_run_reconstructs_a_volume_and_offers_its_planes(qtbot, make_panel, tmp_path):
    panel = make_panel()
    panel.settings.modality_box.setCurrentText("sim3d")
    assert panel.settings.planes_row.isEnabled()
    panel.settings.planes_spin.setValue(2)  # the smallest stack: this checks the panel, not the fit
    panel.settings.windows_spin.setValue(1)
    panel.settings.store_name_edit.setText("vol")
    with qtbot.waitSignal(panel.run_finished, timeout=300_000) as finished:
        assert panel.start()
    summary = finished.args[0]
    assert summary.status == "completed" and summary.frames_written == 15 * 2
    assert panel.status.fields["reconstructed"].text() == "1"
    recon = ReconReader(tmp_path / "vol.zarr")
    assert recon.windows_done() == [0]
    scene = recon.scene(0)
    assert scene.shape == (15, 1, 2, 2 * SHAPE[0], 2 * SHAPE[1])  # density on the 2x finer grid
    assert np.all(scene >= 0)  # fluorescence density is non-negative
    assert recon.windows_info()[0]["sim_parameters"]["policy"] == "configured"
    assert panel.recon.plane_spin.isEnabled() and panel.recon.plane_spin.maximum() == 1
    shown = panel.recon.view.pixmap()
    assert not shown.isNull() and shown.width() * SHAPE[0] == shown.height() * SHAPE[1]
    assert panel.recon.channel_box.currentText() == "density"


def test_reconstruction_view_goes_back_to_earlier_windows_and_levels_can_be_fixed(qapp):
    from nstm_acquire.gui.reconstruction import ReconstructionView

    view = ReconstructionView()
    view.begin("dpc", 0.5, 16)
    rng = np.random.default_rng(3)
    previews = {w: rng.normal(w, 1.0, (2, 1, 8, 16)) for w in range(3)}
    for w in (0, 2, 1):  # window 1 arrives late: the newest (2) stays shown
        assert view.show_preview(w, previews[w]) is None
    assert view.image.window == 2 and (view.window_spin.minimum(), view.window_spin.maximum()) == (0, 2)
    view.window_spin.setValue(0)  # going back stops following the newest
    assert view.image.window == 0 and not view.newest_check.isChecked()
    np.testing.assert_array_equal(view.image.scene[0], previews[0])
    view.show_preview(3, rng.normal(3.0, 1.0, (2, 1, 8, 16)))
    assert view.image.window == 0 and view.window_spin.maximum() == 3
    view.newest_check.setChecked(True)
    assert view.image.window == 3 and view.window_spin.value() == 3
    # fixed levels: the caption gives them, and auto levels come back when ticked
    view.levels.set_manual(-1.0, 2.0)
    assert "-1 … 2" in view.caption.text()
    view.levels.auto_check.setChecked(True)
    c = int(view.channel_box.currentData())
    lo, hi = display_limits(view.image.scene[:, c, 0])
    assert f"{lo:.3g} … {hi:.3g}" in view.caption.text()
