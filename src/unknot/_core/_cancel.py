"""Structured, level-triggered cancellation (trio's semantics).

Cancellation state forms a tree of *nodes*. A node is either a `CancelScope` or a `Fiber` (every
fiber is the root node of its own scopes). A fiber's innermost node is ``fiber._scope``; walking
``_parent`` links outward reaches the fiber itself, then, for a fiber spawned in a `TaskGroup`, the
group's scope in the parent fiber, and so on. A fiber is *effectively cancelled* when a node on
that walk has been cancelled before a shielded node is met.

Level-triggered: while a fiber is effectively cancelled, every blocking call raises `Cancelled`.
Catching it does not un-cancel; only leaving the cancelled scope does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

if TYPE_CHECKING:
    from types import TracebackType

    from ._fiber import Fiber
    from ._hub import Hub


class Cancelled(BaseException):
    """Raised at a blocking call inside a cancelled `CancelScope`, `TaskGroup` or fiber.

    It derives from `BaseException` so that ``except Exception`` does not swallow it. Let it
    propagate: the scope that was cancelled catches it when it exits.
    """

    def __str__(self) -> str:
        return "fiber cancelled"


def effectively_cancelled(node: Any) -> bool:
    """True if a cancelled node is reachable from ``node`` before a shielded one."""
    while node is not None:
        if node._cancel_called:
            return True
        if node._shield:
            return False
        node = node._parent
    return False


def deliver_cancel(hub: Hub, node: Any) -> None:
    """Wake, with `Cancelled`, every parked fiber whose innermost node is in ``node``'s subtree.

    Shielded subtrees are skipped, and so are subtrees already cancelled (they were delivered when
    they were cancelled). A fiber that is running or already woken meets the cancellation at its
    next blocking call instead.
    """
    stack = [node]
    while stack:
        n = stack.pop()
        owner = n._owner
        if owner is not None and owner._scope is n and owner._parked == 1:
            hub.throw(owner, Cancelled())
        children = n._children
        if children:
            stack.extend(c for c in children if not c._shield and not c._cancel_called)


# -- the hub's count of cancellations in force (`Hub.ncancel`): changed only here ---------------


def count_cancellations(hub: Hub, delta: int) -> None:
    """Add ``delta`` to ``hub.ncancel``. While it is nonzero the I/O budget is held at 0, so
    that every blocking I/O call's entry takes the slow path, which checks for cancellation
    (`Hub.IO_STREAK_MAX`); once it is back to 0 the budget is full again."""
    n = hub.ncancel + delta
    hub.ncancel = n
    if n:
        hub.io_budget = hub.io_budget_full = 0
    else:
        hub.io_budget = hub.io_budget_full = type(hub).IO_STREAK_MAX


def cancel_fiber(hub: Hub, fiber: Fiber) -> None:
    """Cancel a running ``fiber``: counted until it finishes (`fiber_finished`), then delivered."""
    fiber._cancel_called = 2
    count_cancellations(hub, 1)
    deliver_cancel(hub, fiber)


def fiber_finished(hub: Hub, fiber: Fiber) -> None:
    """``fiber`` ended: a cancellation it carried is no longer in force."""
    if fiber._cancel_called == 2:
        count_cancellations(hub, -1)


def checkpoint_cancel(fiber: Fiber) -> None:
    """Raise `Cancelled` if ``fiber`` is effectively cancelled."""
    if fiber.hub.ncancel and effectively_cancelled(fiber._scope):
        raise Cancelled()


class CancelScope:
    """A with-block whose blocking calls can be cancelled together.

    ``cancel()`` (from anywhere on the same hub) or reaching ``deadline`` (a time on the hub's
    clock, see `current_time`) cancels the block: every blocking call inside it, including in
    fibers spawned by `TaskGroup` s inside it, raises `Cancelled` until the block exits. The scope
    swallows its own `Cancelled` on exit and sets ``cancelled_caught``.

    ``shield=True`` protects the block from the cancellation of enclosing scopes (not from its own
    ``cancel()`` or deadline).

    A scope can be entered once, by one fiber.
    """

    __slots__ = (
        "_owner",
        "_parent",
        "_children",
        "_cancel_called",
        "_shield",
        "_deadline",
        "_timer",
        "_by_deadline",
        "_hub",
        "_active",
        "_entered",
        "cancelled_caught",
    )

    def __init__(self, *, deadline: float = math.inf, shield: bool = False) -> None:
        self._owner: Fiber | None = None
        self._parent: Any = None
        self._children: set[Any] | None = None
        self._cancel_called = False
        self._shield = shield
        self._deadline = _deadline_arg(deadline)
        self._timer: Any = None
        self._by_deadline = False  # whether the deadline (not `cancel`) cancelled the scope
        self._hub: Hub | None = None
        self._active = False
        self._entered = False
        #: True once the scope has caught a `Cancelled` on exit.
        self.cancelled_caught = False

    # -- public properties -------------------------------------------------------------------

    @property
    def deadline(self) -> float:
        """Absolute time (hub clock) at which the scope cancels itself; ``inf`` for never."""
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._deadline = _deadline_arg(value)
        if self._active:
            self._arm_deadline()

    @property
    def shield(self) -> bool:
        """Whether cancellation of enclosing scopes is kept out of this block."""
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        value = bool(value)
        if value == self._shield:
            return
        self._shield = value
        if not value and self._active and self._hub is not None:
            if effectively_cancelled(self._parent):
                deliver_cancel(self._hub, self)

    @property
    def cancel_called(self) -> bool:
        """Whether `cancel` was called or the deadline passed."""
        return self._cancel_called

    def cancel(self) -> None:
        """Cancel the block. Idempotent; allowed before the block is entered and after it exits."""
        if self._cancel_called:
            return
        self._cancel_called = True
        if self._active and self._hub is not None:
            count_cancellations(self._hub, 1)
            if self._timer is not None:
                self._hub.cancel_timer(self._timer)
                self._timer = None
            deliver_cancel(self._hub, self)

    # -- with-block --------------------------------------------------------------------------

    def __enter__(self) -> CancelScope:
        fiber = getcurrent()
        hub = getattr(fiber, "hub", None)
        if hub is None or not hasattr(fiber, "_scope"):
            raise RuntimeError(
                "CancelScope must be entered inside a fiber: start one with unknot.run(main)"
            )
        if self._entered:
            raise RuntimeError("a CancelScope can only be entered once")
        self._entered = True
        self._hub = hub
        self._owner = fiber
        parent = fiber._scope
        self._parent = parent
        if parent._children is None:
            parent._children = set()
        parent._children.add(self)
        fiber._scope = self
        self._active = True
        if self._cancel_called:
            count_cancellations(hub, 1)
        else:
            self._arm_deadline()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._exit(exc)

    def _exit(self, exc: BaseException | None) -> bool:
        """Leave the block; return True if ``exc`` (our own `Cancelled`) is swallowed."""
        hub = self._hub
        owner = self._owner
        assert hub is not None and owner is not None
        if owner._scope is not self:
            raise RuntimeError("CancelScopes exited out of order")
        self._active = False
        owner._scope = self._parent
        if self._parent._children is not None:
            self._parent._children.discard(self)
        if self._timer is not None:
            hub.cancel_timer(self._timer)
            self._timer = None
        if self._cancel_called:
            count_cancellations(hub, -1)
        if exc is None or not self._cancel_called:
            return False
        if effectively_cancelled(self._parent):
            return False  # an enclosing scope is cancelled too: let it catch the Cancelled
        if isinstance(exc, Cancelled):
            self.cancelled_caught = True
            return True
        if isinstance(exc, BaseExceptionGroup):
            matched, rest = exc.split(Cancelled)
            if matched is not None:
                self.cancelled_caught = True
                if rest is None:
                    return True
                raise rest from None
        return False

    def _arm_deadline(self) -> None:
        hub = self._hub
        assert hub is not None
        if self._timer is not None:
            hub.cancel_timer(self._timer)
            self._timer = None
        if self._cancel_called or self._deadline == math.inf:
            return
        if self._deadline <= hub.time():
            self._by_deadline = True
            self.cancel()
        else:
            self._timer = hub.add_timer(self._deadline, _deadline_reached, self)

    def __repr__(self) -> str:
        state = "cancelled" if self._cancel_called else "active" if self._active else "idle"
        return f"<CancelScope {state} deadline={self._deadline} shield={self._shield}>"


def _deadline_reached(scope: CancelScope) -> None:
    scope._timer = None
    if not scope._cancel_called:
        scope._by_deadline = True
        scope.cancel()


def _deadline_arg(value: float) -> float:
    deadline = float(value)
    if deadline != deadline:  # (a NaN deadline would break the hub's timer heap)
        raise ValueError("a CancelScope's deadline must not be NaN")
    return deadline


class TimeoutScope(CancelScope):
    """The scope returned by `fail_after`: raises `TimeoutError` if its deadline cancelled it
    (not if an explicit `cancel` came first, even when the block leaves after the deadline)."""

    __slots__ = ()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        handled = self._exit(exc)
        if self.cancelled_caught and self._by_deadline:
            raise TimeoutError("operation did not finish before its deadline") from None
        return handled
