"""Structured cancellation: Cancelled, CancelScope, move_on_after, fail_after, shielding."""

from __future__ import annotations

import math

import pytest

import unknot
from unknot.testing import MockClock


def test_cancelled_is_base_exception_not_exception() -> None:
    assert issubclass(unknot.Cancelled, BaseException)
    assert not issubclass(unknot.Cancelled, Exception)
    assert str(unknot.Cancelled()) == "fiber cancelled"


@pytest.mark.unknot
def test_except_exception_does_not_swallow_cancelled() -> None:
    with unknot.CancelScope() as scope:
        scope.cancel()
        try:
            unknot.sleep(1)
        except Exception:  # must not catch Cancelled
            pytest.fail("Cancelled was caught by 'except Exception'")
    assert scope.cancelled_caught


# -- CancelScope basics ----------------------------------------------------------------------


@pytest.mark.unknot
def test_scope_cancel_from_inside() -> None:
    after: list[str] = []
    with unknot.CancelScope() as scope:
        scope.cancel()
        after.append("cancel() itself does not raise")
        unknot.sleep(1)
        after.append("unreachable")
    assert after == ["cancel() itself does not raise"]
    assert scope.cancel_called
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_scope_cancel_from_another_fiber_wakes_blocked_call(autojump_clock: MockClock) -> None:
    scope = unknot.CancelScope()
    log: list[str] = []

    def canceller() -> None:
        unknot.sleep(5)
        scope.cancel()

    unknot.spawn(canceller)
    with scope:
        try:
            unknot.sleep(3600)
        finally:
            log.append(f"finally at {unknot.current_time():.0f}")
    assert scope.cancelled_caught
    assert log == ["finally at 5"]


@pytest.mark.unknot
def test_uncancelled_scope() -> None:
    with unknot.CancelScope() as scope:
        unknot.sleep(0)
    assert not scope.cancel_called
    assert not scope.cancelled_caught
    assert scope.deadline == math.inf
    assert not scope.shield


@pytest.mark.unknot
def test_cancelled_is_level_triggered_inside_scope() -> None:
    raised = 0
    with unknot.CancelScope() as scope:
        scope.cancel()
        for _ in range(3):
            try:
                unknot.sleep(1)
            except unknot.Cancelled:
                raised += 1
        # after catching, the next blocking call raises again; this one escapes to the scope
        unknot.Event().wait()
    assert raised == 3
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_cancelled_scope_affects_every_blocking_primitive() -> None:
    lock = unknot.Lock()
    holder = unknot.spawn(lambda: (lock.acquire(), unknot.sleep(math.inf)))
    unknot.sleep(0)
    assert lock.locked()
    calls = [
        lambda: unknot.sleep(0),
        lambda: unknot.sleep(10),
        unknot.Event().wait,
        lock.acquire,
        unknot.Queue().get,
        unknot.Channel().recv,
        lambda: unknot.Semaphore(0).acquire(),
        lambda: unknot.spawn(unknot.sleep, 10).join(),
        unknot.checkpoint,
    ]
    for call in calls:
        with unknot.CancelScope() as scope:
            scope.cancel()
            call()
            pytest.fail(f"{call} did not raise Cancelled")
        assert scope.cancelled_caught
    holder.cancel()


@pytest.mark.unknot
def test_cancel_before_enter() -> None:
    scope = unknot.CancelScope()
    scope.cancel()
    assert scope.cancel_called
    reached: list[str] = []
    with scope:
        reached.append("body runs up to its first blocking call")
        unknot.sleep(1)
        reached.append("unreachable")
    assert reached == ["body runs up to its first blocking call"]
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_cancel_after_exit_is_harmless() -> None:
    with unknot.CancelScope() as scope:
        pass
    scope.cancel()
    scope.cancel()
    unknot.sleep(0)  # the fiber is not cancelled
    assert scope.cancel_called
    assert not scope.cancelled_caught


@pytest.mark.unknot
def test_scope_cannot_be_entered_twice() -> None:
    scope = unknot.CancelScope()
    with scope:
        pass
    with pytest.raises(RuntimeError, match="only be entered once"):
        with scope:
            pass


def test_scope_outside_fiber() -> None:
    with pytest.raises(RuntimeError, match="inside a fiber"):
        with unknot.CancelScope():
            pass


@pytest.mark.unknot
def test_scope_does_not_swallow_other_exceptions() -> None:
    with pytest.raises(KeyError):
        with unknot.CancelScope() as scope:
            scope.cancel()
            raise KeyError("x")
    assert not scope.cancelled_caught


@pytest.mark.unknot
def test_scope_exits_out_of_order() -> None:
    outer = unknot.CancelScope()
    inner = unknot.CancelScope()
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="out of order"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    outer.__exit__(None, None, None)


@pytest.mark.unknot
def test_cancellation_does_not_outlive_the_scope() -> None:
    with unknot.CancelScope() as scope:
        scope.cancel()
        unknot.sleep(1)
    for _ in range(3):
        unknot.sleep(0)  # no longer cancelled
    assert unknot.Event().wait(timeout=0.001) is False


# -- deadlines -----------------------------------------------------------------------------------


@pytest.mark.unknot
def test_deadline(autojump_clock: MockClock) -> None:
    with unknot.CancelScope(deadline=unknot.current_time() + 7) as scope:
        unknot.sleep(100)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(7)


@pytest.mark.unknot
def test_deadline_in_the_past_cancels_at_once(autojump_clock: MockClock) -> None:
    unknot.sleep(10)
    with unknot.CancelScope(deadline=unknot.current_time() - 1) as scope:
        assert scope.cancel_called
        unknot.sleep(1)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(10)


@pytest.mark.unknot
def test_deadline_extended_while_inside(autojump_clock: MockClock) -> None:
    with unknot.CancelScope(deadline=5) as scope:
        unknot.sleep(3)
        scope.deadline = 20
        assert scope.deadline == 20
        unknot.sleep(10)  # would have been cancelled at 5
        assert unknot.current_time() == pytest.approx(13)
        unknot.sleep(100)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(20)


@pytest.mark.unknot
def test_deadline_shortened_while_inside(autojump_clock: MockClock) -> None:
    with unknot.CancelScope(deadline=100) as scope:
        scope.deadline = 2
        unknot.sleep(50)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(2)


@pytest.mark.unknot
def test_deadline_removed_while_inside(autojump_clock: MockClock) -> None:
    with unknot.CancelScope(deadline=5) as scope:
        scope.deadline = math.inf
        unknot.sleep(50)
    assert not scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(50)


@pytest.mark.unknot
def test_deadline_changed_from_another_fiber(autojump_clock: MockClock) -> None:
    scope = unknot.CancelScope(deadline=1000)

    def shorten() -> None:
        unknot.sleep(3)
        scope.deadline = unknot.current_time()  # now: cancels at once

    unknot.spawn(shorten)
    with scope:
        unknot.sleep(500)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(3)


@pytest.mark.unknot
def test_deadline_set_before_enter(autojump_clock: MockClock) -> None:
    scope = unknot.CancelScope()
    scope.deadline = 4
    with scope:
        unknot.sleep(10)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(4)


# -- move_on_after / fail_after ------------------------------------------------------------------


@pytest.mark.unknot
def test_move_on_after_times_out_silently(autojump_clock: MockClock) -> None:
    with unknot.move_on_after(2) as scope:
        unknot.sleep(10)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(2)


@pytest.mark.unknot
def test_move_on_after_not_reached(autojump_clock: MockClock) -> None:
    with unknot.move_on_after(2) as scope:
        unknot.sleep(1)
    assert not scope.cancelled_caught
    assert not scope.cancel_called
    unknot.sleep(5)  # the expired deadline timer must not fire later
    assert unknot.current_time() == pytest.approx(6)


@pytest.mark.unknot
def test_move_on_after_real_clock() -> None:
    with unknot.move_on_after(0.02) as scope:
        unknot.Event().wait()
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_fail_after_raises_timeout_error(autojump_clock: MockClock) -> None:
    log: list[str] = []
    with pytest.raises(TimeoutError):
        with unknot.fail_after(3):
            try:
                unknot.sleep(10)
            finally:
                log.append("finally")
    assert log == ["finally"]
    assert unknot.current_time() == pytest.approx(3)


@pytest.mark.unknot
def test_fail_after_success(autojump_clock: MockClock) -> None:
    with unknot.fail_after(3) as scope:
        unknot.sleep(1)
    assert not scope.cancelled_caught


@pytest.mark.unknot
def test_fail_after_cancelled_by_hand_does_not_raise_timeout(autojump_clock: MockClock) -> None:
    with unknot.fail_after(30) as scope:
        scope.cancel()
        unknot.sleep(1)
    assert scope.cancelled_caught


@pytest.mark.unknot
def test_fail_after_cancelled_by_hand_then_cleanup_past_deadline_does_not_raise(
    autojump_clock: MockClock,
) -> None:
    # The explicit cancel() came first: leaving after the deadline time (a shielded cleanup
    # outlived it) is still a silent exit, not a TimeoutError.
    with unknot.fail_after(1) as scope:
        scope.cancel()
        try:
            unknot.sleep(10)
        finally:
            with unknot.CancelScope(shield=True):
                unknot.sleep(2)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(2)


@pytest.mark.unknot
def test_fail_after_deadline_moved_into_the_past_raises(autojump_clock: MockClock) -> None:
    with pytest.raises(TimeoutError):
        with unknot.fail_after(30) as scope:
            scope.deadline = unknot.current_time() - 1  # cancels at once: by the deadline
            unknot.sleep(10)


@pytest.mark.unknot
def test_fail_after_deadline_fired_then_cancel_still_raises(autojump_clock: MockClock) -> None:
    with pytest.raises(TimeoutError):
        with unknot.fail_after(1) as scope:
            try:
                unknot.sleep(10)
            finally:
                scope.cancel()  # after the deadline: changes nothing


@pytest.mark.unknot
def test_cancel_scope_rejects_a_nan_deadline() -> None:
    with pytest.raises(ValueError):
        unknot.CancelScope(deadline=float("nan"))
    with unknot.CancelScope() as scope:
        with pytest.raises(ValueError):
            scope.deadline = float("nan")
        assert scope.deadline == math.inf
        assert not scope.cancel_called
    assert not any(e[0] != e[0] for e in unknot.lowlevel.current_hub().timers)


@pytest.mark.unknot
def test_timeouts_reject_nan() -> None:
    with pytest.raises(ValueError):
        unknot.move_on_after(float("nan"))
    with pytest.raises(ValueError):
        unknot.fail_after(float("nan"))


# -- nesting -------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_nested_move_on_after_inner_fires(autojump_clock: MockClock) -> None:
    with unknot.move_on_after(10) as outer:
        with unknot.move_on_after(2) as inner:
            unknot.sleep(100)
        assert unknot.current_time() == pytest.approx(2)
        unknot.sleep(1)  # outer is not cancelled
        reached = True
    assert reached
    assert inner.cancelled_caught
    assert not outer.cancelled_caught
    assert not outer.cancel_called


@pytest.mark.unknot
def test_nested_move_on_after_outer_fires(autojump_clock: MockClock) -> None:
    after_inner: list[str] = []
    with unknot.move_on_after(2) as outer:
        with unknot.move_on_after(10) as inner:
            unknot.sleep(100)
        after_inner.append("unreachable: Cancelled passes through the inner scope")
    assert after_inner == []
    assert outer.cancelled_caught
    assert not inner.cancelled_caught
    assert not inner.cancel_called
    assert unknot.current_time() == pytest.approx(2)


@pytest.mark.unknot
def test_both_nested_scopes_cancelled_outer_catches(autojump_clock: MockClock) -> None:
    with unknot.CancelScope() as outer:
        with unknot.CancelScope() as inner:
            inner.cancel()
            outer.cancel()
            unknot.sleep(1)
    assert outer.cancelled_caught
    assert not inner.cancelled_caught


@pytest.mark.unknot
def test_three_levels_middle_fires(autojump_clock: MockClock) -> None:
    with unknot.move_on_after(30) as a:
        with unknot.move_on_after(5) as b:
            with unknot.move_on_after(20) as c:
                unknot.sleep(100)
        unknot.sleep(1)
    assert (a.cancelled_caught, b.cancelled_caught, c.cancelled_caught) == (False, True, False)
    assert unknot.current_time() == pytest.approx(6)


@pytest.mark.unknot
def test_fail_after_inside_cancelled_move_on_after(autojump_clock: MockClock) -> None:
    # The outer scope fires first: no TimeoutError from the inner fail_after.
    with unknot.move_on_after(1) as outer:
        with unknot.fail_after(5):
            unknot.sleep(10)
    assert outer.cancelled_caught


# -- shielding -----------------------------------------------------------------------------------


@pytest.mark.unknot
def test_shielded_scope_survives_parent_cancellation(autojump_clock: MockClock) -> None:
    log: list[str] = []
    with unknot.move_on_after(1) as outer:
        with unknot.CancelScope(shield=True) as shielded:
            unknot.sleep(5)  # outer's deadline passes meanwhile
            log.append(f"shielded sleep finished at {unknot.current_time():.0f}")
            unknot.sleep(0)
        log.append("after shield: the next blocking call raises")
        unknot.sleep(0)
        log.append("unreachable")
    assert log == ["shielded sleep finished at 5", "after shield: the next blocking call raises"]
    assert outer.cancelled_caught
    assert not shielded.cancelled_caught


@pytest.mark.unknot
def test_shielded_scope_survives_explicit_parent_cancel(autojump_clock: MockClock) -> None:
    outer = unknot.CancelScope()

    def cancel_soon() -> None:
        unknot.sleep(1)
        outer.cancel()

    unknot.spawn(cancel_soon)
    with outer:
        with unknot.CancelScope(shield=True):
            unknot.sleep(3)
            completed = unknot.current_time()
        unknot.sleep(100)
    assert completed == pytest.approx(3)
    assert outer.cancelled_caught


@pytest.mark.unknot
def test_shielded_scope_inside_cancelled_fiber(autojump_clock: MockClock) -> None:
    log: list[str] = []

    def worker() -> None:
        try:
            unknot.sleep(100)
        except unknot.Cancelled:
            with unknot.CancelScope(shield=True):
                unknot.sleep(2)  # cleanup that must block
                log.append("cleanup done")
            raise

    f = unknot.spawn(worker)
    unknot.sleep(1)
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join()
    assert log == ["cleanup done"]
    assert unknot.current_time() == pytest.approx(3)


@pytest.mark.unknot
def test_shield_does_not_block_own_cancellation(autojump_clock: MockClock) -> None:
    with unknot.move_on_after(2, shield=True) as scope:
        unknot.sleep(10)
    assert scope.cancelled_caught
    assert unknot.current_time() == pytest.approx(2)


@pytest.mark.unknot
def test_unshielding_delivers_pending_cancellation(autojump_clock: MockClock) -> None:
    outer = unknot.CancelScope()
    with outer:
        with unknot.CancelScope(shield=True) as shielded:

            def unshield_later() -> None:
                unknot.sleep(2)
                shielded.shield = False  # outer is cancelled: the sleeper must wake now

            outer.cancel()
            unknot.spawn(unshield_later)
            unknot.sleep(100)
    assert outer.cancelled_caught
    assert unknot.current_time() == pytest.approx(2)


@pytest.mark.unknot
def test_shield_set_while_inside(autojump_clock: MockClock) -> None:
    with unknot.move_on_after(1) as outer:
        with unknot.CancelScope() as inner:
            inner.shield = True
            assert inner.shield
            unknot.sleep(3)
            done = unknot.current_time()
        unknot.sleep(0)
    assert done == pytest.approx(3)
    assert outer.cancelled_caught


@pytest.mark.unknot
def test_shielded_group_children_survive(autojump_clock: MockClock) -> None:
    finished: list[str] = []
    with unknot.move_on_after(1) as outer:
        with unknot.CancelScope(shield=True):
            with unknot.TaskGroup() as tg:
                tg.spawn(lambda: (unknot.sleep(5), finished.append("child"))[0])
        assert outer.cancel_called and not outer.cancelled_caught  # no checkpoint yet
        unknot.sleep(0)
    assert finished == ["child"]
    assert outer.cancelled_caught


@pytest.mark.unknot
def test_many_scopes_cancellation_count_stays_consistent(autojump_clock: MockClock) -> None:
    # Many scopes cancelled and exited in various ways; afterwards nothing is cancelled.
    for i in range(200):
        with unknot.move_on_after(i % 3) as s:
            if i % 5 == 0:
                s.cancel()
            unknot.sleep(1)
    unknot.sleep(1)
    assert unknot.current().hub.ncancel == 0  # type: ignore[union-attr]
