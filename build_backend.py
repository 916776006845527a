"""The build backend: setuptools', asking for mypy (mypyc) only when the extensions will be built.

pyproject.toml names this module (``backend-path = ["."]``). A pure build (the default for now)
needs nothing beyond setuptools; a compiled one (``UNKNOT_COMPILE=1`` or
``UNKNOT_REQUIRE_COMPILED=1``) asks for mypy, whose mypyc compiles the hot-path modules (see
setup.py and docs/compiled.md).
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _orig
from setuptools.build_meta import *  # noqa: F403 - the whole backend, two hooks extended

#: The mypy whose mypyc the sources are known to compile with.
MYPYC_REQUIREMENT = "mypy>=2.4"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _extra() -> list[str]:
    wanted = _flag("UNKNOT_COMPILE") or _flag("UNKNOT_REQUIRE_COMPILED")
    return [MYPYC_REQUIREMENT] if wanted and not _flag("UNKNOT_PURE_BUILD") else []


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return _orig.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings: Any = None) -> list[str]:
    return _orig.get_requires_for_build_editable(config_settings) + _extra()
