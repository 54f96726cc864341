"""The layers import one way (docs/architecture.md): checked on the source, every import statement.

Known answer: the table below is the architecture; a module that imports against it (at the top
or inside a function) fails here with the offending line named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nstm_acquire"

# layer -> package-internal layers and third-party top-level modules it must never import
_QT = ("PyQt6", "qtpy", "pyqtgraph", "napari")
FORBIDDEN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "nstm": (
        ("physics", "store", "hardware", "recon", "acquire", "gui", "evaluation", "cli", "_logger"),
        ("zarr", "pymmcore_plus", "psygnal", *_QT),
    ),
    "physics": (
        ("nstm", "store", "hardware", "recon", "acquire", "gui", "evaluation", "cli"),
        ("zarr", "pymmcore_plus", "psygnal", *_QT),
    ),
    "store": (
        ("nstm", "hardware", "recon", "acquire", "gui", "evaluation", "cli"),
        ("pymmcore_plus", "jax", *_QT),
    ),
    "recon": (
        ("hardware", "acquire", "gui", "evaluation", "cli"),
        ("pymmcore_plus", *_QT),
    ),
    "hardware": (
        ("nstm", "store", "recon", "acquire", "gui", "evaluation", "cli"),
        (*_QT,),
    ),
    "acquire": (("gui", "evaluation", "cli", "nstm"), (*_QT,)),
    "evaluation": (("gui", "cli", "acquire"), (*_QT,)),
    "gui": (("cli", "napari"), ()),
    "napari": (("cli",), ()),
}

# The simulator's image formation is independent of the forward models it is used to judge.
SIMULATOR_MAY_NOT = ("physics.dpc.forward", "physics.sim.forward", "physics.sim.wiener",
                     "physics.sim.estimation", "physics.sim.otf", "physics.rolling_shutter",
                     "physics.rolling_shutter.timing", "physics.rolling_shutter.forward",
                     "physics.rolling_shutter.deconvolution")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(("nstm_acquire", *path.relative_to(PACKAGE).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from nstm_acquire import x` names a subpackage x
            if module == "nstm_acquire":
                found += [(node.lineno, f"nstm_acquire.{a.name}") for a in node.names]
    return found


def _layer_modules(layer: str) -> list[Path]:
    root = PACKAGE / layer
    return sorted(root.rglob("*.py")) if root.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downward(layer: str) -> None:
    internal, external = FORBIDDEN[layer]
    bad = []
    for path in _layer_modules(layer):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "nstm_acquire" and len(parts) > 1 and parts[1] in internal:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
            if parts[0] in external:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not bad, f"{layer}/ imports against the layering:\n" + "\n".join(bad)


def test_simulator_does_not_use_the_forward_models() -> None:
    bad = []
    for path in sorted((PACKAGE / "hardware" / "simulated").rglob("*.py")):
        for line, module in _imports(path):
            if any(module == f"nstm_acquire.{m}" for m in SIMULATOR_MAY_NOT):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_acquisition_never_knows_the_simulator() -> None:
    """The controller reaches the simulated microscope through the Microscope interface only."""
    bad = []
    for path in sorted((PACKAGE / "acquire").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for line, module in _imports(path):
            if module.startswith("nstm_acquire.hardware.simulated"):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
        for no, source in enumerate(text.splitlines(), 1):
            code = source.split("#")[0]
            if ".world" in code or "SimulatedWorld" in code:
                bad.append(f"{path.relative_to(PACKAGE)}:{no}: {source.strip()}")
    assert not bad, "acquire/ reaches into the simulator:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The import scanner itself: a function-level import of the store from physics is found."""
    probe = PACKAGE / "physics" / "_probe_for_test.py"
    try:
        probe.write_text("def f():\n    from nstm_acquire.store import StoreReader\n    from ..hardware import config\n")
        found = [m for _, m in _imports(probe)]
        assert "nstm_acquire.store" in found
        assert "nstm_acquire.hardware" in found
    finally:
        probe.unlink()
