"""A rolling-shutter lensless store acquired on the simulated microscope, and bad lensless input.

Known answers: the configuration (row time, exposure, readout direction, frames per window), the
simulated camera's own PSF (``hardware/simulated/lensless_camera.lensless_truth``), and the
frame span of a rolling shutter: back-to-back frames start ``(rows - 1) * row_time + exposure``
apart, and the colour planes of one frame share its first row's opening.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from nstm_acquire.acquire.controller import AcquisitionController
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.hardware.config import ConfigError, parse_hardware_config
from nstm_acquire.hardware.microscope import open_microscope
from nstm_acquire.hardware.simulated.lensless_camera import lensless_truth
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.physics.rolling_shutter import RowTiming
from nstm_acquire.store import StoreError, StoreReader, validate_attributes

N = 24
ROW_S, EXPOSURE_S, FRAMES = 1e-4, 6e-4, 3


@pytest.fixture(scope="module")
def lensless_store(tmp_path_factory):
    config = simulated_config(frame_shape=(N, N), realtime=False)
    path = tmp_path_factory.mktemp("rs") / "rs.zarr"
    microscope = open_microscope(config)
    try:
        AcquisitionController(microscope, AcquisitionPlan(modality="rolling_shutter", n_windows=2), path).run()
    finally:
        microscope.close()
    return path, config


def test_acquired_store_has_frames_times_row_timing_and_psf(lensless_store):
    path, config = lensless_store
    reader = StoreReader(path)
    assert reader.modality == "rolling_shutter"
    assert reader.complete_windows() == [0, 1]
    assert reader.n_shots == FRAMES * 3 and reader.frame_shape == (N, N)
    assert reader.attrs.illumination.channels == ("red", "green", "blue")
    ts = reader.timestamps_s()[:, :, 0].reshape(2 * FRAMES, 3)  # (frames, colour planes)
    assert np.all(ts == ts[:, :1]), "the colour planes of a frame share its timestamp"
    span = (N - 1) * ROW_S + EXPOSURE_S
    np.testing.assert_allclose(np.diff(ts[:, 0]), span, rtol=1e-6)  # back-to-back frames
    np.testing.assert_allclose(reader.exposures_s(), EXPOSURE_S)
    assert reader.row_timing(EXPOSURE_S) == RowTiming(N, ROW_S, EXPOSURE_S, "top_to_bottom")
    assert reader.attrs.to_store()["camera"]["rolling_shutter"] == {"row_time_s": ROW_S, "direction": "top_to_bottom"}
    psf = reader.psf()
    np.testing.assert_allclose(psf, lensless_truth(config).psf.astype(np.float32), rtol=1e-6)
    assert reader.window(0).raw.mean() > 100  # the scene reached the sensor


def test_a_dpc_store_has_no_row_timing(tmp_path):
    """A global-shutter store reads as no row timing, and no psf."""
    attrs = _rs_attrs()
    attrs.update(modality="dpc", illumination={"led_na": [[0.0, 0.1]], "shots": [[0]]}, camera={})
    from nstm_acquire.store import StoreWriter

    with StoreWriter.create(tmp_path / "d.zarr", attrs, 1, 1, (16, 16)):
        pass
    reader = StoreReader(tmp_path / "d.zarr")
    assert reader.row_timing(0.01) is None and reader.psf() is None


def _rs_attrs(row_time_s: float = ROW_S) -> dict:
    return {
        "format_version": 1,
        "modality": "rolling_shutter",
        "optics": {"wavelength_um": 0.53, "na_detection": 0.1, "pixel_size_um": 1.0},
        "illumination": {"frames_per_window": 2},
        "camera": {"offset_adu": 0, "rolling_shutter": {"row_time_s": row_time_s, "direction": "top_to_bottom"}},
    }


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_negative_row_time_is_named_in_store_and_config():
    with pytest.raises(StoreError) as err:
        validate_attributes(_rs_attrs(row_time_s=-1e-4), "X.zarr")
    text = _one_line(err)
    assert "camera.rolling_shutter.row_time_s" in text and "greater than 0" in text and "seconds per row" in text
    data = simulated_config(frame_shape=(N, N)).model_dump(mode="json", exclude={"source_path"})
    data["rolling_shutter"]["readout"]["row_time_s"] = -1e-4
    with pytest.raises(ConfigError) as err:
        parse_hardware_config(data, source="bad.yaml")
    assert "rolling_shutter.readout.row_time_s" in _one_line(err)


def _store_with_psf(tmp_path, shape: tuple[int, ...]):
    from nstm_acquire.store import StoreWriter

    path = tmp_path / "p.zarr"
    with StoreWriter.create(path, _rs_attrs(), 6, 1, (16, 16)):
        pass
    group = zarr.open_group(str(path), mode="r+")
    group.create_array("psf", shape=shape, chunks=(1, *shape[1:]), dtype="<f4", fill_value=0.0)
    return StoreReader(path)


def test_a_psf_too_large_is_refused_before_reading(tmp_path):
    reader = _store_with_psf(tmp_path, (3, 100_000, 100_000))  # 120 GB declared, nothing written
    with pytest.raises(StoreError) as err:
        reader.psf()
    text = _one_line(err)
    assert "array psf" in text and "crop the PSF to at most 64 x 64" in text


def test_a_psf_of_the_wrong_shape_is_refused(tmp_path):
    reader = _store_with_psf(tmp_path, (2, 8, 8))  # two channels for an RGB store
    with pytest.raises(StoreError) as err:
        reader.psf()
    text = _one_line(err)
    assert "array psf" in text and "(C, Hp, Wp)" in text and "(1, 3)" in text


def test_the_writer_refuses_a_psf_of_the_wrong_shape(tmp_path):
    from nstm_acquire.store import StoreWriter

    with StoreWriter.create(tmp_path / "w.zarr", _rs_attrs(), 6, 1, (16, 16)) as writer:
        with pytest.raises(StoreError, match="psf has shape"):
            writer.write_psf(np.ones((8, 8)))
        with pytest.raises(StoreError, match="non-negative"):
            writer.write_psf(-np.ones((3, 8, 8)))


def test_reconstructing_a_store_without_its_psf_names_the_array(tmp_path):
    from nstm_acquire.recon.chain import StoreReconstructor
    from nstm_acquire.store import StoreWriter

    path = tmp_path / "nopsf.zarr"
    with StoreWriter.create(path, _rs_attrs(), 6, 1, (16, 16)) as writer:
        for s in range(6):
            writer.write_frame(0, s, 0, np.full((16, 16), 200, np.uint16), 0.01 * (s // 3), EXPOSURE_S)
    with pytest.raises(StoreError) as err:
        StoreReconstructor(path)
    text = _one_line(err)
    assert "array psf" in text and "is missing" in text
