"""Fibers: run, spawn, join, cancel, outcomes, current, sleep, contextvars, error logging."""

from __future__ import annotations

import contextvars
import gc
import logging
import random
import threading
import time

import pytest

import unknot
from unknot.testing import MockClock

# -- run ------------------------------------------------------------------------------------------


def test_run_returns_result() -> None:
    assert unknot.run(lambda: 42) == 42


def test_run_passes_args_and_kwargs() -> None:
    def fn(a: int, b: int, *, c: int) -> tuple[int, int, int]:
        return a, b, c

    assert unknot.run(fn, 1, 2, c=3) == (1, 2, 3)


def test_run_reraises_root_exception() -> None:
    def fail() -> None:
        unknot.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        unknot.run(fail)


def test_run_cannot_nest() -> None:
    def inner() -> None:
        unknot.run(lambda: None)

    with pytest.raises(RuntimeError, match="cannot be called while an event loop is running"):
        unknot.run(inner)


def test_run_twice_in_a_row() -> None:
    assert unknot.run(lambda: 1) == 1
    assert unknot.run(lambda: 2) == 2


def test_run_cancels_leftover_fibers_and_runs_their_finally() -> None:
    log: list[str] = []

    def leftover() -> None:
        try:
            unknot.sleep(3600)
        finally:
            log.append("leftover finally")

    def main() -> str:
        unknot.spawn(leftover)
        unknot.sleep(0)
        return "root done"

    assert unknot.run(main) == "root done"
    assert log == ["leftover finally"]


# -- spawn and the Fiber object ----------------------------------------------------------------


@pytest.mark.unknot
def test_spawn_args_kwargs_and_name() -> None:
    def fn(a: int, *, b: int) -> int:
        return a + b

    f = unknot.spawn(fn, 1, b=2, name="adder")
    assert f.name == "adder"
    assert isinstance(f, unknot.Fiber)
    assert f.join() == 3


@pytest.mark.unknot
def test_default_name_and_rename() -> None:
    f = unknot.spawn(lambda: None)
    assert f.name.startswith("Fiber-")
    f.name = "renamed"
    assert f.name == "renamed"
    assert "renamed" in repr(f)
    f.join()


@pytest.mark.unknot
def test_spawn_does_not_switch() -> None:
    log: list[str] = []
    f = unknot.spawn(log.append, "child")
    log.append("parent")
    f.join()
    assert log == ["parent", "child"]


@pytest.mark.unknot
def test_spawn_non_callable() -> None:
    with pytest.raises(TypeError):
        unknot.spawn(42)  # type: ignore[arg-type]


def test_spawn_outside_hub() -> None:
    with pytest.raises(unknot.NotInFiberError):
        unknot.spawn(lambda: None)


@pytest.mark.unknot
def test_done_result_exception_lifecycle() -> None:
    ev = unknot.Event()
    f = unknot.spawn(ev.wait)
    assert not f.done()
    assert not f.cancelled()
    with pytest.raises(RuntimeError, match="has not finished"):
        f.result()
    with pytest.raises(RuntimeError, match="has not finished"):
        f.exception()
    ev.set()
    assert f.join() is True
    assert f.done()
    assert not f.cancelled()
    assert f.result() is True
    assert f.exception() is None


@pytest.mark.unknot
def test_failed_fiber_outcome() -> None:
    def fail() -> None:
        raise KeyError("k")

    f = unknot.spawn(fail)
    with pytest.raises(KeyError):
        f.join()
    assert f.done()
    assert not f.cancelled()
    assert isinstance(f.exception(), KeyError)
    with pytest.raises(KeyError):
        f.result()


@pytest.mark.unknot
def test_join_timeout_raises_and_fiber_keeps_running(autojump_clock: MockClock) -> None:
    f = unknot.spawn(unknot.sleep, 10)
    with pytest.raises(TimeoutError):
        f.join(timeout=1)
    assert not f.done()
    assert unknot.current_time() == pytest.approx(1)
    assert f.join(timeout=100) is None
    assert unknot.current_time() == pytest.approx(10)


@pytest.mark.unknot
def test_join_self_is_an_error() -> None:
    def selfjoin() -> None:
        me = unknot.current()
        assert me is not None
        me.join()

    f = unknot.spawn(selfjoin)
    with pytest.raises(RuntimeError, match="cannot join itself"):
        f.join()


@pytest.mark.unknot
def test_join_outside_fiber_is_an_error() -> None:
    import asyncio

    target = unknot.spawn(unknot.sleep, 3600)
    errors: list[BaseException] = []
    done = unknot.Event()

    def cb() -> None:  # runs on the hub, not in a fiber
        try:
            target.join()
        except BaseException as e:
            errors.append(e)
        done.set()

    asyncio.get_running_loop().call_soon(cb)
    done.wait()
    assert isinstance(errors[0], RuntimeError)
    assert "must be called from a fiber" in str(errors[0])
    target.cancel()


@pytest.mark.unknot
def test_many_joiners() -> None:
    ev = unknot.Event()
    target = unknot.spawn(lambda: (ev.wait(), "value")[1])
    joiners = [unknot.spawn(target.join) for _ in range(5)]
    unknot.sleep(0)
    ev.set()
    assert [j.join() for j in joiners] == ["value"] * 5


@pytest.mark.unknot
def test_cancel_blocked_fiber() -> None:
    log: list[str] = []

    def victim() -> None:
        try:
            unknot.sleep(3600)
        finally:
            log.append("finally")

    f = unknot.spawn(victim)
    unknot.sleep(0)
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join()
    assert f.cancelled()
    assert f.done()
    assert f.exception() is None
    assert log == ["finally"]
    with pytest.raises(unknot.FiberCancelled):
        f.result()


@pytest.mark.unknot
def test_cancel_before_start_never_runs() -> None:
    ran: list[int] = []
    f = unknot.spawn(ran.append, 1)
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join()
    assert ran == []
    assert f.cancelled()


@pytest.mark.unknot
def test_cancel_finished_fiber_is_noop() -> None:
    f = unknot.spawn(lambda: 5)
    assert f.join() == 5
    f.cancel()
    assert not f.cancelled()
    assert f.result() == 5


@pytest.mark.unknot
def test_cancel_is_level_triggered_for_fibers() -> None:
    caught: list[int] = []

    def stubborn() -> str:
        for _ in range(3):
            try:
                unknot.sleep(3600)
            except unknot.Cancelled:
                caught.append(1)
        return "survived"

    f = unknot.spawn(stubborn)
    unknot.sleep(0)
    f.cancel()
    # Every blocking call raises again; catching does not un-cancel, but it may return.
    assert f.join() == "survived"
    assert caught == [1, 1, 1]


@pytest.mark.unknot
def test_self_cancel_raises_at_next_blocking_call() -> None:
    reached: list[str] = []

    def selfcancel() -> None:
        me = unknot.current()
        assert me is not None
        me.cancel()
        reached.append("after cancel")  # cancel itself does not raise
        unknot.sleep(0)
        reached.append("unreachable")

    f = unknot.spawn(selfcancel)
    with pytest.raises(unknot.FiberCancelled):
        f.join()
    assert reached == ["after cancel"]


@pytest.mark.unknot
def test_done_callbacks() -> None:
    seen: list[unknot.Fiber] = []
    f = unknot.spawn(lambda: 1)
    f.add_done_callback(seen.append)
    removed: list[unknot.Fiber] = []
    f.add_done_callback(removed.append)
    f.remove_done_callback(removed.append)
    f.join()
    assert seen == [f]
    assert removed == []
    f.add_done_callback(seen.append)  # already finished: called at once
    assert seen == [f, f]


@pytest.mark.unknot
def test_failing_done_callback_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    def bad(_f: unknot.Fiber) -> None:
        raise RuntimeError("callback failed")

    f = unknot.spawn(lambda: 1)
    f.add_done_callback(bad)
    assert f.join() == 1
    assert any("done-callback" in r.getMessage() for r in caplog.records)


@pytest.mark.unknot
def test_failing_done_callback_on_a_finished_fiber_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    f = unknot.spawn(lambda: 1)
    f.join()
    f.add_done_callback(lambda fib: 1 / 0)  # called at once, and must not raise
    assert any(
        "done-callback" in r.getMessage() and r.exc_info and r.exc_info[0] is ZeroDivisionError
        for r in caplog.records
    )


# -- current ------------------------------------------------------------------------------------


def test_current_outside_fibers_is_none() -> None:
    assert unknot.current() is None


@pytest.mark.unknot
def test_current_inside_fibers() -> None:
    root = unknot.current()
    assert root is not None
    assert root.name == "root"
    f = unknot.spawn(unknot.current)
    assert f.join() is f
    assert unknot.current() is root


# -- sleep --------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_sleep_zero_yields() -> None:
    log: list[str] = []

    def other() -> None:
        log.append("other")

    unknot.spawn(other)
    log.append("before")
    unknot.sleep(0)
    log.append("after")
    assert log == ["before", "other", "after"]


@pytest.mark.unknot
def test_sleep_zero_round_robin() -> None:
    log: list[tuple[str, int]] = []

    def worker(tag: str) -> None:
        for i in range(3):
            log.append((tag, i))
            unknot.sleep(0)

    a = unknot.spawn(worker, "a")
    b = unknot.spawn(worker, "b")
    a.join()
    b.join()
    assert log == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]


@pytest.mark.unknot
def test_sleep_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        unknot.sleep(-1)
    with pytest.raises(ValueError):
        unknot.sleep(float("nan"))


def test_sleep_invalid_outside_fibers() -> None:
    with pytest.raises(ValueError):
        unknot.sleep(-0.5)


def test_sleep_outside_fibers_is_time_sleep() -> None:
    t0 = time.monotonic()
    unknot.sleep(0.01)
    assert time.monotonic() - t0 >= 0.009


@pytest.mark.unknot
def test_sleep_real_time_lower_bound() -> None:
    t0 = time.monotonic()
    unknot.sleep(0.05)
    assert time.monotonic() - t0 >= 0.049


@pytest.mark.unknot
def test_sleeps_run_concurrently(autojump_clock: MockClock) -> None:
    fibers = [unknot.spawn(unknot.sleep, 5) for _ in range(100)]
    for f in fibers:
        f.join()
    assert unknot.current_time() == pytest.approx(5)


@pytest.mark.unknot
def test_sleep_inf_until_cancelled(autojump_clock: MockClock) -> None:
    f = unknot.spawn(unknot.sleep, float("inf"))
    unknot.sleep(100)
    assert not f.done()
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join()


@pytest.mark.unknot
def test_checkpoint_functions() -> None:
    log: list[str] = []
    unknot.spawn(log.append, "other")
    unknot.checkpoint_if_cancelled()  # never switches
    assert log == []
    unknot.checkpoint()  # lets others run
    assert log == ["other"]
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(unknot.Cancelled):
            unknot.checkpoint_if_cancelled()
        with pytest.raises(unknot.Cancelled):
            unknot.checkpoint()
    assert scope.cancelled_caught is False  # we caught them ourselves


def test_checkpoint_outside_fiber() -> None:
    unknot.checkpoint_if_cancelled()  # harmless no-op
    with pytest.raises(unknot.NotInFiberError):
        unknot.checkpoint()


# -- ordering of many sleepers -------------------------------------------------------------------


@pytest.mark.unknot
def test_10000_fibers_sleeping_random_times_wake_in_order(autojump_clock: MockClock) -> None:
    rng = random.Random(1234)
    delays = [d / 1000 for d in rng.sample(range(1, 1_000_000), 10_000)]
    woke: list[float] = []

    def sleeper(d: float) -> None:
        unknot.sleep(d)
        woke.append(d)
        assert unknot.current_time() == pytest.approx(d)

    with unknot.TaskGroup() as tg:
        for d in delays:
            tg.spawn(sleeper, d)
    assert len(woke) == 10_000
    assert woke == sorted(delays)


@pytest.mark.unknot
def test_10000_fibers_sleeping_random_times_wake_in_order_real_clock() -> None:
    rng = random.Random(99)
    woke: list[tuple[float, float]] = []

    def sleeper(d: float) -> None:
        target = unknot.current_time() + d  # the hub computes the same deadline right after
        unknot.sleep(d)
        now = unknot.current_time()
        assert now >= target - 1e-6
        woke.append((target, now))

    with unknot.TaskGroup() as tg:
        for _ in range(10_000):
            tg.spawn(sleeper, rng.uniform(0, 0.3))
    assert len(woke) == 10_000
    targets = [t for t, _ in woke]
    # Deadlines fire in order. The slack covers the instant between our clock read and the hub's
    # (the OS may preempt us there on a busy machine).
    assert all(b >= a - 0.05 for a, b in zip(targets, targets[1:], strict=False))


# -- contextvars ---------------------------------------------------------------------------------

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


@pytest.mark.unknot
def test_contextvars_copied_into_fiber_and_changes_do_not_leak() -> None:
    var.set("parent value")

    def child() -> str:
        seen = var.get()
        var.set("child value")
        unknot.sleep(0)
        assert var.get() == "child value"
        return seen

    f = unknot.spawn(child)
    var.set("changed after spawn")  # the child got a copy at spawn time
    assert f.join() == "parent value"
    assert var.get() == "changed after spawn"


@pytest.mark.unknot
def test_contextvars_isolated_between_siblings() -> None:
    def child(v: str) -> str:
        var.set(v)
        unknot.sleep(0.001)
        unknot.sleep(0)
        return var.get()

    fibers = [unknot.spawn(child, f"v{i}") for i in range(20)]
    assert [f.join() for f in fibers] == [f"v{i}" for i in range(20)]
    assert var.get() == "unset"


@pytest.mark.unknot
def test_contextvars_in_taskgroup_children() -> None:
    var.set("group parent")
    results: list[str] = []
    with unknot.TaskGroup() as tg:
        tg.spawn(lambda: results.append(var.get()))
    assert results == ["group parent"]


def test_contextvars_in_root_fiber() -> None:
    token = var.set("outside run")
    try:

        def main() -> str:
            v = var.get()
            var.set("inside root")
            return v

        assert unknot.run(main) == "outside run"
        assert var.get() == "outside run"
    finally:
        var.reset(token)


# -- unretrieved exceptions are logged --------------------------------------------------------


def _spawn_failing_fiber() -> None:
    def doomed() -> None:
        raise ZeroDivisionError("never joined")

    unknot.spawn(doomed, name="doomed-fiber")  # spawn site: this function


def test_unjoined_fiber_exception_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def main() -> None:
        _spawn_failing_fiber()
        unknot.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
        gc.collect()
    records = [r for r in caplog.records if "doomed-fiber" in r.getMessage()]
    assert len(records) == 1
    rec = records[0]
    msg = rec.getMessage()
    assert "Unhandled exception" in msg
    assert __file__ in msg
    assert "_spawn_failing_fiber" in msg
    assert rec.exc_info is not None
    assert rec.exc_info[0] is ZeroDivisionError
    assert "doomed" in caplog.text  # the traceback names the fiber's function
    assert "ZeroDivisionError: never joined" in caplog.text


def test_joined_fiber_exception_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    def main() -> None:
        def fail() -> None:
            raise ZeroDivisionError("joined")

        f = unknot.spawn(fail, name="joined-fiber")
        with pytest.raises(ZeroDivisionError):
            f.join()

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
        gc.collect()
    assert not [r for r in caplog.records if "joined-fiber" in r.getMessage()]


# -- misc ----------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_blocking_call_in_hub_callback_is_refused() -> None:
    import asyncio

    errors: list[BaseException] = []
    done = unknot.Event()

    def cb() -> None:
        try:
            unknot.sleep(1)
        except BaseException as e:
            errors.append(e)
        done.set()

    asyncio.get_running_loop().call_soon(cb)
    done.wait()
    assert isinstance(errors[0], unknot.NotInFiberError)


def test_blocking_primitive_outside_fiber() -> None:
    with pytest.raises(unknot.NotInFiberError):
        unknot.Event().wait()


@pytest.mark.unknot
def test_fibers_stay_on_one_thread() -> None:
    me = threading.get_ident()
    fibers = [unknot.spawn(threading.get_ident) for _ in range(10)]
    assert {f.join() for f in fibers} == {me}


@pytest.mark.unknot
def test_deep_recursion_in_fiber() -> None:
    def depth(n: int) -> int:
        if n == 0:
            unknot.sleep(0)
            return 0
        return depth(n - 1) + 1

    assert unknot.spawn(depth, 500).join() == 500


@pytest.mark.unknot
def test_fiber_yielding_in_a_loop_does_not_starve_timers_or_io() -> None:
    import asyncio
    import socket

    stop = False

    def busy() -> None:
        while not stop:
            t = time.monotonic() + 0.01
            while time.monotonic() < t:  # CPU work between yields
                pass
            unknot.sleep(0)

    unknot.spawn(busy)
    unknot.sleep(0)
    t0 = time.monotonic()
    unknot.sleep(0.01)
    timer_latency = time.monotonic() - t0
    a, b = socket.socketpair()
    with a, b:
        ev = unknot.Event()
        asyncio.get_running_loop().call_soon(ev.set)
        b.send(b"x")
        t0 = time.monotonic()
        unknot.wait_readable(a, timeout=30)
        ev.wait()
        io_latency = time.monotonic() - t0
    stop = True
    # A handful of 10 ms slices each; a pass that re-ran the yielding fiber 256 times took 2.5 s.
    assert timer_latency < 1.0
    assert io_latency < 1.0


def test_an_error_nobody_waits_for_is_logged_when_the_fiber_dies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Logged at once, while the fiber object is still referenced (no garbage collection needed).
    seen_while_alive: list[bool] = []

    def main() -> None:
        def doomed() -> None:
            raise KeyError("nobody waits")

        f = unknot.spawn(doomed, name="lonely-fiber")
        unknot.sleep(0.01)  # it has died; we still hold it
        seen_while_alive.append(any("lonely-fiber" in r.getMessage() for r in caplog.records))
        with pytest.raises(KeyError):
            f.result()  # still there for whoever asks later

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
        gc.collect()
    assert seen_while_alive == [True]
    assert len([r for r in caplog.records if "lonely-fiber" in r.getMessage()]) == 1


def test_an_error_a_done_callback_or_coroutine_waits_for_is_not_logged_at_death(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[str] = []

    def main() -> None:
        def fails() -> None:
            raise KeyError("handled")

        f = unknot.spawn(fails, name="watched-fiber")
        f.add_done_callback(lambda fib: got.append(repr(fib.exception())))
        unknot.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
        gc.collect()
    assert got == ["KeyError('handled')"]
    assert not [r for r in caplog.records if "watched-fiber" in r.getMessage()]


def test_an_error_in_a_task_group_child_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    def main() -> None:
        def fails() -> None:
            raise KeyError("grouped")

        with pytest.raises(BaseExceptionGroup):
            with unknot.TaskGroup() as tg:
                tg.spawn(fails, name="grouped-fiber")

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
        gc.collect()
    assert not [r for r in caplog.records if "grouped-fiber" in r.getMessage()]


@pytest.mark.parametrize("nargs", [1, 2, 3, 4])
def test_a_running_fiber_keeps_no_tuple_of_its_spawn_arguments(nargs: int) -> None:
    # Fiber.run unpacks up to three positional arguments and lets go of their tuple: a fiber
    # waiting for hours holds only what its function holds (memory per idle connection).
    class Arg:
        pass

    holders: list[int] = []

    def target(*args: Arg) -> None:
        first = args[0]
        del args
        holders.append(sum(1 for r in gc.get_referrers(first) if type(r) is tuple))

    def main() -> None:
        f = unknot.spawn(target, *[Arg() for _ in range(nargs)])
        f.join()

    unknot.run(main)
    # beyond three positional arguments the call is fn(*args): spawn's tuple stays alive
    assert holders == [0 if nargs <= 3 else 1]


def test_hub_running_is_the_current_fiber_only_in_its_own_fibers() -> None:
    # `Hub.running` is what the sockets' fast path tests instead of ``fiber.hub is hub``: it
    # must be the current fiber in every fiber the hub resumes (started, woken by a value, by
    # an exception, by an fd), never another hub's fiber, and keep no finished fiber alive.
    import weakref

    from greenlet import getcurrent

    from unknot import socket as usocket

    seen: list[bool] = []

    def check() -> None:
        seen.append(unknot.current().hub.running is getcurrent())  # type: ignore[union-attr]

    def worker(ev: unknot.Event) -> None:
        check()  # just started
        ev.wait()
        check()  # woken with a value
        try:
            unknot.sleep(10)
        except unknot.Cancelled:
            check()  # woken by an exception
            raise

    other_hub: list[object] = []

    def in_thread() -> None:
        def main() -> None:
            other_hub.append(unknot.current().hub)  # type: ignore[union-attr]

        unknot.run(main)

    def main() -> None:
        hub = unknot.current().hub  # type: ignore[union-attr]
        check()
        ev = unknot.Event()
        with unknot.TaskGroup() as tg:
            f = tg.spawn(worker, ev)
            unknot.sleep(0)
            ev.set()
            unknot.sleep(0.01)
            f.cancel()
        a, b = usocket.socketpair()
        with a, b:
            reader = unknot.spawn(lambda: (a.recv(1), check()))
            unknot.sleep(0.01)
            b.sendall(b"x")  # woken by its fd
            reader.join()
        ref = weakref.ref(reader)
        del reader, f
        gc.collect()
        assert ref() is None  # the hub does not keep the finished fiber
        t = threading.Thread(target=in_thread)
        t.start()
        t.join()
        assert other_hub[0] is not hub
        assert other_hub[0].running is not getcurrent()  # type: ignore[attr-defined]
        check()

    unknot.run(main)
    assert seen == [True] * 6
