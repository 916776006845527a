"""mypyc's class decorators, without needing mypy installed to run unknot.

The modules `setup.py` compiles with mypyc (``unknot._compiled.MODULES``: the core's and the
HTTP request path's) take ``mypyc_attr`` from here. For the type checker and
the compiler this is ``mypy_extensions.mypyc_attr`` (mypyc reads it at compile time; compiled
code never calls it); when interpreted it is a decorator that does nothing. This module itself is
never compiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*_flags: str, **_attrs: Any) -> Any:
        """``mypy_extensions.mypyc_attr``: nothing to do when interpreted."""
        return lambda cls: cls
