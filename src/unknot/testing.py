"""Testing support: `MockClock`, a virtual clock for the hub.

Pass it to `unknot.run` (or use the pytest plugin's ``autojump_clock`` fixture)::

    clock = MockClock(autojump_threshold=0)
    unknot.run(main, clock=clock)     # sleep(3600) inside main returns at once

With ``autojump_threshold=0`` time jumps straight to the next timer whenever every fiber is
waiting (trio's ``MockClock(autojump_threshold=0)``). asyncio's ``call_later`` and
``asyncio.sleep`` on the same loop follow the same clock.
"""

from __future__ import annotations

import math
import time


class MockClock:
    """A virtual clock: it advances at ``rate`` times real time, by `jump`, and by autojump.

    ``autojump_threshold``: when every fiber has been idle that many real seconds, time jumps to
    the next deadline. ``inf`` (the default) never jumps; ``0`` jumps at once.
    """

    def __init__(self, rate: float = 0.0, autojump_threshold: float = math.inf) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        if autojump_threshold < 0:
            raise ValueError("autojump_threshold must be >= 0")
        self._virtual = 0.0
        self._real = time.monotonic()
        self.rate = rate
        self.autojump_threshold = autojump_threshold

    def time(self) -> float:
        """The current virtual time."""
        if not self.rate:
            return self._virtual
        return self._virtual + self.rate * (time.monotonic() - self._real)

    def jump(self, seconds: float) -> None:
        """Advance virtual time by ``seconds`` (timers that become due fire on the next turn)."""
        if seconds < 0:
            raise ValueError("time can't go backwards")
        now = time.monotonic()
        self._virtual += self.rate * (now - self._real) + seconds
        self._real = now

    def real_timeout(self, virtual_seconds: float) -> float:
        """How long, in real seconds, a wait of ``virtual_seconds`` takes at this rate."""
        return virtual_seconds / self.rate if self.rate else math.inf

    def __repr__(self) -> str:
        return (
            f"<MockClock time={self.time():.6f} rate={self.rate} "
            f"autojump_threshold={self.autojump_threshold}>"
        )


__all__ = ["MockClock"]
