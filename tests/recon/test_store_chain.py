"""Reconstruction output group recon/<name> (FORMAT.md): writer, reader, coexistence with a
running acquisition writer."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from nstm_acquire.store import (
    ReconReader,
    ReconWriter,
    StoreError,
    StoreReader,
    StoreWriter,
)

SCENE_SHAPE = (2, 1, 16, 20)  # C, Z, Y', X'
PIXEL_UM = 0.325


def attrs() -> dict:
    return {
        "format_version": 1,
        "modality": "dpc",
        "optics": {"wavelength_um": 0.52, "na_detection": 0.25, "pixel_size_um": 0.65},
        "illumination": {"led_na": [[0.1, 0.0], [-0.1, 0.0]], "shots": [[0], [1]]},
    }


def make_store(path: Path, n_windows: int = 0) -> Path:
    with StoreWriter.create(path, attrs(), 2, 1, (8, 8)) as out:
        for w in range(n_windows):
            for s in range(2):
                out.write_frame(w, s, 0, np.full((8, 8), w, np.uint16), w + 0.1 * s, 0.01)
    return path


def window_result(w: int, n_times: int) -> dict:
    """Distinct, known arrays for window w."""
    rng = np.random.default_rng(w)
    C, Z, Y, X = SCENE_SHAPE
    return {
        "scene": rng.normal(size=(n_times, C, Z, Y, X)).astype(np.float32),
        "times_s": w + np.linspace(0.0, 0.1, n_times),
        "motion": rng.normal(size=(n_times, 2, Z, Y, X)).astype(np.float32),
        "conventional": rng.normal(size=SCENE_SHAPE).astype(np.float32),
    }


def test_recon_round_trip_in_acquisition_store(tmp_path: Path) -> None:
    path = make_store(tmp_path / "RUN.zarr", n_windows=3)
    root_before = (path / "zarr.json").read_bytes()
    out = ReconWriter(
        path,
        scene_shape=SCENE_SHAPE,
        motion_dims=2,
        pixel_size_um=PIXEL_UM,
        channel_names=["absorption", "phase_rad"],
    )
    config = {"steps": 500, "lr_scene": 1e-3, "levels": np.int64(8), "shape": (16, 20)}
    out.set_config(config)
    results = {w: window_result(w, 3 + w) for w in range(3)}
    for w, r in results.items():
        out.write_window(
            w,
            r["scene"],
            r["times_s"],
            r["motion"],
            r["conventional"],
            info={
                "steps": 500,
                "final_loss": np.float32(0.25 / (w + 1)),
                "wall_time_s": 1.5,
                "warm_start": w > 0,
                "illumination": {"k_per_um": np.array([[0.1, 0.2]])},
                "diverged_loss": float("nan"),
            },
        )
    assert (path / "zarr.json").read_bytes() == root_before  # root attributes untouched

    back = ReconReader(path)
    assert back.method == "nstm" and back.pixel_size_um == PIXEL_UM
    assert back.config == {"steps": 500, "lr_scene": 1e-3, "levels": 8, "shape": [16, 20]}
    assert back.windows_done() == [0, 1, 2]
    assert back.attrs["channels"] == ["absorption", "phase_rad"]
    np.testing.assert_array_equal(back.window(), np.repeat([0, 1, 2], [3, 4, 5]))
    np.testing.assert_array_equal(
        back.scene(), np.concatenate([results[w]["scene"] for w in range(3)])
    )
    times = back.times_s()
    assert times.shape == (12,) and np.all(np.diff(times) >= 0)
    for w, r in results.items():
        np.testing.assert_array_equal(back.scene(w), r["scene"])
        np.testing.assert_array_equal(back.motion(w), r["motion"])
        np.testing.assert_array_equal(back.times_s(w), r["times_s"])
        np.testing.assert_array_equal(back.conventional(w), r["conventional"])
        info = back.windows_info()[w]
        assert info["final_loss"] == pytest.approx(0.25 / (w + 1))
        assert info["warm_start"] == (w > 0) and info["illumination"]["k_per_um"] == [[0.1, 0.2]]
        assert info["diverged_loss"] is None  # JSON has no NaN
        assert info["status"] == "final" and info["n_times"] == 3 + w
    assert back.conventional().shape == (3, *SCENE_SHAPE)
    # the acquisition is still readable as before
    assert StoreReader(path).complete_windows() == [0, 1, 2]


def test_preview_then_final_for_the_same_window(tmp_path: Path) -> None:
    path = make_store(tmp_path / "P.zarr", n_windows=2)
    out = ReconWriter(path, scene_shape=SCENE_SHAPE, motion_dims=2, pixel_size_um=PIXEL_UM)
    preview = np.full(SCENE_SHAPE, 1.0, np.float32)
    out.write_conventional(1, preview, info={"preview_wall_time_s": 0.05})
    back = ReconReader(path)
    assert back.windows_preview() == [1] and back.windows_done() == []
    np.testing.assert_array_equal(back.conventional(1), preview)
    assert np.all(np.isnan(back.conventional(0)))  # never written
    with pytest.raises(StoreError) as err:
        back.scene(1)
    assert "has no final reconstruction" in str(err.value) and "\n" not in str(err.value)

    r = window_result(1, 4)
    out.write_window(
        1, r["scene"], r["times_s"], r["motion"], r["conventional"], info={"steps": 100}
    )
    assert back.windows_done() == [1]
    np.testing.assert_array_equal(back.conventional(1), r["conventional"])
    np.testing.assert_array_equal(back.scene(1), r["scene"])
    info = back.windows_info()[1]
    assert info["status"] == "final"
    assert info["preview_wall_time_s"] == 0.05 and info["steps"] == 100
    # a late preview never demotes a finished window
    out.write_conventional(1, preview)
    assert back.windows_done() == [1]


def test_out_of_order_and_rewritten_windows_keep_time_ordered_by_window(tmp_path: Path) -> None:
    out_path = tmp_path / "out.zarr"  # a separate output store is created
    out = ReconWriter(
        out_path, name="trial", scene_shape=SCENE_SHAPE, motion_dims=2, pixel_size_um=PIXEL_UM
    )
    written = {}
    for w, n in ((2, 3), (0, 2), (1, 4)):
        written[w] = window_result(w, n)
        r = written[w]
        out.write_window(w, r["scene"], r["times_s"], r["motion"])
    written[1] = window_result(11, 2)  # re-run of window 1, fewer render times
    written[1]["times_s"] = 1 + np.array([0.0, 0.05])
    r = written[1]
    out.write_window(1, r["scene"], r["times_s"], r["motion"])
    written[0] = window_result(10, 2)  # re-run of window 0, same length: in place
    written[0]["times_s"] = np.array([0.0, 0.1])
    r = written[0]
    out.write_window(0, r["scene"], r["times_s"], r["motion"])

    back = ReconReader(out_path, name="trial")
    assert back.windows_done() == [0, 1, 2]
    np.testing.assert_array_equal(back.window(), [0, 0, 1, 1, 2, 2, 2])
    times = back.times_s()
    assert np.all(np.diff(times) >= 0)
    np.testing.assert_array_equal(times, np.concatenate([written[w]["times_s"] for w in range(3)]))
    for w in range(3):
        np.testing.assert_array_equal(back.scene(w), written[w]["scene"])
        np.testing.assert_array_equal(back.motion(w), written[w]["motion"])
    assert out.n_times == 7


def test_recon_metadata_is_ome_and_zarr_v3(tmp_path: Path) -> None:
    path = make_store(tmp_path / "M.zarr", n_windows=1)
    out = ReconWriter(
        path,
        scene_shape=(1, 3, 16, 20),
        motion_dims=3,
        pixel_size_um=0.04,
        z_step_um=0.125,
        method="nstm",
    )
    rng = np.random.default_rng(0)
    out.write_window(
        0, rng.normal(size=(2, 1, 3, 16, 20)), [0.0, 0.1], rng.normal(size=(2, 3, 3, 16, 20))
    )
    group_dir = path / "recon" / "nstm"
    meta = json.loads((group_dir / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["node_type"] == "group"
    for key in ("method", "pixel_size_um", "config", "windows"):
        assert key in meta["attributes"]
    multiscale, _, motion = meta["attributes"]["ome"]["multiscales"]  # scene, conventional, motion
    assert [a["name"] for a in multiscale["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a["name"] for a in motion["axes"]] == ["t", "d", "z", "y", "x"]
    (dataset,) = multiscale["datasets"]
    assert dataset["path"] == "scene"
    # t: the render times' spacing (0.1 s) from the first (0 s); tests/store/test_ome.py checks more
    assert dataset["coordinateTransformations"][0]["scale"] == pytest.approx([0.1, 1.0, 0.125, 0.04, 0.04])
    scene_meta = json.loads((group_dir / "scene" / "zarr.json").read_text())
    assert scene_meta["shape"] == [2, 1, 3, 16, 20]
    assert scene_meta["dimension_names"] == ["t", "c", "z", "y", "x"]
    assert scene_meta["data_type"] == "float32"
    for name, dtype in (("times_s", "float64"), ("window", "int32"), ("motion", "float32")):
        assert json.loads((group_dir / name / "zarr.json").read_text())["data_type"] == dtype
    yaozarrs = pytest.importorskip("yaozarrs")  # OME-Zarr 0.5 validator (pymmcore-plus dep)
    yaozarrs.validate_zarr_store(str(group_dir))


def test_recon_writing_while_acquisition_writes(tmp_path: Path) -> None:
    path = tmp_path / "BOTH.zarr"
    S, shape, n_windows = 2, (16, 16), 20
    acq = StoreWriter.create(path, attrs(), S, 1, shape, n_windows_hint=1)
    acq.write_frame(0, 0, 0, np.zeros(shape, np.uint16), 0.0, 0.01)
    failures: list[BaseException] = []

    def acquire() -> None:
        try:
            acq.write_frame(0, 1, 0, np.full(shape, 1, np.uint16), 0.1, 0.01)
            for w in range(1, n_windows):
                for s in range(S):
                    acq.write_frame(
                        w, s, 0, np.full(shape, 10 * w + s, np.uint16), w + 0.1 * s, 0.01
                    )
                if w == n_windows // 2:
                    acq.update_acquisition(halfway=True)
            acq.close()
        except BaseException as err:
            failures.append(err)

    thread = threading.Thread(target=acquire)
    thread.start()
    recon = ReconWriter(path, scene_shape=SCENE_SHAPE, motion_dims=2, pixel_size_um=PIXEL_UM)
    for w in range(6):
        r = window_result(w, 2)
        recon.write_window(w, r["scene"], r["times_s"], r["motion"], r["conventional"])
    thread.join()
    assert not failures, failures

    reader = StoreReader(path)
    assert reader.complete_windows() == list(range(n_windows))
    assert reader.attrs.acquisition == {"halfway": True}
    for w in range(1, n_windows):
        raw = reader.window(w).raw
        np.testing.assert_array_equal(raw[:, 0, 0, 0], [10 * w, 10 * w + 1])
    back = ReconReader(path)
    assert back.windows_done() == list(range(6))
    np.testing.assert_array_equal(back.scene(5), window_result(5, 2)["scene"])


def test_recon_errors_are_clear(tmp_path: Path) -> None:
    path = make_store(tmp_path / "E.zarr")
    with pytest.raises(StoreError) as err:
        ReconReader(path)
    assert "group recon/nstm is missing" in str(err.value) and "\n" not in str(err.value)
    out = ReconWriter(path, scene_shape=SCENE_SHAPE, motion_dims=2, pixel_size_um=PIXEL_UM)
    with pytest.raises(StoreError) as err:
        ReconWriter(path, scene_shape=SCENE_SHAPE, motion_dims=2, pixel_size_um=PIXEL_UM)
    assert "recon/nstm already exists" in str(err.value) and "overwrite=True" in str(err.value)
    r = window_result(0, 3)
    with pytest.raises(ValueError, match="non-decreasing"):
        out.write_window(0, r["scene"], r["times_s"][::-1], r["motion"])
    with pytest.raises(ValueError, match="scene has shape"):
        out.write_window(0, r["scene"][:, :1], r["times_s"], r["motion"])
    with pytest.raises(ValueError, match="motion has shape"):
        out.write_window(0, r["scene"], r["times_s"], r["motion"][:2])
    with pytest.raises(ValueError, match="conventional has shape"):
        out.write_conventional(0, r["conventional"][0])
    with pytest.raises(ValueError, match="needs scene_shape"):
        ReconWriter(path, name="y")
    with pytest.raises(ValueError, match="motion_dims"):
        ReconWriter(path, name="x", scene_shape=SCENE_SHAPE, motion_dims=4, pixel_size_um=1.0)
    # overwrite replaces the group
    out.write_window(0, r["scene"], r["times_s"], r["motion"])
    ReconWriter(
        path, scene_shape=SCENE_SHAPE, motion_dims=2, pixel_size_um=PIXEL_UM, overwrite=True
    )
    back = ReconReader(path)
    assert back.windows_done() == [] and back.scene().shape == (0, *SCENE_SHAPE)


def test_a_failed_window_is_recorded_with_its_reason_and_is_not_done(tmp_path: Path) -> None:
    path = make_store(tmp_path / "RUN.zarr", n_windows=2)
    out = ReconWriter(path, scene_shape=SCENE_SHAPE, motion_dims=2, pixel_size_um=PIXEL_UM)
    r = window_result(0, 3)
    out.write_window(0, r["scene"], r["times_s"], r["motion"], r["conventional"], info={"steps": 5})
    out.write_conventional(1, window_result(1, 3)["conventional"])
    out.mark_failed(1, "the fit diverged\n(non-finite values)", info={"steps": 7, "final_loss": float("nan")})
    reader = ReconReader(path)
    assert reader.windows_done() == [0]
    assert reader.windows_failed() == {1: "the fit diverged (non-finite values)"}  # one line
    info = reader.windows_info()[1]
    assert info["status"] == "failed" and info["has_conventional"] and info["steps"] == 7
    with pytest.raises(StoreError, match="no final reconstruction"):
        reader.scene(1)
    assert reader.scene().shape[0] == 3  # window 0 only
    with pytest.raises(ValueError, match="reason"):
        out.mark_failed(1, "  ")
    # a later successful fit replaces the failure
    r1 = window_result(1, 2)
    out.write_window(1, r1["scene"], r1["times_s"], r1["motion"])
    reader.refresh()
    assert reader.windows_done() == [0, 1] and reader.windows_failed() == {}
    assert "failure" not in reader.windows_info()[1]
