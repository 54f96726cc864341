"""Acquisition store: layout/validation, streaming writer, reader (FORMAT.md version 1)."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.physics.sim.illumination import SimIllumination
from nstm_acquire.store import (
    StoreError,
    StoreReader,
    StoreWriter,
    n_shots,
    validate_attributes,
)

OFFSET = 100.0


def dpc_attrs() -> dict:
    return {
        "format_version": 1,
        "modality": "dpc",
        "optics": {"wavelength_um": 0.52, "na_detection": 0.25, "pixel_size_um": 0.65},
        "illumination": {
            "led_na": [[0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1], [0.07, 0.07]],
            "shots": [[0, 4], [1], [2], [3]],
        },
        "camera": {"offset_adu": OFFSET, "gain_e_per_adu": 0.5},
        "acquisition": {"simulated": True},
    }


def sim3d_attrs() -> dict:
    return {
        "format_version": 1,
        "modality": "sim3d",
        "optics": {
            "wavelength_um": 0.52,
            "na_detection": 1.2,
            "pixel_size_um": 0.08,
            "immersion_index": 1.33,
            "z_step_um": 0.125,
        },
        # S = 6 shots; three-beam SIM separates 5 orders, so it needs n_phases >= 5
        "illumination": {"n_orientations": 1, "n_phases": 6, "excitation_wavelength_um": 0.488},
    }


def frame_values(w: int, s: int, z: int, shape: tuple[int, int], dtype) -> np.ndarray:
    """A frame that differs for every (w, s, z) and every pixel."""
    rng = np.random.default_rng(1000 * w + 10 * s + z)
    return rng.integers(int(OFFSET), 4000, size=shape).astype(dtype)


def timestamp(w: int, s: int, z: int, n_shots: int, n_planes: int) -> float:
    return 0.5 * w + 0.01 * (s * n_planes + z) + 0.001 * np.sin(w + s + z)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- round trips
def test_round_trip_dpc(tmp_path: Path) -> None:
    path = tmp_path / "RUN.zarr"
    shape = (40, 56)
    with StoreWriter.create(path, dpc_attrs(), n_shots=4, n_planes=1, frame_shape=shape) as out:
        for w in range(3):
            for s in range(4):
                out.write_frame(
                    w,
                    s,
                    0,
                    frame_values(w, s, 0, shape, np.uint16),
                    timestamp(w, s, 0, 4, 1),
                    0.002 + 0.001 * s,
                )
    assert read_json(path / "zarr.json")["zarr_format"] == 3
    for name in ("raw", "timestamps_s", "exposure_s"):
        meta = read_json(path / name / "zarr.json")
        assert meta["zarr_format"] == 3 and meta["node_type"] == "array"

    reader = StoreReader(path)
    assert reader.modality == "dpc"
    assert (reader.n_shots, reader.n_planes, reader.frame_shape) == (4, 1, shape)
    assert reader.dtype == np.uint16
    assert reader.optics.pixel_size_um == 0.65
    assert reader.attrs.to_store()["illumination"] == dpc_attrs()["illumination"]
    assert reader.attrs.camera.gain_e_per_adu == 0.5
    assert reader.attrs.acquisition == {"simulated": True}
    assert reader.complete_windows() == [0, 1, 2]
    for w in range(3):
        data = reader.window(w)
        assert data.index == w
        assert data.raw.dtype == np.float32 and data.raw.shape == (4, 1, *shape)
        for s in range(4):
            expected = frame_values(w, s, 0, shape, np.uint16).astype(np.float32) - OFFSET
            np.testing.assert_array_equal(data.raw[s, 0], expected)
            assert data.timestamps_s[s, 0] == timestamp(w, s, 0, 4, 1)
            assert data.exposure_s[s, 0] == pytest.approx(0.002 + 0.001 * s)
        np.testing.assert_allclose(data.midpoints_s, data.timestamps_s + data.exposure_s / 2)


def test_round_trip_sim3d_float32_any_frame_order(tmp_path: Path) -> None:
    path = tmp_path / "SIM.zarr"
    shape, S, Z = (24, 36), 6, 3
    rng = np.random.default_rng(7)
    with StoreWriter.create(
        path, sim3d_attrs(), n_shots=S, n_planes=Z, frame_shape=shape, dtype="float32"
    ) as out:
        for w in range(2):
            order = [(s, z) for s in range(S) for z in range(Z)]
            rng.shuffle(order)  # z-outer or shot-outer: any order within a window
            for s, z in order:
                # uint16 frames cast safely into a float32 store
                out.write_frame(
                    w, s, z, frame_values(w, s, z, shape, np.uint16), timestamp(w, s, z, S, Z), 0.01
                )
    reader = StoreReader(path)
    assert (reader.n_shots, reader.n_planes, reader.dtype) == (S, Z, np.float32)
    assert n_shots(reader.attrs) == S
    for w in range(2):
        data = reader.window(w)
        for s in range(S):
            for z in range(Z):
                np.testing.assert_array_equal(
                    data.raw[s, z], frame_values(w, s, z, shape, np.uint16).astype(np.float32)
                )
                assert data.timestamps_s[s, z] == timestamp(w, s, z, S, Z)
                np.testing.assert_array_equal(reader.frame(w, s, z), data.raw[s, z])


@pytest.mark.parametrize("compression, codec", [("zstd", "zstd"), ("lz4", "blosc")])
def test_compressed_round_trip(tmp_path: Path, compression: str, codec: str) -> None:
    path = tmp_path / "C.zarr"
    shape = (32, 32)
    with StoreWriter.create(path, dpc_attrs(), 4, 1, shape, compression=compression) as out:
        for s in range(4):
            out.write_frame(0, s, 0, frame_values(0, s, 0, shape, np.uint16), 0.1 * s, 0.01)
    codecs = [c["name"] for c in read_json(path / "raw" / "zarr.json")["codecs"]]
    assert codec in codecs
    data = StoreReader(path).window(0)
    for s in range(4):
        np.testing.assert_array_equal(
            data.raw[s, 0], frame_values(0, s, 0, shape, np.uint16).astype(np.float32) - OFFSET
        )


def test_window_axis_grows_geometrically_and_is_trimmed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "G.zarr"
    shape = (16, 16)
    out = StoreWriter.create(path, dpc_attrs(), 4, 1, shape, n_windows_hint=1)
    on_disk = []
    for w in range(5):
        for s in range(4):
            out.write_frame(w, s, 0, frame_values(w, s, 0, shape, np.uint16), w + 0.1 * s, 0.01)
        on_disk.append(
            tuple(
                read_json(path / name / "zarr.json")["shape"][0]
                for name in ("raw", "timestamps_s", "exposure_s")
            )
        )
    # doubling: 1, 2, 4, 4, 8 windows, the three arrays always agree
    assert on_disk == [(1,) * 3, (2,) * 3, (4,) * 3, (4,) * 3, (8,) * 3]
    assert out.n_windows == 5 and out.frames_written == 20
    out.close()
    assert zarr.open_array(str(path / "raw"), mode="r").shape == (5, 4, 1, 16, 16)
    assert zarr.open_array(str(path / "timestamps_s"), mode="r").shape == (5, 4, 1)
    assert StoreReader(path).complete_windows() == [0, 1, 2, 3, 4]


def test_one_chunk_per_frame_and_one_timing_chunk_per_window(tmp_path: Path) -> None:
    path = tmp_path / "K.zarr"
    shape, S, Z = (20, 30), 6, 2
    with StoreWriter.create(path, sim3d_attrs(), S, Z, shape) as out:
        for w in range(2):
            for s in range(S):
                for z in range(Z):
                    out.write_frame(
                        w,
                        s,
                        z,
                        frame_values(w, s, z, shape, np.uint16),
                        timestamp(w, s, z, S, Z),
                        0.01,
                    )
    raw = zarr.open_array(str(path / "raw"), mode="r")
    assert raw.chunks == (1, 1, 1, *shape)
    assert raw.metadata.dimension_names == ("t", "c", "z", "y", "x")
    assert zarr.open_array(str(path / "timestamps_s"), mode="r").chunks == (1, S, Z)
    assert zarr.open_array(str(path / "exposure_s"), mode="r").chunks == (1, S, Z)
    chunk_files = [p for p in (path / "raw" / "c").rglob("*") if p.is_file()]
    assert len(chunk_files) == 2 * S * Z
    # an uncompressed chunk is exactly the frame's little-endian bytes
    chunk = (path / "raw" / "c" / "1" / "4" / "1" / "0" / "0").read_bytes()
    assert chunk == frame_values(1, 4, 1, shape, "<u2").tobytes()
    assert len(list((path / "timestamps_s" / "c").rglob("*.partial"))) == 0
    assert sorted(p.parts[-3] for p in (path / "timestamps_s" / "c").rglob("0") if p.is_file()) == [
        "0",
        "1",
    ]


def test_ome_ngff_metadata_matches_arrays(tmp_path: Path) -> None:
    path = tmp_path / "OME.zarr"
    shape = (24, 32)
    with StoreWriter.create(path, sim3d_attrs(), 6, 4, shape) as out:
        out.write_frame(0, 0, 0, frame_values(0, 0, 0, shape, np.uint16), 0.0, 0.01)
    root = read_json(path / "zarr.json")["attributes"]
    ome = root["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    axes = multiscale["axes"]
    assert [a["name"] for a in axes] == ["t", "c", "z", "y", "x"]
    assert [a["type"] for a in axes] == ["time", "channel", "space", "space", "space"]
    assert all(a["unit"] == "micrometer" for a in axes[2:])
    (dataset,) = multiscale["datasets"]
    assert dataset["path"] == "raw"
    # one window (at 0 s): t in seconds, any step, translated to its time (tests/store/test_ome.py)
    transform, translation = dataset["coordinateTransformations"]
    assert transform == {"type": "scale", "scale": [1.0, 1.0, 0.125, 0.08, 0.08]}
    assert translation == {"type": "translation", "translation": [0.0, 0.0, 0.0, 0.0, 0.0]}
    raw_meta = read_json(path / "raw" / "zarr.json")
    assert len(raw_meta["shape"]) == len(axes)
    assert raw_meta["dimension_names"] == [a["name"] for a in axes]
    yaozarrs = pytest.importorskip("yaozarrs")  # OME-Zarr 0.5 validator (pymmcore-plus dep)
    yaozarrs.validate_zarr_store(str(path))


# ---------------------------------------------------------------- live reading and crashes
def test_reader_polling_during_writing_sees_only_complete_windows(tmp_path: Path) -> None:
    path = tmp_path / "LIVE.zarr"
    shape, S, n_windows = (32, 32), 4, 12
    out = StoreWriter.create(path, dpc_attrs(), S, 1, shape, n_windows_hint=2)
    failures: list[BaseException] = []

    def acquire() -> None:
        try:
            for w in range(n_windows):
                for s in range(S):
                    out.write_frame(
                        w,
                        s,
                        0,
                        frame_values(w, s, 0, shape, np.uint16),
                        timestamp(w, s, 0, S, 1),
                        0.005,
                    )
                    time.sleep(0.002)
            out.close()
        except BaseException as err:  # surfaced in the main thread
            failures.append(err)

    thread = threading.Thread(target=acquire)
    reader = StoreReader(path)
    thread.start()
    checked: set[int] = set()
    checked_while_writing: set[int] = set()
    polls_while_writing = 0
    while True:
        alive = thread.is_alive()
        complete = reader.complete_windows()
        assert complete == sorted(complete)
        assert not set(complete) & set(reader.partial_windows(refresh=False))
        for w in complete:
            if w in checked:
                continue
            data = reader.window(w)
            for s in range(S):
                expected = frame_values(w, s, 0, shape, np.uint16).astype(np.float32) - OFFSET
                np.testing.assert_array_equal(data.raw[s, 0], expected)
            assert np.all(np.isfinite(data.timestamps_s))
            checked.add(w)
            if alive:
                checked_while_writing.add(w)
        if alive:
            polls_while_writing += 1
        else:
            break
        time.sleep(0.001)
    thread.join()
    assert not failures, failures
    assert checked == set(range(n_windows))
    assert polls_while_writing > 1 and checked_while_writing


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_every_file_write_leaves_a_consistent_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    """Deterministic form of the live-reading guarantee: stop the writer after each file it
    writes and check that every frame with a finite timestamp is on disk with its exposure."""
    import nstm_acquire.store.writer as writer_module

    path = tmp_path / "ORDER.zarr"
    shape, S, Z = (8, 12), 4, 1
    out = StoreWriter.create(path, dpc_attrs(), S, Z, shape, compression=compression)
    reader = StoreReader(path)
    checks = []

    def check() -> None:
        timestamps = reader.timestamps_s(refresh=True)
        exposures = reader.exposures_s()
        for w, s, z in np.argwhere(np.isfinite(timestamps)):
            np.testing.assert_array_equal(
                reader.frame(w, s, z),
                frame_values(w, s, z, shape, np.uint16).astype(np.float32) - OFFSET,
            )
            assert exposures[w, s, z] == 0.01 * (1 + s)
        checks.append(int(np.isfinite(timestamps).sum()))

    def then_check(write):
        def wrapped(*args):
            write(*args)
            check()

        return wrapped

    for name in ("_atomic_write", "_write_new", "_write_in_place"):
        monkeypatch.setattr(writer_module, name, then_check(getattr(writer_module, name)))
    for w in range(3):
        for s in range(S):
            out.write_frame(
                w,
                s,
                0,
                frame_values(w, s, 0, shape, np.uint16),
                timestamp(w, s, 0, S, Z),
                0.01 * (1 + s),
            )
    out.close()
    assert checks[-1] == 3 * S and len(checks) >= 2 * 3 * S


def test_store_left_by_a_crash_mid_window_reads_complete_windows(tmp_path: Path) -> None:
    path = tmp_path / "CRASH.zarr"
    shape, S = (16, 24), 4
    out = StoreWriter.create(path, dpc_attrs(), S, 1, shape, n_windows_hint=2)
    for w in range(3):
        for s in range(S if w < 2 else 2):  # window 2 stops after 2 of 4 shots
            out.write_frame(
                w, s, 0, frame_values(w, s, 0, shape, np.uint16), timestamp(w, s, 0, S, 1), 0.01
            )
    # the process dies: no close(), and a chunk write was cut off half way
    (path / "raw" / "c" / "2" / "2" / "0" / "0").mkdir(parents=True, exist_ok=True)
    (path / "raw" / "c" / "2" / "2" / "0" / "0" / "0.1234-5.partial").write_bytes(b"\x00" * 10)
    del out

    reader = StoreReader(path)
    assert reader.n_windows == 4  # grown to 4, never trimmed
    assert reader.complete_windows() == [0, 1]
    assert reader.partial_windows() == [2]
    data = reader.window(1)
    np.testing.assert_array_equal(
        data.raw[3, 0], frame_values(1, 3, 0, shape, np.uint16).astype(np.float32) - OFFSET
    )
    with pytest.raises(StoreError) as err:
        reader.window(2)
    assert "window 2 is incomplete (2 of 4 frames" in one_line(err)
    with pytest.raises(StoreError) as err:
        reader.window(4)
    assert "out of range" in one_line(err)
    np.testing.assert_array_equal(
        reader.frame(2, 1), frame_values(2, 1, 0, shape, np.uint16).astype(np.float32) - OFFSET
    )
    summary = reader.timing_summary()
    assert summary["frames_acquired"] == 10
    assert summary["complete_windows"] == 2 and summary["partial_windows"] == [2]


def test_require_complete_names_the_incomplete_windows(tmp_path: Path) -> None:
    path = tmp_path / "PART.zarr"
    with StoreWriter.create(path, dpc_attrs(), 4, 1, (8, 8)) as out:
        for w, shots in ((0, 4), (1, 3), (2, 4)):
            for s in range(shots):
                out.write_frame(w, s, 0, np.zeros((8, 8), np.uint16), w + 0.1 * s, 0.01)
    reader = StoreReader(path)
    assert reader.frames_per_window == 4
    assert reader.require_complete() == [0, 2]
    assert reader.require_complete([2, 0]) == [2, 0]
    with pytest.raises(ValueError, match=r"windows \[1\] are not complete \(complete: \[0, 2\]\)"):
        reader.require_complete([0, 1])


def test_timing_summary_matches_numpy(tmp_path: Path) -> None:
    path = tmp_path / "T.zarr"
    shape, S = (8, 8), 4
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.01, 0.03, size=(5, S)).ravel()).reshape(5, S)
    exposures = rng.uniform(0.001, 0.005, size=(5, S))
    with StoreWriter.create(path, dpc_attrs(), S, 1, shape) as out:
        for w in range(5):
            for s in range(S):
                out.write_frame(w, s, 0, np.zeros(shape, np.uint16), times[w, s], exposures[w, s])
    summary = StoreReader(path).timing_summary()
    intervals = np.diff(times.ravel())
    periods = np.diff(times[:, 0])
    assert summary["frames_acquired"] == 20 and summary["complete_windows"] == 5
    assert summary["frames_per_window"] == S
    assert summary["duration_s"] == pytest.approx(times[-1, -1] - times[0, 0])
    for name, values in (
        ("frame_interval", intervals),
        ("window_period", periods),
        ("exposure", exposures.ravel()),
    ):
        assert summary[f"{name}_n"] == values.size
        assert summary[f"{name}_mean_s"] == pytest.approx(values.mean())
        assert summary[f"{name}_min_s"] == pytest.approx(values.min())
        assert summary[f"{name}_max_s"] == pytest.approx(values.max())
        assert summary[f"{name}_std_s"] == pytest.approx(values.std())


def test_timing_summary_of_a_single_frame_has_no_intervals(tmp_path: Path) -> None:
    path = tmp_path / "ONE.zarr"
    with StoreWriter.create(path, dpc_attrs(), 4, 1, (8, 8)) as out:
        out.write_frame(0, 0, 0, np.zeros((8, 8), np.uint16), 2.5, 0.004)
    summary = StoreReader(path).timing_summary()
    assert summary["frames_acquired"] == 1 and summary["complete_windows"] == 0
    assert summary["partial_windows"] == [0] and summary["duration_s"] == 0.0
    assert summary["frame_interval_n"] == 0 and summary["frame_interval_mean_s"] is None
    assert summary["window_period_mean_s"] is None
    assert summary["exposure_mean_s"] == 0.004


# ---------------------------------------------------------------- background and attributes
def test_background_and_acquisition_updates(tmp_path: Path) -> None:
    path = tmp_path / "B.zarr"
    shape = (12, 10)
    background = np.random.default_rng(5).uniform(200, 300, size=(4, 1, *shape))
    with StoreWriter.create(path, dpc_attrs(), 4, 1, shape) as out:
        assert StoreReader(path).background() is None
        out.write_background(background)
        out.update_acquisition(
            start_utc="2025-01-01T00:00:00Z", n_windows=np.int64(7), na_list=np.array([0.1, 0.2])
        )
        out.update_acquisition(hardware="simulated")
    reader = StoreReader(path)
    np.testing.assert_allclose(
        reader.background(), background.astype(np.float32) - np.float32(OFFSET), rtol=1e-6
    )
    assert reader.attrs.acquisition == {
        "simulated": True,
        "start_utc": "2025-01-01T00:00:00Z",
        "n_windows": 7,
        "na_list": [0.1, 0.2],
        "hardware": "simulated",
    }
    # the OME block survives attribute updates
    assert (
        read_json(path / "zarr.json")["attributes"]["ome"]["multiscales"][0]["datasets"][0]["path"]
        == "raw"
    )


def test_attributes_round_trip_keeps_optional_fields() -> None:
    data = dpc_attrs()
    data["optics"]["objective"] = "10x/0.25"
    data["illumination"]["led_brightness"] = [1.0, 1.0, 0.9, 0.9, 0.5]
    data["extra_field"] = {"anything": 1}
    attrs = validate_attributes(data, "X.zarr")
    stored = attrs.to_store()
    assert stored["optics"]["objective"] == "10x/0.25"
    assert stored["illumination"]["led_brightness"] == [1.0, 1.0, 0.9, 0.9, 0.5]
    assert stored["extra_field"] == {"anything": 1}
    assert validate_attributes(stored, "X.zarr").to_store() == stored
    assert [list(lit) for lit in attrs.illumination.shots] == [[0, 4], [1], [2], [3]]


def test_illumination_is_the_physics_model_and_keeps_unknown_keys(tmp_path: Path) -> None:
    """One schema per concept: ``attrs.illumination`` is the physics model; keys it does not
    know (stores written by other programs) are kept and written back."""
    data = sim3d_attrs()
    data["illumination"]["vendor_pattern_id"] = "grating-7"
    data["illumination"]["modulation"] = [[1.0, 1.2, 0.6]]  # with the order-0 term (FORMAT.md)
    path = tmp_path / "OTHER.zarr"
    StoreWriter.create(path, data, 6, 2, (8, 8)).close()
    attrs = StoreReader(path).attrs
    assert isinstance(attrs.illumination, SimIllumination) and attrs.illumination.three_beam
    assert attrs.illumination.modulation == ((1.2, 0.6),)  # one internal form
    assert attrs.illumination_extra == {"vendor_pattern_id": "grating-7"}
    stored = attrs.to_store()["illumination"]
    assert stored["vendor_pattern_id"] == "grating-7" and stored["modulation"] == [[1.2, 0.6]]
    # rewritten, the extra key survives
    StoreWriter.create(tmp_path / "AGAIN.zarr", attrs.to_store(), 6, 2, (8, 8)).close()
    again = StoreReader(tmp_path / "AGAIN.zarr").attrs
    assert again.illumination == attrs.illumination
    assert again.illumination_extra == attrs.illumination_extra
    # a two-beam store without three_beam takes it from the modality
    two = validate_attributes(
        {**sim3d_attrs(), "modality": "sim2d", "illumination": {
            "n_orientations": 3, "n_phases": 3, "excitation_wavelength_um": 0.488,
            "modulation": [[0.8], [1.0, 0.8], [0.7]],
        }},
        "X.zarr",
    )
    assert not two.illumination.three_beam and two.illumination.modulation == ((0.8,), (0.8,), (0.7,))


def test_writer_takes_the_physics_model_directly(tmp_path: Path) -> None:
    """The microscope's physics object goes into the attributes as it is; the writer serialises it
    once, to the same store as its FORMAT.md dict."""
    as_dict = dpc_attrs()
    as_object = {**dpc_attrs(), "illumination": DpcIllumination.from_store(as_dict["illumination"])}
    for name, data in (("DICT.zarr", as_dict), ("OBJECT.zarr", as_object)):
        StoreWriter.create(tmp_path / name, data, 4, 1, (8, 8)).close()
    stored = [read_json(tmp_path / n / "zarr.json")["attributes"]["nstm_acquire"] for n in ("DICT.zarr", "OBJECT.zarr")]
    assert stored[0] == stored[1]
    assert stored[1]["illumination"] == as_dict["illumination"]
    assert StoreReader(tmp_path / "OBJECT.zarr").attrs.illumination == as_object["illumination"]
    sim = SimIllumination(n_orientations=1, n_phases=6, excitation_wavelength_um=0.488, three_beam=True)
    with StoreWriter.create(tmp_path / "SIM.zarr", {**sim3d_attrs(), "illumination": sim}, 6, 2, (8, 8)) as out:
        assert out.attrs.illumination is sim  # validated, not rebuilt
    # the object must fit the modality
    with pytest.raises(StoreError) as err:
        StoreWriter.create(tmp_path / "MIX.zarr", {**dpc_attrs(), "illumination": sim}, 6, 1, (8, 8))
    assert "illumination is a SimIllumination but modality 'dpc' needs a DpcIllumination" in one_line(err)
    two_beam = sim.model_copy(update={"three_beam": False})
    with pytest.raises(StoreError) as err:
        StoreWriter.create(tmp_path / "MIX.zarr", {**sim3d_attrs(), "illumination": two_beam}, 6, 2, (8, 8))
    assert "illumination.three_beam = False does not match modality 'sim3d'" in one_line(err)


# ---------------------------------------------------------------- errors
def _store_with(tmp_path: Path, mutate) -> Path:
    """A valid small store whose root attributes are then edited by ``mutate``."""
    path = tmp_path / "BAD.zarr"
    with StoreWriter.create(path, dpc_attrs(), 4, 1, (8, 8)) as out:
        out.write_frame(0, 0, 0, np.zeros((8, 8), np.uint16), 0.0, 0.01)
    meta = read_json(path / "zarr.json")
    mutate(meta["attributes"])
    (path / "zarr.json").write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda a: a["nstm_acquire"]["optics"].pop("wavelength_um"),
            "attribute nstm_acquire.optics.wavelength_um is missing (detection wavelength in µm)",
        ),
        (
            lambda a: a["nstm_acquire"].update(modality="widefield"),
            "attribute nstm_acquire.modality = 'widefield' is invalid",
        ),
        (
            lambda a: a["nstm_acquire"]["illumination"]["shots"].__setitem__(1, [1, 9]),
            "attribute nstm_acquire.illumination.shots[1][1] = 9 is out of range (LED indices must "
            "be in 0..4",
        ),
        (
            lambda a: a["nstm_acquire"]["illumination"].pop("shots"),
            "attribute nstm_acquire.illumination.shots is missing",
        ),
        (
            lambda a: a["nstm_acquire"].update(format_version=2),
            "attribute nstm_acquire.format_version = 2 is invalid",
        ),
        (lambda a: a.pop("nstm_acquire"), "attribute nstm_acquire is missing"),
        (
            lambda a: a["nstm_acquire"].update(
                modality="sim3d",
                illumination={"n_orientations": 1, "n_phases": 5, "excitation_wavelength_um": 0.49},
            ),
            "attribute nstm_acquire.optics.z_step_um is missing",
        ),
        (
            lambda a: a["nstm_acquire"]["illumination"].update(shots=[[0], [1], [2]]),
            "array raw has S = 4 shots but the illumination attributes describe 3",
        ),
    ],
)
def test_bad_stores_give_one_line_naming_the_field(tmp_path: Path, mutate, expected) -> None:
    path = _store_with(tmp_path, mutate)
    with pytest.raises(StoreError) as err:
        StoreReader(path)
    message = one_line(err)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        StoreReader(tmp_path / "missing.zarr")
    assert "does not exist" in one_line(err)
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(StoreError) as err:
        StoreReader(tmp_path / "empty.zarr")
    assert "is not a Zarr store (no zarr.json" in one_line(err)
    zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    with pytest.raises(StoreError) as err:
        StoreReader(tmp_path / "v2.zarr")
    assert "Zarr v2" in one_line(err)
    path = _store_with(tmp_path, lambda a: None)
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError) as err:
        StoreReader(path)
    assert "zarr.json is not valid JSON (" in one_line(err)
    assert "not json" not in one_line(err)  # the message never quotes the file


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    bad = copy.deepcopy(dpc_attrs())
    del bad["optics"]["na_detection"]
    with pytest.raises(StoreError) as err:
        StoreWriter.create(tmp_path / "a.zarr", bad, 4, 1, (8, 8))
    assert "nstm_acquire.optics.na_detection is missing" in one_line(err)
    with pytest.raises(StoreError) as err:
        StoreWriter.create(tmp_path / "a.zarr", dpc_attrs(), 5, 1, (8, 8))
    assert "n_shots = 5" in one_line(err) and "pass n_shots=4" in str(err.value)
    with pytest.raises(StoreError) as err:
        StoreWriter.create(tmp_path / "a.zarr", dpc_attrs(), 4, 3, (8, 8))
    assert "n_planes" in one_line(err)
    with pytest.raises(StoreError) as err:
        StoreWriter.create(tmp_path / "a.zarr", dpc_attrs(), 4, 1, (8, 8), dtype="int32")
    assert "dtype" in one_line(err)

    path = tmp_path / "w.zarr"
    out = StoreWriter.create(path, dpc_attrs(), 4, 1, (8, 8))
    cases = [
        ((0, 0, 0, np.zeros((8, 9), np.uint16), 0.0, 0.01), "has shape (8, 9), expected (8, 8)"),
        ((0, 0, 0, np.zeros((8, 8), np.float64), 0.0, 0.01), "does not cast safely"),
        ((0, 4, 0, np.zeros((8, 8), np.uint16), 0.0, 0.01), "frame index s = 4 is out of range"),
        ((0, 0, 1, np.zeros((8, 8), np.uint16), 0.0, 0.01), "frame index z = 1 is out of range"),
        ((-1, 0, 0, np.zeros((8, 8), np.uint16), 0.0, 0.01), "frame index w = -1"),
        ((0, 0, 0, np.zeros((8, 8), np.uint16), float("nan"), 0.01), "timestamp_s = nan"),
        ((0, 0, 0, np.zeros((8, 8), np.uint16), 0.0, -1.0), "exposure_s = -1.0"),
    ]
    for args, expected in cases:
        with pytest.raises(StoreError) as err:
            out.write_frame(*args)
        assert expected in one_line(err)
    out.write_frame(0, 0, 0, np.ones((8, 8), np.uint16), 0.0, 0.01)
    with pytest.raises(StoreError) as err:
        out.write_frame(0, 0, 0, np.ones((8, 8), np.uint16), 0.1, 0.01)
    assert "(0, 0, 0) was already written" in one_line(err)
    out.close()
    with pytest.raises(StoreError):
        out.write_frame(1, 0, 0, np.ones((8, 8), np.uint16), 0.2, 0.01)

    # existing stores: refused unless overwrite=True, and never a non-store directory
    with pytest.raises(StoreError) as err:
        StoreWriter.create(path, dpc_attrs(), 4, 1, (8, 8))
    assert "already exists" in one_line(err) and "overwrite=True" in str(err.value)
    StoreWriter.create(path, dpc_attrs(), 4, 1, (4, 4), overwrite=True).close()
    assert StoreReader(path).frame_shape == (4, 4)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(StoreError) as err:
        StoreWriter.create(other, dpc_attrs(), 4, 1, (8, 8), overwrite=True)
    assert "is not a Zarr store" in one_line(err)
    assert (other / "data.txt").read_text() == "keep me"
