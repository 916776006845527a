"""``os.fork()`` while a hub runs, continued (see test_fork.py): the signal wakeup fd in the
child, and a `ForeignHub` (fibers on a stock asyncio loop) in a forked child.

Each test runs in a child Python (`run_script`); its forked children end with ``os._exit`` on
every path and are waited for through a pidfd (bounded).
"""

from __future__ import annotations

import sys

import pytest

from tests.core.test_fork import PRELUDE
from tests.fiber_helpers import run_script

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd_open, fork")


@pytest.mark.parametrize("signame", ["SIGUSR1", "SIGTERM"])
def test_a_signal_ends_the_forked_childs_poll(signame: str) -> None:
    # The child's root waits (20 s at most) for an Event that its Python signal handler sets.
    # The handler runs when the signal interrupts the poll, which the C code then retries
    # (PEP 475) with the time left: only a byte on the wakeup fd, the child's self-pipe, ends it
    # at once. Formerly the child had no wakeup fd, and waited the whole 20 s.
    script = (
        PRELUDE
        + f"""
def main():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ev = unknot.Event()
        signal.signal(signal.{signame}, lambda *a: ev.set())
        os.write(w, b"r")
        t0 = time.monotonic()
        got = ev.wait(timeout=20)
        os.write(w, b"%d %.1f" % (got, time.monotonic() - t0))
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"r"
    unknot.sleep(0.3)                    # (so that the child is in its poll: not needed to pass)
    os.kill(pid, signal.{signame})
    code = reap(pid, 40)
    got, took = os.read(r, 100).split()
    print(code, got.decode(), float(took) < 10, sep="|")
unknot.run(main)
"""
    )
    assert run_script(script) == ["0", "1", "True"]


def test_a_fiber_on_a_stock_asyncio_loop_cannot_wait_in_the_forked_child() -> None:
    # The child's asyncio loop is the parent's (its epoll instance and self-pipe shared, the
    # parent's tasks in it): a wait of the forking fiber would hand the child to that loop.
    # Formerly the sleep did (the parent's ``tick`` task ran in the child, which wrote "BUG"),
    # and the fd wait registered the child's socket in the parent's epoll instance.
    script = (
        PRELUDE
        + """
import asyncio, socket

def tick_in_child_guard():
    if os.getpid() != PARENT:
        os.write(2, b"BUG: the parent's asyncio task runs in the child\\n")
        os._exit(3)

async def tick():
    for _ in range(20):
        await asyncio.sleep(0.005)
        tick_in_child_guard()

def errors(fn):
    try:
        fn()
    except RuntimeError as exc:
        return "forked" in str(exc) and "asyncio" in str(exc)
    return "waited"

def fiber():
    a, b = unknot.socket.socketpair()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        got = [errors(lambda: unknot.sleep(0.05)), errors(lambda: a.recv(1))]
        got.append(errors(lambda: unknot.spawn(print)))
        os.write(w, repr(got).encode())
        return                              # (ends the child: _exit_child, status 0)
    os.close(w)
    code = reap(pid)
    b.send(b"x")                            # the parent's socket still works
    return code, os.read(r, 100).decode(), a.recv(1)

async def main():
    task = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    code, got, data = await unknot.spawn(fiber)
    await task
    print(code, got, data, sep="|")

asyncio.run(main())
"""
    )
    assert run_script(script) == ["0", "[True, True, True]", "b'x'"]
