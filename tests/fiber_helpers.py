"""Helpers shared by the test modules of the stdlib mirrors (select, selectors, time, os,
subprocess, socket) and the core's: evidence that the hub kept running while a fiber blocked,
and outcomes to compare with the stdlib's; a script run in a child process where Ctrl-C works as
usual (and where a hang cannot be mistaken for a deadlock waker), or a script file in a fresh
interpreter; a listener with a full accept queue; an integer-like object; the current fiber's hub
and a socket's fd record; and `Where`, which runs a test body in a fiber or in a thread (the
``where`` fixture of tests/mirrors/conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import unknot

if TYPE_CHECKING:
    import unknot.socket as us
    from unknot._core._hub import FdWait, Hub


class Ticker:
    """A fiber counting every 10 ms: if it advanced, the hub kept running other fibers."""

    def __init__(self) -> None:
        self.count = 0
        self.fiber = unknot.spawn(self._run)

    def _run(self) -> None:
        while True:
            self.count += 1
            unknot.sleep(0.01)

    def stop(self) -> int:
        self.fiber.cancel()
        return self.count


def later(delay: float, fn: Callable[..., Any], *args: Any) -> unknot.Fiber:
    """Run ``fn(*args)`` in a new fiber after ``delay`` seconds."""

    def main() -> Any:
        unknot.sleep(delay)
        return fn(*args)

    return unknot.spawn(main)


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """The result of ``fn(*args)``, or (exception type, message) if it raised."""
    try:
        return fn(*args)
    except Exception as e:
        return (type(e), str(e))


def fill(fd: int, write: Callable[[int, bytes], int] = os.write, size: int = 65536) -> None:
    """Write to the non-blocking ``fd`` until it says EAGAIN (its buffers are full); bounded
    by 10 s."""
    chunk = b"x" * size
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            write(fd, chunk)
        except BlockingIOError:
            return
    raise AssertionError(f"fd {fd} still takes data after 10 s")


def run_script(
    script: str, env: dict[str, str] | None = None, cpus: set[int] | None = None
) -> list[str]:
    """Run ``script`` in a child Python with Ctrl-C as usual (even when the test runner was
    started with SIGINT ignored), optionally pinned to ``cpus``; it must exit with 0 within a
    minute. Its output, split at ``|``."""

    def child_setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **(env or {})),
        preexec_fn=child_setup,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split("|")


def run_script_file(tmp_path: Path, source: str, *args: str) -> list[str]:
    """Write ``source`` to ``tmp_path / "script.py"`` and run it with ``args`` in a fresh
    interpreter, in ``tmp_path`` (so that multiprocessing's "spawn" children can import it); it
    must exit with 0 within 50 s. Its printed words."""
    script = tmp_path / "script.py"
    script.write_text(source)
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout.split()


class FullBacklog:
    """A listener whose accept queue is full, so that a further connect hangs (SYN dropped)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.address = self.listener.getsockname()
        self.fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(self.address)
            self.fillers.append(c)
        time.sleep(0.05)  # handshakes done: the queue is full

    def close(self) -> None:
        for s in [*self.fillers, self.listener]:
            s.close()


def fill_send_buffer(sock: Any) -> int:
    """Write until the socket's send buffer is full (non-blocking); the bytes written."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    total = 0
    for _ in range(10_000):
        try:
            total += sock.send(b"x" * 65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return total
    raise AssertionError("the send buffer never filled")


class IntLike:
    """An integer-like object (as numpy's integers): what takes a size or an fd takes it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


# -- the hub's records ---------------------------------------------------------------------------


def current_hub() -> Hub:
    """The hub of the current fiber (in a fiber only)."""
    f = unknot.current()
    assert f is not None
    return f.hub


def fd_record_of(sock: us.socket) -> FdWait:
    """The fd record of an unknot socket (it has waited at least once)."""
    rec = sock._state.rec  # type: ignore[attr-defined]
    assert rec is not None
    return rec


# -- running the same test in fibers and in threads -------------------------------------------


HUB_CLASS = {"epoll": "EpollHub", "poll": "PollHub", "select": "SelectHub"}


class ThreadPeer:
    """A started OS thread whose `join` re-raises what the function raised, like Fiber.join."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(fn, args), daemon=True)
        self.thread.start()

    def _main(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.result = fn(*args)
        except BaseException as e:
            self.error = e

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout: float = 20.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "peer thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


class Where:
    """Runs a test body in a fiber (on a given backend) or plainly; starts peers to match."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fiber = name != "thread"
        self.backend = name.split("-")[1] if self.fiber else None

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.fiber:
            return fn(*args)

        def root() -> Any:
            hub = unknot.current().hub  # type: ignore[union-attr]
            assert type(hub).__name__ == HUB_CLASS[self.backend or ""]
            return fn(*args)

        return unknot.run(root)

    def start(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A concurrent peer: a fiber in fiber mode, else a thread. ``.join()`` it."""
        if self.fiber:
            return unknot.spawn(fn, *args)
        return ThreadPeer(fn, args)

    def sleep(self, seconds: float) -> None:
        if self.fiber:
            unknot.sleep(seconds)
        else:
            time.sleep(seconds)


def wait_consumed(where: Where, sock: Any, peer: Any) -> None:
    """Wait (bounded) until nothing is queued to read on ``sock``: ``peer`` took it."""
    for _ in range(5000):
        try:
            socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        assert not peer.done(), "the reader returned early"
        where.sleep(0.001)
    raise AssertionError("the reader never took the data")
