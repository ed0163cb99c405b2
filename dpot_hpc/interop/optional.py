"""Optional dependencies (gala, galpy), imported only when first used, with an error that says how to
install them."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependencyError(ImportError):
    """An optional dependency of dpot_hpc.interop is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` (e.g. 'gala.potential') or raise MissingDependencyError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module.split('.')[0]} is not installed ({exc}); install it with: pip install 'dpot-hpc[{extra}]'"
        ) from exc
