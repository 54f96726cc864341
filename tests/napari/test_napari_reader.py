"""The napari reader without a display: napari's ViewerModel opens a store written with the
project's writer API through the installed npe2 manifest, as named layers in µm and seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

napari_components = pytest.importorskip("napari.components")
from napari_store_factory import (  # noqa: E402
    PIXEL_UM,
    RECON_PIXEL_UM,
    SHAPE,
    WINDOW_PERIOD_S,
    make_dpc_store,
    shot_time_s,
)

from nstm_acquire.napari.reader import ARROWS_ACROSS, AXIS_LABELS, get_reader, read_store  # noqa: E402

VELOCITY = (0.5, -1.0)  # content motion of the tiny store, output px/s (dy, dx)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_dpc_store(tmp_path_factory.mktemp("napari") / "run.zarr", n_windows=3, velocity_px_per_s=VELOCITY)


@pytest.fixture
def plugin(npe2pm):
    """napari's plugin manager with this package's installed manifest (napari.manifest entry point)."""
    with npe2pm.tmp_plugin(package="nstm-acquire") as registered:
        yield registered


def test_napari_opens_the_store_with_this_plugin(store: Path, plugin):
    assert plugin.name == "nstm-acquire"
    viewer = napari_components.ViewerModel()
    layers = viewer.open(str(store), plugin="nstm-acquire")
    names = [layer.name for layer in layers]
    assert names == [
        "raw",
        "nstm conventional absorption",
        "nstm conventional phase (rad)",
        "nstm absorption",
        "nstm phase (rad)",
        "nstm motion",
    ]
    assert [type(layer).__name__ for layer in layers] == ["Image"] * 5 + ["Vectors"]
    for layer in layers:
        assert tuple(layer.axis_labels) == AXIS_LABELS
        assert [str(u) for u in layer.units] == ["second", "dimensionless", "micrometer", "micrometer", "micrometer"]
    by_name = {layer.name: layer for layer in layers}
    # raw: one layer, the 4 shots on a slider (not colour channels), camera pixels in µm, windows in s
    raw = by_name["raw"]
    assert raw.data.shape == (3, 4, 1, *SHAPE)
    np.testing.assert_allclose(raw.scale, [WINDOW_PERIOD_S, 1, 1, PIXEL_UM, PIXEL_UM])
    assert raw.translate[0] == pytest.approx(shot_time_s(0, 0))
    frames = np.asarray(zarr.open_group(str(store), mode="r")["raw"][...])
    np.testing.assert_array_equal(np.asarray(raw.data[2, 3, 0]), frames[2, 3, 0])
    # the scene: (window, render time in the window) beside raw's (window, shot), on the finer grid
    phase = by_name["nstm phase (rad)"]
    assert phase.data.shape == (3, 4, 1, 2 * SHAPE[0], 2 * SHAPE[1])
    np.testing.assert_allclose(phase.scale, [WINDOW_PERIOD_S, 1, 1, RECON_PIXEL_UM, RECON_PIXEL_UM])
    scene = np.asarray(zarr.open_group(str(store), mode="r")["recon/nstm/scene"][...])
    np.testing.assert_array_equal(np.asarray(phase.data[1, 2, 0]), scene[1 * 4 + 2, 1, 0])
    assert phase.visible and not by_name["nstm absorption"].visible and not raw.visible
    assert by_name["nstm conventional absorption"].data.shape == (3, 1, 1, 2 * SHAPE[0], 2 * SHAPE[1])
    # world time of window 2 is the same on raw and scene (within the window)
    t_raw = raw.data_to_world([2, 0, 0, 0, 0])[0]
    t_scene = phase.data_to_world([2, 0, 0, 0, 0])[0]
    assert abs(t_raw - t_scene) < WINDOW_PERIOD_S / 2


def test_motion_vectors_are_the_known_translation(store: Path):
    motion_data, kwargs, kind = read_store(str(store))[-1]
    assert kind == "vectors" and kwargs["name"] == "nstm motion"
    gain = kwargs["metadata"]["arrow_gain"]
    assert gain > 0
    positions, directions = motion_data[:, 0], motion_data[:, 1]
    w, s = positions[:, 0].astype(int), positions[:, 1].astype(int)
    elapsed = np.array([shot_time_s(a, b) for a, b in zip(w, s)]) - shot_time_s(0, 0)
    # the content moved by velocity x elapsed time since the first render time (output pixels)
    np.testing.assert_allclose(directions[:, 3] / gain, VELOCITY[0] * elapsed, atol=1e-5)
    np.testing.assert_allclose(directions[:, 4] / gain, VELOCITY[1] * elapsed, atol=1e-5)
    assert np.all(directions[:, :3] == 0)
    # subsampled: about ARROWS_ACROSS arrows across the longer side (x), at each of the 12 render times
    assert len(motion_data) % 12 == 0
    n_x = np.unique(positions[:, 4]).size
    assert abs(n_x - ARROWS_ACROSS) <= ARROWS_ACROSS / 3


def test_reader_claims_only_stores_of_this_format(store: Path, tmp_path: Path):
    assert get_reader(str(store)) is read_store
    assert get_reader(str(store / "recon" / "nstm")) is read_store  # a folder inside a store
    zarr.create_group(str(tmp_path / "other.zarr"))
    assert get_reader(str(tmp_path / "other.zarr")) is None
    assert get_reader(str(tmp_path)) is None
    with pytest.raises(ValueError, match="not an nstm-acquire store"):
        read_store(str(tmp_path / "other.zarr"))


def test_a_store_without_times_in_its_ome_metadata_opens_with_t_as_an_index(tmp_path: Path):
    """Stores of earlier versions: raw's t without unit, recon/<name> naming only its scene."""
    path = make_dpc_store(tmp_path / "old.zarr", n_windows=2)
    root = zarr.open_group(str(path), mode="r+")
    raw_ome = dict(root.attrs)["ome"]
    raw_ome["multiscales"][0]["axes"][0].pop("unit")
    raw_ome["multiscales"][0]["datasets"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [1.0, 1.0, 1.0, PIXEL_UM, PIXEL_UM]}
    ]
    root.attrs["ome"] = raw_ome
    recon = root["recon/nstm"]
    ome = dict(recon.attrs)["ome"]
    ome["multiscales"] = ome["multiscales"][:1]
    recon.attrs["ome"] = ome
    layers = {kwargs["name"]: kwargs for _, kwargs, _ in read_store(str(path))}
    assert layers["raw"]["units"][0] == "dimensionless" and layers["raw"]["scale"][0] == 1.0
    conventional = layers["nstm conventional phase (rad)"]
    assert conventional["units"][0] == "dimensionless"
    assert conventional["scale"][3:] == [RECON_PIXEL_UM, RECON_PIXEL_UM]  # the scene's grid
    assert layers["nstm motion"]["scale"][3:] == [RECON_PIXEL_UM, RECON_PIXEL_UM]
