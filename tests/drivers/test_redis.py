"""redis-py, unmodified, on a real Redis: 50 fibers each blocked in BLPOP, on one thread."""

from __future__ import annotations

import os
import time
from typing import Any

from drivers_support import Budget


def test_blpop_timeout_on_empty_lists(redis_addr: tuple[str, int], concurrently: Any) -> None:
    """BLPOP with a 0.2 s timeout on 50 empty lists: Redis holds each call 0.2 s."""
    import redis

    prefix = f"unknot:test:{os.getpid()}:empty"
    r = redis.Redis(host=redis_addr[0], port=redis_addr[1])

    def work(i: int) -> Any:
        return r.blpop([f"{prefix}:{i}"], timeout=0.2)

    outcome = concurrently(work)
    assert outcome.results == [None] * 50
    r.close()


def test_blpop_fed_after_a_delay(redis_addr: tuple[str, int], concurrently: Any) -> None:
    """50 fibers block in BLPOP (for at most 5 s in all); a feeder fiber pushes to each list
    after 0.2 s. Were BLPOP to block the thread, the first call would hold it until the 5 s were
    up and the feeder could not run: the time limit would fail.
    """
    import redis

    prefix = f"unknot:test:{os.getpid()}:fed"
    r = redis.Redis(host=redis_addr[0], port=redis_addr[1], decode_responses=True)
    r.delete(*[f"{prefix}:{i}" for i in range(50)])

    budget = Budget(5)

    def work(i: int) -> Any:
        return r.blpop([f"{prefix}:{i}"], timeout=budget.left(floor=0.05))

    def feeder() -> None:
        time.sleep(0.2)  # patched: only this fiber sleeps
        with r.pipeline(transaction=False) as pipe:
            for i in range(50):
                pipe.rpush(f"{prefix}:{i}", f"value-{i}")
            pipe.execute()

    outcome = concurrently(work, background=feeder)
    assert outcome.results == [(f"{prefix}:{i}", f"value-{i}") for i in range(50)]
    r.close()


def test_redis_asyncio_through_await(redis_addr: tuple[str, int], concurrently: Any) -> None:
    """An asyncio library from fibers: 50 fibers each ``unknot.await_`` a redis.asyncio BLPOP."""
    import redis.asyncio

    import unknot

    prefix = f"unknot:test:{os.getpid()}:aio"
    clients: list[Any] = []

    def setup() -> None:  # in the root fiber: the client binds to the hub's running loop
        clients.append(
            redis.asyncio.Redis(host=redis_addr[0], port=redis_addr[1], decode_responses=True)
        )

    def work(i: int) -> Any:
        client = clients[0]
        assert unknot.await_(client.blpop([f"{prefix}:{i}"], timeout=0.2)) is None
        unknot.await_(client.rpush(f"{prefix}:{i}", f"v{i}"))
        return unknot.await_(client.lpop(f"{prefix}:{i}"))

    def teardown() -> None:
        unknot.await_(clients[0].aclose())

    outcome = concurrently(work, setup=setup, teardown=teardown)
    assert outcome.results == [f"v{i}" for i in range(50)]
