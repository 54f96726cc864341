"""Hardware configuration files: the shipped examples load, bad fields are named."""

from pathlib import Path

import pytest
import yaml

from nstm_acquire.hardware.config import (
    ConfigError,
    default_config_path,
    load_hardware_config,
    parse_hardware_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "hardware_configs"


def _simulated_data() -> dict:
    return yaml.safe_load(default_config_path().read_text())


def test_default_config_is_the_simulated_microscope():
    cfg = load_hardware_config(default_config_path())
    assert cfg.simulated
    assert cfg.available_modalities() == ["dpc", "sim2d", "sim3d", "rolling_shutter"]
    assert cfg.dpc.optics.na_detection == 0.25
    assert cfg.sim3d.n_phases == 5


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    data = yaml.safe_load(path.read_text())
    cfg = parse_hardware_config(data, source=path.name)
    assert cfg.name


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["dpc"]["optics"].update(na_detection=-0.2), "dpc.optics.na_detection"),
        (lambda d: d["dpc"]["optics"].update(wavelength_um=520), "looks like nanometres"),
        (lambda d: d["dpc"]["optics"].update(na_detection=1.2), "must be below immersion_index"),
        (lambda d: d["dpc"]["led_array"].pop("pitch_mm"), "dpc.led_array.pitch_mm"),
        (lambda d: d["dpc"]["pattern_control"].pop("device"), "needs device"),
        (lambda d: d["sim3d"].update(n_phases=3), "sim3d.n_phases=3"),
        (lambda d: d["camera"].update(exposure_ms=0), "camera.exposure_ms"),
        (lambda d: d.update(colour="red"), "colour: Extra inputs are not permitted"),
        (lambda d: d["sim2d"].update(k_per_um=[[1.0, 2.0]]), "k_per_um has 1 entries"),
        (lambda d: d["simulation"].update(frame_shape=[8, 8]), "too small"),
    ],
)
def test_bad_fields_are_named(mutate, expected):
    data = _simulated_data()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_hardware_config(data, source="simulated.yaml")
    message = str(info.value)
    assert expected in message
    assert message.startswith("simulated.yaml: ")
    assert "Traceback" not in message


def test_missing_file_points_to_the_examples(tmp_path):
    with pytest.raises(ConfigError, match="hardware_configs/simulated.yaml"):
        load_hardware_config(tmp_path / "nope.yaml")


def test_real_scope_needs_a_cfg():
    data = _simulated_data()
    data["simulated"] = False
    with pytest.raises(ConfigError, match="micromanager_config"):
        parse_hardware_config(data, source="x.yaml")


def test_unconfigured_modality_lists_the_available_ones():
    data = _simulated_data()
    del data["sim3d"]
    cfg = parse_hardware_config(data)
    with pytest.raises(ConfigError, match="available: dpc, sim2d"):
        cfg.modality("sim3d")
