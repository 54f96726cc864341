"""Every benchmark case imports and has its ``run``: a case whose import broke (a name moved
from another case) would otherwise be found only when someone runs it for a report."""

import importlib
from pathlib import Path

import pytest
from benchmarks.run import CASES

CASE_FILES = sorted(p.stem for p in (Path(__file__).parents[1] / "benchmarks" / "cases").glob("*.py"))


def test_every_case_file_is_listed_in_the_runner():
    assert sorted(CASES) == [name for name in CASE_FILES if name != "__init__"]


@pytest.mark.parametrize("case", CASES)
def test_a_case_imports_and_has_a_run_with_a_quick_switch(case):
    run = importlib.import_module(f"benchmarks.cases.{case}").run
    assert callable(run) and "quick" in run.__code__.co_varnames[: run.__code__.co_argcount]
