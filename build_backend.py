"""The build backend: setuptools', asking for mypy (mypyc) only when the extensions will be built.

pyproject.toml names this module (``backend-path = ["."]``). A pure build (``UNKNOT_PURE_BUILD=1``)
needs nothing beyond setuptools; any other build asks for mypy, whose mypyc compiles the hot-path
modules (see setup.py and docs/compiled.md).
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _orig
from setuptools.build_meta import *  # noqa: F403 - the whole backend, two hooks extended

#: The mypy whose mypyc the sources are known to compile with.
MYPYC_REQUIREMENT = "mypy>=2.4"


def _extra() -> list[str]:
    return [] if os.environ.get("UNKNOT_PURE_BUILD", "") not in ("", "0") else [MYPYC_REQUIREMENT]


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return _orig.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings: Any = None) -> list[str]:
    return _orig.get_requires_for_build_editable(config_settings) + _extra()
