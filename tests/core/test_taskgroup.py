"""TaskGroup: structured lifetimes, error propagation, cancellation of siblings."""

from __future__ import annotations

import math
import sys

import pytest

import unknot
from unknot.testing import MockClock


@pytest.mark.unknot
def test_waits_for_children(autojump_clock: MockClock) -> None:
    done: list[int] = []

    def child(n: int) -> int:
        unknot.sleep(n)
        done.append(n)
        return n * 10

    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(child, n) for n in (3, 1, 2)]
        assert done == []
    assert done == [1, 2, 3]
    assert [f.result() for f in fibers] == [30, 10, 20]
    assert unknot.current_time() == pytest.approx(3)  # concurrently, not 6 s


@pytest.mark.unknot
def test_empty_group() -> None:
    with unknot.TaskGroup():
        pass


@pytest.mark.unknot
def test_spawn_passes_args_kwargs_and_name() -> None:
    with unknot.TaskGroup() as tg:
        f = tg.spawn(lambda a, *, b: a + b, 1, b=2, name="child-x")
    assert f.name == "child-x"
    assert f.result() == 3


@pytest.mark.unknot
def test_child_failure_cancels_sibling_blocked_in_queue_get() -> None:
    q: unknot.Queue[int] = unknot.Queue()
    log: list[str] = []

    def sibling() -> None:
        try:
            q.get()
            log.append("unreachable")
        finally:
            log.append("sibling finally")

    def failing() -> None:
        unknot.sleep(0.01)
        raise ValueError("child failed")

    with pytest.raises(ExceptionGroup) as info:
        with unknot.TaskGroup() as tg:
            s = tg.spawn(sibling)
            tg.spawn(failing)
    assert log == ["sibling finally"]
    assert s.cancelled()
    assert len(info.value.exceptions) == 1
    assert isinstance(info.value.exceptions[0], ValueError)
    assert str(info.value.exceptions[0]) == "child failed"
    assert q.qsize() == 0 and not q._getters  # nothing left waiting


@pytest.mark.unknot
def test_child_failure_cancels_body(autojump_clock: MockClock) -> None:
    log: list[str] = []

    def failing() -> None:
        unknot.sleep(1)
        raise KeyError("k")

    with pytest.raises(ExceptionGroup) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(failing)
            try:
                unknot.sleep(100)
            finally:
                log.append(f"body finally at {unknot.current_time():.0f}")
    assert log == ["body finally at 1"]
    assert info.group_contains(KeyError)


@pytest.mark.unknot
def test_all_errors_collected_including_body() -> None:
    def fail(exc: Exception) -> None:
        unknot.sleep(0)
        raise exc

    with pytest.raises(ExceptionGroup) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(fail, ValueError("a"))
            tg.spawn(fail, TypeError("b"))
            unknot.sleep(0)  # let both start
            raise RuntimeError("body")
    errors = info.value.exceptions
    assert isinstance(errors[0], RuntimeError)  # the body's error comes first
    assert {type(e) for e in errors} == {RuntimeError, ValueError, TypeError}
    assert len(errors) == 3


@pytest.mark.unknot
def test_simultaneous_child_failures_all_reported() -> None:
    go = unknot.Event()

    def fail(i: int) -> None:
        go.wait()  # all five are woken at once and fail in the same pass
        raise ValueError(i)

    with pytest.raises(ExceptionGroup) as info:
        with unknot.TaskGroup() as tg:
            for i in range(5):
                tg.spawn(fail, i)
            unknot.sleep(0)
            go.set()
    assert sorted(e.args[0] for e in info.value.exceptions) == [0, 1, 2, 3, 4]


@pytest.mark.unknot
def test_body_error_cancels_children() -> None:
    log: list[str] = []

    def child() -> None:
        try:
            unknot.sleep(math.inf)
        finally:
            log.append("child finally")

    with pytest.raises(ExceptionGroup) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(child)
            unknot.sleep(0)
            raise OSError("body failed")
    assert log == ["child finally"]
    assert [type(e) for e in info.value.exceptions] == [OSError]


@pytest.mark.unknot
def test_child_errors_not_logged_as_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    import gc

    def fail() -> None:
        raise ValueError("reported via the group")

    with pytest.raises(ExceptionGroup):
        with unknot.TaskGroup() as tg:
            tg.spawn(fail, name="group-child")
    gc.collect()
    assert "group-child" not in caplog.text


@pytest.mark.unknot
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_or_system_exit_from_a_child_comes_out_bare(
    exc_type: type[BaseException],
) -> None:
    # As from asyncio's TaskGroup (and as from the body): the sibling and the body are
    # cancelled and waited for, then the child's exception comes out as it is. It used to come
    # out in a BaseExceptionGroup, which ``except KeyboardInterrupt`` misses.
    log: list[str] = []
    raised = exc_type()

    def sibling() -> None:
        try:
            unknot.sleep(3600)
        finally:
            log.append("sibling unwound")

    def fail() -> None:
        unknot.sleep(0)
        raise raised

    with pytest.raises(exc_type) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(sibling)
            tg.spawn(fail)
            try:
                unknot.sleep(3600)
            finally:
                log.append("body unwound")
    assert info.value is raised
    assert sorted(log) == ["body unwound", "sibling unwound"]


def test_sys_exit_in_a_child_keeps_its_code() -> None:
    def main() -> None:
        with unknot.TaskGroup() as tg:
            tg.spawn(unknot.sleep, 3600)
            tg.spawn(sys.exit, 3)

    with pytest.raises(SystemExit) as info:
        unknot.run(main)
    assert info.value.code == 3


def _raise_when_cancelled(exc: BaseException, log: list[str] | None = None) -> None:
    try:
        unknot.sleep(3600)
    except unknot.Cancelled:
        if log is not None:
            log.append(f"raising {exc!r}")
        raise exc from None


@pytest.mark.unknot
def test_the_first_keyboard_interrupt_or_system_exit_wins_the_other_errors_go() -> None:
    # asyncio's rule (checked on 3.11 and 3.13): the first KeyboardInterrupt or SystemExit
    # comes out, whoever raised it; later ones and every ordinary error are dropped. The
    # body's exception is the one's __context__ (raised while the body's is handled).
    first = SystemExit(3)
    log: list[str] = []

    def exits() -> None:
        unknot.sleep(0)
        raise first

    body_error = ValueError("body, on its cancellation")
    with pytest.raises(SystemExit) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(_raise_when_cancelled, ValueError("sibling"), log)
            tg.spawn(_raise_when_cancelled, KeyboardInterrupt(), log)
            tg.spawn(exits)
            try:
                unknot.sleep(3600)
            except unknot.Cancelled:
                raise body_error from None
    assert info.value is first
    assert sorted(log) == ["raising KeyboardInterrupt()", "raising ValueError('sibling')"]
    assert info.value.__context__ is body_error


@pytest.mark.unknot
def test_a_keyboard_interrupt_of_the_body_beats_a_later_system_exit_of_a_child() -> None:
    raised = KeyboardInterrupt()
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(_raise_when_cancelled, SystemExit(3), log)
            unknot.sleep(0)
            raise raised
    assert info.value is raised
    assert log == ["raising SystemExit(3)"]


@pytest.mark.unknot
def test_a_system_exit_of_a_child_beats_a_later_keyboard_interrupt_of_the_body() -> None:
    first = SystemExit(3)

    def exits() -> None:
        raise first

    # (BaseException: were the KeyboardInterrupt to come out instead, it would stop pytest.)
    with pytest.raises(BaseException) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(exits)
            try:
                unknot.sleep(3600)
            except unknot.Cancelled:
                raise KeyboardInterrupt from None
    assert info.value is first
    assert isinstance(info.value.__context__, KeyboardInterrupt)


@pytest.mark.unknot
def test_a_base_exception_of_a_child_beats_the_body_error_that_cancelled_it() -> None:
    # The body fails first (its error would go in an ExceptionGroup); a child raises SystemExit
    # while it is cancelled: that comes out, as in asyncio, with the body's error as context.
    body_error = ValueError("body")
    with pytest.raises(SystemExit) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(_raise_when_cancelled, SystemExit(3))
            unknot.sleep(0)
            raise body_error
    assert info.value.code == 3
    assert info.value.__context__ is body_error


@pytest.mark.unknot
def test_pool_child_system_exit_comes_out_bare() -> None:
    # A Pool's with-block is a TaskGroup: the same rule.
    with pytest.raises(SystemExit) as info:
        with unknot.Pool(2) as pool:
            pool.spawn(unknot.sleep, 3600)
            pool.spawn(sys.exit, 4)
    assert info.value.code == 4


@pytest.mark.unknot
@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_or_system_exit_from_the_body_comes_out_bare(
    exc_type: type[BaseException],
) -> None:
    # As from asyncio's TaskGroup: the children are cancelled and waited for, then the body's
    # exception comes out as it is, for ``except KeyboardInterrupt`` to catch (it used to come
    # out in a BaseExceptionGroup; Ctrl-C in the wait for the children came out bare).
    log: list[str] = []

    def child() -> None:
        try:
            unknot.sleep(3600)
        finally:
            log.append("child unwound")

    raised = exc_type()
    with pytest.raises(exc_type) as info:
        with unknot.TaskGroup() as tg:
            tg.spawn(child)
            unknot.sleep(0)
            raise raised
    assert info.value is raised
    assert type(info.value) is exc_type
    assert log == ["child unwound"]


@pytest.mark.unknot
def test_cancel_group(autojump_clock: MockClock) -> None:
    log: list[str] = []

    def child(i: int) -> None:
        try:
            unknot.sleep(100)
        finally:
            log.append(f"child {i}")

    with unknot.TaskGroup() as tg:
        for i in range(3):
            tg.spawn(child, i)
        unknot.sleep(1)
        tg.cancel()
        log.append("body continues until its next blocking call")
        unknot.sleep(1)
        log.append("unreachable")
    assert log[0] == "body continues until its next blocking call"
    assert sorted(log[1:]) == ["child 0", "child 1", "child 2"]
    assert tg.cancel_scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(1)


@pytest.mark.unknot
def test_cancel_group_from_child() -> None:
    def canceller(tg: unknot.TaskGroup) -> None:
        unknot.sleep(0.001)
        tg.cancel()

    with unknot.TaskGroup() as tg:
        waiter = tg.spawn(unknot.Event().wait)
        tg.spawn(canceller, tg)
    assert waiter.cancelled()


@pytest.mark.unknot
def test_spawn_after_close_errors() -> None:
    with unknot.TaskGroup() as tg:
        pass
    with pytest.raises(RuntimeError, match="not open"):
        tg.spawn(lambda: None)


@pytest.mark.unknot
def test_spawn_before_enter_errors() -> None:
    tg = unknot.TaskGroup()
    with pytest.raises(RuntimeError, match="not open"):
        tg.spawn(lambda: None)


@pytest.mark.unknot
def test_group_cannot_be_entered_twice() -> None:
    tg = unknot.TaskGroup()
    with tg:
        pass
    with pytest.raises(RuntimeError, match="entered once"):
        with tg:
            pass


@pytest.mark.unknot
def test_children_can_spawn_siblings(autojump_clock: MockClock) -> None:
    results: list[int] = []

    def spawner(tg: unknot.TaskGroup, depth: int) -> None:
        unknot.sleep(1)
        results.append(depth)
        if depth < 4:
            tg.spawn(spawner, tg, depth + 1)

    with unknot.TaskGroup() as tg:
        tg.spawn(spawner, tg, 0)
    assert results == [0, 1, 2, 3, 4]
    assert unknot.current_time() == pytest.approx(5)


@pytest.mark.unknot
def test_nested_groups_inner_failure_propagates() -> None:
    log: list[str] = []

    def outer_sibling() -> None:
        try:
            unknot.sleep(math.inf)
        finally:
            log.append("outer sibling cancelled")

    def inner_failure() -> None:
        unknot.sleep(0.001)
        raise ValueError("inner")

    def inner_group() -> None:
        with unknot.TaskGroup() as inner:
            inner.spawn(inner_failure)
            inner.spawn(unknot.sleep, math.inf)

    with pytest.raises(ExceptionGroup) as info:
        with unknot.TaskGroup() as outer:
            outer.spawn(outer_sibling)
            outer.spawn(inner_group)
    assert log == ["outer sibling cancelled"]
    (nested,) = info.value.exceptions
    assert isinstance(nested, ExceptionGroup)
    assert isinstance(nested.exceptions[0], ValueError)


@pytest.mark.unknot
def test_nested_groups_outer_cancel_reaches_grandchildren(autojump_clock: MockClock) -> None:
    log: list[str] = []

    def grandchild() -> None:
        try:
            unknot.sleep(math.inf)
        finally:
            log.append("grandchild")

    def child() -> None:
        with unknot.TaskGroup() as inner:
            inner.spawn(grandchild)
            inner.spawn(grandchild)

    with unknot.TaskGroup() as outer:
        outer.spawn(child)
        unknot.sleep(1)
        outer.cancel()
    assert log == ["grandchild", "grandchild"]


@pytest.mark.unknot
def test_children_cancelled_when_enclosing_scope_cancelled(autojump_clock: MockClock) -> None:
    log: list[str] = []

    def child() -> None:
        try:
            unknot.sleep(100)
        finally:
            log.append(f"child cancelled at {unknot.current_time():.0f}")

    with unknot.move_on_after(3) as scope:
        with unknot.TaskGroup() as tg:
            tg.spawn(child)
            tg.spawn(child)
        unknot.sleep(1)  # exiting the group is not a checkpoint; this is
    assert scope.cancelled_caught
    assert not tg.cancel_scope.cancelled_caught
    assert log == ["child cancelled at 3", "child cancelled at 3"]


@pytest.mark.unknot
def test_children_spawned_in_cancelled_scope_never_block(autojump_clock: MockClock) -> None:
    started: list[int] = []
    with unknot.CancelScope() as scope:
        scope.cancel()
        with unknot.TaskGroup() as tg:
            f = tg.spawn(started.append, 1)
        unknot.sleep(1)
    assert started == []  # cancelled before it started
    assert f.cancelled()
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_child_cancelled_individually_is_not_an_error() -> None:
    with unknot.TaskGroup() as tg:
        a = tg.spawn(unknot.sleep, math.inf)
        b = tg.spawn(lambda: "ok")
        unknot.sleep(0)
        a.cancel()
    assert a.cancelled()
    assert b.result() == "ok"


@pytest.mark.unknot
def test_child_failure_while_sibling_unwinds_in_shield(autojump_clock: MockClock) -> None:
    log: list[str] = []

    def slow_cleanup() -> None:
        try:
            unknot.sleep(100)
        finally:
            with unknot.CancelScope(shield=True):
                unknot.sleep(5)
            log.append(f"cleanup done at {unknot.current_time():.0f}")

    def fail() -> None:
        unknot.sleep(1)
        raise ValueError

    with pytest.raises(ExceptionGroup):
        with unknot.TaskGroup() as tg:
            tg.spawn(slow_cleanup)
            tg.spawn(fail)
    assert log == ["cleanup done at 6"]  # the group waited for the slow sibling


@pytest.mark.unknot
def test_group_is_not_cancelled_after_success() -> None:
    with unknot.TaskGroup() as tg:
        tg.spawn(unknot.sleep, 0.001)
    assert not tg.cancel_scope.cancel_called
    unknot.sleep(0)  # still fine afterwards


@pytest.mark.unknot
def test_cancelling_the_fiber_that_owns_a_group(autojump_clock: MockClock) -> None:
    log: list[str] = []

    def child(i: int) -> None:
        try:
            unknot.sleep(100)
        finally:
            log.append(f"child {i} at {unknot.current_time():.0f}")

    def owner() -> None:
        with unknot.TaskGroup() as tg:
            tg.spawn(child, 1)
            tg.spawn(child, 2)
        # Leaving the group is a checkpoint (as in trio): the owner was cancelled while it waited
        # for its children, so the Cancelled comes out of the with-block here.
        log.append("unreachable")

    f = unknot.spawn(owner)
    unknot.sleep(3)  # the owner is now waiting in the group's exit for its children
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join()
    assert sorted(log[:2]) == ["child 1 at 3", "child 2 at 3"]
    assert log[2:] == []


# -- a timeout around a group waiting for its children (issue: timeouts that never go missing) --


def _job(i: int) -> int:
    unknot.sleep(0.01 * i)
    return i


@pytest.mark.unknot
def test_fail_after_around_a_group_waiting_for_its_children(autojump_clock: MockClock) -> None:
    # The body is done at once; the deadline passes while __exit__ waits for the children.
    with pytest.raises(TimeoutError):
        with unknot.fail_after(0.025) as scope:
            with unknot.TaskGroup() as tg:
                fibers = [tg.spawn(_job, i) for i in range(5)]
    assert scope.cancelled_caught
    assert [f.result() for f in fibers[:3]] == [0, 1, 2]
    assert all(f.cancelled() for f in fibers[3:])


@pytest.mark.unknot
def test_move_on_after_around_a_group_waiting_for_its_children(autojump_clock: MockClock) -> None:
    reached = []
    with unknot.move_on_after(0.025) as scope:
        with unknot.TaskGroup() as tg:
            for i in range(5):
                tg.spawn(_job, i)
        reached.append("after the group")  # not reached: the scope was cancelled
    assert scope.cancelled_caught
    assert reached == []
    unknot.sleep(0)  # the scope is gone: nothing is cancelled any more


@pytest.mark.unknot
def test_group_cancelled_by_itself_while_waiting_exits_quietly(autojump_clock: MockClock) -> None:
    def canceller(tg: unknot.TaskGroup) -> None:
        unknot.sleep(1)
        tg.cancel()

    with unknot.TaskGroup() as tg:
        tg.spawn(unknot.sleep, 100)
        tg.spawn(canceller, tg)
    assert tg.cancel_scope.cancelled_caught  # its own cancellation, caught by itself
    unknot.sleep(0)


@pytest.mark.unknot
def test_a_child_error_passes_through_an_enclosing_timeout(autojump_clock: MockClock) -> None:
    def fails() -> None:
        unknot.sleep(0.01)
        raise ValueError("boom")

    with pytest.raises(BaseExceptionGroup) as info:
        with unknot.move_on_after(0.05) as scope:
            with unknot.TaskGroup() as tg:
                tg.spawn(unknot.sleep, 100)
                tg.spawn(fails)
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert not scope.cancelled_caught
