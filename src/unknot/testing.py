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
        self._virtual = 0.0
        self._real = time.monotonic()
        self._rate = 0.0
        self._autojump_threshold = math.inf
        self.rate = rate
        self.autojump_threshold = autojump_threshold

    @property
    def rate(self) -> float:
        """How fast virtual time runs, in virtual seconds per real second (0: it stands still).

        Changing it keeps the current virtual time: time goes on from there at the new rate."""
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        if not rate >= 0:  # (NaN too)
            raise ValueError(f"rate must be >= 0, got {rate!r}")
        self._rebase()
        self._rate = float(rate)

    @property
    def autojump_threshold(self) -> float:
        """Real seconds every fiber must have been idle before time jumps to the next deadline
        (``inf``: never; ``0``: at once)."""
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, threshold: float) -> None:
        if not threshold >= 0:
            raise ValueError(f"autojump_threshold must be >= 0, got {threshold!r}")
        self._autojump_threshold = float(threshold)

    def _rebase(self) -> None:
        """Fold the virtual time elapsed at the current rate into the base."""
        now = time.monotonic()
        self._virtual += self._rate * (now - self._real)
        self._real = now

    def time(self) -> float:
        """The current virtual time."""
        if not self._rate:
            return self._virtual
        return self._virtual + self._rate * (time.monotonic() - self._real)

    def jump(self, seconds: float) -> None:
        """Advance virtual time by ``seconds`` (timers that become due fire on the next turn)."""
        if not seconds >= 0:
            raise ValueError("time can't go backwards")
        self._rebase()
        self._virtual += seconds

    def real_timeout(self, virtual_seconds: float) -> float:
        """How long, in real seconds, a wait of ``virtual_seconds`` takes at this rate."""
        return virtual_seconds / self._rate if self._rate else math.inf

    def __repr__(self) -> str:
        return (
            f"<MockClock time={self.time():.6f} rate={self.rate} "
            f"autojump_threshold={self.autojump_threshold}>"
        )


__all__ = ["MockClock"]
