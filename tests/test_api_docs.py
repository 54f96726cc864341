"""docs/api.md's examples run as written: every ```python block, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import nstm_acquire

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_public_api_names_resolve() -> None:
    """Every name in ``nstm_acquire.__all__`` imports, and an unknown one is an AttributeError."""
    for name in nstm_acquire.__all__:
        assert getattr(nstm_acquire, name) is not None, name
    try:
        nstm_acquire.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")


def test_api_examples_run(tmp_path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 6, "docs/api.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_doc"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{API_DOC.name}[block {i}]", "exec"), namespace)  # noqa: S102
    assert namespace["summary"].frames_written == 8
