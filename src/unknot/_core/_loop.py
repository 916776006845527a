"""`HubEventLoop`: a real asyncio event loop whose selector is the fiber hub; and `run`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from greenlet import getcurrent

from ._backends import make_hub_selector
from ._deadlock import UNWINDING_AT_CLOSE
from ._exceptions import DeadlockError
from ._fiber import Fiber
from ._foreign import cancel_fibers
from ._hub import Hub
from ._instruments import loop_closed, loop_started, loop_stopped
from ._interrupt import install_sigint, keep_waking, wake_on_signals
from ._lookup import _running
from ._monitor import hub_started, hub_stopped, loop_debug, wanted_threshold
from ._parking import ParkingLot
from ._selector_hub import HubSelector

T = TypeVar("T")
log = logging.getLogger("unknot")


class HubEventLoop(asyncio.SelectorEventLoop):
    """An `asyncio.SelectorEventLoop` that also runs fibers.

    Everything asyncio offers (tasks, ``call_later``, transports, servers, ``run_in_executor``,
    signal handlers, subprocesses) works as usual; in addition fibers run on the same thread,
    woken straight from the selector. Create one with `new_event_loop`.
    """

    def __init__(self, selector: HubSelector | None = None, *, clock: Any = None) -> None:
        try:
            wanted_threshold()  # a malformed UNKNOT_MONITOR: `ValueError` now, not when it runs
            hub = selector if selector is not None else make_hub_selector(_clock_fn(clock))
        except BaseException:
            self._closed = True  # half-built: keep BaseEventLoop.__del__ from tripping over it
            raise
        if clock is not None and hasattr(clock, "autojump_threshold"):
            hub.mock_clock = clock
        super().__init__(hub)  # type: ignore[arg-type]
        hub.loop = self
        self._unknot_hub: Hub = hub
        self._executor_jobs = 0
        #: Fibers that ignored cancellation at shutdown until nothing could wake them (a
        #: `DeadlockError`): `cancel_fibers` no longer waits for them.
        self._abandoned: set[Fiber] = set()
        if self.get_debug():  # (asyncio's __init__ set it, from PYTHONASYNCIODEBUG or -X dev)
            loop_debug(hub, True)

    def set_debug(self, enabled: bool) -> None:
        """Turn asyncio's debug mode on or off, as on any asyncio loop; and unknot's blocking
        detector with it, for this loop.

        asyncio's debug mode logs the callbacks and task steps that block the loop for longer
        than ``slow_callback_duration``, but cannot see a fiber (fibers run inside the loop's
        poll). So turning it on also has the blocking detector (`unknot.start_monitor`) watch
        this loop, with ``slow_callback_duration`` as its threshold, unless the detector was
        configured otherwise (`unknot.start_monitor`, `unknot.stop_monitor`,
        ``UNKNOT_MONITOR``); turning it off undoes only that.
        """
        super().set_debug(enabled)
        hub = getattr(self, "_unknot_hub", None)  # (None: asyncio's __init__ calls this first)
        if hub is not None:
            loop_debug(hub, bool(enabled))

    @property
    def hub(self) -> Hub:
        """The fiber scheduler living in this loop."""
        return self._unknot_hub

    def time(self) -> float:
        return self._unknot_hub.time()

    def run_forever(self) -> None:
        runner = getcurrent()
        if type(runner) is Fiber:
            raise RuntimeError("an event loop cannot be run from inside a fiber")
        hub = self._unknot_hub
        if hub.hub_greenlet is not runner:
            hub.hub_greenlet = runner
            for f in hub.ready:  # fibers spawned before the loop started
                if not f and not f.dead:
                    f.parent = runner
        # Refused before anything is registered: a loop already running (asyncio's error, which
        # its own run_forever would raise after ours had unregistered the running hub), a
        # malformed UNKNOT_MONITOR (`hub_started` parses it first).
        self._check_running()  # type: ignore[attr-defined]
        hub_started(hub)
        stop_waking = _nothing
        try:
            stop_waking = wake_on_signals(self)  # (main thread: signals end the poll)
            _running[hub] = None
            loop_started(hub)
            super().run_forever()
        finally:
            _running.pop(hub, None)
            hub_stopped(hub)
            loop_stopped(hub)
            stop_waking()

    def _read_from_self(self) -> None:
        # asyncio reads the self-pipe in a callback, which catches what it raises, logs it and
        # goes on. A Python signal handler that runs between two of its bytecodes (a thread's
        # call_soon_threadsafe, or a signal, wrote to the pipe; the next signal arrived while
        # it was read) and raises would be lost there: it goes to the root fiber instead, as if
        # raised in the poll (`signal_handler_raised`). The pipe's own errors stay asyncio's.
        try:
            super()._read_from_self()  # type: ignore[misc]
        except OSError:
            raise
        except BaseException as e:
            self._unknot_hub._signal_handler_raised(e)  # type: ignore[attr-defined]

    def remove_signal_handler(self, sig: int) -> bool:
        removed = super().remove_signal_handler(sig)
        keep_waking(self)  # (asyncio cleared the wakeup fd with its last handler)
        return removed

    def close(self) -> None:
        """Close the loop, after unwinding the fibers still running on it.

        They are cancelled and the loop runs until they have finished (their ``finally``
        blocks run), as `run`'s shutdown and ``asyncio.run`` (`shutdown_asyncgens`) do; one
        that ignores its cancellation until nothing can wake it is logged and abandoned. Not
        when the loop is running (asyncio's `RuntimeError`), nor from another thread or from
        inside another running loop (the fibers are logged, left as they are).
        """
        hub = getattr(self, "_unknot_hub", None)
        interrupt = None
        try:
            if hub is not None and not self.is_closed() and not self.is_running():
                interrupt = self._unwind_fibers(hub)
        finally:
            if hub is not None:
                loop_closed(hub)  # (its instruments go, as it does)
                loop_debug(hub, False)  # (no longer watched for asyncio's debug mode)
            super().close()
        if interrupt is not None:
            raise interrupt

    def _unwind_fibers(self, hub: Hub) -> BaseException | None:
        """`close`'s unwinding of leftover fibers; returns an interrupt (Ctrl-C) it met, to be
        raised once the loop is closed."""
        leftovers = [f for f in hub.fibers if f not in self._abandoned]
        if not leftovers:
            return None
        if (
            not self._unwind_at_close
            or hub.thread is not threading.current_thread()
            or asyncio._get_running_loop() is not None
        ):
            if self._unwind_at_close:  # (not from the garbage collector: see __del__)
                log.warning(
                    "%r closed with %d fibers still running, which cannot be unwound from "
                    "here (another thread, or inside a running loop): %s",
                    self,
                    len(leftovers),
                    ", ".join(f.name for f in leftovers[:10]),
                )
            return None
        steps = _ShutdownSteps(self)
        # (Deadlocks are looked for meanwhile, with or without a root fiber: an abandoned
        # fiber, not a close that hangs.)
        setattr(self, UNWINDING_AT_CLOSE, True)
        try:
            steps.run_fibers_step(self.cancel_fibers)
        finally:
            setattr(self, UNWINDING_AT_CLOSE, False)
        return steps.interrupt

    #: False while the garbage collector closes the loop (`__del__`): no fiber runs then.
    _unwind_at_close = True

    def __del__(self) -> None:
        self._unwind_at_close = False
        super().__del__()  # (asyncio's: "unclosed event loop", then close)

    def _reset_after_fork(self) -> list[Any]:
        """In a child forked while this loop ran in the forking thread (`unknot._core._fork`,
        after the hub's backend got a kernel object of its own): the parent's asyncio work is
        dropped, never run: its pending callbacks, its timers, its fd readers and writers and
        transports (already gone with the parent's registrations), its tasks (no longer listed
        by ``asyncio.all_tasks``, so `run`'s shutdown does not cancel, hence run, them: they
        are returned, for the caller to keep alive), its executor's jobs (a new default
        executor is made when needed). The self-pipe is made anew, the same fd numbers now
        naming a pipe of the child's own: the parent's was shared with the child."""
        # Cancelled, not removed: a fork made in a loop callback returns into asyncio's walk
        # over ``_ready``, which skips cancelled handles.
        for handle in self._ready:  # type: ignore[attr-defined]
            handle.cancel()
        for timer in self._scheduled:  # type: ignore[attr-defined]
            timer.cancel()
        self._scheduled.clear()  # type: ignore[attr-defined]
        self._timer_cancelled_count = 0
        self._transports.clear()  # type: ignore[attr-defined]
        self._default_executor = None
        self._executor_jobs = 0
        tasks = []
        current = asyncio.current_task(self) if self.is_running() else None
        for task in asyncio.all_tasks(self):
            if task is not current:
                asyncio.tasks._unregister_task(task)
                tasks.append(task)
        ssock = self._ssock  # type: ignore[attr-defined]
        csock = self._csock  # type: ignore[attr-defined]
        if ssock is not None and csock is not None and ssock.fileno() >= 0:
            a, b = socket.socketpair()
            try:
                a.setblocking(False)
                b.setblocking(False)
                os.dup2(a.fileno(), ssock.fileno(), inheritable=False)
                os.dup2(b.fileno(), csock.fileno(), inheritable=False)
            finally:
                a.close()
                b.close()
            self._add_reader(ssock.fileno(), self._read_from_self)  # type: ignore[attr-defined]
        if self.is_running():
            # (Python 3.12+ forgets the running loop in a forked child: it still runs here.)
            self._thread_id = threading.get_ident()
            asyncio.events._set_running_loop(self)
        return tasks

    async def cancel_fibers(self) -> None:
        """Cancel every fiber still running on this loop and wait until all have finished
        (but for those `run`'s shutdown abandoned)."""
        await cancel_fibers(self._unknot_hub, self._abandoned)

    async def shutdown_asyncgens(self) -> None:
        """Cancel leftover fibers and let them unwind, then shut down async generators.

        `asyncio.run` and `asyncio.Runner` call this on their way out, so fibers left running
        under them get their ``finally`` blocks run, as under `unknot.run`.
        """
        await self.cancel_fibers()
        await super().shutdown_asyncgens()

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        fut = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1
        fut.add_done_callback(self._executor_job_done)
        return fut

    def _executor_job_done(self, _fut: Any) -> None:
        self._executor_jobs -= 1


def _nothing() -> None:
    pass


def _clock_fn(clock: Any) -> Callable[[], float] | None:
    if clock is None:
        return None
    if callable(clock):
        return clock
    return clock.time


def new_event_loop(*, clock: Any = None) -> HubEventLoop:
    """A new `HubEventLoop`.

    Use it to host fibers in asyncio programs::

        asyncio.run(main(), loop_factory=unknot.new_event_loop)          # Python 3.12+
        with asyncio.Runner(loop_factory=unknot.new_event_loop) as r:    # Python 3.11
            r.run(main())

    ``clock`` is a `unknot.testing.MockClock` (or any zero-argument time function). A malformed
    ``UNKNOT_MONITOR`` raises `ValueError` here (and in `run`, before ``fn`` is called).
    """
    return HubEventLoop(clock=clock)


def run(fn: Callable[..., T], /, *args: Any, clock: Any = None, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` as the root fiber of a new hub and return its result.

    Blocks the calling thread until the root fiber finishes, then cancels any fibers still
    running and lets them unwind, finishes asyncio tasks and async generators, and closes the
    loop. The root fiber's exception is re-raised here. Ctrl-C raises `KeyboardInterrupt` in the
    root fiber at its current blocking call. If every fiber blocks with nothing left that could
    wake one, the root fiber gets a `DeadlockError` listing them.

    Each OS thread may run its own hub; ``run`` cannot be nested inside a running loop, with
    one exception: a script run by ``python -m unknot`` already runs as a root fiber, and a
    ``run`` it calls from that fiber runs ``fn`` right there (see `_run_hosted`).
    """
    me = getcurrent()
    if type(me) is Fiber and _hosts.get(me) is False:
        if clock is not None:
            raise RuntimeError(
                "unknot.run(clock=...) cannot be used under 'python -m unknot': "
                "the script already runs on a hub with its own clock"
            )
        return _run_hosted(me, fn, args, kwargs)
    if asyncio._get_running_loop() is not None or type(me) is Fiber:
        raise RuntimeError(
            "unknot.run() cannot be called while an event loop is running in this thread; "
            "use unknot.spawn() instead"
        )
    if inspect.iscoroutinefunction(fn):
        # (Called, it would return a coroutine never awaited: run() would return that.)
        raise TypeError(
            f"unknot.run() runs a plain function in a fiber, and {fn!r} is an async function: "
            "run it on unknot's loop with asyncio.Runner(loop_factory=unknot.new_event_loop), "
            "or call it from a fiber with unknot.await_()"
        )
    loop = new_event_loop(clock=clock)
    hub = loop.hub
    try:
        root = hub.spawn(fn, args, kwargs, name="root")
    except BaseException:
        loop.close()  # (not left to the garbage collector: "unclosed event loop")
        raise
    hub.root = root
    if getattr(fn, HOSTS_RUN, False):
        _hosts[root] = False

    def stop(_f: Fiber) -> None:
        loop.stop()

    root.add_done_callback(stop)
    restore_sigint = install_sigint(hub, loop)
    asyncio.set_event_loop(loop)
    stopped_early = False
    try:
        loop.run_forever()
        stopped_early = not root.done()  # (`loop.stop()` called by a fiber or a task)
    finally:
        # (A root still running here, as when a deadlock was raised out of the loop, finishes
        # in the shutdown: that must not stop the loop under one of its steps.)
        root.remove_done_callback(stop)
        try:
            _shutdown(loop, hub)
        finally:
            restore_sigint()
            asyncio.set_event_loop(None)
            loop.close()
            _hosts.pop(root, None)
    if stopped_early and root.cancelled():
        raise RuntimeError(
            "unknot.run(): the event loop was stopped (loop.stop()) before the root fiber "
            "finished; the root fiber was cancelled"
        )
    return root.result()


#: The attribute that marks a function whose root fiber hosts `run` calls: ``python -m unknot``
#: (`unknot.__main__`) runs the script through such a function.
HOSTS_RUN = "__unknot_hosts_run__"
#: Root fibers started by `run` for a function marked with `HOSTS_RUN`, each mapped to whether a
#: hosted call (`_run_hosted`) is in progress in it (a `run` nested in that one is refused).
_hosts: dict[Fiber, bool] = {}


def _run_hosted(root: Fiber, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    """`run` called by a script that ``python -m unknot`` runs in ``root``: do what `run` would.

    ``fn(*args, **kwargs)`` runs in ``root`` itself; when it is done (returned or raised), the
    fibers spawned meanwhile that are still running are cancelled and waited for, as `run` would
    on its way out. The hub, its loop and its Ctrl-C handling stay those of the outer `run`.
    """
    hub = root.hub
    before = set(hub.fibers)
    _hosts[root] = True
    try:
        return fn(*args, **kwargs)
    finally:
        _hosts[root] = False
        leftovers = [f for f in hub.fibers if f not in before]
        remaining = set(leftovers)
        all_done = ParkingLot()

        def finished(f: Fiber) -> None:
            remaining.discard(f)
            if not remaining:
                all_done.unpark_all()

        for f in leftovers:
            f.cancel()
            f.add_done_callback(finished)
        while remaining:  # (not cancellable: this cleanup must finish; Ctrl-C still gets in)
            all_done.park(root, cancellable=False, interruptible=True)


def _shutdown(loop: HubEventLoop, hub: Hub) -> None:
    """Cancel and drain leftover fibers, then do what `asyncio.run` does on the way out.

    An interrupt that comes out of the loop meanwhile (Ctrl-C, or what a signal handler raised:
    with the root fiber done, the hub raises it out of the loop) does not cut this short: the
    first is raised once every step is done. A second one comes out at once (a way out of a
    shutdown that hangs). Fibers that ignore cancellation until nothing can wake them (a
    `DeadlockError` at shutdown) are logged and abandoned.
    """
    steps = _ShutdownSteps(loop)
    steps.run_fibers_step(loop.cancel_fibers)
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        steps.run(asyncio.gather(*tasks, return_exceptions=True))
        for t in tasks:
            if not t.cancelled() and t.exception() is not None:
                loop.call_exception_handler(
                    {
                        "message": "unhandled exception in a task during unknot.run() shutdown",
                        "exception": t.exception(),
                        "task": t,
                    }
                )
    steps.run_fibers_step(loop.shutdown_asyncgens)  # (cancels fibers spawned meanwhile)
    steps.run(loop.shutdown_default_executor())
    if steps.interrupt is None and hub.interrupt_pending:  # (came after the last poll)
        steps.interrupt = hub.take_interrupt()
    if steps.interrupt is not None:
        raise steps.interrupt


class _ShutdownSteps:
    """Runs `_shutdown`'s steps on the loop, each to its end through an interrupt."""

    def __init__(self, loop: HubEventLoop) -> None:
        self.loop = loop
        #: The first interrupt that came out of the loop, raised when the shutdown is done.
        self.interrupt: BaseException | None = None

    def run(self, step: Awaitable[Any]) -> None:
        """Run ``step`` until it is done; an interrupt meanwhile is kept (the first one)."""
        loop = self.loop
        fut = asyncio.ensure_future(step, loop=loop)
        while True:
            try:
                loop.run_until_complete(fut)
                return
            except BaseException as e:
                if fut.done() and (fut.cancelled() or fut.exception() is e):
                    raise  # the step's own outcome
                if isinstance(e, DeadlockError) or self.interrupt is not None:
                    self._drop(fut)
                    raise
                self.interrupt = e  # then the step goes on
                if fut.done():
                    return

    def run_fibers_step(self, step: Callable[[], Awaitable[Any]]) -> None:
        """`run` a step that waits for leftover fibers: if those deadlock, abandon them (logged)
        and run it again, to do the rest of its work."""
        while True:
            try:
                self.run(step())
                return
            except DeadlockError as e:
                log.warning("fibers ignored cancellation at shutdown and were abandoned:\n%s", e)
                self.loop._abandoned.update(self.loop.hub.fibers)

    def _drop(self, fut: asyncio.Future[Any]) -> None:
        """Cancel ``fut``, an unfinished step, and let it end (asyncio would complain of a task
        destroyed while pending). What comes out of the loop meanwhile (a further interrupt)
        is dropped: the caller raises its own exception."""
        fut.cancel()
        try:
            self.loop.run_until_complete(fut)
        except BaseException:  # noqa: B036 - its CancelledError, or what came out of the loop
            pass
