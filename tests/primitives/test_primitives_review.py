"""Regressions found by a review of the primitives as their users would use them: each test
names the behaviour that was wrong."""

from __future__ import annotations

import gc
import logging
import traceback
import weakref
from typing import Any

import pytest

import unknot

pytestmark = pytest.mark.timeout(30)


# -- Queue ------------------------------------------------------------------------------------


def test_a_put_that_cannot_wait_outside_fibers_is_not_counted_for_join() -> None:
    # A full queue, put from outside any fiber: NotInFiberError, and the item was not put. It
    # used to stay counted as unfinished, so join() waited for a task_done that never comes.
    q: unknot.Queue[int] = unknot.Queue(maxsize=1)
    q.put(1)
    with pytest.raises(unknot.NotInFiberError):
        q.put(2)
    assert q.get() == 1
    q.task_done()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()  # nothing left unfinished
    unknot.run(q.join)  # returns at once


# -- Future -----------------------------------------------------------------------------------


class _Boom(Exception):
    pass


def _raising_callback(fut: unknot.Future[Any]) -> None:
    raise _Boom("in a callback")


def test_a_callback_added_to_a_complete_future_that_raises_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As when it runs on completion, as concurrent.futures and Fiber.add_done_callback do: it
    # used to raise out of add_done_callback when the future was already complete.
    seen: list[int] = []

    def main() -> None:
        fut: unknot.Future[int] = unknot.Future()
        fut.set_result(1)
        fut.add_done_callback(_raising_callback)
        fut.add_done_callback(lambda f: seen.append(f.result()))

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
        outside: unknot.Future[int] = unknot.Future()  # (and outside fibers)
        outside.set_result(2)
        outside.add_done_callback(_raising_callback)
    assert seen == [1]
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], _Boom)]
    assert len(logged) == 2


def test_each_result_call_raises_the_exception_with_its_own_traceback_only() -> None:
    # `raise exc` adds the raising frames to exc.__traceback__: retrieving the outcome of a
    # failed future again and again used to grow its traceback by a few frames each time.
    def main() -> list[int]:
        fut: unknot.Future[int] = unknot.Future()
        try:
            raise KeyError("original")
        except KeyError as e:
            fut.set_exception(e)
        lengths = []
        for _ in range(5):
            try:
                fut.result()
            except KeyError as e:
                lengths.append(len(traceback.extract_tb(e.__traceback__)))
        return lengths

    lengths = unknot.run(main)
    assert len(set(lengths)) == 1, lengths


# -- Channel ----------------------------------------------------------------------------------


def test_close_raises_a_fresh_channel_closed_in_each_waiting_fiber() -> None:
    # One instance raised in every woken fiber shared its __traceback__, __context__ and notes
    # between fibers that have nothing to do with each other.
    def wait_on(op: Any) -> BaseException | None:
        try:
            op()
        except unknot.ChannelClosed as e:
            return e
        return None

    def main() -> list[BaseException | None]:
        receiving: unknot.Channel[int] = unknot.Channel()
        sending: unknot.Channel[int] = unknot.Channel()
        fibers = [unknot.spawn(wait_on, receiving.recv) for _ in range(2)]
        fibers += [unknot.spawn(wait_on, lambda: sending.send(1)) for _ in range(2)]
        unknot.sleep(0)
        receiving.close()
        sending.close()
        return [f.join() for f in fibers]

    errors = unknot.run(main)
    assert all(isinstance(e, unknot.ChannelClosed) for e in errors), errors
    assert len({id(e) for e in errors}) == 4


# -- local ------------------------------------------------------------------------------------


class _Payload:
    pass


def test_values_of_a_finished_fiber_that_references_itself_are_dropped() -> None:
    # A fiber that stores a reference to itself in a local (directly, or in an object that
    # holds it) is kept alive by its own namespace: its values used to live as long as the
    # local, whatever happened to the fiber.
    data = unknot.local()
    payloads: list[weakref.ref[_Payload]] = []

    def handler() -> None:
        data.fiber = unknot.current()
        data.payload = _Payload()
        payloads.append(weakref.ref(data.payload))

    def main() -> None:
        for _ in range(300):
            unknot.spawn(handler).join()

    unknot.run(main)
    gc.collect()
    alive = sum(r() is not None for r in payloads)
    assert alive < 150, alive
    assert len(data._local__namespaces.dicts) < 150  # type: ignore[attr-defined]


def test_the_sweep_keeps_the_namespaces_of_live_fibers() -> None:
    data = unknot.local()

    def main() -> None:
        release = unknot.Event()

        def holder(n: int) -> int:
            data.n = n
            release.wait()
            value: int = data.n
            return value

        with unknot.TaskGroup() as tg:
            live = [tg.spawn(holder, n) for n in range(100)]
            for _ in range(300):  # finished fibers, kept alive: swept meanwhile
                unknot.spawn(handler_keeping_itself).join()
            release.set()
        assert [f.result() for f in live] == list(range(100))

    def handler_keeping_itself() -> None:
        data.fiber = unknot.current()

    unknot.run(main)


# -- keyword arguments meant for the function called ------------------------------------------


def _echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def test_keywords_named_like_the_callers_own_parameters_reach_the_function() -> None:
    # ``spawn_later(1, retry, seconds=5)`` raised "got multiple values for argument
    # 'seconds'", and ``pool.apply(f, fn=...)`` the same for 'fn' (concurrent.futures' submit
    # takes ``fn`` positional-only for this reason).
    def main() -> list[dict[str, Any]]:
        later = unknot.spawn_later(0, _echo, seconds=5, fn="f")
        applied = unknot.Pool(2).apply(_echo, fn="f", self="s")
        return [later.join(), applied]

    got = unknot.run(main)
    assert got == [{"seconds": 5, "fn": "f"}, {"fn": "f", "self": "s"}]
