"""``os.fork()`` while a hub runs: the child keeps only the fiber that forked (unknot._core._fork).

Every test runs in a child Python (`run_script`): forking the test runner's own hub would copy
pytest into the children. Each script's children end with ``os._exit`` on every path, and the
parents wait for them through a pidfd (bounded), so that a child stuck in the old behaviour
fails the test instead of hanging it.
"""

from __future__ import annotations

import sys

import pytest

from tests.fiber_helpers import run_script

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd_open, fork")

# Shared by the scripts: ``other`` is a parent fiber that must never run in a child (it ends the
# child with status 3 if it does); ``reap`` waits (cooperatively, bounded) for a child's status.
PRELUDE = """
import os, sys, time, signal
import unknot
PARENT = os.getpid()

def guard():
    if os.getpid() != PARENT:
        os.write(2, b"BUG: a parent fiber runs in the child\\n")
        os._exit(3)

def other():
    while True:
        guard()
        unknot.sleep(0.005)

def reap(pid, limit=10.0):
    fd = os.pidfd_open(pid)
    try:
        with unknot.move_on_after(limit):
            unknot.wait_readable(fd)
    finally:
        os.close(fd)
    p, status = os.waitpid(pid, os.WNOHANG)
    if not p:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "hung"
    return os.waitstatus_to_exitcode(status)
"""


def test_other_fibers_do_not_run_in_the_child() -> None:
    script = (
        PRELUDE
        + """
def main():
    unknot.spawn(other)
    unknot.sleep(0.02)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        t0 = time.monotonic()
        unknot.sleep(0.05)              # the child's own wait, on its own hub
        unknot.sleep(0)
        os.write(w, b"slept %.2f" % (time.monotonic() - t0))
        os._exit(0)
    os.close(w)
    code = reap(pid)
    msg = os.read(r, 100).decode()
    print(code, msg.split()[0], float(msg.split()[1]) >= 0.04, sep="|")
unknot.run(main)
"""
    )
    assert run_script(script) == ["0", "slept", "True"]


@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_the_parent_is_not_disturbed(backend: str) -> None:
    script = (
        PRELUDE
        + """
import unknot.socket as usocket

def main():
    # (No ``other`` fiber here: on the old code the child's first wait would end it at once,
    # before it could disturb the parent's registrations, which this test is about.)
    a, b = usocket.socketpair()            # the parent's fiber waits on a
    s1, s2 = usocket.socketpair()          # inherited, used by the child
    def first():                            # s1's record is registered before the fork
        return s1.recv(10)
    f = unknot.spawn(first)
    unknot.sleep(0.01)
    s2.sendall(b"x")
    assert f.join() == b"x"
    got = []
    waiting = unknot.Event()
    def receiver():
        waiting.set()
        got.append(a.recv(100))
    rf = unknot.spawn(receiver)
    waiting.wait()
    unknot.sleep(0.01)                      # parked in recv, a registered for it
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            a.close()                        # the parent's fiber waits on this one
            b.close()
            c1, c2 = usocket.socketpair()   # new in the child
            def later(sock, data):
                unknot.sleep(0.02)
                sock.sendall(data)
            unknot.spawn(later, c2, b"new")
            x = c1.recv(10)
            unknot.spawn(later, s2, b"old")
            y = s1.recv(10)                  # inherited: waits on the child's own poller
            os.write(w, x + b"," + y)
            os._exit(0)
        except BaseException as e:
            os.write(w, repr(e).encode())
            os._exit(1)
    os.close(w)
    code = reap(pid)
    child = os.read(r, 100).decode()
    b.sendall(b"hello")
    with unknot.move_on_after(5):
        rf.join()
    s1.sendall(b"ping")                      # the parent's inherited pair still works too
    with unknot.move_on_after(5):
        pong = s2.recv(10)
    print(code, child, got, pong, sep="|")
unknot.run(main)
"""
    )
    out = run_script(script, env={"UNKNOT_SELECTOR": backend})
    assert out == ["0", "new,old", "[b'hello']", "b'ping'"]


def test_multiprocessing_fork_process_under_patch() -> None:
    script = (
        PRELUDE
        + """
unknot.patch()
import multiprocessing, socket, threading

def target(conn):
    t0 = time.monotonic()
    time.sleep(0.1)                          # patched: waits on the child's hub
    a, b = socket.socketpair()
    def later():
        time.sleep(0.02)
        b.sendall(b"sock")
    unknot.spawn(later)
    data = a.recv(10)
    conn.send((data.decode(), time.monotonic() - t0 >= 0.1))
    conn.close()

def main():
    ticks = [0]
    def ticker():
        while True:
            guard()
            ticks[0] += 1
            time.sleep(0.005)
    unknot.spawn(ticker)
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe()
    p = ctx.Process(target=target, args=(child_conn,))
    p.start()
    before = ticks[0]
    result = unknot.to_thread(parent_conn.recv)
    during = ticks[0] - before
    unknot.to_thread(p.join, 20)
    print(p.exitcode, result, during >= 2, sep="|")

if __name__ == "__main__":
    unknot.run(main)
"""
    )
    assert run_script(script) == ["0", "('sock', True)", "True"]


def test_process_pool_executor_with_fork_under_patch() -> None:
    script = (
        PRELUDE
        + """
unknot.patch()
import concurrent.futures, multiprocessing

def work(x):
    time.sleep(0.05)                         # patched: waits on the worker's own hub
    return x * 2

def main():
    ticks = [0]
    def ticker():
        while True:
            guard()
            ticks[0] += 1
            time.sleep(0.005)
    unknot.spawn(ticker)
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        before = ticks[0]
        futures = [ex.submit(work, i) for i in range(4)]
        results = [f.result(timeout=30) for f in futures]
        during = ticks[0] - before
    print(results, during >= 2, sep="|")

if __name__ == "__main__":
    unknot.run(main)
"""
    )
    assert run_script(script) == ["[0, 2, 4, 6]", "True"]


def test_fork_from_the_root_fiber_returns_from_run_in_the_child() -> None:
    script = (
        PRELUDE
        + """
r, w = os.pipe()
def main():
    unknot.spawn(other)
    unknot.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        unknot.sleep(0.01)
        return "child-root"
    os.close(w)
    return reap(pid)
try:
    result = unknot.run(main)
except BaseException as e:
    result = repr(e)
if os.getpid() != PARENT:
    os.write(w, str(result).encode())
    os._exit(0)
print(result, os.read(r, 100).decode(), sep="|")
"""
    )
    assert run_script(script) == ["0", "child-root"]


def test_fork_from_another_fiber_exits_the_child_when_it_ends() -> None:
    script = (
        PRELUDE
        + """
def forker(fail):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 2)                        # the child's stderr: to the parent
        unknot.sleep(0.01)
        if fail:
            raise ValueError("boom-in-child")
        return 42
    os.close(w)
    return pid, r

def main():
    unknot.spawn(other)
    unknot.sleep(0.01)
    out = []
    for fail in (False, True):
        pid, r = unknot.spawn(forker, fail).join()
        guard()                              # (the old code: this fiber ran in the child)
        code = reap(pid)
        err = b""
        while chunk := os.read(r, 4096):
            err += chunk
        err = err.decode()
        out.append(str(code))
        out.append(str("Traceback" in err and "ValueError: boom-in-child" in err))
    print(*out, sep="|")
unknot.run(main)
"""
    )
    assert run_script(script) == ["0", "False", "1", "True"]


def test_deadlines_work_in_the_child() -> None:
    script = (
        PRELUDE
        + """
def main():
    unknot.spawn(other)
    unknot.sleep(0.01)
    r, w = os.pipe()
    with unknot.move_on_after(0.3) as outer:     # entered before the fork
        pid = os.fork()
        if pid == 0:
            with unknot.move_on_after(0.05) as inner:   # entered in the child
                unknot.sleep(10)
            t0 = time.monotonic()
            unknot.sleep(10)                      # until the outer deadline
    if pid == 0:
        ok = inner.cancelled_caught and outer.cancelled_caught
        os.write(w, b"%d %.1f" % (ok, time.monotonic() - t0))
        os._exit(0)
    os.close(w)
    code = reap(pid)
    ok, waited = os.read(r, 100).decode().split()
    print(code, ok, float(waited) < 5, outer.cancelled_caught, sep="|")
unknot.run(main)
"""
    )
    assert run_script(script) == ["0", "1", "True", "False"]


def test_fork_outside_fibers() -> None:
    # From a loop callback on the hub (no fiber runs: none is kept), and from a thread without
    # a hub (the main thread's hub is another thread's in the child: nothing of it is left).
    script = (
        PRELUDE
        + """
import asyncio, threading
def in_child(w, loop):
    # the hubs running, the fibers kept, whether the hub's loop still has its self-pipe
    n, m = len(unknot.lowlevel.running_hubs()), len(unknot.fibers())
    os.write(w, b"%d,%d,%d" % (n, m, loop._csock.fileno() >= 0))
    os._exit(0)

def main():
    unknot.spawn(other)
    unknot.sleep(0.01)
    out = []
    loop = asyncio.get_running_loop()
    for where in ("callback", "thread"):
        r, w = os.pipe()
        pids = []
        forked = unknot.Event()
        def fork():
            pid = os.fork()
            if pid == 0:
                in_child(w, loop)
            pids.append(pid)
            forked.set()
        if where == "callback":
            loop.call_soon(fork)
            forked.wait()
        else:
            t = threading.Thread(target=fork)
            t.start()
            unknot.to_thread(t.join)
        os.close(w)
        out.append(str(reap(pids[0])))
        out.append(os.read(r, 100).decode())
    print(*out, sep="|")
unknot.run(main)
"""
    )
    assert run_script(script) == ["0", "1,0,1", "0", "0,0,0"]
