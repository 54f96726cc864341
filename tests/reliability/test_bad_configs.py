"""Bad hardware configurations (issue 14, finding 7): each is refused in one line with exit
code 2 before anything is created, within the limits (no alias expansion, no huge frames), and
without quoting the file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nstm_acquire.hardware.config import (
    MAX_CONFIG_BYTES,
    ConfigError,
    default_config_path,
    load_hardware_config,
)


@pytest.fixture(scope="module")
def good_yaml() -> str:
    return default_config_path().read_text(encoding="utf-8")


def assert_refused(run_cli, config: Path, tmp_path: Path, *needles: str, shape: bool = True) -> str:
    """``acquire --config config`` exits 2 with one line; no store (nothing) is created."""
    out = tmp_path / "never.zarr"
    args = ["acquire", "--config", config, "--out", out, "--windows", "1", "--fast"]
    code, err, _ = run_cli(*args, *(["--shape", 32, 32] if shape else []))
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("nstm-acquire: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    assert not out.exists() and not out.with_suffix(".log").exists()
    return err[0]


def test_yaml_alias_bomb_is_refused_before_expanding(run_cli, write_config, tmp_path, good_yaml):
    bomb = "\n".join(
        ["bomb:", '  a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        + [f"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
           f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    )  # fmt: skip
    config = write_config("bomb.yaml", good_yaml + "\n" + bomb + "\n")
    t0 = time.perf_counter()
    line = assert_refused(run_cli, config, tmp_path, "bomb.yaml", "anchors and aliases are not allowed", "line ")
    assert time.perf_counter() - t0 < 5.0
    assert "x" not in line.split("bomb.yaml", 1)[1].replace("text", "")  # no content quoted


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not UTF-8 text"),
        (b"name: a\x00b\n", "not a text file"),
        (None, "is a folder"),
        ("missing", "no such hardware configuration"),
    ],
    ids=["binary", "nul-bytes", "folder", "missing"],
)
def test_unreadable_config_files(run_cli, write_config, tmp_path, content, needle):
    if content is None:
        config = tmp_path / "configs"
        config.mkdir()
    elif content == "missing":
        config = tmp_path / "nope.yaml"
    else:
        config = write_config("scope.yaml", content)
    with pytest.raises(ConfigError, match=needle) as err:
        load_hardware_config(config)
    assert "\n" not in str(err.value) and "PNG" not in str(err.value)
    assert_refused(run_cli, config, tmp_path, config.name)  # the command line: exit 2, one line


def test_huge_simulated_frame_is_refused_at_once(run_cli, write_config, tmp_path, good_yaml):
    config = write_config("huge.yaml", good_yaml.replace("frame_shape: [128, 128]", "frame_shape: [100000, 100000]"))
    t0 = time.perf_counter()
    assert_refused(run_cli, config, tmp_path, "huge.yaml", "frame_shape", "too large", "4096", shape=False)
    assert time.perf_counter() - t0 < 5.0


def test_yaml_syntax_error_names_the_position_not_the_content(run_cli, write_config, tmp_path, good_yaml):
    config = write_config("broken.yaml", good_yaml.replace("name: simulated", "name: [SECRET-VALUE", 1))
    line = assert_refused(run_cli, config, tmp_path, "broken.yaml: not valid YAML", "line ")
    assert "SECRET" not in line


def test_oversized_config_is_refused_before_parsing(run_cli, write_config, tmp_path, good_yaml):
    config = write_config("big.yaml", good_yaml + "#" + "x" * MAX_CONFIG_BYTES + "\n")
    assert_refused(run_cli, config, tmp_path, "big.yaml", "more than the")


def test_several_bad_fields_give_one_line_naming_the_others(run_cli, write_config, tmp_path, good_yaml):
    text = good_yaml.replace("exposure_ms: 20", "exposure_ms: -20").replace("readout_ms: 2.0", "readout_ms: -1")
    config = write_config("two.yaml", text)
    line = assert_refused(run_cli, config, tmp_path, "two.yaml: camera.exposure_ms", "also wrong", "readout_ms")
    assert "input_value" not in line


def test_misspelled_field_is_named(run_cli, write_config, tmp_path, good_yaml):
    config = write_config("typo.yaml", good_yaml.replace("shutter_label:", "shuter_label:"))
    assert_refused(run_cli, config, tmp_path, "typo.yaml: shuter_label")


def test_real_microscope_without_its_cfg_is_refused(run_cli, write_config, tmp_path, good_yaml):
    text = good_yaml.replace("\nsimulated: true", "\nsimulated: false\nmicromanager_config: missing.cfg")
    config = write_config("real.yaml", text)
    assert_refused(run_cli, config, tmp_path, "micromanager_config", "does not exist")


def test_bad_fault_setting_is_refused(write_config, good_yaml):
    config = write_config("faults.yaml", good_yaml.replace("  seed: 0", "  seed: 0\n  faults: {camera_error_after_frames: -3}"))
    with pytest.raises(ConfigError, match=r"simulation.faults.camera_error_after_frames") as err:
        load_hardware_config(config)
    assert "\n" not in str(err.value)


def test_the_simulated_microscope_needs_no_micromanager_cfg():
    """``.cfg`` files are trusted code (``#py`` lines); the simulated path never loads one."""
    cfg = load_hardware_config(default_config_path())
    assert cfg.simulated and cfg.micromanager_config is None and cfg.resolved_mm_config() is None
