"""Which build runs (`unknot.compiled`): the mypyc-compiled hot-path modules, or their sources.

See docs/compiled.md and `unknot._compiled`. The suite itself runs against both builds
(``make test-compiled``, ``make test-pure``); these tests check the switch: all listed modules
come from the same build, ``UNKNOT_PURE=1`` forces the sources, and a missing or stale compiled
module makes the sources run.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import unknot
from unknot import _compiled

pytestmark = pytest.mark.timeout(60)

SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
# Where this process imported unknot from (a checkout's src/, or an installed copy).
IMPORT_ROOT = str(Path(unknot.__file__).resolve().parents[1])

PROBE = """
import importlib, json, sys, unknot
from unknot._compiled import MODULES
files = [importlib.import_module(m).__file__ for m in MODULES]
print(json.dumps({"compiled": unknot.compiled, "files": files}))
"""


def probe(**env: str) -> dict[str, object]:
    """``unknot.compiled`` and the listed modules' files in a fresh interpreter that imports
    the same unknot as this one, with ``env`` added to its environment."""
    full = {k: v for k, v in os.environ.items() if k != "UNKNOT_PURE"}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [IMPORT_ROOT, full.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={**full, **env},
        timeout=30,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_every_listed_module_comes_from_the_build_that_runs() -> None:
    for name in _compiled.MODULES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        assert module.__file__.endswith(SUFFIXES) == unknot.compiled, module.__file__
    assert isinstance(unknot.compiled, bool)
    assert "compiled" in unknot.__all__


def test_the_http_request_path_is_compiled() -> None:
    # Issue 13: the HTTP request loop, its protocol layer and the request are in the build
    # (and so checked by the test above); the modules users subclass or whose exceptions
    # derive from builtins (the router, _respond) are not.
    request_path = {
        "unknot.http._conn",
        "unknot.http._message",
        *(
            f"unknot.http._protocol.{name}"
            for name in (
                "_events",
                "_state",
                "_writer",
                "_reader",
                "_request_reader",
                "_response_reader",
                "_connection",
                "_server_conn",
                "_client_conn",
            )
        ),
    }
    assert request_path <= set(_compiled.MODULES)
    for name in request_path:
        file = importlib.import_module(name).__file__
        assert file is not None and file.endswith(SUFFIXES) == unknot.compiled, file


def test_unknot_pure_makes_the_sources_run() -> None:
    got = probe(UNKNOT_PURE="1")
    assert got["compiled"] is False
    files = got["files"]
    assert isinstance(files, list) and len(files) == len(_compiled.MODULES)
    assert all(str(f).endswith(".py") for f in files), files


def test_without_unknot_pure_the_build_found_runs() -> None:
    for value in ("", "0"):
        got = probe(UNKNOT_PURE=value)
        expected = _compiled._compiled_available()[0]
        assert got["compiled"] is expected
        files = got["files"]
        assert isinstance(files, list)
        assert all(str(f).endswith(SUFFIXES) == expected for f in files), files


def test_the_flag_follows_the_environment_and_the_files() -> None:
    forced_pure = os.environ.get("UNKNOT_PURE", "") not in ("", "0")
    assert unknot.compiled == (not forced_pure and _compiled._compiled_available()[0])


def fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool) -> list[Path]:
    """A package tree with the listed modules' sources (and extensions, if ``compiled``); makes
    `unknot._compiled` look there. Returns the extension paths."""
    package = tmp_path / "unknot"
    monkeypatch.setattr(_compiled, "_PACKAGE_DIR", str(package))
    built = []
    for name in _compiled.MODULES:
        base = tmp_path.joinpath(*name.split("."))
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".py").write_text("")
        if compiled:
            so = base.parent / (base.name + SUFFIXES[0])
            so.write_bytes(b"")
            built.append(so)
    return built


def test_the_compiled_build_needs_every_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = fake_tree(tmp_path, monkeypatch, compiled=True)
    assert _compiled._compiled_available() == (True, "")
    built[-1].unlink()
    ok, why = _compiled._compiled_available()
    assert not ok and why == f"{_compiled.MODULES[-1]} is not compiled"


def test_a_compiled_module_older_than_its_source_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = fake_tree(tmp_path, monkeypatch, compiled=True)
    source = built[0].parent / (_compiled.MODULES[0].rsplit(".", 1)[1] + ".py")
    now = time.time()
    os.utime(source, (now, now + 1))  # written a moment after the extension: an install
    os.utime(built[0], (now, now))
    assert _compiled._compiled_available()[0]
    os.utime(source, (now, now + 60))  # edited after the build
    ok, why = _compiled._compiled_available()
    assert not ok and why == f"{built[0]} is older than {source}"


def test_the_source_finder_finds_only_the_listed_modules() -> None:
    finder = _compiled._SourceFinder()
    for name in _compiled.MODULES:
        spec = finder.find_spec(name)
        assert spec is not None and spec.origin is not None
        assert spec.origin.endswith(name.rsplit(".", 1)[1] + ".py")
        assert Path(spec.origin).is_file()
    assert finder.find_spec("unknot.socket") is None
    assert finder.find_spec("json") is None


def _backend() -> Any:
    """The checkout's build backend (build_backend.py, beside pyproject.toml)."""
    path = Path(__file__).resolve().parents[2] / "build_backend.py"
    spec = importlib.util.spec_from_file_location("unknot_build_backend", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD_VARIABLES = ("CC", "UNKNOT_PURE_BUILD", "UNKNOT_REQUIRE_COMPILED", "UNKNOT_COMPILE")


def test_the_backend_asks_for_mypy_only_where_a_c_compiler_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = _backend()
    for name in BUILD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    mypy = backend.MYPYC_REQUIREMENT

    class Setuptools:  # (setuptools' own answers, which need the checkout as cwd: none here)
        @staticmethod
        def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
            return []

        get_requires_for_build_editable = get_requires_for_build_wheel

    monkeypatch.setattr(backend, "_orig", Setuptools)
    # A compiler that fails (as `make test-nocc` hides them): a pure build, no mypy.
    monkeypatch.setenv("CC", "false")
    assert "--version failed" in backend.no_compiler()
    assert mypy not in backend.get_requires_for_build_wheel()
    # ...unless compiling is required: then the build must fail, loudly.
    monkeypatch.setenv("UNKNOT_REQUIRE_COMPILED", "1")
    assert mypy in backend.get_requires_for_build_wheel()
    monkeypatch.delenv("UNKNOT_REQUIRE_COMPILED")
    # A compiler not on PATH.
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc") + " -O2")
    assert "is not on PATH" in backend.no_compiler()
    # A working one (a stand-in answering --version): compiled by default.
    cc = tmp_path / "fake-cc"
    cc.write_text("#!/bin/sh\necho fake-cc 1.0\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", f"{cc} -pthread")
    assert backend.no_compiler() is None
    assert mypy in backend.get_requires_for_build_wheel()
    monkeypatch.setenv("UNKNOT_COMPILE", "0")  # the former opt-in changes nothing
    assert mypy in backend.get_requires_for_build_wheel()
    # Editable installs and UNKNOT_PURE_BUILD are pure.
    assert mypy not in backend.get_requires_for_build_editable()
    monkeypatch.setenv("UNKNOT_PURE_BUILD", "1")
    assert mypy not in backend.get_requires_for_build_wheel()


def test_the_public_http_classes_can_be_subclassed() -> None:
    # In both builds (the compiled classes allow interpreted subclasses): users subclass
    # HTTPError above all, and maybe the request, the timeouts or the protocol's classes.
    from unknot.http import (
        ClientConnection,
        ConnectionClosed,
        Data,
        EndOfMessage,
        HTTPError,
        InformationalResponse,
        Request,
        RequestHead,
        ResponseHead,
        ServerConnection,
        Timeouts,
    )

    class NotHere(HTTPError):
        pass

    assert str(NotHere(404)) == "404 Not Found"
    with pytest.raises(HTTPError):
        raise NotHere(404)
    built = [
        type("MyRequest", (Request,), {})("GET", b"/a?b=1", []),
        type("MyTimeouts", (Timeouts,), {"__slots__": ()})(head=1.0),
        type("MyServer", (ServerConnection,), {})(),
        type("MyClient", (ClientConnection,), {})(),
        type("MyHead", (RequestHead,), {})(b"GET", b"/", []),
        type("MyInfo", (InformationalResponse,), {})(100, []),
        type("MyResponse", (ResponseHead,), {})(200, []),
        type("MyData", (Data,), {})(b"x"),
        type("MyEnd", (EndOfMessage,), {})(),
        type("MyClosed", (ConnectionClosed,), {})(),
    ]
    assert built[0].path == "/a" and built[0].query["b"] == "1"
    assert built[1].head == 1.0
    assert repr(built[6]).startswith("MyResponse(status=200")


def test_an_install_carries_the_stubs_and_no_c_source() -> None:
    """A regular install (the compiled venv's, `make test-nocc`'s) has `_nbio`'s stub and the
    py.typed marker beside the modules, and not `_nbio.c`, which only the build needs."""
    package = Path(unknot.__file__).resolve().parent
    source_tree = Path(__file__).resolve().parents[2] / "src" / "unknot"
    if package == source_tree:
        pytest.skip("an editable install runs from the source tree, where _nbio.c belongs")
    assert (package / "py.typed").is_file()
    assert (package / "_nbio.pyi").is_file()
    assert not (package / "_nbio.c").exists()
