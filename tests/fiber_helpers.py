"""Helpers shared by the test modules of the stdlib mirrors (select, selectors, time, os,
subprocess): evidence that the hub kept running while a fiber blocked, and outcomes to compare
with the stdlib's."""

from __future__ import annotations

import os
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
