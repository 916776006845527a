"""What the primitives' tests share: a gauge of the pool's calls running at once, and an
asyncio loop handler for a signal."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import unknot


class Gauge:
    """Counts the code of the pool's calls running at once (a consumer parked in ``next()``
    does not count), and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            yield
        finally:
            self.now -= 1

    def call(self, x: int, seconds: float = 0) -> int:
        with self.running():
            unknot.sleep(seconds)
        return x


@contextmanager
def loop_signal_handler(signum: int) -> Iterator[list[int]]:
    """A handler of the running asyncio loop for ``signum``, for the block: the signals it got."""
    loop = asyncio.get_running_loop()
    loop_got: list[int] = []
    loop.add_signal_handler(signum, loop_got.append, signum)
    try:
        yield loop_got
    finally:
        loop.remove_signal_handler(signum)
