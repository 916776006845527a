"""``--unknot-python PY`` (benchmarks/benchlib/builds.py): the build peers' environment, the
checks that stop a child or a run measuring the wrong build, and the compiled / pure ratios in
each benchmark's report.

The interpreter running the tests has unknot's pure build (the dev install), so the end-to-end
tests pass it as PY: ``unknot-pure`` must run, ``unknot-compiled`` must be refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.append(str(BENCH))  # after the stdlib: benchmarks/http.py is not the http package

import core  # noqa: E402
import drivers  # noqa: E402
import echo  # noqa: E402
import echo_report  # noqa: E402
import http_report  # noqa: E402
from benchlib import ab, builds  # noqa: E402

import unknot  # noqa: E402
from unknot import _compiled  # noqa: E402

#: The dev install's unknot, imported from the checkout under test, never an installed copy: no
#: compiled module is installed (under `make test-pure`, unknot.compiled is False but a child
#: without UNKNOT_PURE runs the compiled build).
PURE_HERE = not unknot.compiled and not _compiled._compiled_available()[0]


def test_build_env_drops_the_path_and_sets_the_expectation() -> None:
    base = {"PYTHONPATH": "/x", "UNKNOT_PURE": "1", ab.EXPECT_ENV: "/x/src", "HOME": "/h"}
    compiled = builds.env(builds.COMPILED, base)
    pure = builds.env(builds.PURE, base)
    assert compiled == {"HOME": "/h", builds.EXPECT_ENV: "1"}
    assert pure == {"HOME": "/h", builds.EXPECT_ENV: "0", "UNKNOT_PURE": "1"}


def test_instructions_python_refs_use_the_same_environment() -> None:
    import instructions

    python, env = instructions.interpreter("python=/py@pure")
    assert python == "/py"
    assert env == builds.installed_env(True)
    assert env["UNKNOT_PURE"] == "1" and "PYTHONPATH" not in env
    assert instructions.interpreter("python=/py")[1] == builds.installed_env(False)


def test_peers_python_and_kind() -> None:
    assert builds.add_peers(["gevent"], None) == ["gevent"]
    assert builds.add_peers(["unknot-pure", "gevent"], "/py") == [
        "unknot-pure",
        "gevent",
        "unknot-compiled",
    ]
    assert builds.python("unknot-compiled", "/py") == "/py"
    assert builds.python("gevent", "/py") == sys.executable
    assert builds.kind("unknot-pure") == "unknot" and builds.kind("gevent") == "gevent"
    with pytest.raises(builds.BuildError):
        builds.python("unknot-pure", None)


def test_check_stops_a_child_running_the_other_build(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(compiled=False, __file__="/site/unknot/__init__.py")
    monkeypatch.delenv(ab.EXPECT_ENV, raising=False)
    monkeypatch.setenv(builds.EXPECT_ENV, "0")
    ab.assert_unknot_source(fake)  # the pure build, as expected
    monkeypatch.setenv(builds.EXPECT_ENV, "1")
    with pytest.raises(SystemExit, match="unknot.compiled is False, expected True"):
        ab.assert_unknot_source(fake)


@pytest.mark.skipif(not PURE_HERE, reason="needs the pure dev install as PY")
def test_verify_accepts_the_build_that_runs_and_refuses_the_other() -> None:
    where = builds.verify(builds.PURE, sys.executable)
    assert where.endswith(os.path.join("unknot", "__init__.py"))
    with pytest.raises(builds.BuildError, match="unknot.compiled is False"):
        builds.verify(builds.COMPILED, sys.executable)


@pytest.mark.skipif(not PURE_HERE, reason="needs the pure dev install as PY")
def test_a_worker_told_to_expect_the_compiled_build_stops() -> None:
    env = builds.env(builds.COMPILED)
    argv = [sys.executable, str(BENCH / "core.py"), "--worker", "unknot", "spawn-join"]
    done = subprocess.run(
        [*argv, "--min-time", "0.01"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode != 0
    assert "unknot.compiled is False, expected True" in done.stderr


@pytest.mark.skipif(not PURE_HERE, reason="needs the pure dev install as PY")
def test_core_refuses_a_pure_install_as_the_compiled_build() -> None:
    argv = [sys.executable, str(BENCH / "core.py"), "--peers", "unknot", "--no-pin"]
    argv += ["--benches", "spawn-join", "--repeat", "1", "--min-time", "0.01"]
    done = subprocess.run(
        [*argv, "--unknot-python", sys.executable],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "unknot-compiled: unknot.compiled is False" in done.stderr


def test_every_script_takes_the_option_and_adds_both_peers() -> None:
    args = echo.parse_args(["--peers", "unknot", "--unknot-python", "py"])
    assert args.peers == ["unknot", "unknot-compiled", "unknot-pure"]
    assert args.unknot_python == os.path.abspath("py")
    args = core.parse_args(["--peers", "gevent", "--unknot-python", "py"])
    assert args.peers == ["gevent", "unknot-compiled", "unknot-pure"]
    with pytest.raises(SystemExit):  # a build peer without the interpreter
        core.parse_args(["--peers", "unknot-pure"])
    http = _http_module()
    args = http.parse_args(
        ["--quick", "--peers", "nginx", "--clients", "aiohttp", "--unknot-python", "py"]
    )
    assert args.peers == ["nginx", "unknot-compiled", "unknot-pure"]
    assert args.clients == ["aiohttp", "unknot-compiled", "unknot-pure"]
    with pytest.raises(SystemExit):
        http.parse_args(["--peers", "unknot-compiled"])


def _http_module() -> Any:
    """benchmarks/http.py under another name (``http`` is the standard library's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_http", BENCH / "http.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_http"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---- the reports ------------------------------------------------------------------------------


def test_ratio_table_gives_compiled_over_pure() -> None:
    lines = builds.ratio_table([("a", 150.0, 100.0, True), ("b", None, 1.0, True)])
    assert lines[0].startswith("| cell | unknot-compiled | unknot-pure | compiled / pure")
    assert lines[2:] == ["| a | 150 | 100 | 1.50x | higher |"]
    assert builds.ratio_table([("b", None, 1.0, True)]) == []


def test_core_table_has_a_compiled_over_pure_column() -> None:
    samples = core.Samples({}, [])
    for peer, value in (("gevent", 100.0), ("unknot-compiled", 300.0), ("unknot-pure", 200.0)):
        samples.add(peer, "spawn-join", 0, value)
    peers = ["gevent", "unknot-compiled", "unknot-pure"]
    rows = core.table_rows(samples, peers, ["spawn-join"])
    assert rows[0][-2:] == ["compiled/pure", "better"]
    assert rows[1][-2:] == ["1.50", "higher"]
    without = core.table_rows(samples, ["gevent"], ["spawn-join"])
    assert "compiled/pure" not in without[0]


def test_echo_report_has_a_compiled_against_pure_section() -> None:
    peers = ["unknot-compiled", "unknot-pure"]
    results = echo_report.Results(peers, [1024], [100])
    for peer, rps in (("unknot-compiled", 90_000.0), ("unknot-pure", 60_000.0)):
        results.add(echo_report.Cell(peer, 1024, 100, rps=rps, round_trips=1000))
        results.peer_status[peer] = "ok"
    text = echo_report.markdown(results, {}, {})
    assert "## Compiled against pure" in text
    assert "| 1 KiB x 100 | 90.0k | 60.0k | 1.50x | higher |" in text


def test_echo_report_gives_the_compiled_build_its_ratios_and_targets() -> None:
    peers = ["c-epoll", "uvloop-streams", "unknot-compiled", "unknot-pure"]
    results = echo_report.Results(peers, [1024], [1000])
    rps = {"c-epoll": 170e3, "uvloop-streams": 80e3, "unknot-compiled": 130e3, "unknot-pure": 70e3}
    for peer in peers:
        results.add(echo_report.Cell(peer, 1024, 1000, rps=rps[peer], round_trips=1000))
        results.peer_status[peer] = "ok"
    text = echo_report.markdown(results, {}, {})
    assert "| unknot-compiled / peer | 1 KiB x 1000 |" in text
    assert "| c-epoll | 0.76 |" in text and "| unknot-pure | 1.86 |" in text
    assert "| unknot-pure / peer | 1 KiB x 1000 |" in text
    assert "| unknot-compiled | 1 KiB x 1000 | c-epoll | >= 0.7 | 0.76 | 0.76 | met |" in text
    assert "| uvloop-streams | >= 1.5 | 1.62 | 1.62 | met |" in text


def test_http_report_has_both_builds_ratios_and_compiled_against_pure() -> None:
    cells = [("hello", 100), (http_report.CLIENT_CASE, 100)]
    peers = ["uvicorn", "unknot-compiled", "unknot-pure"]
    results = http_report.Results(peers, ["unknot-compiled", "unknot-pure"], cells)
    for peer, rps in (
        ("uvicorn", 20_000.0),
        ("unknot-compiled", 60_000.0),
        ("unknot-pure", 40_000.0),
    ):
        results.add(http_report.Sample(peer, "hello", 100, 1, rps=rps, requests=1000))
        results.status[peer] = "ok"
    for client, rps in (("unknot-compiled", 9_000.0), ("unknot-pure", 6_000.0)):
        sample = http_report.Sample(client, http_report.CLIENT_CASE, 100, 1, rps=rps, requests=10)
        results.add(sample)
        results.client_status[client] = "ok"
    text = "\n".join(http_report.report(results))
    assert "| unknot-compiled / peer | hello x 100 conns |" in text
    assert "| uvicorn | 3.00x |" in text  # compiled / uvicorn
    assert "| unknot-pure | 1.50x |" in text  # compiled / pure, per round
    assert "### Compiled against pure" in text
    assert "| hello x 100 conns | 60.0k | 40.0k | 1.50x | higher |" in text
    assert "| client x 100 workers | 9.0k | 6.0k | 1.50x | higher |" in text
    assert "| client | requests/s | unknot-compiled / client | client CPU | nginx CPU |" in text
    assert "| unknot-pure | 6.0k | 1.50x |" in text


def test_drivers_report_gives_compiled_over_pure() -> None:
    results = {"unknot-compiled": [(3000.0, 1e-4, 0.1)], "unknot-pure": [(2000.0, 2e-4, 0.1)]}
    _table, checks = drivers.report(results, {}, list(results))
    assert "unknot-compiled / unknot-pure = 1.50x ops/s; CPU per op compiled / pure = 0.50x" in (
        checks
    )


def test_option_is_documented() -> None:
    readme = (BENCH / "README.md").read_text()
    assert "--unknot-python" in readme
    for script in ("echo.py", "http.py", "core.py", "drivers.py"):
        assert "--unknot-python" in (BENCH / script).read_text().split('"""')[1], script
