"""Bad stores (issue 14, findings 3, 7, 9): each is refused or reported in one line, never read
past its limits, and every sound window stays readable with the same frames.

Each test damages a copy of one tiny acquired store (``conftest.pristine_store``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from nstm_acquire.store import StoreError, StoreReader
from nstm_acquire.store.reader import MAX_METADATA_BYTES

WINDOWS = 3  # conftest.pristine_store


def frame_file(store: Path, w: int, s: int = 1) -> Path:
    return store / "raw" / "c" / str(w) / str(s) / "0" / "0" / "0"


def assert_windows_intact(store: Path, pristine: Path, windows: list[int]) -> None:
    """The given windows read back exactly as in the untouched store (nothing acquired lost)."""
    good, damaged = StoreReader(pristine), StoreReader(store)
    for w in windows:
        np.testing.assert_array_equal(damaged.window(w).raw, good.window(w).raw)
        np.testing.assert_array_equal(damaged.window(w).timestamps_s, good.window(w).timestamps_s)


def tree_digest(path: Path) -> str:
    """A digest of every regular file under ``path`` (names and bytes)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(p.relative_to(path).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def assert_refused(run_cli, store: Path, *needles: str) -> str:
    """``info`` exits 2 with one line naming the problem; the store's files are unchanged."""
    before = tree_digest(store)
    code, err, _ = run_cli("info", store)
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("nstm-acquire: "), err
    for needle in needles:
        assert needle in err[0]
    assert tree_digest(store) == before
    return err[0]


# ---------------------------------------------------------------- frames (finding 3)
def test_missing_frame_file_makes_its_window_incomplete(store_copy, pristine_store, run_cli):
    frame_file(store_copy, 1).unlink()
    reader = StoreReader(store_copy)
    assert reader.complete_windows() == [0, 2]
    assert "raw/c/1/1/0/0/0" in reader.damaged_windows()[1] and "missing" in reader.damaged_windows()[1]
    with pytest.raises(StoreError, match=r"window 1 is incomplete") as err:
        reader.window(1)
    assert "\n" not in str(err.value)
    assert reader.timing_summary()["frames_acquired"] == WINDOWS * 4 - 1
    code, _, out = run_cli("info", store_copy)
    assert code == 0 and "2 complete" in out
    assert_windows_intact(store_copy, pristine_store, [0, 2])


def test_truncated_frame_file_is_not_read(store_copy, pristine_store):
    path = frame_file(store_copy, 0, 3)
    path.write_bytes(path.read_bytes()[:100])
    reader = StoreReader(store_copy)
    assert reader.complete_windows() == [1, 2]
    assert "has 100 bytes, expected 2048" in reader.damaged_windows()[0]
    with pytest.raises(StoreError, match="window 0"):
        reader.window(0)
    # the window's other frames are still there
    np.testing.assert_array_equal(reader.frame(0, 0), StoreReader(pristine_store).frame(0, 0))
    assert_windows_intact(store_copy, pristine_store, [1, 2])


def test_frame_file_linked_to_a_device_is_not_followed(store_copy, pristine_store):
    path = frame_file(store_copy, 2)
    path.unlink()
    path.symlink_to("/dev/zero")
    reader = StoreReader(store_copy)
    assert reader.complete_windows() == [0, 1]
    assert "symbolic link" in reader.damaged_windows()[2]
    with pytest.raises(StoreError, match="symbolic link"):
        reader.frame(2, 1)
    assert_windows_intact(store_copy, pristine_store, [0, 1])


def test_frame_folder_linked_out_of_the_store_is_not_read(store_copy, pristine_store, tmp_path):
    outside = tmp_path / "elsewhere"
    folder = store_copy / "raw" / "c" / "1"
    folder.rename(outside)
    folder.symlink_to(outside, target_is_directory=True)
    reader = StoreReader(store_copy)
    with pytest.raises(StoreError, match="outside the store") as err:
        reader.window(1)
    assert "\n" not in str(err.value)
    assert_windows_intact(store_copy, pristine_store, [0, 2])


def test_timing_chunk_of_the_wrong_size_makes_its_window_incomplete(store_copy, pristine_store):
    (store_copy / "timestamps_s" / "c" / "1" / "0" / "0").write_bytes(b"\0" * 7)
    reader = StoreReader(store_copy)
    assert reader.complete_windows() == [0, 2]
    assert "timestamps_s/c/1/0/0" in reader.damaged_windows()[1]
    assert_windows_intact(store_copy, pristine_store, [0, 2])


def test_undecodable_compressed_chunk_is_one_line(tmp_path, dpc_attrs):
    from nstm_acquire.store import StoreWriter

    path = tmp_path / "z.zarr"
    with StoreWriter.create(path, dpc_attrs, 4, 1, (16, 16), compression="zstd") as out:
        for w in range(2):
            for s in range(4):
                out.write_frame(w, s, 0, np.full((16, 16), w + s, np.uint16), w + 0.01 * s, 0.005)
    chunk = path / "raw" / "c" / "0" / "2" / "0" / "0" / "0"
    chunk.write_bytes(b"\x01" * chunk.stat().st_size)
    reader = StoreReader(path)
    with pytest.raises(StoreError, match="does not decode") as err:
        reader.window(0)
    assert "\n" not in str(err.value)
    np.testing.assert_array_equal(reader.window(1).raw[3, 0], 4)


# ---------------------------------------------------------------- metadata (finding 7)
def test_json_bomb_in_zarr_json_is_refused(store_copy, run_cli):
    (store_copy / "zarr.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_refused(run_cli, store_copy, "zarr.json", "nested too deeply")


def test_oversized_zarr_json_is_refused_before_reading(store_copy, run_cli):
    meta = json.loads((store_copy / "zarr.json").read_text())
    meta["attributes"]["padding"] = "x" * (MAX_METADATA_BYTES + 10)
    (store_copy / "zarr.json").write_text(json.dumps(meta))
    line = assert_refused(run_cli, store_copy, "zarr.json", "more than the")
    assert "xxxx" not in line


def test_binary_zarr_json_is_refused_without_quoting_it(store_copy, run_cli):
    (store_copy / "zarr.json").write_bytes(b"\x89PNG\r\n\x1a\nSECRET" + bytes(range(256)))
    line = assert_refused(run_cli, store_copy, "zarr.json", "not UTF-8")
    assert "SECRET" not in line and "PNG" not in line


def test_invalid_json_message_does_not_quote_the_file(store_copy, run_cli):
    (store_copy / "zarr.json").write_text('{"zarr_format": 3, SECRET-TOKEN}')
    line = assert_refused(run_cli, store_copy, "zarr.json is not valid JSON", "line 1 column")
    assert "SECRET" not in line


def test_zarr_json_that_is_a_symlink_is_refused(store_copy, run_cli, tmp_path):
    target = tmp_path / "elsewhere.json"
    (store_copy / "zarr.json").rename(target)
    (store_copy / "zarr.json").symlink_to(target)
    assert_refused(run_cli, store_copy, "zarr.json", "symbolic link")


def test_array_claiming_huge_frames_is_refused_before_allocating(store_copy, run_cli):
    meta_path = store_copy / "raw" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [3, 4, 1, 100_000, 100_000]
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [1, 1, 1, 100_000, 100_000]
    meta_path.write_text(json.dumps(meta))
    assert_refused(run_cli, store_copy, "array raw", "memory limit")


def test_timing_array_claiming_a_million_windows_is_refused(store_copy, run_cli):
    for name, shape in (("raw", [10**9, 4, 1, 32, 32]), ("timestamps_s", [10**9, 4, 1]), ("exposure_s", [10**9, 4, 1])):
        meta_path = store_copy / name / "zarr.json"
        meta = json.loads(meta_path.read_text())
        meta["shape"] = shape
        meta_path.write_text(json.dumps(meta))
    assert_refused(run_cli, store_copy, "timestamps_s", "memory limit")


def test_raw_chunked_other_than_one_frame_is_refused(store_copy, run_cli):
    meta_path = store_copy / "raw" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [3, 4, 1, 32, 32]
    meta_path.write_text(json.dumps(meta))
    assert_refused(run_cli, store_copy, "array raw", "one frame per chunk")


def test_missing_attribute_names_the_field(store_copy, run_cli):
    meta = json.loads((store_copy / "zarr.json").read_text())
    del meta["attributes"]["nstm_acquire"]["optics"]["wavelength_um"]
    (store_copy / "zarr.json").write_text(json.dumps(meta))
    assert_refused(run_cli, store_copy, "nstm_acquire.optics.wavelength_um", "is missing")


def test_array_folder_that_is_a_symlink_is_refused(store_copy, run_cli, tmp_path):
    target = tmp_path / "ts"
    (store_copy / "timestamps_s").rename(target)
    os.symlink(target, store_copy / "timestamps_s", target_is_directory=True)
    assert_refused(run_cli, store_copy, "array timestamps_s", "symbolic links")


# ---------------------------------------------------------------- times (smaller items)
def test_negative_and_decreasing_timestamps_are_flagged(store_copy):
    for w, value in ((1, -5.0), (2, -1.0)):
        path = store_copy / "timestamps_s" / "c" / str(w) / "0" / "0"
        ts = np.frombuffer(path.read_bytes(), "<f8").copy()
        ts[:] = value + 0.001 * np.arange(ts.size)
        path.write_bytes(ts.tobytes())
    problems = StoreReader(store_copy).timing_problems()
    assert any("negative timestamps_s" in p and "frame (1, 0, 0)" in p for p in problems)
    assert any("start before the window before them" in p and "window 1" in p for p in problems)
    assert all("\n" not in p for p in problems)
    assert StoreReader(store_copy).complete_windows() == [0, 1, 2]  # flagged, not dropped


def test_a_sound_store_has_no_timing_problems(pristine_store):
    reader = StoreReader(pristine_store)
    assert reader.timing_problems() == []
    assert reader.run_end() == ("completed", "")
    assert reader.damaged_windows() == {}


# ---------------------------------------------------------------- interop (finding 9)
@pytest.mark.parametrize("with_order_0", [False, True])
def test_sim_modulation_with_or_without_order_0(tmp_path, with_order_0):
    from nstm_acquire.store import StoreWriter

    attrs = {
        "format_version": 1,
        "modality": "sim2d",
        "optics": {"wavelength_um": 0.52, "na_detection": 1.2, "pixel_size_um": 0.08, "immersion_index": 1.515},
        "illumination": {
            "n_orientations": 3, "n_phases": 3, "excitation_wavelength_um": 0.488,
            "k_per_um": [[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]], "phase_rad": [0.0, 0.0, 0.0],
            "modulation": [[1.0, 0.8]] * 3 if with_order_0 else [[0.8]] * 3,
        },
    }  # fmt: skip
    path = tmp_path / "sim.zarr"
    with StoreWriter.create(path, attrs, 9, 1, (16, 16)) as out:
        for s in range(9):
            out.write_frame(0, s, 0, np.ones((16, 16), np.uint16), 0.01 * s, 0.005)
    reader = StoreReader(path)
    assert [list(m) for m in reader.attrs.illumination.modulation] == [[0.8]] * 3
    assert reader.complete_windows() == [0]


def test_background_chunk_linked_out_of_the_store_is_refused(store_copy, pristine_store):
    chunk = store_copy / "background" / "c" / "2" / "0" / "0" / "0"
    assert chunk.is_file()
    chunk.unlink()
    chunk.symlink_to("/dev/zero")
    reader = StoreReader(store_copy)
    with pytest.raises(StoreError, match="array background chunk background/c/2/0/0/0 is not a regular file") as err:
        reader.background()
    assert "\n" not in str(err.value)
    assert_windows_intact(store_copy, pristine_store, [0, 1, 2])  # the frames do not depend on it
