"""Lazy re-exports for package ``__init__`` modules: a name's module is imported on first use.

So that ``from nstm_acquire.acquire import AcquisitionPlan`` does not load the microscope core,
and ``import nstm_acquire.store`` does not load JAX. Each ``__init__`` lists its names and their
modules once and takes its ``__getattr__`` and ``__dir__`` from :func:`lazy_exports`; static type
checkers see the same names through an ``if TYPE_CHECKING:`` import block.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, module_of: Mapping[str, str], namespace: dict[str, Any], exported: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose name ``n`` lives in ``package.module_of[n]``.

    A resolved name is stored in ``namespace`` (the package's ``globals()``), so later lookups
    do not come back here. An unknown name raises ``AttributeError`` as usual.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module protocol's name
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *exported})

    return __getattr__, __dir__
