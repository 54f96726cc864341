"""The panel as napari's dock widget, offscreen: Snap / Live and focus reachable, a simulated
DPC run reconstructed, and its store opened in the viewer as named layers."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")
napari_components = pytest.importorskip("napari.components")
from nstm_acquire.napari.widget import make_panel  # noqa: E402
from nstm_acquire.nstm.config import default_config  # noqa: E402

SHAPE = (32, 48)  # as tests/gui/test_panel.py: the same fit shapes reuse its compiled model


def small_nstm():
    return default_config().with_fit(max_steps=50, coarse_to_fine_steps=25, warm_max_steps=25)


def test_the_manifest_names_the_panel_as_a_widget(npe2pm):
    with npe2pm.tmp_plugin(package="nstm-acquire"):
        (widget,) = npe2pm.get_manifest("nstm-acquire").contributions.widgets
        command = npe2pm.get_command(widget.command)
    module, name = command.python_name.split(":")
    assert getattr(importlib.import_module(module), name) is make_panel


def test_docked_panel_has_live_snap_and_focus_and_its_run_opens_in_the_viewer(qtbot, fast_sim, tmp_path):
    viewer = napari_components.ViewerModel()
    panel = make_panel(viewer, config=fast_sim(frame_shape=SHAPE), out_dir=tmp_path, nstm_config=small_nstm())
    qtbot.addWidget(panel)
    tools = panel.tools
    assert panel.tabs.tabText(1) == "Microscope" and tools.isEnabled()
    # Snap: one camera frame of the configured shape in the preview
    tools.snap_button.click()
    assert not tools.preview.pixmap().isNull()
    assert tools.caption.text().startswith(f"{SHAPE[1]} x {SHAPE[0]} px")
    # Live: a timer of snaps; it stops when a run starts
    tools.live_button.click()
    assert tools.is_live and not tools.snap_button.isEnabled()
    qtbot.wait(250)
    # focus: the step buttons move the core's focus device by the step, in µm
    z0 = tools.core.getPosition()
    tools.z_step.setValue(1.5)
    tools.z_up.click()
    assert tools.core.getPosition() == pytest.approx(z0 + 1.5)
    assert tools.z_spin.value() == pytest.approx(z0 + 1.5)
    # manual contrast on the preview
    tools.levels.set_manual(100.0, 200.0)
    assert "display 100–200 counts" in tools.caption.text()

    assert panel.camera.isHidden() and panel.recon.isHidden()  # napari's canvas shows the store
    panel.settings.windows_spin.setValue(1)
    panel.settings.store_name_edit.setText("napari")
    shown_during_run: list[list[str]] = []
    panel.window_reconstructed.connect(lambda store, w: shown_during_run.append([la.name for la in viewer.layers]))
    with qtbot.waitSignal(panel.run_finished, timeout=180_000) as finished:
        assert panel.start()
        assert not tools.is_live and not tools.isEnabled()  # the run owns the camera
    assert finished.args[0].status == "completed"
    assert tools.isEnabled()
    # the window's layers were in the viewer as soon as it was reconstructed (the widget's slot
    # runs before the test's: connected first)
    assert len(shown_during_run) == 1 and "nstm phase (rad)" in shown_during_run[0]
    names = [layer.name for layer in viewer.layers]
    assert {"raw", "nstm phase (rad)", "nstm absorption", "nstm motion"} <= set(names)
    phase = viewer.layers["nstm phase (rad)"]
    assert phase.data.shape[1:3] == (4, 1)  # (window, render time per shot, z, y, x)
    assert np.all(np.isfinite(np.asarray(phase.data[0, 0, 0])))
    assert [str(u) for u in phase.units][0] == "second"
    assert names.count("nstm phase (rad)") == 1  # updated in place at the run's end, not added twice


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="napari's window needs OpenGL: run under xvfb-run")
def test_panel_docks_in_a_napari_window(qtbot, fast_sim, tmp_path, make_napari_viewer):
    viewer = make_napari_viewer()
    panel = make_panel(viewer, config=fast_sim(frame_shape=SHAPE), out_dir=tmp_path, nstm_config=small_nstm())
    dock = viewer.window.add_dock_widget(panel, name="nstm-acquire")
    assert dock.widget() is panel
    panel.tools.snap_button.click()
    assert not panel.tools.preview.pixmap().isNull()
    panel.shutdown()
