"""The hub on a foreign asyncio loop (`ForeignHub`, docs/asyncio.md "Fibers on a stock asyncio
loop"): what it must share with unknot's own hub."""

from __future__ import annotations

import asyncio
import math

import pytest

import unknot
from unknot import lowlevel


def test_foreign_hub_timers_refuse_a_nan_deadline() -> None:
    # As every other timer entry does (TimerQueue.add_timer, Hub.park, CancelScope): a NaN
    # deadline would go to the loop's own timer heap (asyncio's call_at does not check it),
    # whose order it breaks. It used to be taken.
    def fiber() -> str:
        hub = lowlevel.current_hub()
        assert hub is not None and type(hub).__name__ == "ForeignHub"
        loop = asyncio.get_running_loop()
        try:
            with pytest.raises(ValueError, match="NaN"):
                hub.add_timer(math.nan, print, None)
        finally:
            for handle in list(loop._scheduled):  # type: ignore[attr-defined]
                if handle.when() != handle.when():
                    handle.cancel()  # (the old code's: keep the loop working for the others)
        unknot.sleep(0.01)  # the hub's timers still work
        return "refused"

    async def main() -> str:
        assert not isinstance(asyncio.get_running_loop(), unknot.HubEventLoop)
        return await unknot.spawn(fiber)

    assert asyncio.run(main()) == "refused"


def test_a_stock_loop_that_ran_fibers_is_freed_with_its_hub() -> None:
    # The hub holds its loop; the mapping from loops to hubs held each hub as long as its loop
    # (a weak-key dictionary), so neither was ever freed: one loop and hub kept per
    # asyncio.run() that spawned a fiber.
    import gc
    import weakref

    async def main() -> weakref.ref[object]:
        hub = lowlevel.current_hub()
        assert type(hub).__name__ == "ForeignHub"
        assert await unknot.spawn(lambda: unknot.sleep(0) or 42) == 42
        return weakref.ref(hub)

    loops, hubs = [], []
    for _ in range(3):
        loop = asyncio.new_event_loop()
        try:
            hubs.append(loop.run_until_complete(main()))
        finally:
            loop.close()
        loops.append(weakref.ref(loop))
        del loop
    gc.collect()
    assert [r() for r in loops] == [None, None, None]
    assert [r() for r in hubs] == [None, None, None]


def test_a_foreign_hub_lives_while_anything_in_it_does() -> None:
    # Held weakly by the mapping, the hub must live while a fiber waits with nothing else
    # holding it (no timer, no fd: parked on an Event only its waker knows), and every lookup
    # meanwhile must find that same hub.
    import gc
    import weakref

    async def main() -> list[str]:
        event = unknot.Event()
        done: list[str] = []
        unknot.spawn(lambda: event.wait() and done.append("woken"))
        hub = weakref.ref(lowlevel.current_hub())  # (the fiber's: not held here)
        await asyncio.sleep(0.01)
        gc.collect()
        assert hub() is not None and lowlevel.current_hub() is hub()
        event.set()
        for _ in range(100):
            if done:
                break
            await asyncio.sleep(0.001)
        return done

    assert asyncio.run(main()) == ["woken"]
