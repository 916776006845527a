"""Helpers shared by the test modules of the stdlib mirrors (select, selectors, time, os,
subprocess): evidence that the hub kept running while a fiber blocked, and outcomes to compare
with the stdlib's; and a script run in a child process where Ctrl-C works as usual."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
