"""``mypyc_attr`` for the core's compiled modules: `unknot._native`'s, at the package's bottom
layer where the HTTP modules find it too."""

from __future__ import annotations

from .._native import mypyc_attr as mypyc_attr

__all__ = ["mypyc_attr"]
