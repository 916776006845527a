"""Review of multiprocessing under `unknot.patch()`: a manager's proxies (each fiber calls over
a connection of its own, and a call cancelled before its reply drops its connection), `unpatch`
after multiprocessing was imported while patched, and `unknot.os.system`'s C environment when
a name is listed twice.

Each test runs a script in a fresh interpreter (patching, and the C environment, are
process-wide). Nothing is timed: the manager answers the cancelled call only once the test
has seen its request arrive and has cancelled it.
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
    return run_script_file(tmp_path, textwrap.dedent(source), *args)


GATE = """
import signal
import sys

if sys.argv[1] == "before":
    # Imported before the patch, as in every "spawn" or "forkserver" child (which imports
    # multiprocessing before its main module): the proxies' ForkAwareLocal is per thread.
    import multiprocessing.managers

import unknot

signal.alarm(40)  # a hub blocked for good ends the script
unknot.patch()

import multiprocessing as mp
from multiprocessing.managers import BaseManager

ARRIVED = GO = None  # events of the fork context, inherited by the manager's process


class Gate:
    def slow(self):
        ARRIVED.set()
        GO.wait(20)
        return "late-reply"

    def value(self):
        return "value"


class GateManager(BaseManager):
    pass


GateManager.register("Gate", Gate)


def main():
    global ARRIVED, GO
    ctx = mp.get_context("fork")
    ARRIVED, GO = ctx.Event(), ctx.Event()
    with GateManager(ctx=ctx) as manager:
        gate = manager.Gate()
        first = gate.value()
        scope = unknot.CancelScope()
        next_call = unknot.Event()

        def caller():
            with scope:
                gate.slow()  # cancelled once its request is in the manager
            next_call.wait()
            return scope.cancelled_caught, gate.value()  # the same fiber calls again

        a = unknot.spawn(caller)
        assert unknot.to_thread(ARRIVED.wait, 20)
        scope.cancel()
        unknot.sleep(0)  # (the caller leaves its scope)
        GO.set()  # the manager answers the cancelled call now
        other = unknot.spawn(gate.value).join()  # another fiber's call
        next_call.set()
        cancelled, again = a.join()
        return first, cancelled, other, again


print(*unknot.run(main))
"""


@pytest.mark.parametrize("imported", ["before", "after"])
def test_a_cancelled_proxy_call_leaves_no_reply_for_the_next_call(
    tmp_path: Path, imported: str
) -> None:
    """A proxy call cancelled after its request reached the manager: its reply, which comes
    later, is read by no other call. Before the fix, with multiprocessing imported before the
    patch, all the fibers of a thread shared one connection, and another fiber's call got the
    cancelled call's reply; imported after, the cancelled fiber's own next call got it."""
    out = run_script(tmp_path, GATE, imported)
    assert out == ["value", "True", "value", "value"]


def test_fibers_proxy_calls_do_not_wait_behind_each_other(tmp_path: Path) -> None:
    """Imported before the patch, a blocking call of one fiber (``get`` on a manager's queue)
    no longer holds the connection the other fibers' calls go on: the ``put`` of another
    fiber reaches the manager, and the ``get`` returns its item. Before the fix the put waited
    behind the get on the shared connection, and the get timed out."""
    out = run_script(
        tmp_path,
        """
        import signal
        import multiprocessing.managers  # before the patch (see above)
        import unknot

        signal.alarm(40)
        unknot.patch()
        import multiprocessing as mp
        import queue


        def main():
            with mp.get_context("fork").Manager() as manager:
                q = manager.Queue()
                q.qsize()  # the connection of this fiber (of its thread, before the fix)

                def getter():
                    try:
                        return q.get(timeout=20)
                    except queue.Empty:
                        return "Empty"

                g = unknot.spawn(getter)
                unknot.sleep(0)  # the getter sends its request
                q.put("item")
                return g.join(), q.qsize()


        print(*unknot.run(main))
        """,
        "before",
    )
    assert out == ["item", "0"]


def test_unpatch_restores_what_stdlib_modules_imported_while_patched_copied(
    tmp_path: Path,
) -> None:
    """Modules of the standard library imported while patched copy patched names into their
    globals (``multiprocessing.pool``: ``from .connection import wait``;
    ``multiprocessing.connection``: ``_WaitSelector = selectors.PollSelector``; ``tempfile``:
    ``from _thread import allocate_lock``): `unpatch` puts the originals back there too. A
    module of the program keeps what it imported from unknot itself."""
    (tmp_path / "mine.py").write_text("from unknot.time import sleep\n")
    out = run_script(
        tmp_path,
        """
        import _thread
        import selectors
        import sys

        import unknot
        import unknot.time

        assert "multiprocessing" not in sys.modules and "tempfile" not in sys.modules
        unknot.patch()
        import multiprocessing.connection as mc
        import multiprocessing.pool as mpool
        import tempfile

        import mine

        patched = [mpool.wait is mc.wait, mc._WaitSelector is selectors.PollSelector]
        unknot.unpatch()
        print(
            *patched,
            mc.wait.__module__,
            mpool.wait is mc.wait,
            mc._WaitSelector is selectors.PollSelector,
            selectors.PollSelector.__module__,
            tempfile._allocate_lock is _thread.allocate_lock,
            mine.sleep is unknot.time.sleep,
        )
        """,
    )
    assert out == [
        "True",
        "True",
        "multiprocessing.connection",
        "True",
        "True",
        "selectors",
        "True",
        "True",
    ]


def test_system_gives_the_shell_the_c_environment_as_c_system_does(tmp_path: Path) -> None:
    """A name listed twice in C's ``environ``: the shell keeps the last, under C's
    ``system()`` (and ``posix_spawn(env=None)``, which unknot uses on Python 3.13); so does it
    under `unknot.os.system`. It used to be given the first (the copy read through ctypes on
    3.11 and 3.12 kept the first)."""
    out = run_script(
        tmp_path,
        """
        import ctypes
        import os
        import sys

        import unknot
        import unknot.os

        libc = ctypes.CDLL(None)
        try:
            environ = ctypes.c_void_p.in_dll(libc, "environ")
        except ValueError:
            print("no-environ")
            sys.exit(0)
        entries = [b"DUPX=first", b"DUPX=second", b"PATH=" + os.environb.get(b"PATH", b"")]
        table = (ctypes.c_char_p * (len(entries) + 1))(*entries, None)
        environ.value = ctypes.cast(table, ctypes.c_void_p).value

        def shell_sees(system):
            assert system('printf %s "$DUPX" > out.txt') == 0
            with open("out.txt") as f:
                return f.read()

        print(shell_sees(os.system), unknot.run(shell_sees, unknot.os.system))
        """,
    )
    if out == ["no-environ"]:
        pytest.skip("no C environ symbol to rewrite")
    assert out == ["second", "second"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_child_sends_a_socket_it_made_while_patched(tmp_path: Path, method: str) -> None:
    """A "spawn" or "forkserver" child imports multiprocessing (its pickler's table) before
    its main module patches: the socket reducer is registered for the stdlib's class, and a
    socket the child makes once patched (unknot's) could not be sent (``TypeError: cannot
    pickle 'socket' object`` in the child, `EOFError` in the parent). CPython's
    ``_TestPicklingConnections.test_pickling`` fails so under the patch."""
    out = run_script(
        tmp_path,
        """
        import signal
        import socket
        import sys

        import unknot

        signal.alarm(40)
        unknot.patch()  # (in the child too: it imports this module as __mp_main__)

        import multiprocessing as mp


        def child(conn):
            a, b = socket.socketpair()
            conn.send(a)
            b.sendall(b"hi")
            conn.recv()  # (alive until the parent has the socket)


        def main(method):
            ctx = mp.get_context(method)
            here, there = ctx.Pipe()
            p = ctx.Process(target=child, args=(there,))
            p.start()
            there.close()  # (the child's end: EOF here if the child dies)
            try:
                sock = here.recv()
            except EOFError:
                return ["EOFError"]
            data = sock.recv(2)
            here.send(None)
            p.join()
            return type(sock).__module__, data, p.exitcode


        if __name__ == "__main__":
            print(*unknot.run(main, sys.argv[1]))
        """,
        method,
    )
    assert out == ["unknot.socket", "b'hi'", "0"]
