"""``python -m unknot`` runs a script as ``python`` would (its ``__main__`` module kept until
exit, an absolute ``__file__``, ``asyncio.run`` working in the root fiber); the patched lock and
``threading.local`` refuse copies as the stdlib's; ``time.sleep`` and ``threading.local`` work
in a ``__del__`` run while the interpreter finalizes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fiber_helpers import run_script

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)


def _env(*paths: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *map(str, paths)])}


def run_unknot(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m unknot script.py`` (in ``tmp_path``, the script's path relative) with
    this checkout's unknot (as tests/core/test_main_module.py's helper)."""
    (tmp_path / "script.py").write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, "-m", "unknot", "script.py", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=_env(),
    )


def run_patched(code: str) -> str:
    """Run ``code`` in a new interpreter (`fiber_helpers.run_script`); its output."""
    return "|".join(run_script(textwrap.dedent(code)))


def ok(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.splitlines()


# -- asyncio.run in a fiber ------------------------------------------------------------------------


def test_asyncio_run_in_the_root_fiber_of_python_m_unknot(tmp_path: Path) -> None:
    lines = ok(
        run_unknot(
            tmp_path,
            """
            import asyncio, contextvars, unknot

            var = contextvars.ContextVar("var", default="caller")
            log = []

            async def forever(name):
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    log.append(name + " cancelled")
                    raise

            async def main():
                var.set("inner")
                asyncio.create_task(forever("left behind"))
                await asyncio.sleep(0.01)
                return "result"

            async def make_task():  # a task of the hub's not made by asyncio.run: left alone
                return asyncio.create_task(asyncio.sleep(0.2, "other task done"))

            other = unknot.await_(make_task())
            print(asyncio.run(main()), var.get(), log)

            async def fails():
                raise KeyError("from the coroutine")

            try:
                asyncio.run(fails())
            except KeyError as e:
                print("raised", e)

            with unknot.move_on_after(0.05) as scope:
                asyncio.run(forever("main"))
            print("cancelled", scope.cancelled_caught, log[-1])
            print(unknot.await_(other))
            """,
        )
    )
    assert lines == [
        "result caller ['left behind cancelled']",
        "raised 'from the coroutine'",
        "cancelled True main cancelled",
        "other task done",
    ]


def test_asyncio_run_patched_in_fibers_only() -> None:
    out = run_patched("""
        import asyncio, unknot
        unknot.patch()

        async def where():
            await asyncio.sleep(0)
            return type(asyncio.get_running_loop()).__name__

        outside = asyncio.run(where())                      # asyncio's own, a new loop
        inside = unknot.run(lambda: asyncio.run(where()))   # the hub's loop
        print(outside, inside, asyncio.runners.run is asyncio.run)
        unknot.unpatch()
        print(asyncio.run.__module__)
    """)
    assert out.split() == ["_UnixSelectorEventLoop", "HubEventLoop", "True", "asyncio.runners"]


# -- the script's __main__ module and __file__ -----------------------------------------------------

KEEPS_MAIN = """
    import atexit, pickle, sys, threading, time

    class Job:
        pass

    MARK = "script"

    def worker():
        time.sleep(0.1)                       # still running after the body ended
        print("thread pickled", len(pickle.dumps(Job())) > 0, flush=True)

    atexit.register(lambda: print("atexit", sys.modules["__main__"].MARK, flush=True))
    threading.Thread(target=worker).start()
"""


def test_the_script_stays_main_after_its_body(tmp_path: Path) -> None:
    assert ok(run_unknot(tmp_path, KEEPS_MAIN)) == ["thread pickled True", "atexit script"]


def test_a_module_run_with_dash_m_stays_main_after_its_body(tmp_path: Path) -> None:
    pkg = tmp_path / "keepmainpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "app.py").write_text(textwrap.dedent(KEEPS_MAIN))
    done = subprocess.run(
        [sys.executable, "-m", "unknot", "-m", "keepmainpkg.app"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(tmp_path),
    )
    assert ok(done) == ["thread pickled True", "atexit script"]


def test_file_is_absolute_as_with_python(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("found")
    done = run_unknot(
        tmp_path,
        """
        import os, sys
        here = os.path.dirname(__file__)
        os.chdir("/")
        print(os.path.isabs(__file__), open(os.path.join(here, "data.txt")).read(), sys.argv)
        raise SystemExit(__import__("traceback").extract_stack()[-1].filename == __file__)
        """,
        "arg",
    )
    assert done.returncode == 1, done.stderr  # (True: the traceback's file name is __file__)
    assert done.stdout.splitlines() == ["True found ['script.py', 'arg']"]


# -- the patched lock and threading.local ----------------------------------------------------------


def test_hybrid_lock_aliases_and_copies_refused_as_the_stdlibs() -> None:
    out = run_patched("""
        import copy, pickle, threading, _thread, unknot

        def refused(obj):
            results = []
            for how in (copy.copy, copy.deepcopy, pickle.dumps):
                try:
                    how(obj)
                    results.append(how.__name__ + " worked")
                except TypeError as e:
                    results.append("cannot pickle" in str(e))
            return results

        std = [refused(threading.Lock()), refused(threading.RLock()), refused(threading.local())]
        unknot.patch()
        lock = threading.Lock()
        print(lock.acquire_lock(), lock.locked_lock(), lock.release_lock(), lock.locked())
        print(_thread.allocate_lock().acquire_lock(False))
        ours = [refused(threading.Lock()), refused(threading.RLock()), refused(threading.local())]
        print(type(threading.local()).__module__, std == ours, ours)
    """)
    assert out.splitlines() == [
        "True True None False",
        "True",
        "unknot._local True [[True, True, True], [True, True, True], [True, True, True]]",
    ]


# -- finalizers run while the interpreter exits ----------------------------------------------------

FINALIZER = """
    import threading, time
    settings = threading.local()
    settings.x = 1
    cache = threading.local()

    class Conn:
        def __del__(self):
            for label, fn in (("sleep", lambda: time.sleep(0)),
                              ("local", lambda: getattr(settings, "x", "unset")),
                              ("new local", lambda: type(threading.local()).__name__)):
                try:
                    print(label, fn(), flush=True)
                except BaseException as e:
                    print(label, type(e).__name__, e, flush=True)

    cache.conn = Conn()
"""


def test_sleep_and_local_in_a_finalizer_at_exit_under_python_m_unknot(tmp_path: Path) -> None:
    # (The script body's settings.x is the root fiber's: the exit runs in the main greenlet.)
    lines = ok(run_unknot(tmp_path, FINALIZER))
    assert lines == ["sleep None", "local unset", "new local local"]


def test_sleep_and_local_in_a_finalizer_at_exit_when_patched(tmp_path: Path) -> None:
    out = run_patched("import unknot\nunknot.patch()\n" + textwrap.dedent(FINALIZER))
    assert out.splitlines() == ["sleep None", "local 1", "new local local"]
