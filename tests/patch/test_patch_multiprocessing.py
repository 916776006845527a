"""`unknot.patch()` (group ``subprocess``) makes multiprocessing's pipes and queues, and the
waits for child processes in `os`, cooperative.

Each test runs a script in a fresh interpreter (patching is process-wide), written to a file so
that multiprocessing's "spawn" children can import it. The evidence that the hub was not blocked
is causal, not timed: the child process (or the other end) acts only once a fiber has seen the
`Ticker` count 5, so a call that blocked the hub would wait for ever; ``signal.alarm`` ends such
a script, and the test fails.
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

TESTS = Path(__file__).resolve().parent.parent

PRELUDE = f"""
import multiprocessing as mp
import os
import pickle
import signal
import struct
import sys

sys.path.insert(0, {str(TESTS)!r})
import unknot
from fiber_helpers import Ticker

signal.alarm(20)  # a hub blocked for good ends the script (SIGALRM's default action)
unknot.patch()


def after_ticks(ticker, fn, *args):
    '''A fiber calling fn(*args) once the ticker has counted 5: only if the hub runs.'''
    def run():
        while ticker.count < 5:
            unknot.sleep(0.01)
        return fn(*args)
    return unknot.spawn(run)


def put_when_told(q, go, item):
    go.wait(15)
    q.put(item)


def send_when_told(conn, go, item):
    go.wait(15)
    conn.send(item)


def exit_when_told(go, status):
    go.wait(15)
    sys.exit(status)
"""


def run_script(tmp_path: Path, body: str, *args: str) -> list[str]:
    """Run the prelude and ``body`` (its ``main(*sys.argv[1:])`` in `unknot.run`) in a fresh
    interpreter; its printed words."""
    main = "\nif __name__ == '__main__':\n    print(*unknot.run(main, *sys.argv[1:]))\n"
    return run_script_file(tmp_path, PRELUDE + textwrap.dedent(body) + main, *args)


METHODS = ["fork", "spawn"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["Queue", "SimpleQueue", "JoinableQueue"])
def test_queue_get_waits_for_a_child_cooperatively(tmp_path: Path, method: str, kind: str) -> None:
    out = run_script(
        tmp_path,
        """
        def main(method, kind):
            ctx = mp.get_context(method)
            q, go = getattr(ctx, kind)(), ctx.Event()
            p = ctx.Process(target=put_when_told, args=(q, go, "from-the-child"))
            p.start()
            ticker = Ticker()
            after_ticks(ticker, go.set)
            item = q.get()  # the child puts only once the ticker has run
            p.join()  # (os.waitpid: cooperative too)
            return item, ticker.stop() >= 5, p.exitcode
        """,
        method,
        kind,
    )
    assert out == ["from-the-child", "True", "0"]


def test_a_fork_child_that_used_a_queue_exits_with_its_status(tmp_path: Path) -> None:
    """A child forked by a fiber ends in that fiber, and its exit joins the threads it started
    (the queue's feeder thread, then the workers the patched Thread.join used to join it) once
    the thread pool refuses new work: Thread.join then waits as the stdlib's does, rather than
    failing (which made every such child exit with status 1, its exception unprinted)."""
    out = run_script(
        tmp_path,
        """
        def put(q):
            q.put("item")

        def main():
            ctx = mp.get_context("fork")
            q = ctx.Queue()
            p = ctx.Process(target=put, args=(q,))
            p.start()
            item = q.get(timeout=10)
            p.join()
            return item, p.exitcode
        """,
    )
    assert out == ["item", "0"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_connection_recv_and_poll_wait_cooperatively(
    tmp_path: Path, method: str, duplex: bool
) -> None:
    # patch(select=False): poll() no longer relies on the patched selectors (multiprocessing's
    # wait() picks its selector class at import).
    out = run_script(
        tmp_path,
        """
        unknot.unpatch()
        unknot.patch(select=False)

        def main(method, duplex):
            ctx = mp.get_context(method)
            r, w = ctx.Pipe(duplex=duplex == "True")
            go, again = ctx.Event(), ctx.Event()
            p = ctx.Process(target=send_when_told, args=(w, go, [1, 2]))
            p.start()
            ticker = Ticker()
            after_ticks(ticker, go.set)
            polled = r.poll(10)
            got = r.recv()
            ticks = ticker.stop() >= 5
            p.join()
            p = ctx.Process(target=send_when_told, args=(w, again, b"bytes"))
            p.start()
            ticker = Ticker()
            after_ticks(ticker, again.set)
            raw = r.recv_bytes()
            p.join()
            return polled, got, ticks, pickle.loads(raw) == b"bytes", ticker.stop() >= 5
        """,
        method,
        str(duplex),
    )
    assert out == ["True", "[1,", "2]", "True", "True", "True"]


def test_poll_times_out_and_wait_is_cooperative(tmp_path: Path) -> None:
    out = run_script(
        tmp_path,
        """
        from multiprocessing.connection import wait

        def main():
            r, w = mp.Pipe(duplex=False)
            ticker = Ticker()
            timed_out = r.poll(0.05)  # nothing comes
            after_ticks(ticker, w.send, "x")
            ready = wait([r], timeout=10)
            return timed_out, ready == [r], r.recv(), ticker.stop() >= 5, r.poll(), r.poll(0)
        """,
    )
    assert out == ["False", "True", "x", "True", "False", "False"]


def test_eof_and_broken_pipe_are_the_stdlibs(tmp_path: Path) -> None:
    out = run_script(
        tmp_path,
        """
        def outcome(fn, *args):
            try:
                return repr(fn(*args))
            except Exception as e:
                return type(e).__name__ + ":" + str(e).replace(" ", "_")

        def main():
            ticker = Ticker()
            r, w = mp.Pipe(duplex=False)
            after_ticks(ticker, w.close)
            eof = outcome(r.recv)  # waits: the writer closes its end once the hub has run
            r.close()
            r, w = mp.Pipe(duplex=False)
            os.write(w.fileno(), struct.pack("!i", 8) + b"half")
            after_ticks(ticker, w.close)
            half = outcome(r.recv_bytes)
            r.close()
            r, w = mp.Pipe(duplex=False)
            r.close()
            broken = outcome(w.send, "x")
            closed = outcome(r.recv)
            return eof, half, broken, closed, ticker.stop() >= 5
        """,
    )
    assert out == [
        "EOFError:",
        "OSError:got_end_of_file_during_message",
        "BrokenPipeError:[Errno_32]_Broken_pipe",
        "OSError:handle_is_closed",
        "True",
    ]


def test_cancellation_never_splits_a_message(tmp_path: Path) -> None:
    """A receive cancelled once part of a message has arrived finishes the message (the
    cancellation comes at the next blocking call): the next message is read intact. One
    cancelled before any byte arrived reads nothing."""
    out = run_script(
        tmp_path,
        """
        def main():
            r, w = mp.Pipe(duplex=False)
            with unknot.move_on_after(0.01) as early:
                r.recv_bytes()  # nothing sent: cancelled, reads nothing
            ticker = Ticker()
            os.write(w.fileno(), struct.pack("!i", 8) + b"1234")  # half a message
            got = []
            scope = unknot.CancelScope()

            def reader():
                with scope:
                    got.append(r.recv_bytes())
                    unknot.checkpoint()  # the cancellation comes here
                got.append(scope.cancelled_caught)

            f = unknot.spawn(reader)
            after_ticks(ticker, lambda: (scope.cancel(), os.write(w.fileno(), b"5678")))
            f.join()
            w.send_bytes(b"next")
            return early.cancelled_caught, *got, r.recv_bytes(), ticker.stop() >= 5
        """,
    )
    assert out == ["True", "b'12345678'", "True", "b'next'", "True"]


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue", "SimpleQueue"])
def test_put_to_a_full_queue_and_contended_locks_wait_cooperatively(
    tmp_path: Path, kind: str
) -> None:
    """A put that must wait (a full Queue; SimpleQueue's writers' lock held by a fiber writing
    a message larger than the pipe) lets the fiber that will make room run."""
    out = run_script(
        tmp_path,
        """
        def main(kind):
            ticker = Ticker()
            got = []
            if kind == "SimpleQueue":
                q = mp.SimpleQueue()
                big = unknot.spawn(q.put, b"x" * 1_000_000)  # fills the pipe, holds _wlock
                unknot.sleep(0)
            else:
                q = getattr(mp, kind)(1)
                q.put("first")
            after_ticks(ticker, lambda: got.append(q.get()))
            q.put("second")  # waits for the get above
            if kind == "SimpleQueue":
                big.join()
            got.append(q.get())
            return [len(x) if isinstance(x, bytes) else x for x in got] + [ticker.stop() >= 5]
        """,
        kind,
    )
    first = "1000000" if kind == "SimpleQueue" else "first"
    assert out == [first, "second", "True"]


def test_get_with_a_timeout_and_the_stdlib_errors(tmp_path: Path) -> None:
    out = run_script(
        tmp_path,
        """
        import queue

        def main():
            q = mp.Queue(1)
            ticker = Ticker()
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                empty = "Empty"
            q.put(1)
            try:
                q.put(2, timeout=0.05)
            except queue.Full:
                full = "Full"
            after_ticks(ticker, q.put, 3)
            got = [q.get(timeout=10), q.get(timeout=10)]
            q.close()
            try:
                q.get()
            except ValueError:
                closed = "ValueError"
            return empty, full, got == [1, 3], closed, ticker.stop() >= 5
        """,
    )
    assert out == ["Empty", "Full", "True", "ValueError", "True"]


def test_os_waits_are_patched_and_unpatch_restores_everything(tmp_path: Path) -> None:
    """`patch` does not import multiprocessing's modules (their rows are applied when the
    program imports them); `unpatch` puts back every original; os.waitpid is unknot's."""
    out = run_script(
        tmp_path,
        """
        import posix
        unknot.unpatch()
        assert "multiprocessing.queues" not in sys.modules
        import multiprocessing.connection as mc
        import multiprocessing.queues as mq
        originals = {
            (cls, name): cls.__dict__[name]
            for cls, names in [
                (mc.Connection, ["_recv", "_send", "_recv_bytes", "_send_bytes", "_poll"]),
                (mq.Queue, ["get", "put"]),
                (mq.JoinableQueue, ["put"]),
                (mq.SimpleQueue, ["get", "put"]),
            ]
            for name in names
        }
        waits = ["waitpid", "wait", "wait3", "wait4", "waitid"]
        unknot.patch()
        patched = [
            all(cls.__dict__[name] is not f for (cls, name), f in originals.items()),
            mc.wait.__module__,
            all(getattr(os, n) is getattr(unknot.os, n) is not getattr(posix, n) for n in waits),
        ]
        unknot.unpatch()
        restored = [
            all(cls.__dict__[name] is f for (cls, name), f in originals.items()),
            mc.wait.__module__,
            all(getattr(os, n) is getattr(posix, n) for n in waits),
        ]
        unknot.patch()

        def main():
            ctx = mp.get_context("fork")
            go = ctx.Event()
            p = ctx.Process(target=exit_when_told, args=(go, 7))
            p.start()
            ticker = Ticker()
            after_ticks(ticker, go.set)
            pid, status = os.waitpid(p.pid, 0)  # the patched os.waitpid
            return *patched, *restored, os.waitstatus_to_exitcode(status), ticker.stop() >= 5
        """,
    )
    assert out == [
        "True",
        "unknot.multiprocessing.connection",
        "True",
        "True",
        "multiprocessing.connection",
        "True",
        "7",
        "True",
    ]
