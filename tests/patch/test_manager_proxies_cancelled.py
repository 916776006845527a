"""A manager's queue proxies under `unknot.patch()`: a blocking ``get`` or ``put`` cancelled in
a fiber leaves nothing pending in the manager, so it takes no item put later (which it would
lose, its reply having nowhere to go) and puts no item after the caller gave up. Timed and
non-blocking calls keep their meaning.

Each test runs a script in a fresh interpreter (patching is process-wide), with a "fork"
manager (quick to start).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from fiber_helpers import run_script_file

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX multiprocessing"),
]


def run_script(tmp_path: Path, source: str, *args: str) -> list[str]:
    """Run ``source`` in a fresh interpreter (in ``tmp_path``); its printed words."""
    return run_script_file(tmp_path, PRELUDE + textwrap.dedent(source), *args)


PRELUDE = """
import queue
import signal
import time

import unknot

signal.alarm(40)  # a hub blocked for good ends the script
unknot.patch()

import multiprocessing as mp
from multiprocessing.managers import BaseManager

SHARED = queue.Queue()  # in the manager's process (forked), behind a registered typeid


def get_shared():
    return SHARED


class QueueManager(BaseManager):
    pass


QueueManager.register("get_queue", callable=get_shared)


def outcome(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except (queue.Empty, queue.Full) as e:
        return type(e).__name__
"""


def test_a_cancelled_get_takes_no_later_item(tmp_path: Path) -> None:
    """Before the fix the manager's thread stayed in ``get()`` for the closed connection: it
    took the next item put and lost it (the first ``get(timeout=1)`` below found only the
    second item)."""
    out = run_script(
        tmp_path,
        """
        def cancelled_get(q, *args, **kwargs):
            t0 = time.monotonic()
            with unknot.move_on_after(0.2) as scope:
                q.get(*args, **kwargs)
            assert scope.cancelled_caught
            assert time.monotonic() - t0 < 1.5  # cancelled promptly
            q.put("item-1")
            q.put("item-2")
            return [outcome(q.get, timeout=1), outcome(q.get, timeout=1)]

        def main():
            got = []
            with mp.get_context("fork").Manager() as manager:
                q = manager.Queue()
                got += cancelled_get(q)
                got += cancelled_get(q, timeout=30)
                got += cancelled_get(q, block=True, timeout=None)
                got += cancelled_get(manager.JoinableQueue())
                # Another fiber's cancel() and a fiber blocked over several slices.
                scope = unknot.CancelScope()

                def getter():
                    with scope:
                        q.get()

                f = unknot.spawn(getter)
                unknot.sleep(0.3)
                scope.cancel()
                f.join()
                q.put("item-3")
                got.append(outcome(q.get, timeout=1))
            with QueueManager(ctx=mp.get_context("fork")) as manager:
                got += cancelled_get(manager.get_queue())
            return got

        print(*unknot.run(main))
        """,
    )
    assert out == ["item-1", "item-2"] * 4 + ["item-3"] + ["item-1", "item-2"]


def test_a_cancelled_put_puts_nothing_later(tmp_path: Path) -> None:
    """Before the fix the manager's thread stayed in ``put()`` on the full queue and put the
    item once room was made, after the caller had given it up."""
    out = run_script(
        tmp_path,
        """
        def main():
            with mp.get_context("fork").Manager() as manager:
                q = manager.Queue(maxsize=1)
                q.put("kept")
                with unknot.move_on_after(0.2) as scope:
                    q.put("given-up")
                assert scope.cancelled_caught
                return outcome(q.get, timeout=1), outcome(q.get, timeout=0.3)

        print(*unknot.run(main))
        """,
    )
    assert out == ["kept", "Empty"]


def test_timed_and_non_blocking_calls_keep_their_meaning(tmp_path: Path) -> None:
    out = run_script(
        tmp_path,
        """
        def timed(call, *args, **kwargs):
            t0 = time.monotonic()
            result = outcome(call, *args, **kwargs)
            return result, time.monotonic() - t0

        def main():
            words = []
            with mp.get_context("fork").Manager() as manager:
                q = manager.Queue(maxsize=1)
                for call in (q.get_nowait, lambda: q.get(False), lambda: q.get(block=False)):
                    result, took = timed(call)
                    words.append(result)
                    assert took < 0.5, took
                result, took = timed(q.get, timeout=0.35)  # several slices, then Empty
                assert 0.34 <= took < 1.2, took
                words.append(result)
                with unknot.fail_after(5):  # an item put after a few slices is got
                    unknot.spawn(lambda: (unknot.sleep(0.25), q.put("late")))
                    words.append(q.get())
                    words.append(q.get(True, 30) if q.put("now") is None else "?")
                q.put("full")
                words.append(outcome(q.put_nowait, "x"))
                result, took = timed(q.put, "x", timeout=0.25)
                assert 0.24 <= took < 1.2, took
                words.append(result)
                unknot.spawn(lambda: (unknot.sleep(0.25), q.get()))
                words.append(str(q.put("room", timeout=5)))  # room is made after a slice
                words.append(q.get(timeout=1))
                try:
                    q.get(timeout=-1)  # the manager's error, as in the stdlib
                except ValueError:
                    words.append("ValueError")
            return words

        print(*unknot.run(main))
        """,
    )
    assert out == [
        "Empty",
        "Empty",
        "Empty",
        "Empty",
        "late",
        "now",
        "Full",
        "Full",
        "None",
        "room",
        "ValueError",
    ]


def test_a_cancelled_acquire_leaves_the_lock_free(tmp_path: Path) -> None:
    """Before, the manager's thread stayed in ``acquire()`` for the closed connection, took the
    lock when it was released, and held it for good: the next acquire waited for ever."""
    out = run_script(
        tmp_path,
        """
        def main():
            words = []
            with mp.get_context("fork").Manager() as manager:
                for make in (manager.Lock, manager.RLock, manager.Semaphore, manager.Condition):
                    lock = make() if make is not manager.Semaphore else make(1)

                    def cancelled_acquire():
                        with unknot.move_on_after(0.2) as scope:
                            lock.acquire()  # while the root holds it
                        return scope.cancelled_caught

                    def acquire_and_release():
                        got = lock.acquire(True, 1)  # free again: taken at once
                        if got:
                            lock.release()
                        return got

                    assert lock.acquire()
                    assert unknot.spawn(cancelled_acquire).join()
                    lock.release()
                    unknot.sleep(0.3)  # (time for an abandoned acquire to take it)
                    words.append(str(unknot.spawn(acquire_and_release).join()))
                    words.append(str(lock.acquire(False)))  # non-blocking: as it is
                    lock.release()
                lock = manager.Lock()
                lock.acquire()
                t0 = time.monotonic()
                words.append(str(lock.acquire(True, 0.35)))  # several slices, then False
                assert 0.34 <= time.monotonic() - t0 < 1.2
                unknot.spawn(lambda: (unknot.sleep(0.25), lock.release()))
                words.append(str(lock.acquire()))  # released after a few slices
            return words

        print(*unknot.run(main))
        """,
    )
    assert out == ["True", "True"] * 4 + ["False", "True"]
