"""unknot.time and unknot.os: cooperative sleep, pipe read/write, waitpid, system and popen.

In fibers each call must suspend only its fiber (a ticker fiber keeps counting) and give the
stdlib's results and errors; outside fibers each must be the stdlib. Pipes only, bounded in
time, no fd leaks.
"""

from __future__ import annotations

import decimal
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fiber_helpers import IntLike, Ticker, fill, later, outcome

import unknot
import unknot.os as uos
import unknot.time as utime

pytestmark = pytest.mark.timeout(30)

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux (/proc, pidfd)")


# -- unknot.time -----------------------------------------------------------------------------------


def test_time_mirrors_the_stdlib() -> None:
    for name in dir(time):
        if not name.startswith("_"):
            assert hasattr(utime, name), name
            if name != "sleep":
                assert getattr(utime, name) is getattr(time, name), name


@pytest.mark.unknot
def test_sleep_is_cooperative() -> None:
    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        for _ in range(10):
            tg.spawn(utime.sleep, 0.2)
    assert time.monotonic() - t0 < 0.6  # sequentially: 2 s
    ticker = Ticker()
    utime.sleep(0.1)
    assert ticker.stop() >= 5
    utime.sleep(0)  # lets others run once
    with unknot.move_on_after(0.05) as scope:
        utime.sleep(10)
    assert scope.cancelled_caught


BAD_SLEEPS: list[Any] = [
    -1,
    -0.5,
    -1e-12,
    "1",
    None,
    decimal.Decimal("0.1"),
    float("nan"),
    float("inf"),
    1e300,
    2**63,
    10**10,
]


@pytest.mark.unknot
def test_sleep_errors_match_stdlib() -> None:
    for value in BAD_SLEEPS:
        expected = outcome(time.sleep, value)
        assert isinstance(expected, tuple), value
        assert outcome(utime.sleep, value) == expected, value
    utime.sleep(False)  # an int (0), as the stdlib accepts
    utime.sleep(0.0)


def test_sleep_outside_fibers_is_stdlib() -> None:
    t0 = time.monotonic()
    utime.sleep(0.05)
    assert time.monotonic() - t0 >= 0.05
    for value in BAD_SLEEPS:
        assert outcome(utime.sleep, value) == outcome(time.sleep, value)


# -- unknot.os: read / write -----------------------------------------------------------------------


def test_os_mirrors_the_stdlib() -> None:
    overridden = {"read", "write", "waitpid", "wait", "wait3", "wait4", "waitid", "system", "popen"}
    helpers = {"GenericAlias", "Mapping", "MutableMapping"}  # os's own imports, not its API
    for name in set(dir(os)) - helpers:
        if not name.startswith("_") and not isinstance(getattr(os, name), type(os)):
            assert hasattr(uos, name), name
            if name not in overridden:
                assert getattr(uos, name) is getattr(os, name), name
    assert uos.path is os.path and uos.environ is os.environ


@pytest.mark.unknot
def test_read_waits_cooperatively(pipe: tuple[int, int]) -> None:
    r, w = pipe
    ticker = Ticker()
    later(0.1, os.write, w, b"hello")
    t0 = time.monotonic()
    assert uos.read(r, 100) == b"hello"
    assert time.monotonic() - t0 >= 0.09
    assert ticker.stop() >= 5
    assert os.get_blocking(r)  # the fd's mode was not touched
    later(0.02, os.close, w)
    assert uos.read(r, 100) == b""  # end of file
    assert uos.read(r, 0) == b""


@pytest.mark.unknot
def test_big_write_and_concurrent_reader(pipe: tuple[int, int]) -> None:
    r, w = pipe
    data = os.urandom(3 << 20)

    def reader() -> bytes:
        chunks = []
        while chunk := uos.read(r, 100_000):
            chunks.append(chunk)
        return b"".join(chunks)

    ticker = Ticker()
    fiber = unknot.spawn(reader)
    assert uos.write(w, data) == len(data)  # all of it, as a blocking write to a pipe
    assert uos.write(w, memoryview(data)[:10]) == 10
    os.close(w)
    assert fiber.join() == data + data[:10]
    assert ticker.stop() >= 1
    assert os.get_blocking(r)


@pytest.mark.unknot
def test_write_to_a_closed_reader(pipe: tuple[int, int]) -> None:
    r, w = pipe

    def read_some_then_close() -> None:
        got = 0
        while got < 200_000:
            got += len(uos.read(r, 65536))
        os.close(r)

    unknot.spawn(read_some_then_close)
    n = uos.write(w, b"x" * (4 << 20))
    assert 200_000 <= n < 4 << 20  # the count written before the reader went away
    with pytest.raises(BrokenPipeError):
        uos.write(w, b"more")


@pytest.mark.unknot
def test_two_fibers_reading_one_pipe(pipe: tuple[int, int]) -> None:
    r, w = pipe
    with unknot.TaskGroup() as tg:
        readers = [tg.spawn(uos.read, r, 1) for _ in range(3)]
        later(0.02, os.write, w, b"abc")
    assert sorted(f.result() for f in readers) == [b"a", b"b", b"c"]


@pytest.mark.unknot
def test_non_blocking_fds_behave_as_stdlib(pipe: tuple[int, int], tmp_path: Path) -> None:
    r, w = pipe
    os.set_blocking(r, False)
    with pytest.raises(BlockingIOError):
        uos.read(r, 10)
    os.set_blocking(w, False)
    fill(w, uos.write)
    # regular files: read and written directly
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assert uos.write(fd, b"y" * 100_000) == 100_000
        os.lseek(fd, 0, os.SEEK_SET)
        assert uos.read(fd, 200_000) == b"y" * 100_000
    finally:
        os.close(fd)


@pytest.mark.unknot
def test_read_write_errors_match_stdlib(pipe: tuple[int, int]) -> None:
    r, w = pipe
    calls: list[tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...]]] = [
        (os.read, uos.read, (w, 1)),  # write end: EBADF
        (os.read, uos.read, (10_000, 1)),
        (os.read, uos.read, (r, -1)),
        (os.read, uos.read, (r, "x")),
        (os.read, uos.read, ("x", 1)),
        (os.write, uos.write, (r, b"x")),
        (os.write, uos.write, (10_000, b"x")),
        (os.write, uos.write, (w, "text")),
        (os.write, uos.write, (w, 123)),
    ]
    for std_fn, my_fn, args in calls:
        expected = outcome(std_fn, *args)
        assert isinstance(expected, tuple), args
        assert outcome(my_fn, *args) == expected, args


@pytest.mark.unknot
def test_read_write_argument_errors_come_at_once(pipe: tuple[int, int]) -> None:
    # The stdlib rejects these before it reads or writes anything. unknot's read waited for
    # the empty pipe first (a size beyond ssize_t), and checked the fd with fcntl, whose error
    # for -1 is a ValueError where os.read and os.write raise OSError(EBADF).
    r, _ = pipe
    calls: list[tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...]]] = [
        (os.read, uos.read, (r, 2**63)),
        (os.read, uos.read, (-1, 1)),
        (os.write, uos.write, (-1, b"x")),
    ]
    with unknot.fail_after(2):  # (a wait would end in TimeoutError, not the stdlib's error)
        for std_fn, my_fn, args in calls:
            expected = outcome(std_fn, *args)
            assert isinstance(expected, tuple), args
            assert outcome(my_fn, *args) == expected, args


@pytest.mark.unknot
def test_read_write_take_integer_like_arguments_cooperatively(pipe: tuple[int, int]) -> None:
    # os.read and os.write take any object with __index__ as fd and size: those went to the
    # stdlib's blocking call, which stopped the whole hub until the data came.
    r, w = pipe
    ticker = Ticker()
    timer = threading.Timer(0.2, os.write, (w, b"late"))  # (from a thread: the hub may block)
    timer.start()
    try:
        assert uos.read(IntLike(r), IntLike(10)) == b"late"
    finally:
        timer.join()
    assert ticker.stop() >= 5  # the hub ran meanwhile

    received: list[int] = []

    def drain() -> None:
        n = 0
        while n < 100_000:
            n += len(os.read(r, 65536))
        received.append(n)

    ticker = Ticker()
    timer = threading.Timer(0.2, drain)  # the pipe holds less: the write must wait for it
    timer.start()
    try:
        assert uos.write(IntLike(w), b"x" * 100_000) == 100_000
    finally:
        timer.join()
    assert received == [100_000]
    assert ticker.stop() >= 5


def test_read_write_outside_fibers(pipe: tuple[int, int]) -> None:
    r, w = pipe
    assert uos.write(w, b"abc") == 3
    assert uos.read(r, 10) == b"abc"


@pytest.mark.unknot
def test_cancelled_read(pipe: tuple[int, int]) -> None:
    r, w = pipe
    with unknot.move_on_after(0.05) as scope:
        uos.read(r, 10)
    assert scope.cancelled_caught
    os.write(w, b"z")
    assert uos.read(r, 10) == b"z"


# -- unknot.os: child processes --------------------------------------------------------------------


def spawn_child(*argv: str, group: bool = False) -> int:
    """Start a child; ``group``: in a process group of its own (its pid), for waitpid(-pid)."""
    if group:
        return os.posix_spawnp(argv[0], list(argv), os.environ, setpgroup=0)
    return os.posix_spawnp(argv[0], list(argv), os.environ)


@linux
@pytest.mark.unknot
@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_waitpid_is_cooperative(pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not pidfd:
        monkeypatch.setattr(uos, "_pidfd_open", None)
    ticker = Ticker()
    pid = spawn_child("sleep", "0.15")
    assert uos.waitpid(pid, os.WNOHANG) == (0, 0)
    assert uos.waitpid(pid, 0) == (pid, 0)
    pid = spawn_child("sh", "-c", "sleep 0.05; exit 3", group=True)
    assert uos.waitpid(-pid, 0) == (pid, 3 << 8)  # any child of a process group: polls
    assert ticker.stop() >= 10
    assert outcome(uos.waitpid, pid, 0) == outcome(os.waitpid, pid, 0)  # ChildProcessError
    assert outcome(uos.waitpid, 1, 0) == outcome(os.waitpid, 1, 0)


@linux
def test_wait_for_any_child() -> None:
    """os.wait() reaps any child: run in a fresh interpreter, where the children are known."""
    code = """
import os, time, unknot, unknot.os as uos
def main():
    pids = [os.posix_spawnp("sh", ["sh", "-c", f"sleep 0.{i}; exit {i}"], os.environ)
            for i in (2, 1)]
    ticks = []
    unknot.spawn(lambda: [ticks.append(unknot.sleep(0.01)) for _ in range(100)])
    got = [uos.wait(), uos.wait()]
    assert got == [(pids[1], 1 << 8), (pids[0], 2 << 8)], got
    assert len(ticks) >= 10, ticks
    print("ok")
unknot.run(main)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "ok", out.stderr


class ChildOnCue:
    """A shell child that exits with ``status`` once `release` is called: a fiber calls it
    after the ticker counted 5, so a wait that blocked the hub would never see the child exit
    (the test times out), and one that lets other fibers run returns."""

    def __init__(self, status: int, group: bool = False) -> None:
        self.r, self.w = os.pipe()
        self.pid = os.posix_spawnp(
            "sh",
            ["sh", "-c", f"read line; exit {status}"],
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, self.r, 0)],
            **({"setpgroup": 0} if group else {}),
        )
        os.close(self.r)

    def release_after(self, ticker: Ticker) -> unknot.Fiber:
        def release() -> None:
            while ticker.count < 5:
                unknot.sleep(0.01)
            os.write(self.w, b"go\n")
            os.close(self.w)

        return unknot.spawn(release)


@linux
@pytest.mark.unknot
@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_wait4_and_waitid_are_cooperative(pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not pidfd:
        monkeypatch.setattr(uos, "_pidfd_open", None)
    ticker = Ticker()
    child = ChildOnCue(5)
    assert uos.wait4(child.pid, os.WNOHANG)[:2] == (0, 0)  # the stdlib's, rusage included
    child.release_after(ticker)
    pid, status, usage = uos.wait4(child.pid, 0)
    assert (pid, status) == (child.pid, 5 << 8)
    assert isinstance(usage, resource.struct_rusage)
    assert ticker.count >= 5

    ticker = Ticker()
    child = ChildOnCue(4)
    assert uos.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG) is None
    child.release_after(ticker)
    info = uos.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # leaves it waitable
    assert (info.si_pid, info.si_code, info.si_status) == (child.pid, os.CLD_EXITED, 4)
    assert uos.waitid(os.P_PID, child.pid, os.WEXITED).si_pid == child.pid  # reaped now
    assert ticker.stop() >= 5
    # The stdlib's errors: no such child, no wait type in the options.
    assert outcome(uos.wait4, child.pid, 0) == outcome(os.wait4, child.pid, 0)
    assert outcome(uos.waitid, os.P_PID, child.pid, os.WEXITED) == outcome(
        os.waitid, os.P_PID, child.pid, os.WEXITED
    )
    assert outcome(uos.waitid, os.P_ALL, 0, 0) == outcome(os.waitid, os.P_ALL, 0, 0)


@linux
@pytest.mark.unknot
@pytest.mark.skipif(not hasattr(os, "P_PIDFD"), reason="P_PIDFD (Linux 5.4+)")
def test_waitid_on_a_pidfd_is_cooperative() -> None:
    ticker = Ticker()
    child = ChildOnCue(6)
    try:
        fd = os.pidfd_open(child.pid)
    except OSError as e:
        pytest.skip(f"no pidfds here: {e}")
    try:
        assert uos.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is None
        child.release_after(ticker)
        info = uos.waitid(os.P_PIDFD, fd, os.WEXITED)
    finally:
        os.close(fd)
    assert (info.si_pid, info.si_status) == (child.pid, 6)
    assert ticker.stop() >= 5


@linux
@pytest.mark.unknot
def test_wait3_and_waitid_for_any_child_poll() -> None:
    """wait3, and waitid for a process group, reap any matching child: polling. (A process
    group of the child's own, so that no other child of the test process is reaped.)"""
    ticker = Ticker()
    child = ChildOnCue(3, group=True)
    child.release_after(ticker)
    info = uos.waitid(os.P_PGID, child.pid, os.WEXITED)
    assert (info.si_pid, info.si_status) == (child.pid, 3)
    assert ticker.stop() >= 5
    code = """
import os, unknot, unknot.os as uos
def main():
    r, w = os.pipe()
    pid = os.posix_spawnp("sh", ["sh", "-c", "read line; exit 2"], os.environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, r, 0)])
    ticks = []
    def release():
        while len(ticks) < 5:
            ticks.append(unknot.sleep(0.01))
        os.write(w, b"go\\n")
    unknot.spawn(release)
    got, status, usage = uos.wait3(0)
    assert (got, status) == (pid, 2 << 8) and usage.ru_maxrss >= 0, (got, status)
    try:
        uos.wait3(0)  # no child left: the stdlib's error, at once
    except ChildProcessError:
        print("ok", len(ticks))
unknot.run(main)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.split() == ["ok", "5"], out.stderr


def test_waitpid_outside_fibers() -> None:
    pid = spawn_child("true")
    assert uos.waitpid(pid, 0) == (pid, 0)


@linux
@pytest.mark.unknot
def test_system(tmp_path: Path) -> None:
    assert uos.system("exit 3") == os.system("exit 3") == 3 << 8
    assert uos.system(b"true") == 0
    assert outcome(uos.system, None) == outcome(os.system, None)
    ticker = Ticker()
    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        for _ in range(5):
            tg.spawn(uos.system, "sleep 0.2")
    assert time.monotonic() - t0 < 0.7
    assert ticker.stop() >= 10
    pidfile = tmp_path / "pid"
    with unknot.move_on_after(0.2) as scope:
        uos.system(f"echo $$ > {pidfile}; exec sleep 5")
    assert scope.cancelled_caught
    with pytest.raises(ProcessLookupError):  # killed and reaped: not even a zombie
        os.kill(int(pidfile.read_text()), 0)


@linux
def test_system_uses_the_c_environment() -> None:
    """C's system() runs the shell in the process's C environment, which os.putenv and
    os.unsetenv change without os.environ knowing (as a C extension's setenv does): so does
    unknot's. (A fresh interpreter: the test process's environment is left alone.)"""
    code = """
import os, unknot, unknot.os as uos
os.putenv("UNKNOT_C_ONLY", "c-level")           # in the C environment only
os.environ["UNKNOT_GONE"] = "x"
os.unsetenv("UNKNOT_GONE")                      # still in os.environ, not in C's
assert os.environ["UNKNOT_GONE"] == "x" and "UNKNOT_C_ONLY" not in os.environ
cmd = 'test "$UNKNOT_C_ONLY" = c-level && test -z "${UNKNOT_GONE+set}"'
print(os.system(cmd), unknot.run(uos.system, cmd))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.split() == ["0", "0"], out.stderr


@linux
@pytest.mark.unknot
def test_popen() -> None:
    ticker = Ticker()
    with uos.popen("sleep 0.1; echo out") as f:
        assert f.read() == "out\n"
    assert uos.popen("exit 2").close() == 2 << 8
    with uos.popen("cat > /dev/null", "w") as f:
        f.write("x" * 100_000)
    assert ticker.stop() >= 5
    for args in (([],), ("x", "rw"), ("x", "r", 0)):
        assert outcome(uos.popen, *args) == outcome(os.popen, *args)


@linux
def test_system_and_popen_outside_fibers() -> None:
    assert uos.system("exit 1") == 1 << 8
    with uos.popen("echo hi") as f:
        assert f.read() == "hi\n"
