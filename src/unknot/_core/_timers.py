"""The hub's timer heap: sleeps, timeouts and scope deadlines, fired between polls.

An entry is a list ``[deadline, seq, fn, arg]``; cancelling it clears ``fn`` and ``arg`` in place
(a heap cannot remove from the middle cheaply), and cancelled entries are skipped when they reach
the top, or compacted away in bulk when they are the majority (`next_deadline`).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any, Final

from ._native import mypyc_attr

_INF: Final = math.inf


@mypyc_attr(allow_interpreted_subclasses=True)
class TimerQueue:
    """The timer half of `Hub` (a mixin: the hub calls `_timers_init` from its own init)."""

    time: Callable[[], float]
    timers: list[list[Any]]
    _seq: Iterator[int]
    _cancelled_timers: int

    def _timers_init(self) -> None:
        self.timers = []
        self._seq = itertools.count()
        self._cancelled_timers = 0

    def add_timer(self, deadline: float, fn: Callable[[Any], Any], arg: Any) -> list[Any]:
        """Call ``fn(arg)`` on the hub at ``deadline`` (hub clock). Returns a cancel handle.

        ``deadline`` is a real number (``math.inf``: never). `ValueError` for NaN: it would
        break the heap's order (every comparison with it is false), so that the timers behind
        it never fire and the loop spins. `TypeError` for anything that is no number (None, a
        string), refused before it reaches the heap, where it would break the next comparison
        (and the hub with it)."""
        # One comparison does both checks (NaN is not <= inf; None or a str cannot be compared
        # with a float), as cheaply as the NaN test alone: compiled, ``deadline`` is already a
        # C double (the call refused what is no number), so this is one C comparison.
        try:
            if not deadline <= _INF:
                raise ValueError("a timer's deadline must not be NaN")
        except TypeError:
            raise TypeError(
                f"a timer's deadline must be a number, not {type(deadline).__name__}"
            ) from None
        entry = [deadline, next(self._seq), fn, arg]
        heapq.heappush(self.timers, entry)
        return entry

    @staticmethod
    def seconds(timeout: Any) -> float:
        """A timeout given as another real number than a float (an int, a `Fraction`, a
        `Decimal`) as the float seconds of the hub's clock, so that both builds take the same
        numbers (the compiled hub computes in floats). `TypeError` for a string."""
        if isinstance(timeout, (str, bytes, bytearray)):
            raise TypeError(f"a timeout must be a number, not {type(timeout).__name__}")
        return float(timeout)

    def cancel_timer(self, entry: list[Any]) -> None:
        """Cancel a timer returned by `add_timer` (no effect if it already fired)."""
        if entry[2] is not None:
            entry[2] = entry[3] = None
            self._cancelled_timers += 1

    def _expire_timers(self) -> None:
        timers = self.timers
        if not timers:
            return
        now = self.time()
        pop = heapq.heappop
        while timers and timers[0][0] <= now:
            entry = pop(timers)
            fn = entry[2]
            if fn is None:
                self._cancelled_timers -= 1
            else:
                arg = entry[3]
                entry[2] = entry[3] = None
                fn(arg)

    def next_deadline(self) -> float | None:
        """The earliest live timer's deadline, or None."""
        timers = self.timers
        if self._cancelled_timers > 256 and self._cancelled_timers * 2 > len(timers):
            # Mostly cancelled timeouts (the common case: I/O finished first): compact. Done
            # here, between loop iterations, never while _expire_timers walks the heap.
            timers = self.timers = [e for e in timers if e[2] is not None]
            heapq.heapify(timers)
            self._cancelled_timers = 0
        while timers and timers[0][2] is None:
            heapq.heappop(timers)
            self._cancelled_timers -= 1
        return timers[0][0] if timers else None


def timeout_seconds(timeout: Any) -> float:
    """A timeout given by a caller as the float seconds the hub computes with: any real number
    (`TimerQueue.seconds`; `TypeError` for a string), `ValueError` for NaN."""
    seconds = timeout if type(timeout) is float else TimerQueue.seconds(timeout)
    if seconds != seconds:
        raise ValueError("timeout must not be NaN")
    return seconds
