"""Lazy package attributes, in the manner of transformers' `_LazyModule`.

`import hf_clipadapt` registers every model with the Auto classes but imports no
method's modelling code: a package's public names resolve on first access.
"""

from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """`(__getattr__, __dir__)` for a package whose public `name` lives in the
    submodule `exports[name]` (relative to `package`, e.g. ".modeling_gda")."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name], package)
        value = module if exports[name].rsplit(".", 1)[-1] == name else getattr(module, name)
        setattr(sys.modules[package], name, value)  # resolve once
        return value

    def __dir__():
        return sorted(set(exports) | set(vars(sys.modules[package])))

    return __getattr__, __dir__


def exports_of(module: str, *names: str) -> dict[str, str]:
    """{name: module for each name}: one line per submodule in a package's table."""
    return dict.fromkeys(names, module)
