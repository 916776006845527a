"""Imports under `unknot.patch()`: fibers that import the same module at once wait for each
other as threads do. importlib's module locks know their owner by
``importlib._bootstrap._thread.get_ident()``, which `patch` makes the fiber's own identity (in
a fiber); a second fiber importing a module whose import is suspended in a first (its top level
made a cooperative call: a sleep, a subprocess) waits for it rather than being taken for a
circular import of the first and given the half-initialised module. A fiber and the other
greenlets of its own thread (the hub's, which runs asyncio tasks, and the one that called
`unknot.run`) never wait for each other: that wait could not end, so the partial module is what
they get, as before.

Each test runs a script in a fresh interpreter (patching is process-wide), with modules written
next to it; ``signal.alarm`` ends a script that hangs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from fiber_helpers import run_script_file

pytestmark = pytest.mark.timeout(60)

PRELUDE = """
import signal
import sys
import threading
import time

import unknot

signal.alarm(10)  # an import that waits for good ends the script
unknot.patch()
"""

# Its top level makes a cooperative call (patched time.sleep) before it defines VALUE.
SLOW = """
import time
time.sleep(0.1)
VALUE = 42
"""


def run(tmp_path: Path, source: str, **modules: str) -> list[str]:
    """Write ``modules`` (name -> source) to ``tmp_path`` and run ``source`` there in a fresh
    interpreter; its printed words."""
    for name, text in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    return run_script_file(tmp_path, PRELUDE + textwrap.dedent(source))


def test_fibers_importing_one_module_all_see_it_whole(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        """
        def user():
            import slow
            return slow.VALUE

        def main():
            fibers = [unknot.spawn(user) for _ in range(3)]
            return [f.join() for f in fibers]

        print(*unknot.run(main))
        """,
        slow=SLOW,
    )
    assert out == ["42", "42", "42"]


def test_a_module_imported_by_fibers_and_a_thread_at_once(tmp_path: Path) -> None:
    # Either first: a fiber waiting for the thread's import parks (the hub runs on), a thread
    # waiting for a fiber's import blocks until the fiber's import ends.
    out = run(
        tmp_path,
        """
        def user(name):
            module = __import__(name)
            return module.VALUE

        def in_thread(name, results, delay):
            time.sleep(delay)
            results.append(user(name))

        def main(name, thread_delay, fiber_delay):
            results = []
            thread = threading.Thread(target=in_thread, args=(name, results, thread_delay))
            thread.start()
            ticks = []

            def tick():
                while True:
                    ticks.append(1)
                    unknot.sleep(0.01)

            ticker = unknot.spawn(tick)
            unknot.sleep(fiber_delay)
            fibers = [unknot.spawn(user, name) for _ in range(2)]
            values = [f.join() for f in fibers]
            ticker.cancel()
            thread.join()
            return values + results + [len(ticks) >= 5]  # the hub ran on meanwhile

        print(*unknot.run(main, "slow_thread_first", 0, 0.03))
        print(*unknot.run(main, "slow_fibers_first", 0.03, 0))
        """,
        slow_thread_first=SLOW,
        slow_fibers_first=SLOW,
    )
    assert out == ["42", "42", "42", "True"] * 2


CYCLE = """
def import_in_fibers(first, second):
    def main():
        fibers = [unknot.spawn(__import__, first)]
        unknot.sleep(0.01)
        fibers.append(unknot.spawn(__import__, second))
        return [f.join() for f in fibers]
    return unknot.run(main)


def import_in_threads(first, second):
    threads = [threading.Thread(target=__import__, args=(first,))]
    threads[0].start()
    time.sleep(0.01)
    threads.append(threading.Thread(target=__import__, args=(second,)))
    threads[1].start()
    for t in threads:
        t.join()
    return [sys.modules[first], sys.modules[second]]


for how, run in [("fibers", import_in_fibers), ("threads", import_in_threads)]:
    a, b = run(f"{how}_a", f"{how}_b")
    # Who waited for the other's whole module, who got the partial one.
    print(how, a.SAW_B, b.SAW_A, a.A, b.B)
"""


def cycle_module(me: str, other: str, delay: float) -> str:
    return f"""
        import time
        time.sleep({delay})
        import {other}
        SAW_{other[-1].upper()} = hasattr({other}, "{other[-1].upper()}")
        {me[-1].upper()} = 1
    """


def test_an_import_cycle_between_fibers_ends_as_between_threads(tmp_path: Path) -> None:
    # Fiber 1 imports a, fiber 2 imports b; a imports b (being imported: fiber 1 waits), then b
    # imports a: importlib sees the cycle (fiber 2 would wait for fiber 1, which waits for it)
    # and gives fiber 2 the partial a, as it does to two threads; b ends, then a.
    modules = {
        f"{how}_{me}": cycle_module(f"{how}_{me}", f"{how}_{other}", delay)
        for how in ("fibers", "threads")
        for me, other, delay in (("a", "b", 0.05), ("b", "a", 0.1))
    }
    out = run(tmp_path, CYCLE, **modules)
    assert out == ["fibers", "True", "False", "1", "1", "threads", "True", "False", "1", "1"]


def test_the_hub_does_not_wait_for_a_fibers_import(tmp_path: Path) -> None:
    # An asyncio task (run by the hub's greenlet) importing a module whose import is suspended
    # in a fiber of the same thread cannot wait for it (the fiber would never run again): it
    # gets the partial module, as a circular import would, and the hub goes on.
    out = run(
        tmp_path,
        """
        async def task():
            import slow
            return hasattr(slow, "VALUE")

        def main():
            importer = unknot.spawn(__import__, "slow")
            unknot.sleep(0.02)
            partial = unknot.await_(task())
            return [partial, importer.join().VALUE]

        print(*unknot.run(main))
        """,
        slow=SLOW,
    )
    assert out == ["False", "42"]


def test_a_fiber_importing_the_module_that_runs_it(tmp_path: Path) -> None:
    # A module whose top level calls unknot.run: its fibers run inside its import, and one
    # importing it gets the partial module (as a function it called would), not a wait that
    # could never end.
    out = run(
        tmp_path,
        """
        import runner
        print(*runner.RESULT)
        """,
        runner="""
        import unknot

        BEFORE = 1

        def main():
            import runner
            return [hasattr(runner, "BEFORE"), hasattr(runner, "AFTER")]

        RESULT = unknot.run(main)
        AFTER = 1
        """,
    )
    assert out == ["True", "False"]


def test_patch_inside_a_fibers_import(tmp_path: Path) -> None:
    # The module locks of an import in progress when patch() runs keep working: the fiber that
    # holds them (taken under the thread's identity) releases them, and others wait for them.
    out = run(
        tmp_path,
        """
        unknot.unpatch()

        def value(name):
            return getattr(__import__(name), "VALUE", "partial")

        def main():
            first = unknot.spawn(value, "patching")
            unknot.sleep(0.01)
            second = unknot.spawn(value, "patching")
            return [first.join(), second.join(), unknot.is_patched()]

        print(*unknot.run(main))
        """,
        patching="""
        import time
        import unknot

        time.sleep(0.05)  # not patched yet: a real sleep, the other fiber has not started
        unknot.patch()
        time.sleep(0.05)  # patched: the other fiber starts, and finds this module partial
        VALUE = 42
        """,
    )
    # (The second fiber's import began before this module's lock was a fiber's: it is the
    # thread's, and the second fiber, of the same thread, gets the partial module.)
    assert out[0] == "42"
    assert out[2] == "True"


def test_unpatch_restores_importlibs_thread_module(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        """
        import _thread
        import importlib._bootstrap as bootstrap

        unknot.unpatch()
        import tempfile  # (holds the _thread module in a global)
        unknot.patch()

        shim = bootstrap._thread
        fiber_ident = unknot.run(shim.get_ident)
        holders = {id(m) for m in list(sys.modules.values()) if vars(m).get("_thread") is shim}
        print(shim is not _thread, holders == {id(bootstrap)} and tempfile._thread is _thread)
        print(shim.get_ident() == _thread.get_ident(), fiber_ident != _thread.get_ident())
        print(shim.start_new_thread is _thread.start_new_thread)
        print(type(shim.allocate_lock()).__module__, type(shim.RLock()).__module__)
        unknot.unpatch()
        print(bootstrap._thread is _thread)
        unknot.patch(threading=False)
        print(bootstrap._thread is _thread)
        """,
    )
    assert out == [
        "True",
        "True",
        "True",
        "True",
        "True",
        "unknot._patch._hybrid",
        "unknot._patch._hybrid",
        "True",
        "True",
    ]
