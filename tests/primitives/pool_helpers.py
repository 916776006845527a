"""What the pool tests share: a gauge of the calls running at once."""

from __future__ import annotations

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
