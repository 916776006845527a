"""``python -m unknot script.py`` runs a script that calls ``unknot.run(main)`` itself; and the
calls that need a fiber name `unknot.run` in their error when used outside one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import unknot

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)


def run_unknot(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m unknot <script>`` with this checkout's unknot; return the finished run."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "unknot", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
    )


SCRIPT_CALLING_RUN = """
    import sys
    import time
    import unknot

    def worker(i, out):
        unknot.sleep(0.05)
        out.append(i)

    def main(n):
        out = []
        start = time.monotonic()
        with unknot.TaskGroup() as tg:
            for i in range(n):
                tg.spawn(worker, i, out)
        elapsed = time.monotonic() - start
        print("workers", sorted(out), "concurrent", elapsed < 0.04 * n)
        print("root fiber", unknot.current() is not None and unknot.current().name)
        return sum(out)

    if __name__ == "__main__":
        print("result", unknot.run(main, int(sys.argv[1])))
        print("again", unknot.run(main, 2))   # a second run in the same script works too
        print("outside main, still the root fiber:", unknot.current() is not None)
"""


def test_script_calling_unknot_run_runs_under_python_m_unknot(tmp_path: Path) -> None:
    done = run_unknot(tmp_path, SCRIPT_CALLING_RUN, "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "workers [0, 1, 2, 3, 4] concurrent True",
        "root fiber root",
        "result 10",
        "workers [0, 1] concurrent True",
        "root fiber root",
        "again 1",
        "outside main, still the root fiber: True",
    ]


def test_the_same_script_runs_without_python_m_unknot(tmp_path: Path) -> None:
    path = tmp_path / "plain.py"
    path.write_text(textwrap.dedent(SCRIPT_CALLING_RUN))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(path), "3"], capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == [
        "workers [0, 1, 2] concurrent True",
        "root fiber root",
        "result 3",
    ]
    assert done.stdout.splitlines()[-1] == "outside main, still the root fiber: False"


def test_fibers_left_running_by_main_are_cancelled_when_its_run_returns(tmp_path: Path) -> None:
    done = run_unknot(
        tmp_path,
        """
        import unknot

        def forever(log):
            try:
                unknot.sleep(60)
            finally:
                with unknot.CancelScope(shield=True):
                    unknot.sleep(0.01)   # its unwinding blocks a little: run waits for it
                log.append("leftover unwound")

        def main(log):
            unknot.spawn(forever, log)
            unknot.sleep(0.01)
            return "main returned"

        log = []
        result = unknot.run(main, log)
        print(result, log)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["main returned ['leftover unwound']"]


def test_exception_from_main_propagates_to_the_script(tmp_path: Path) -> None:
    done = run_unknot(
        tmp_path,
        """
        import unknot

        def main():
            unknot.sleep(0)
            raise LookupError("from main")

        try:
            unknot.run(main)
        except LookupError as e:
            print("caught", e)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "caught from main"


def test_other_nested_runs_are_still_refused(tmp_path: Path) -> None:
    done = run_unknot(
        tmp_path,
        """
        import unknot
        from unknot.testing import MockClock

        def inner():
            return "inner ran"

        def report(fn, *args, **kwargs):
            try:
                print(fn(*args, **kwargs))
            except RuntimeError as e:
                print("refused:", "unknot.run()" in str(e) or "unknot.run(clock" in str(e))

        def main():
            report(unknot.run, inner)                       # nested inside the hosted run
            report(unknot.spawn(unknot.run, inner).join)    # from another fiber
            return "main done"

        print(unknot.run(main))
        report(unknot.run, inner, clock=MockClock())        # a clock of its own: refused too
        report(unknot.run, inner)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "refused: True",
        "refused: True",
        "main done",
        "refused: True",
        "inner ran",
    ]


def test_python_m_unknot_dash_m_module_calling_run(tmp_path: Path) -> None:
    pkg = tmp_path / "hostedpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text(
        textwrap.dedent(
            """
            import unknot

            def main():
                fibers = [unknot.spawn(unknot.sleep, 0.01) for _ in range(3)]
                for f in fibers:
                    f.join()
                return len(fibers)

            if __name__ == "__main__":
                print("joined", unknot.run(main))
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(tmp_path)])}
    done = subprocess.run(
        [sys.executable, "-m", "unknot", "-m", "hostedpkg.app"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "joined 3"


# -- outside any fiber, the error names unknot.run ------------------------------------------------


OUTSIDE: dict[str, Callable[[], Any]] = {
    "TaskGroup": lambda: unknot.TaskGroup(),
    "fail_after": lambda: unknot.fail_after(1),
    "move_on_after": lambda: unknot.move_on_after(1),
    "CancelScope": lambda: unknot.CancelScope(),
}


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_entered_outside_any_fiber_the_error_names_unknot_run(name: str) -> None:
    manager = OUTSIDE[name]()
    with pytest.raises(RuntimeError, match=r"unknot\.run\("):
        with manager:
            pytest.fail(f"{name} was entered outside any fiber")  # pragma: no cover


def test_spawn_outside_any_fiber_names_unknot_run() -> None:
    with pytest.raises(unknot.NotInFiberError, match=r"unknot\.run\("):
        unknot.spawn(print)
