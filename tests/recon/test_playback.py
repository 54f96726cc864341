"""After the run: render a stored reconstruction at any time, follow points, export."""

import numpy as np
import pytest

from nstm_acquire.acquire.controller import AcquisitionController
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.cli import main
from nstm_acquire.nstm.config import default_config
from nstm_acquire.recon.chain import StoreReconstructor
from nstm_acquire.recon.playback import StoredReconstruction, parse_times

VX_UM_S = 20.0


@pytest.fixture
def reconstructed(fast_sim, open_scope, tmp_path):
    scope = open_scope(fast_sim(frame_shape=(48, 48), motion={"dpc": f"translation:vx={VX_UM_S}"}))
    store = tmp_path / "run.zarr"
    AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=2), store).run()
    config = default_config().with_fit(max_steps=150, coarse_to_fine_steps=75, warm_max_steps=75)
    StoreReconstructor(store, config).run()
    return store


def test_times_parse_lists_and_ranges():
    np.testing.assert_allclose(parse_times("0.1, 0.3"), [0.1, 0.3])
    np.testing.assert_allclose(parse_times("0:0.2:0.1"), [0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match="start:stop:step"):
        parse_times("0:1:0")


def test_render_at_shot_times_reproduces_the_stored_scenes(reconstructed):
    rec = StoredReconstruction(reconstructed)
    times = rec.reader.times_s()
    scenes, motion, which = rec.render(times)
    np.testing.assert_allclose(scenes, rec.reader.scene(), atol=1e-4)
    assert list(which) == [0] * 4 + [1] * 4
    # between two shots the scene is in between (temporal interpolation)
    mid, _, _ = rec.render(np.array([0.5 * (times[0] + times[1])]))
    err_mid = np.abs(mid[0] - 0.5 * (scenes[0] + scenes[1])).mean()
    assert err_mid < 0.2 * np.abs(scenes[1] - scenes[0]).mean() + 1e-3


def test_trajectories_follow_the_known_translation(reconstructed):
    rec = StoredReconstruction(reconstructed)
    shots = rec.reader.times_s()
    times = np.linspace(shots[0], shots[-1], 12)
    tracks = rec.trajectories(np.array([[24.0, 20.0], [30.0, 26.0]]), times)
    expected_dx = VX_UM_S * (times[-1] - times[0]) / rec.pixel_size_um
    moved = tracks[:, -1] - tracks[:, 0]
    np.testing.assert_allclose(moved[:, 1], expected_dx, rtol=0.15)
    np.testing.assert_allclose(moved[:, 0], 0.0, atol=0.3 * expected_dx)


def test_cli_exports_a_tiff_stack_and_a_csv(reconstructed, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tif, csv = tmp_path / "stack.tif", tmp_path / "tracks.csv"
    assert main([ "render", str(reconstructed), "--times", "0.05,0.1,0.15", "--channel", "phase_rad", "--out", str(tif)]) == 0
    assert tifffile.imread(tif).shape == (3, 48, 48)
    assert main(["trajectory", str(reconstructed), "--points", "20,20;30,30", "--out", str(csv)]) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "point,t_s,y_px,x_px,y_um,x_um" and len(lines) == 1 + 2 * 50
    assert main(["trajectory", str(reconstructed), "--points", "oops", "--out", str(csv)]) == 2
