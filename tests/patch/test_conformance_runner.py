"""conformance/run.py with ``--jobs 2`` (what `make conformance` passes): the same report, in
the same module order, as one process at a time, and a reused baseline is not run again.

Two small modules of CPython's suite, a few seconds each; the full run is `make conformance`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "conformance" / "run.py"
MODULES = ["test_select", "test_wsgiref"]


def _has_test_package() -> bool:
    try:
        import test.support  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _has_test_package() and os.environ.get("CI") != "true",
    reason=f"{sys.executable} has no 'test' package (CPython's test suite)",
)


def _run(tmp_path: Path, name: str, *extra: str) -> tuple[dict, str]:
    out = tmp_path / f"{name}.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(RUNNER), *MODULES, "--json", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _rows(stdout: str) -> list[tuple[str, str]]:
    return [
        (line.split()[0], line.split()[1])
        for line in stdout.splitlines()
        if line.startswith("test_") and line.split()[1] in ("baseline", "patched")
    ]


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """One ``--jobs 2`` run, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("conformance")
    report, out = _run(tmp, "parallel", "--jobs", "2")
    return tmp, report, out


def test_two_at_a_time_reports_what_one_at_a_time_does(
    tmp_path: Path, parallel: tuple[Path, dict, str]
) -> None:
    serial, serial_out = _run(tmp_path, "serial", "--jobs", "1")
    _, parallel, parallel_out = parallel
    assert serial["jobs"] == 1 and parallel["jobs"] == 2
    assert list(parallel["modules"]) == MODULES
    expected_rows = [(m, mode) for m in MODULES for mode in ("baseline", "patched")]
    assert _rows(serial_out) == _rows(parallel_out) == expected_rows
    for module in MODULES:
        one, two = serial["modules"][module], parallel["modules"][module]
        assert two["regressions"] == []
        assert two["summary"]["patched"]["run"] > 0
        # The same tests in both modes, skipped and disabled alike (whether a test passes may
        # depend on the machine's load; which tests run does not).
        for mode in ("baseline", "patched"):
            assert set(one[mode]) == set(two[mode])
            for outcome in ("skipped", "disabled"):
                assert {t for t, r in one[mode].items() if r["outcome"] == outcome} == {
                    t for t, r in two[mode].items() if r["outcome"] == outcome
                }
    # Each parallel run said when it ended (the progress lines a long CI step shows).
    for module in MODULES:
        assert f"  ran {module} baseline (" in parallel_out
        assert f"  ran {module} patched (" in parallel_out
    assert "  ran " not in serial_out


def test_a_reused_baseline_is_not_run_again(
    tmp_path: Path, parallel: tuple[Path, dict, str]
) -> None:
    tmp, first, _ = parallel
    again, out = _run(tmp_path, "again", "--jobs", "2", "--baseline", str(tmp / "parallel.json"))
    for module in MODULES:
        assert again["modules"][module]["baseline"] == first["modules"][module]["baseline"]
        assert again["modules"][module]["seconds"]["baseline"] == 0
        assert f"  ran {module} baseline" not in out
        assert f"  ran {module} patched (" in out


def test_a_run_that_fails_stops_the_others_from_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in one run (the runner's own, not a failing test) ends the parallel runs: the
    runs still queued never start (the one running finishes first), and the error is raised."""
    import argparse
    import importlib.util
    import time

    spec = importlib.util.spec_from_file_location("conformance_run", RUNNER)
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    started: list[tuple[str, bool]] = []

    def fake_run_mode(module: str, patched: bool, *args: object, **kw: object) -> dict:
        started.append((module, patched))
        if (module, patched) == ("test_a", False):
            raise RuntimeError("the runner broke")
        time.sleep(0.3)  # the other worker: busy while test_a's baseline fails
        return {}

    monkeypatch.setattr(run, "run_mode", fake_run_mode)
    args = argparse.Namespace(jobs=2, run_disabled=False)
    with pytest.raises(RuntimeError, match="the runner broke"):
        run.Runs(["test_a", "test_b", "test_c", "test_d"], args, {}, {}, Path("."), {})
    # Of the eight runs, test_a's two and at most the one the failed worker took before the
    # error reached the main thread (test_b's baseline); none of the five behind them. The order
    # in which the two workers record their starts is the scheduler's, so compare as sets.
    assert ("test_a", False) in started
    assert len(started) == len(set(started)) <= 3
    assert set(started) <= {("test_a", False), ("test_a", True), ("test_b", False)}
