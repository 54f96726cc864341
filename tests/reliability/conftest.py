"""Shared fixtures of the reliability corpus (issue 14): tiny stores and configurations.

Every test here damages a *copy* of one small store made once per session, so the folder costs
one acquisition plus a copy per test. ``run_cli`` runs the command line in this process and
returns ``(exit code, stderr lines)``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SHAPE = (32, 32)
WINDOWS = 3


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """``nstm-acquire <args>`` in this process: exit code, non-empty stderr lines, stdout."""
    from nstm_acquire.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, [line for line in out.err.splitlines() if line.strip()], out.out


@pytest.fixture(scope="session")
def pristine_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-window 32 x 32 DPC store acquired by ``nstm-acquire acquire --fast`` (read-only!)."""
    from nstm_acquire.cli import main

    out = tmp_path_factory.mktemp("pristine") / "run.zarr"
    code = main(["acquire", "--shape", *map(str, SHAPE), "--windows", str(WINDOWS), "--fast", "--out", str(out)])
    assert code == 0, "the reference acquisition failed"
    return out


@pytest.fixture
def store_copy(pristine_store: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`pristine_store` to damage."""
    dest = tmp_path / "run.zarr"
    shutil.copytree(pristine_store, dest, symlinks=True)
    return dest


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """Write a configuration file (text or bytes) under the test's folder; returns its path."""

    def make(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return make


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, list[str], str]]:
    """``run_cli(*args)`` -> (exit code, stderr lines, stdout) of the command line, in-process."""

    def run(*args: object) -> tuple[int, list[str], str]:
        return cli([str(a) for a in args], capsys)

    return run


@pytest.fixture
def dpc_attrs() -> dict:
    """``nstm_acquire`` attributes of a 4-shot DPC store (5 LEDs), for stores written directly."""
    return {
        "format_version": 1,
        "modality": "dpc",
        "optics": {"wavelength_um": 0.53, "na_detection": 0.25, "pixel_size_um": 0.5},
        "illumination": {
            "led_na": [[0.0, 0.0], [0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]],
            "shots": [[1], [2], [3], [4]],
        },
        "acquisition": {},
    }


@pytest.fixture
def python() -> str:
    """The interpreter running the tests (for subprocess tests)."""
    return sys.executable
