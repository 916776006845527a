"""`Fiber.join` and `from_thread` across hubs share one wait (`_fiber.wait_elsewhere`). Where
the two copies it replaced differed: a loop already closed when the call is sent. `join` said
its hub was closed; `from_thread` let asyncio's bare "Event loop is closed" out (from a fiber and
from a plain thread alike), though it documents a `RuntimeError` saying the hub shut down."""

from __future__ import annotations

import asyncio
import threading

import pytest

import unknot


def closed_loop_of_another_thread() -> asyncio.AbstractEventLoop:
    made: list[asyncio.AbstractEventLoop] = []
    maker = threading.Thread(target=lambda: made.append(unknot.new_event_loop()))
    maker.start()
    maker.join(5)
    made[0].close()
    return made[0]


@pytest.mark.unknot
def test_from_a_fiber_into_a_closed_loop_says_the_hub_shut_down() -> None:
    loop = closed_loop_of_another_thread()
    with pytest.raises(RuntimeError, match="shut down before the call finished"):
        unknot.from_thread(lambda: None, loop=loop)


def test_from_a_plain_thread_into_a_closed_loop_says_the_hub_shut_down() -> None:
    loop = closed_loop_of_another_thread()
    with pytest.raises(RuntimeError, match="shut down before the call finished"):
        unknot.from_thread(lambda: None, loop=loop)
