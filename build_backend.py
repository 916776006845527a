"""The build backend: setuptools', asking for mypy (mypyc) only when the extensions will be built.

pyproject.toml names this module (``backend-path = ["."]``). A wheel is compiled by default
where a working C compiler is found (`c_compiler`): mypy, whose mypyc compiles the hot-path
modules, is then added to the build requirements (see setup.py and docs/compiled.md). Without a
C compiler, under ``UNKNOT_PURE_BUILD=1``, and for editable installs (an extension in ``src/``
would shadow the sources being edited) the build is pure Python and needs nothing beyond
setuptools. ``UNKNOT_REQUIRE_COMPILED=1`` asks for mypy whatever is found, so that a missing
compiler is reported as the error it then is. (``UNKNOT_COMPILE``, once the opt-in, is accepted
and changes nothing.)

mypy comes from the package index like any build requirement: where none is reachable, build
with ``UNKNOT_PURE_BUILD=1`` (or ``--no-build-isolation`` with mypy installed).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sysconfig
from typing import Any

from setuptools import build_meta as _orig
from setuptools.build_meta import *  # noqa: F403 - the whole backend, three hooks extended

#: The mypy whose mypyc the sources are known to compile with.
MYPYC_REQUIREMENT = "mypy>=2.4"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _cc() -> list[str]:
    """The C compiler a build would use: ``$CC``, else the one Python was built with."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc) or ["cc"]


def no_compiler() -> str | None:
    """Why no C compiler can be used (not on PATH, or ``--version`` fails), or None when one
    works."""
    argv = _cc()
    path = shutil.which(argv[0])
    if path is None:
        return f"no C compiler ({argv[0]!r} is not on PATH)"
    try:
        done = subprocess.run(
            [path, *argv[1:], "--version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no working C compiler ({argv[0]!r}: {exc})"
    if done.returncode != 0:
        return f"no working C compiler ({argv[0]!r} --version failed)"
    return None


def _extra() -> list[str]:
    if _flag("UNKNOT_PURE_BUILD"):
        return []
    if _flag("UNKNOT_REQUIRE_COMPILED") or no_compiler() is None:
        return [MYPYC_REQUIREMENT]
    return []


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return _orig.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings: Any = None) -> list[str]:
    return _orig.get_requires_for_build_editable(config_settings)  # (always pure)


def build_editable(
    wheel_directory: str, config_settings: Any = None, metadata_directory: str | None = None
) -> str:
    """An editable install is pure Python: an extension in ``src/`` would shadow the sources."""
    before = os.environ.get("UNKNOT_PURE_BUILD")
    os.environ["UNKNOT_PURE_BUILD"] = "1"
    try:
        return _orig.build_editable(wheel_directory, config_settings, metadata_directory)
    finally:
        if before is None:
            del os.environ["UNKNOT_PURE_BUILD"]
        else:
            os.environ["UNKNOT_PURE_BUILD"] = before
