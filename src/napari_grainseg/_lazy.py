"""Lazy re-exports for package ``__init__`` modules, so importing a package stays fast.

A package lists the public names it offers and the submodule each lives in;
the submodule is imported on first access (PEP 562), so ``import
napari_grainseg`` never pulls in torch, matplotlib or scikit-image.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` exporting ``name -> submodule``.

    Examples
    --------
    >>> __getattr__, __dir__, __all__ = lazy_exports(__name__, {"segment": ".segmentation.pipeline"})
    """

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
