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
