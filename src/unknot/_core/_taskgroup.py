"""`TaskGroup`: a with-block that owns the fibers spawned in it (a trio nursery)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from greenlet import getcurrent

from ._cancel import Cancelled, CancelScope, effectively_cancelled
from ._exceptions import DeadlockError
from ._fiber import FAILED, Fiber
from ._parking import ParkingLot


class TaskGroup:
    """Spawn fibers whose lifetime ends with the block::

        with unknot.TaskGroup() as tg:
            tg.spawn(fetch, 1)
            tg.spawn(fetch, 2)
        # both fibers have finished here

    Leaving the block waits for every child. If a child raises, the group cancels its other
    children and the body, waits for them to unwind, and raises an `ExceptionGroup` holding every
    error (the body's included). A `KeyboardInterrupt` or `SystemExit` out of a child, out of
    the body, or thrown into the wait for the children (Ctrl-C) cancels the others too, and
    comes out bare once they are gone, as from asyncio's TaskGroup: the first one wins, the
    other errors are dropped. `cancel` cancels the whole group. Cancelling the scope that
    encloses the group cancels the children too; a child's `Cancelled` is not an error.

    A deadlock while the group waits for its children (every fiber blocked: `DeadlockError`
    thrown into the wait) cancels them; if it comes again once they are cancelled (a child stuck
    in a shielded scope), the group stops waiting and the `DeadlockError` comes out, leaving
    the stuck children behind (`run` abandons them at its end).
    """

    def __init__(self) -> None:
        self._scope = CancelScope()
        self._children: set[Fiber] = set()
        self._errors: list[BaseException] = []
        # The first KeyboardInterrupt or SystemExit of a child, the body or the wait: raised
        # bare instead of the group's other errors (asyncio's TaskGroup does the same).
        self._base_error: BaseException | None = None
        self._owner: Fiber | None = None
        self._open = False
        self._closed = False
        self._idle = ParkingLot()  # the owner, waiting in __exit__ for the children

    @property
    def cancel_scope(self) -> CancelScope:
        """The `CancelScope` covering the body and every child."""
        return self._scope

    def cancel(self) -> None:
        """Cancel the body and every child; the block then exits without error."""
        self._scope.cancel()

    def spawn(
        self, fn: Callable[..., Any], /, *args: Any, name: str | None = None, **kwargs: Any
    ) -> Fiber:
        """Start ``fn(*args, **kwargs)`` as a child fiber of the group and return it.

        Allowed while the group is open, including from its children. As with `unknot.spawn`,
        ``fn`` is positional-only and ``name`` names the fiber (it is not passed on).
        """
        if not self._open or self._closed:
            raise RuntimeError("TaskGroup.spawn() called on a group that is not open")
        hub = self._scope._hub
        assert hub is not None
        f = hub.spawn(fn, args, kwargs, name, parent=self._scope)
        f._group = self
        if self._scope._children is None:
            self._scope._children = set()
        self._scope._children.add(f)
        self._children.add(f)
        return f

    def __enter__(self) -> TaskGroup:
        if self._open or self._closed:
            raise RuntimeError("a TaskGroup can only be entered once")
        self._scope.__enter__()
        self._owner = getcurrent()
        self._open = True
        return self

    def _child_finished(self, f: Fiber) -> None:
        self._children.discard(f)
        if f._state == FAILED:
            f._retrieved = True
            err = f._error
            assert err is not None
            self._errors.append(err)
            if self._base_error is None and isinstance(err, (KeyboardInterrupt, SystemExit)):
                self._base_error = err
            self._scope.cancel()
        if not self._children:
            self._idle.unpark_all()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is not None and not isinstance(exc, Cancelled):
            self._scope.cancel()  # the body failed: stop the children
            if self._base_error is None and isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self._base_error = exc
        interrupt = self._wait_for_children()
        self._closed = True
        base = self._base_error
        if base is not None:
            # Ctrl-C (in the root fiber's blocking call in the body, or in the wait for the
            # children), sys.exit() in the body or in a child: the first one comes out bare,
            # the way it would come without the group (and does from asyncio's), not in a group
            # that ``except KeyboardInterrupt`` would miss, and a child's ``sys.exit(3)`` keeps
            # its code. The other errors go (the body's shows as its ``__context__``, as in
            # asyncio: raised here, while the body's exception is being handled).
            self._base_error = None
            self._errors = []
            self._scope._exit(None)
            if base is exc:
                return False
            raise base
        errors = self._errors
        if exc is not None and not isinstance(exc, Cancelled):
            errors.insert(0, exc)
        body_cancel = exc if isinstance(exc, Cancelled) else None
        raised_here = False
        if exc is None and effectively_cancelled(self._scope):
            # The body finished, but the group was cancelled while it waited for the children
            # (a timeout around the group, say): leaving the group is a checkpoint, so the
            # cancellation comes out here, for the scope that owns it to catch.
            body_cancel, raised_here = Cancelled(), True
        swallowed = self._scope._exit(body_cancel)
        if interrupt is not None:
            raise interrupt
        if errors:
            raise BaseExceptionGroup("errors in TaskGroup children", errors)
        if raised_here and not swallowed:
            raise body_cancel  # type: ignore[misc]  # (set just above)
        return swallowed

    def _wait_for_children(self) -> BaseException | None:
        """Wait until every child finished, uncancellably (they are being cancelled instead).

        An exception thrown in (Ctrl-C, a `DeadlockError`) cancels the group; a
        `KeyboardInterrupt` or `SystemExit` is kept as the group's base error (if it is the
        first), another one is returned, to be raised once the children are gone. A
        `DeadlockError` that comes once the children were cancelled already ends the wait
        (with children left): nothing can ever wake them, and waiting again would only meet
        the next report of the same deadlock, for ever.
        """
        interrupt = None
        owner = self._owner
        assert owner is not None
        while self._children:
            try:
                self._idle.park(owner, cancellable=False, interruptible=True)
            except BaseException as e:  # noqa: B036 - re-raised after the children finish
                stuck = isinstance(e, DeadlockError) and effectively_cancelled(self._scope)
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    if self._base_error is None:
                        self._base_error = e
                elif interrupt is None:
                    interrupt = e
                self._scope.cancel()
                if stuck:
                    break
        return interrupt
