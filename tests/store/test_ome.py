"""OME-Zarr (NGFF) 0.5 metadata: the pure builders against known answers, and every image of a
written store through an OME-Zarr 0.5 validator from the package index (ome-zarr-models)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from nstm_acquire.store.ome import channel_label, multiscale, omero, time_axis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "napari"))
from napari_store_factory import (  # noqa: E402
    PIXEL_UM,
    RECON_PIXEL_UM,
    SHOT_INTERVAL_S,
    WINDOW_PERIOD_S,
    make_dpc_store,
    shot_time_s,
)


def test_time_axis_is_the_line_through_evenly_spaced_times():
    step, origin = time_axis([3.0, 3.5, 4.0, 4.5])
    assert step == pytest.approx(0.5) and origin == pytest.approx(3.0)
    # windows 1 and 3 only (2 missing): the index says where each time belongs
    step, origin = time_axis([12.0, 16.0], index=[1, 3])
    assert step == pytest.approx(2.0) and origin == pytest.approx(10.0)
    assert time_axis([np.nan, 5.0]) == (1.0, 4.0)  # one known time (index 1): any step, at its time
    assert time_axis([np.nan, np.nan]) == (None, None)
    assert time_axis([5.0, 4.0]) == (None, None)  # time running backwards: not an axis
    with pytest.raises(ValueError, match="index"):
        time_axis([1.0, 2.0], index=[0])


def test_multiscale_axes_units_and_transforms():
    image = multiscale("scene", "nstm/scene", 0.25, z_step_um=0.2, time_step_s=0.5, time_origin_s=3.0)
    assert [(a["name"], a["type"], a.get("unit")) for a in image["axes"]] == [
        ("t", "time", "second"),
        ("c", "channel", None),
        ("z", "space", "micrometer"),
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    scale, translation = image["datasets"][0]["coordinateTransformations"]
    assert scale == {"type": "scale", "scale": [0.5, 1.0, 0.2, 0.25, 0.25]}
    assert translation == {"type": "translation", "translation": [3.0, 0.0, 0.0, 0.0, 0.0]}
    # unknown times: t is an index without a unit, and no translation
    image = multiscale("raw", "run", 0.5)
    assert "unit" not in image["axes"][0]
    assert image["datasets"][0]["coordinateTransformations"] == [{"type": "scale", "scale": [1.0, 1.0, 1.0, 0.5, 0.5]}]
    with pytest.raises(ValueError, match="pixel_size_um"):
        multiscale("raw", "run", 0.0)


def test_channel_labels_and_omero_windows():
    assert channel_label("phase_rad") == "phase (rad)"
    assert channel_label("absorption") == "absorption"
    block = omero(["absorption", "phase_rad"], [(-0.1, 0.2), None])
    assert [c["label"] for c in block["channels"]] == ["absorption", "phase (rad)"]
    assert block["channels"][0]["window"] == {"min": -0.1, "max": 0.2, "start": -0.1, "end": 0.2}
    assert block["channels"][1]["window"]["start"] == 0.0 and block["channels"][1]["window"]["end"] == 1.0
    with pytest.raises(ValueError, match="one per channel"):
        omero(["density"], [(0, 1), (0, 1)])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydantic-zarr's pydantic v1 idioms
def test_every_image_of_a_store_passes_the_ome_zarr_05_validator(tmp_path: Path):
    models = pytest.importorskip("ome_zarr_models.v05.image")
    from ome_zarr_models.common.omero import Omero

    path = make_dpc_store(tmp_path / "run.zarr", n_windows=3)
    root = zarr.open_group(str(path), mode="r")
    recon = root["recon/nstm"]

    raw_image = models.Image.from_zarr(root)
    recon_image = models.Image.from_zarr(recon)
    (raw,) = raw_image.attributes.ome.multiscales
    scene, conventional, motion = recon_image.attributes.ome.multiscales
    assert [d.path for m in (raw, scene, conventional, motion) for d in m.datasets] == [
        "raw", "scene", "conventional", "motion",
    ]  # fmt: skip
    for image in (raw, scene, conventional, motion):
        assert image.axes[0].unit == "second" and image.axes[0].type == "time"
        assert [a.unit for a in image.axes[2:]] == ["micrometer"] * 3

    def transform(image):
        scale, translation = image.datasets[0].coordinateTransformations
        return list(scale.scale), list(translation.translation)

    # raw: one time point per window, at each window's first shot
    scale, translation = transform(raw)
    assert scale == pytest.approx([WINDOW_PERIOD_S, 1, 1, PIXEL_UM, PIXEL_UM])
    assert translation[0] == pytest.approx(shot_time_s(0, 0))
    # conventional: one per window, at each window's mean render time
    scale, translation = transform(conventional)
    assert scale == pytest.approx([WINDOW_PERIOD_S, 1, 1, RECON_PIXEL_UM, RECON_PIXEL_UM])
    assert translation[0] == pytest.approx(shot_time_s(0, 0) + 1.5 * SHOT_INTERVAL_S)
    # scene and motion: one per render time (4 a window); the best straight line through them
    times = np.asarray(recon["times_s"][:])
    scale, translation = transform(scene)
    fitted = translation[0] + scale[0] * np.arange(times.size)
    assert np.max(np.abs(fitted - times)) < WINDOW_PERIOD_S / 2
    assert transform(motion) == transform(scene)
    assert motion.axes[1].name == "d"

    block = Omero.model_validate(dict(recon.attrs)["ome"]["omero"])
    labels = [c["label"] for c in dict(recon.attrs)["ome"]["omero"]["channels"]]
    assert labels == ["absorption", "phase (rad)"] and len(block.channels) == 2
    # the display window spans every window's 0.5..99.5 percentiles of the phase
    phase = np.asarray(recon["scene"][:, 1]).reshape(3, -1)
    window = block.channels[1].window
    assert window.start == pytest.approx(np.percentile(phase, 0.5, axis=1).min(), rel=1e-5)
    assert window.end == pytest.approx(np.percentile(phase, 99.5, axis=1).max(), rel=1e-5)
    # discoverable from the root: the recon group lists its images
    assert dict(root["recon"].attrs)["nstm_acquire"]["images"] == ["nstm"]
