"""Property tests: under random cancellation and timeouts no Queue or Channel item is lost or
duplicated.

Each example runs a random schedule of producers and consumers on a virtual clock (so many
events land on the same instant, the racy case), with per-operation timeouts, scope deadlines
and whole-fiber cancellations at random times.
"""

from __future__ import annotations

import math
import os
import queue
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unknot
from unknot.testing import MockClock

# Times are small integers (virtual seconds) so that many events coincide.
times = st.integers(min_value=0, max_value=4)
optional_time = st.none() | times

# One operation: (delay before it, its timeout, a move_on_after deadline around it)
op = st.tuples(times, optional_time, optional_time)
plans = st.lists(st.lists(op, max_size=6), min_size=1, max_size=4)
# Cancel fiber #i (of the producers + consumers) at time t.
kills = st.lists(st.tuples(st.integers(0, 7), times), max_size=3)

SETTINGS = settings(
    # UNKNOT_HYPOTHESIS_EXAMPLES=5000 for a thorough run; the default keeps the suite fast
    max_examples=int(os.environ.get("UNKNOT_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _scoped(deadline: int | None) -> Any:
    return unknot.move_on_after(math.inf if deadline is None else deadline)


def _run(main: Any) -> None:
    unknot.run(main, clock=MockClock(autojump_threshold=0))


@SETTINGS
@given(
    maxsize=st.integers(0, 3),
    kind=st.sampled_from(["fifo", "lifo", "priority"]),
    producers=plans,
    consumers=plans,
    kills=kills,
)
def test_queue_no_item_lost_or_duplicated(
    maxsize: int,
    kind: str,
    producers: list[list[tuple[int, int | None, int | None]]],
    consumers: list[list[tuple[int, int | None, int | None]]],
    kills: list[tuple[int, int]],
) -> None:
    cls = {"fifo": unknot.Queue, "lifo": unknot.LifoQueue, "priority": unknot.PriorityQueue}[kind]
    put_ok: list[int] = []
    got: list[int] = []
    left: list[int] = []

    def main() -> None:
        q: unknot.Queue[int] = cls(maxsize)
        counter = iter(range(1_000_000))

        def producer(plan: list[tuple[int, int | None, int | None]]) -> None:
            for delay, timeout, scope_deadline in plan:
                unknot.sleep(delay)
                item = next(counter)
                with _scoped(scope_deadline):
                    try:
                        q.put(item, timeout=timeout)
                    except queue.Full:
                        continue
                    put_ok.append(item)  # put returned normally: the item is in

        def consumer(plan: list[tuple[int, int | None, int | None]]) -> None:
            for delay, timeout, scope_deadline in plan:
                unknot.sleep(delay)
                with _scoped(scope_deadline):
                    try:
                        item = q.get(timeout=timeout)
                    except queue.Empty:
                        continue
                    got.append(item)

        with unknot.TaskGroup() as tg:
            fibers = [tg.spawn(producer, p) for p in producers]
            fibers += [tg.spawn(consumer, c) for c in consumers]

            def killer(i: int, at: int) -> None:
                unknot.sleep(at)
                fibers[i % len(fibers)].cancel()

            for i, at in kills:
                tg.spawn(killer, i, at)
            # A watchdog: producers may block forever on a full queue with no consumer left.
            tg.spawn(_cancel_group_later, tg, 100)
        while True:
            try:
                left.append(q.get_nowait())
            except queue.Empty:
                break
        assert not q._getters and not q._putters

    _run(main)
    assert Counter(put_ok) == Counter(got) + Counter(left)
    assert len(set(got)) == len(got)


def _cancel_group_later(tg: unknot.TaskGroup, at: int) -> None:
    unknot.sleep(at)
    tg.cancel()


channel_op = st.tuples(
    st.sampled_from(["send", "recv", "select"]), times, optional_time, optional_time
)
channel_plans = st.lists(st.lists(channel_op, max_size=6), min_size=1, max_size=5)


@SETTINGS
@given(
    plans=channel_plans,
    kills=kills,
    close_at=optional_time,
)
def test_channel_exactly_once_delivery(
    plans: list[list[tuple[str, int, int | None, int | None]]],
    kills: list[tuple[int, int]],
    close_at: int | None,
) -> None:
    sent_ok: list[int] = []
    received: list[int] = []

    def main() -> None:
        channels: list[unknot.Channel[int]] = [unknot.Channel(), unknot.Channel()]
        counter = iter(range(1_000_000))

        def actor(idx: int, plan: list[tuple[str, int, int | None, int | None]]) -> None:
            for n, (what, delay, timeout, scope_deadline) in enumerate(plan):
                unknot.sleep(delay)
                ch = channels[(idx + n) % 2]
                with _scoped(scope_deadline):
                    try:
                        if what == "send":
                            item = next(counter)
                            ch.send(item, timeout=timeout)
                            sent_ok.append(item)
                        elif what == "recv":
                            received.append(ch.recv(timeout=timeout))
                        else:  # a select mixing a send on one channel, a receive on the other
                            item = next(counter)
                            other = channels[(idx + n + 1) % 2]
                            op, value = unknot.select(
                                ch.send_op(item), other.recv_op(), timeout=timeout
                            )
                            if op.kind == "send":
                                assert value is None
                                sent_ok.append(item)
                            else:
                                received.append(value)
                    except (TimeoutError, unknot.ChannelClosed):
                        continue

        with unknot.TaskGroup() as tg:
            fibers = [tg.spawn(actor, i, p) for i, p in enumerate(plans)]

            def killer(i: int, at: int) -> None:
                unknot.sleep(at)
                fibers[i % len(fibers)].cancel()

            for i, at in kills:
                tg.spawn(killer, i, at)
            if close_at is not None:

                def closer() -> None:
                    unknot.sleep(close_at)
                    channels[close_at % 2].close()

                tg.spawn(closer)
            tg.spawn(_cancel_group_later, tg, 100)
        for ch in channels:
            assert not ch._senders and not ch._receivers

    _run(main)
    # every send that returned normally was received exactly once, and every received value
    # came from a send that returned normally
    assert Counter(sent_ok) == Counter(received)
    assert len(set(received)) == len(received)


@SETTINGS
@given(
    n_items=st.integers(0, 20),
    maxsize=st.integers(0, 3),
    getter_timeouts=st.lists(optional_time, min_size=1, max_size=5),
)
def test_queue_fifo_order_preserved_under_timeouts(
    n_items: int, maxsize: int, getter_timeouts: list[int | None]
) -> None:
    got: list[int] = []
    put_ok: list[int] = []

    def main() -> None:
        q: unknot.Queue[int] = unknot.Queue(maxsize)

        def producer() -> None:
            for i in range(n_items):
                try:
                    q.put(i, timeout=10)
                except queue.Full:  # every getter gave up
                    return
                put_ok.append(i)
                unknot.sleep(i % 2)

        def getter(timeout: int | None) -> None:
            while True:
                try:
                    got.append(q.get(timeout=timeout if timeout is not None else 5))
                except queue.Empty:
                    return

        with unknot.TaskGroup() as tg:
            tg.spawn(producer)
            for t in getter_timeouts:
                tg.spawn(getter, t)
        while not q.empty():
            got.append(q.get_nowait())

    _run(main)
    # Getters may interleave, but each item is delivered once, and a FIFO queue hands items
    # out in order: the sequence of hand-outs (in the order they happened) is sorted.
    assert got == put_ok == list(range(len(put_ok)))
