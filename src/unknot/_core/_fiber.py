"""`Fiber`: a greenlet that runs one function on a hub, with an outcome others can wait for."""

from __future__ import annotations

import _thread
import asyncio
import logging
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final, SupportsFloat

from greenlet import GreenletExit, getcurrent, greenlet

from ._cancel import Cancelled, cancel_fiber, effectively_cancelled
from ._parking import TIMED_OUT, ParkingLot
from ._stacks import PACKAGE_PREFIX
from ._timers import timeout_seconds

if TYPE_CHECKING:
    from ._hub import Hub

log = logging.getLogger("unknot")

# unknot's own directory: frames in it are skipped when recording where a fiber was spawned.

#: Debug mode (`unknot.set_debug`): the stack each live fiber was spawned from, else None.
SPAWN_STACKS: weakref.WeakKeyDictionary[Any, traceback.StackSummary] | None = None

#: Spawn sites, ``(filename, lineno, function)``, by spawning call ``(id(code), f_lasti)``, with
#: the code object (kept so that a reused id is never taken for it): one tuple per call, shared
#: by the fibers spawned there (a server spawns thousands from one call), and a frame's line
#: number, which walks its code's line table (about 3,000 instructions), computed once per call.
#: Cleared when it grows past `_SITES_MAX` (code made at run time could make calls without end).
_SITE_OF_CALL: dict[tuple[int, int], tuple[Any, tuple[str, int, str]]] = {}
_SITES_MAX = 4096

#: `Fiber._name_arg` when the name is not a template (see `Fiber.name`).
_NO_ARG: Any = object()

#: How often, in seconds, a fiber or thread waiting for the hub of another thread
#: (`wait_elsewhere`: `Fiber.join`, `from_thread`) looks whether that hub was closed with the
#: wait unfinished: nothing would tell it otherwise.
_CLOSED_POLL = 1.0
#: The OS's lock, taken before `unknot.patch` can replace ``_thread``'s: a thread outside any
#: fiber blocks on one in `Fiber.join`, and must not depend on what the patch installs.
_allocate_lock: Final = _thread.allocate_lock

# Fiber._state values
PENDING, RUNNING, DONE, FAILED, CANCELLED = range(5)

# Fiber._parked values: how a fiber is parked (`Hub.park`), which says what may wake it early.
# Final: the compiled modules use the numbers themselves (no look-up of the name at each use).
#: Running, or ready to run: every wake-up finds it "not parked" and does nothing.
NOT_PARKED: Final = 0
#: Parked in a checkpoint: cancellation (and, in the root fiber, Ctrl-C) throws into it.
PARKED_CANCELLABLE: Final = 1
#: Parked in a wait that must finish (re-acquiring a lock, a batched send): only its own waker.
PARKED_SHIELDED: Final = 2
#: Parked uncancellably, but Ctrl-C may still be thrown in (a TaskGroup waiting for children).
PARKED_INTERRUPTIBLE: Final = 3


class FiberCancelled(Exception):
    """Raised by `Fiber.join` and `Fiber.result` for a fiber that was cancelled.

    An ordinary `Exception` (unlike `Cancelled`) so the joiner can catch it without being affected
    by cancellation rules.
    """


class Fiber(greenlet):
    """A lightweight thread of execution: a greenlet run by the hub.

    Create fibers with `spawn` or `TaskGroup.spawn`, not directly. A fiber runs its function until
    the function returns or raises; every blocking call inside it suspends only this fiber.
    A `Fiber` is awaitable from asyncio code: ``result = await fiber``.
    """

    __slots__ = (
        "hub",
        "_start",
        "_name",
        "_name_arg",
        "_state",
        "_result",
        "_joiners",
        "_callbacks",
        "_scope",
        "_parent",
        "_children",
        "_cancel_called",
        "_parked",
        "_lot",
        "_wake_value",
        "_group",
        "_spawned_at",
        "_retrieved",
        "_since",
        "_wait_began",
    )

    #: When its latest timed `Hub.park` began (hub clock); set only there, read by dumps.
    _wait_began: float

    # A fiber is the root node of its own cancel scopes (see _cancel.py); it is never shielded.
    _shield = False

    @property
    def _owner(self) -> Fiber:
        return self

    @property
    def _error(self) -> BaseException | None:
        """The exception it raised, or None. (Kept in ``_result`` with its traceback as it
        was raised, ``(exc, tb)``: no slot of its own in every fiber.)"""
        return self._result[0] if self._state == FAILED else None

    def __init__(
        self,
        hub: Hub,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        parent: Any,
        parent_glet: greenlet,
        name_arg: Any = _NO_ARG,
    ) -> None:
        # The greenlet runs one shared function, not a bound method: greenlet would make a
        # bound `run` per fiber (64 bytes) and call it through C frames its stack copy keeps
        # (about 150 bytes) for as long as the fiber lives ("Memory per idle connection").
        greenlet.__init__(self, _fiber_main, parent_glet)
        self.hub = hub
        # (fn, args, kwargs) until it starts: one slot, not three (a slot is 8 bytes per fiber)
        self._start: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = (
            fn,
            args,
            kwargs,
        )
        self._name = name
        self._name_arg = name_arg  # (with a template in _name: see `name`)
        self._state = PENDING
        self._result: Any = None  # the return value; (exception, traceback) once FAILED
        self._joiners: ParkingLot | None = None  # fibers in join(), made on first use
        # add_done_callback's: None, one callable, or a list of them (no list for the one
        # callback most fibers get)
        self._callbacks: Any = None
        self._scope: Any = self
        self._parent = parent
        self._children: set[Any] | None = None
        self._cancel_called = 0
        self._parked = NOT_PARKED
        # The ParkingLot whose queue holds it, or None (see _parking). Typed Any: the compiled
        # ParkingLot.park sets it, parks, and reads it again; a union type would be narrowed
        # by the assignment, and the compiled read would refuse the None another fiber put.
        self._lot: Any = None
        # What the blocking call it parks in returns, or a `Raise` (set by whoever wakes it).
        self._wake_value: Any = None
        self._group: Any = None
        # Whether its error was retrieved: False, True, or `_LOGGED` (see `unretrieved_error`).
        self._retrieved: int = False
        self._since: float | None = None  # about when it last parked (`_monitor.EPOCH`)
        f: Any = sys._getframe(1)
        while f.f_back is not None and f.f_code.co_filename.startswith(PACKAGE_PREFIX):
            f = f.f_back
        code = f.f_code
        call = (id(code), f.f_lasti)
        known = _SITE_OF_CALL.get(call)
        if known is not None and known[0] is code:
            self._spawned_at = known[1]
        else:
            if len(_SITE_OF_CALL) >= _SITES_MAX:
                _SITE_OF_CALL.clear()
            site = (code.co_filename, f.f_lineno, code.co_name)
            _SITE_OF_CALL[call] = (code, site)
            self._spawned_at = site
        if SPAWN_STACKS is not None:  # debug mode: the whole stack (costly), for dumps
            stack = traceback.StackSummary.extract(traceback.walk_stack(f), lookup_lines=False)
            stack.reverse()  # (source lines are read when the stack is printed)
            SPAWN_STACKS[self] = stack

    def _log_unhandled(self) -> None:
        err = self._error
        if isinstance(err, asyncio.CancelledError):
            # A cancellation, not an error: the task the fiber awaited (`await_`) was cancelled,
            # as asyncio's runners do to every task on their way out. asyncio does not report a
            # task that ends so either. The outcome stays the error, for whoever asks.
            return
        if err is not None and _UNRETRIEVED_HOOKS:  # (before the log, which may be filtered)
            _call_unretrieved_hooks(self, err)
        filename, lineno, func = self._spawned_at
        log.error(
            "Unhandled exception in fiber %s (spawned at %s:%d in %s)",
            self.name,
            filename,
            lineno,
            func,
            exc_info=(type(err), err, self._result[1]) if err is not None else None,
        )

    def _call_done_callback(self, fn: Callable[[Fiber], Any]) -> None:
        try:
            fn(self)
        except BaseException as e:  # a failing callback must not take the hub down
            log.error("error in a done-callback of %r", self, exc_info=e)

    # -- public API ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The fiber's name (given to `spawn`, or ``Fiber-<hex id>``)."""
        name = self._name
        if name is None:
            return f"Fiber-{id(self):x}"
        arg = self._name_arg
        if arg is not _NO_ARG:  # a template (`spawn_named`): made now, on first read
            name = self._name = name.format(arg)
            self._name_arg = _NO_ARG
        return name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)
        self._name_arg = _NO_ARG

    def done(self) -> bool:
        """True once the function has returned, raised, or the fiber was cancelled."""
        return self._state >= DONE

    def cancelled(self) -> bool:
        """True if the fiber ended because it was cancelled."""
        return self._state == CANCELLED

    def cancel(self) -> None:
        """Cancel the fiber: its blocking calls raise `Cancelled` until it finishes.

        Returns at once; use `join` to wait for the fiber to finish unwinding. Cancelling a fiber
        that has not started means it never runs. Cancelling a finished fiber does nothing.
        """
        if self._cancel_called or self._state >= DONE:
            return
        if self._state == PENDING:
            self._cancel_called = 1  # it will never run; nothing to deliver
            return
        cancel_fiber(self.hub, self)

    def result(self) -> Any:
        """The return value; re-raises the fiber's exception; `FiberCancelled` if cancelled.

        Raises `RuntimeError` if the fiber has not finished.
        """
        state = self._state
        if state == DONE:
            return self._result
        if state < DONE:
            raise RuntimeError(f"{self!r} has not finished")
        self._retrieved = True
        if state == CANCELLED:
            raise FiberCancelled(f"{self.name} was cancelled")
        # With the traceback it had when the fiber failed: a bare ``raise`` would add this
        # call's frames to it at every call (and to what every earlier catch sees).
        err, tb = self._result
        raise err.with_traceback(tb)

    def exception(self) -> BaseException | None:
        """The exception the fiber raised, or None. Raises `RuntimeError` if not finished."""
        if self._state < DONE:
            raise RuntimeError(f"{self!r} has not finished")
        self._retrieved = True
        return self._error

    def join(self, timeout: float | None = None) -> Any:
        """Wait for the fiber to finish; return its result or re-raise its exception.

        Raises `TimeoutError` if ``timeout`` seconds pass first (the fiber keeps running),
        `FiberCancelled` if the fiber was cancelled. Called from a fiber this suspends only the
        caller, also from a fiber of another hub (another thread's loop); it is itself a
        blocking call, so the caller's cancellation interrupts it. Called outside any fiber in
        another thread, it blocks that thread, as `threading.Thread.join` does; but not in the
        fiber's own hub's thread (`RuntimeError`): the hub could not run the fiber meanwhile.
        `RuntimeError` too if the fiber's hub is closed before the fiber finished.
        """
        me = getcurrent()
        if type(me) is Fiber and me.hub.ncancel and effectively_cancelled(me._scope):
            raise Cancelled()  # a call that can block is a cancellation point
        if self._state < DONE:
            if me is self:
                raise RuntimeError("a fiber cannot join itself")
            if type(me) is not Fiber or me.hub is not self.hub:
                return self._join_elsewhere(me, timeout)
            joiners = self._joiners
            if joiners is None:
                joiners = self._joiners = ParkingLot()
            if joiners.park(me, timeout) is TIMED_OUT and self._state < DONE:
                raise TimeoutError(f"{self.name} did not finish within {timeout} s")
        return self.result()

    def _join_elsewhere(self, me: greenlet, timeout: SupportsFloat | None) -> Any:
        """`join` of an unfinished fiber from another thread: from a fiber of another hub, or
        from a thread outside any fiber (refused in the fiber's own hub's thread).

        The fiber's joiners and done callbacks belong to its hub's thread, where nothing guards
        them, so the joiner's done callback is added, and taken off by a joiner that stops
        waiting, there: see `wait_elsewhere`. That also settles the race with the fiber's end:
        in that thread the fiber has either finished, and the callback is called at once, or it
        has not, and will call it.
        """
        hub = self.hub
        fiber = me if type(me) is Fiber else None
        if fiber is None and hub.thread is threading.current_thread():
            raise RuntimeError(
                "Fiber.join() must be called from a fiber (use 'await fiber' in asyncio code)"
            )
        t = None if timeout is None else timeout_seconds(timeout)
        loop = hub.loop
        closed = f"{self!r} cannot finish: its hub (another thread's event loop) was closed"
        if loop is None:
            raise RuntimeError(closed)
        if not wait_elsewhere(
            fiber, loop, self.add_done_callback, self.done, self.remove_done_callback, closed, t
        ):
            raise TimeoutError(f"{self.name} did not finish within {timeout} s")
        return self.result()

    def add_done_callback(self, fn: Callable[[Fiber], Any]) -> None:
        """Call ``fn(fiber)`` when the fiber finishes (at once, in the caller, if it already has).

        ``fn`` runs on the fiber's hub's thread, in the finished fiber itself, after it left the
        hub's table of fibers (`unknot.fibers` no longer lists it, `unknot.run` does not wait
        for it): keep it short and do not block in it. A callback that blocks is not cancelled
        by the shutdown, and one left waiting then never finishes (its ``finally`` blocks do not
        run); spawn a fiber from the callback for work that waits. Exceptions from ``fn`` are
        logged, not raised, in both cases."""
        if self._state >= DONE:
            self._call_done_callback(fn)
        else:
            callbacks = self._callbacks
            if callbacks is None:
                self._callbacks = fn
            elif type(callbacks) is list:
                callbacks.append(fn)
            else:
                self._callbacks = [callbacks, fn]

    def remove_done_callback(self, fn: Callable[[Fiber], Any]) -> int:
        """Forget every registration of ``fn`` by `add_done_callback`; return how many there
        were (0 if none, or once the fiber has finished), as asyncio's
        ``Future.remove_done_callback`` does."""
        callbacks = self._callbacks
        if callbacks is None:
            return 0
        if type(callbacks) is not list:
            if callbacks == fn:
                self._callbacks = None
                return 1
            return 0
        kept = [cb for cb in callbacks if cb != fn]
        removed = len(callbacks) - len(kept)
        if removed:
            self._callbacks = kept or None
        return removed

    def __await__(self) -> Generator[Any, None, Any]:
        return (yield from _await_fiber(self))

    def __repr__(self) -> str:
        state = ("pending", "running", "done", "failed", "cancelled")[self._state]
        return f"<Fiber {self.name} {state}>"

    def __del__(self) -> None:
        # A fiber something waited for when it died (a done callback that ignored the outcome,
        # say) and whose error nobody retrieved since: the last chance to show it.
        if self._state == FAILED and not self._retrieved:
            self._log_unhandled()


def wait_elsewhere(
    me: Fiber | None,
    loop: asyncio.AbstractEventLoop,
    begin: Callable[[Callable[[Any], None]], object],
    done: Callable[[], bool],
    stop: Callable[[Callable[[Any], None]], object],
    closed: str,
    timeout: float | None = None,
) -> bool:
    """Wait until ``done()``, for something that happens on the hub of another thread, whose
    loop is ``loop``: in fiber ``me`` of another hub (only it waits, its hub runs its other
    fibers), or, ``me`` None, in a thread outside any fiber (it blocks). `Fiber.join` and
    `from_thread` across hubs.

    ``begin(notify)`` runs in ``loop``'s thread (handed over by ``call_soon_threadsafe``),
    unless the waiter stopped waiting first; it must make ``notify(_)`` be called there, once,
    when ``done()`` becomes true (a done callback). ``notify`` sends the news back: to the
    waiter's hub through its loop's ``call_soon_threadsafe`` (where `Hub.wake` is safe), or
    to the thread by releasing the lock it waits on. A waiter that stops waiting before
    ``done()`` (timeout, cancellation, Ctrl-C, ``loop`` closed) hands ``stop(notify)`` to
    ``loop``'s thread the same way, to undo what ``begin`` did (or nothing, if it never ran).

    Returns True once ``done()``, False if ``timeout`` seconds passed first. In a fiber this
    is a checkpoint (cancellation, and Ctrl-C in the root fiber, raise). `RuntimeError`
    ``closed`` if ``loop`` is closed first: nothing would tell the waiter then, so it looks
    every `_CLOSED_POLL` seconds.
    """
    waiting = [True]  # until the waiter stops waiting: the news is then not wanted
    notify: Callable[[Any], None]
    if me is not None:
        waiter = me
        my_hub = waiter.hub
        my_loop = my_hub.loop
        assert my_loop is not None  # (a running fiber's hub has its loop)
        clock = my_hub.time

        def deliver() -> None:  # in the waiter's thread
            if waiting[0]:
                my_hub.wake(waiter)

        def notify(_: Any) -> None:  # in ``loop``'s thread
            try:
                my_loop.call_soon_threadsafe(deliver)
            except RuntimeError:
                pass  # the waiter's loop is closed: nobody waits any more

    else:
        lock = _allocate_lock()
        lock.acquire()
        clock = time.monotonic

        def notify(_: Any) -> None:  # in ``loop``'s thread; called once
            lock.release()

    def register() -> None:  # in ``loop``'s thread
        if waiting[0]:
            begin(notify)

    try:
        loop.call_soon_threadsafe(register)
    except RuntimeError:
        if not done():
            raise RuntimeError(closed) from None
    deadline = None if timeout is None else clock() + timeout
    try:
        while not done():
            if loop.is_closed() and not done():
                raise RuntimeError(closed)
            wait = _CLOSED_POLL
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    return False
                wait = min(wait, left)
            if me is not None:
                my_hub.park(me, wait)  # (a checkpoint: cancellation, Ctrl-C)
            else:
                lock.acquire(True, wait)
    finally:
        waiting[0] = False
        if not done():
            try:
                loop.call_soon_threadsafe(stop, notify)
            except RuntimeError:
                pass  # the loop is closed: ``begin``'s callbacks will never run
    return True


class Onlooker:
    """A done callback (`Fiber.add_done_callback`) that watches a fiber without waiting for its
    outcome: the fiber's error, if nothing else waits for it, is still logged (and the
    unretrieved hooks called) when the fiber ends, not left for garbage collection as for a
    fiber someone waited for. For the core's own bookkeeping: the shutdown waiting for the
    fibers it cancels (`_foreign.cancel_fibers`), a caller that stopped waiting (`from_thread`).
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Fiber], Any]) -> None:
        self.fn = fn

    def __call__(self, fiber: Fiber) -> None:
        self.fn(fiber)


#: ``Fiber._retrieved`` of a fiber whose error was logged when it ended, nobody waiting for it,
#: and has not been retrieved since (true, so that it is not logged again when collected).
_LOGGED: Final = 2


def unretrieved_error(fiber: Fiber) -> BaseException | None:
    """The exception ``fiber`` ended with, if nobody retrieved it (`Fiber.join`, ``result``,
    ``exception``, a task group, ``await fiber``...), else None; reading it retrieves nothing.
    (`unknot.lowlevel.unretrieved_error`, for test runners: unknot's pytest plugin.)"""
    if fiber._state == FAILED and fiber._retrieved != 1:  # (0/False or _LOGGED; True == 1)
        return fiber._result[0]
    return None


#: The hooks of `add_unretrieved_hook`. A tuple, replaced (under `_HOOKS_LOCK`) and never
#: changed, so that the hub of any thread reads a whole one without taking the lock.
_UNRETRIEVED_HOOKS: tuple[Callable[[Fiber, BaseException], object], ...] = ()
_HOOKS_LOCK = threading.Lock()


def add_unretrieved_hook(hook: Callable[[Fiber, BaseException], object]) -> None:
    """Call ``hook(fiber, error)`` wherever the core reports a fiber's error nobody retrieved
    (see `unretrieved_error`): when the fiber ends with nobody waiting for it, on its hub's
    thread, and when a fiber whose error was never retrieved is garbage-collected, on the
    collecting thread. Each hook is called before the error is logged, whatever the logging
    configuration says; one that raises is logged and skipped. A fiber reported when it ended
    may still have its error retrieved later (joined after it ended): `unretrieved_error` tells.

    (`unknot.lowlevel.add_unretrieved_hook`, for test runners, which need not read the log's
    wording: unknot's pytest plugin uses it.) Adding a hook twice adds it once."""
    global _UNRETRIEVED_HOOKS
    with _HOOKS_LOCK:
        if hook not in _UNRETRIEVED_HOOKS:
            _UNRETRIEVED_HOOKS = (*_UNRETRIEVED_HOOKS, hook)


def remove_unretrieved_hook(hook: Callable[[Fiber, BaseException], object]) -> None:
    """Forget a hook added by `add_unretrieved_hook`; `ValueError` if it is not there."""
    global _UNRETRIEVED_HOOKS
    with _HOOKS_LOCK:
        hooks = list(_UNRETRIEVED_HOOKS)
        hooks.remove(hook)  # (ValueError)
        _UNRETRIEVED_HOOKS = tuple(hooks)


def _call_unretrieved_hooks(fiber: Fiber, error: BaseException) -> None:
    for hook in _UNRETRIEVED_HOOKS:
        try:
            hook(fiber, error)
        except BaseException as e:  # a failing hook must not take the hub down
            log.error("error in an unretrieved-error hook %r", hook, exc_info=e)


# -- the fiber body ------------------------------------------------------------------------

_COROUTINE_TYPE: Final = types.CoroutineType


def async_function_refused(fn: Callable[..., Any], returned: bool) -> TypeError:
    """The error of a fiber asked to run ``fn``, an ``async def`` function (or a callable that
    ``returned`` a coroutine): a fiber runs plain functions, and nothing would await it."""
    what = "returned a coroutine" if returned else "is an async function"
    return TypeError(
        f"a fiber runs a plain function, and {fn!r} {what}: call it from a fiber with "
        "unknot.await_(fn(...)), or run it as an asyncio task on unknot's loop"
        + (" (the coroutine was closed without running)" if returned else "")
    )


def _refuse_unstarted(coro: Any, fn: Callable[..., Any]) -> None:
    """Raise in the fiber whose ``fn`` returned the coroutine ``coro`` if it never started (an
    async function's, that nothing would await), closed first: it never runs, and no "never
    awaited" warning comes on top. One already started or finished is something else's to run
    (or was run): it stays the fiber's result."""
    if coro.cr_frame is not None and not (coro.cr_running or coro.cr_suspended):
        coro.close()
        raise async_function_refused(fn, True)


def _fiber_main() -> None:
    """Every fiber's greenlet ``run``: called by greenlet on the fiber's first switch."""
    self: Fiber = getcurrent()
    hub = self.hub
    start = self._start
    assert start is not None
    args: tuple[Any, ...] | None
    kwargs: dict[str, Any] | None
    fn, args, kwargs = start
    self._start = start = None
    self._state = RUNNING
    try:
        if self._cancel_called or (hub.ncancel and effectively_cancelled(self._parent)):
            raise Cancelled()
        n = len(args)
        if kwargs or n > 3:
            self._result = fn(*args, **kwargs)
        else:
            # Up to three positional arguments: a plain call, the arguments unpacked and
            # the tuple and dict let go (this frame lives as long as the fiber). CPython
            # 3.11 runs a plain call of a Python function in the caller's C frame, but
            # ``fn(*args)`` in a C frame of its own, which greenlet copies off the stack at
            # every switch while the fiber waits: about 370 bytes per waiting fiber
            # (docs/internals.md, "Memory per idle connection").
            a, b, c = args + (None,) * (3 - n)
            args = kwargs = None
            if n == 0:
                self._result = fn()
            elif n == 1:
                self._result = fn(a)
            elif n == 2:
                self._result = fn(a, b)
            else:
                self._result = fn(a, b, c)
        if type(self._result) is _COROUTINE_TYPE:  # (see `Hub.spawn`, which checks only some)
            _refuse_unstarted(self._result, fn)
        self._state = DONE
    except (Cancelled, GreenletExit):
        self._state = CANCELLED
    except BaseException as e:
        # Drop this frame from the traceback: it holds `self`, and the cycle
        # fiber -> error -> traceback -> frame -> fiber would delay the "never retrieved"
        # log (and the memory) to the next garbage collection.
        tb = e.__traceback__
        tb = tb.tb_next if tb is not None else None
        self._result = (e.with_traceback(tb), tb)
        self._state = FAILED
    finally:
        del fn, args, kwargs
        hub._fiber_finished(self)
        # A running fiber is the root of its own cancel scopes (``_scope is self``); a finished
        # one has none, and the self-reference would leave every finished fiber (and its
        # context) for the cyclic garbage collector.
        self._scope = None
    joiners = self._joiners
    waited_for = False
    if joiners is not None:
        self._joiners = None
        waited_for = joiners.unpark_all(None) > 0
    callbacks = self._callbacks
    if callbacks is not None:
        self._callbacks = None
        if type(callbacks) is not list:
            callbacks = (callbacks,)
        for fn in callbacks:
            self._call_done_callback(fn)
    if (
        self._state == FAILED
        and not (waited_for or self._retrieved)
        and (callbacks is None or all(type(fn) is Onlooker for fn in callbacks))
    ):
        # Nobody is waiting for this fiber (no join, group, done callback but `Onlooker` s, or
        # awaiting coroutine): show the error now, not at garbage collection, which may be
        # never. (Only for a failed fiber are its callbacks looked at: nothing per callback
        # for the others.)
        self._retrieved = _LOGGED  # (not again at collection; still not retrieved)
        self._log_unhandled()


# -- ``await fiber`` from asyncio code ------------------------------------------------------


def _done_future(
    loop: asyncio.AbstractEventLoop, fiber: Fiber
) -> tuple[asyncio.Future[None], Callable[[Fiber], None]]:
    """A future resolved when ``fiber`` finishes, and the callback to remove afterwards."""
    fut: asyncio.Future[None] = loop.create_future()

    def finished(_f: Fiber) -> None:
        if not fut.done():
            fut.set_result(None)

    fiber.add_done_callback(finished)
    return fut, finished


#: asyncio tasks waiting in ``await fiber``, each with the fiber it waits for (`_await_fiber`).
TASK_AWAITS: dict[asyncio.Future[Any], Fiber] = {}
#: Fibers waiting in `unknot.await_` for a task or future, each with it (``_bridge``).
FIBER_AWAITS: dict[Fiber, asyncio.Future[Any]] = {}


def waits_for(fut: asyncio.Future[Any] | None, target: Any) -> bool:
    """Whether ``fut`` (a task or future) waits for ``target`` (a fiber or a task): is it, or
    does it await it, through fibers it awaits (``await fiber``), tasks those wait for
    (`await_`), the future a task waits on (``await task``, ``await asyncio.gather(...)``) and
    the children of an `asyncio.gather`. Used to refuse an await that would close a cycle,
    which nothing could end (a cancellation would wait for itself).

    Not followed: a plain future that names nothing it waits for (`asyncio.wait`,
    `asyncio.shield`, a `TaskGroup`'s exit, `asyncio.wait_for` with a timeout on Python 3.11),
    nor a task created for a fiber (``ensure_future(fiber)``) that has not started yet: that
    one checks when it starts, in `_await_fiber`.
    """
    if fut is None:
        return False  # (the common case: nothing to walk)
    seen: set[Any] = set()
    todo: list[Any] = [fut]
    # (Bounded: each node once, and no more than this many in all.)
    for _ in range(10_000):
        if not todo:
            return False
        node = todo.pop()
        if node is None or node in seen:
            continue
        if node is target:
            return True
        seen.add(node)
        fiber = TASK_AWAITS.get(node)
        if fiber is not None:
            if fiber is target:
                return True
            todo.append(FIBER_AWAITS.get(fiber))
            continue
        # A task waits on its ``_fut_waiter`` (the task or future it awaits); a gather's future
        # on its ``_children`` (both as asyncio 3.11 to 3.13 name them).
        children = getattr(node, "_children", None)
        if type(children) is list:
            todo.extend(children)
        waiter = getattr(node, "_fut_waiter", None)
        if waiter is not None:
            todo.append(waiter)
    return False


def _await_fiber(fiber: Fiber) -> Generator[Any, None, Any]:
    """The body of ``Fiber.__await__`` (the asyncio side of the bridge; see `_bridge`).

    Cancelled, the task cancels the fiber and waits for it to unwind; then, as when an asyncio
    task awaits another task, the fiber's outcome is the task's: `asyncio.CancelledError` if
    it ended cancelled, else its value (it caught the cancellation and returned) or its error.
    A cancellation that arrives once the fiber has finished (before the task's wake-up ran)
    cancelled nothing in the fiber: the task gets its `asyncio.CancelledError`.
    """
    if not fiber.done():
        loop = asyncio.get_running_loop()
        if loop is not fiber.hub.loop:
            raise RuntimeError(f"{fiber!r} belongs to another event loop")
        task = asyncio.current_task(loop)
        if task is not None and waits_for(FIBER_AWAITS.get(fiber), task):
            raise RuntimeError(
                f"{task!r} cannot await {fiber!r}: the fiber waits (unknot.await_) for this "
                "task, directly or through other tasks and fibers, and neither could ever finish"
            )
        fut, finished = _done_future(loop, fiber)
        if task is not None:
            TASK_AWAITS[task] = fiber
        try:
            yield from fut
        except asyncio.CancelledError:
            if fiber.done():
                # The fiber had finished before the cancellation came (the task's wake-up was
                # scheduled, not yet run): nothing was cancelled in it, so nothing caught the
                # cancellation, which is the task's, as for a task awaiting a finished task.
                # (The fiber's outcome stays with it: an error is logged if never retrieved.)
                raise
            fiber.cancel()
            while not fiber.done():  # let the fiber unwind, then report its outcome
                inner, inner_finished = _done_future(loop, fiber)
                try:
                    yield from inner
                except asyncio.CancelledError:
                    pass
                finally:
                    fiber.remove_done_callback(inner_finished)
            if fiber.cancelled():
                fiber._retrieved = True
                raise  # (the task's own CancelledError, with its message)
        finally:
            fiber.remove_done_callback(finished)
            if task is not None:
                TASK_AWAITS.pop(task, None)
    if fiber.cancelled():
        fiber._retrieved = True
        raise asyncio.CancelledError(f"{fiber.name} was cancelled")
    return fiber.result()
