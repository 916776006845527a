"""Helpers shared by the test modules of the stdlib mirrors (select, selectors, time, os,
subprocess, socket) and the core's: evidence that the hub kept running while a fiber blocked,
and outcomes to compare with the stdlib's; a script run in a child process where Ctrl-C works as
usual (and where a hang cannot be mistaken for a deadlock waker); a listener with a full accept
queue; an integer-like object; and `Where`, which runs a test body in a fiber or in a thread
(the ``where`` fixture of tests/mirrors/conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import unknot


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


class IntLike:
    """An integer-like object (as numpy's integers): what takes a size or an fd takes it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


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
