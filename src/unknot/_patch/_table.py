"""What `unknot.patch` changes: `PATCH_TABLE` (stdlib attributes) and `DRIVER_INTEGRATIONS`.

One `PatchRow` per stdlib attribute, grouped by the keyword of `patch` that turns the group off.
A row says where its replacement comes from (`Source`):

* `NAME`: ``"module:attr"``, a name in an unknot module, imported when the group is patched;
* `FACTORY`: a callable that builds the value when the group is patched;
* `DELETE`: the attribute is removed while patched (pollers unknot cannot make cooperative are
  hidden, so that libraries picking the best poller fall back to one it can).

A *lazy* row's module is not imported by `patch`: the row is applied when the program imports
that module (at once if it has already), so a costly module nobody uses is not loaded for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import gc
import importlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from greenlet import getcurrent

from ..lowlevel import CancelScope, Fiber
from . import _hybrid


class Source(enum.Enum):
    """Where a `PatchRow`'s replacement comes from."""

    NAME = "name"
    FACTORY = "factory"
    DELETE = "delete"


NAME = Source.NAME
FACTORY = Source.FACTORY
DELETE = Source.DELETE


class PatchRow(NamedTuple):
    """One stdlib attribute `patch` replaces (or deletes)."""

    #: The stdlib module, e.g. ``"socket"``.
    module: str
    #: The attribute; dotted for a class attribute (``"SSLContext.sslsocket_class"``).
    attr: str
    #: How the replacement is found.
    kind: Source
    #: ``"unknot.module:attr"`` for `NAME`, a zero-argument callable for `FACTORY`, None for
    #: `DELETE`.
    source: Any = None
    #: Applied when the program imports ``module`` (or at once, if it has): `patch` does not
    #: import it. For modules costly to import that most programs never use.
    lazy: bool = False

    def resolve(self) -> Any:
        """The replacement value (`DELETE` for a row that deletes the attribute)."""
        if self.kind is DELETE:
            return DELETE
        if self.kind is FACTORY:
            return self.source()
        module_name, _, attr = self.source.partition(":")
        return getattr(importlib.import_module(module_name), attr)


class DriverHook(NamedTuple):
    """A third-party driver's Python hook that `patch` fills with a cooperative version."""

    #: The driver's module, e.g. ``"psycopg.waiting"``.
    module: str
    #: The hook's name in that module.
    attr: str
    #: ``"unknot.module:factory"``; ``factory(module, original)`` builds the replacement.
    factory: str

    def build(self, module: Any, original: Any) -> Any:
        """The cooperative replacement of ``original`` in the driver's ``module``."""
        module_name, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module_name), attr)(module, original)


_ORIGINAL_JOIN: Callable[..., Any] = threading.Thread.join


def _original_submit(module_name: str, class_name: str) -> Callable[..., Any]:
    # (Read when patching, from the class itself: unpatched then, as the group is not yet.)
    cls = getattr(importlib.import_module(module_name), class_name)
    submit: Callable[..., Any] = cls.__dict__["submit"]
    return submit


# How long a worker thread joining for a fiber waits at a time before it checks that the fiber
# still waits (a cancelled or interrupted join frees its worker within this).
JOIN_SLICE = 0.05


def _join_in_worker(
    original: Callable[..., Any],
    thread: threading.Thread,
    timeout: float | None,
    left: list[bool],
    started: list[bool],
) -> None:
    """The stdlib's join, in slices, until ``thread`` ends, ``timeout`` runs out or the fiber
    stops waiting (``left`` is no longer empty). At least one call, with the stdlib's checks.
    Appends to ``started`` first."""
    started.append(True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            step = JOIN_SLICE
        else:
            step = max(0.0, min(JOIN_SLICE, deadline - time.monotonic()))
        original(thread, step)
        if left or not thread.is_alive() or (deadline is not None and time.monotonic() >= deadline):
            return


def _thread_join(original: Callable[..., Any]) -> Callable[..., Any]:
    def join(self: threading.Thread, timeout: float | None = None) -> None:
        # (Joining the current thread: the stdlib's join raises at once; a worker would wait.)
        if (
            type(getcurrent()) is Fiber
            and self.is_alive()
            and self is not threading.current_thread()
        ):
            from ..lowlevel import to_thread

            # A worker of the pool waits, in slices: a fiber whose join is cancelled (or gets
            # Ctrl-C) frees it within JOIN_SLICE, rather than when the thread ends; otherwise a
            # few abandoned joins of a long-lived thread would hold every worker, and with them
            # to_thread, DNS and file I/O.
            left: list[bool] = []
            started: list[bool] = []
            try:
                return to_thread(_join_in_worker, original, self, timeout, left, started)
            except RuntimeError:
                if started:
                    raise  # the stdlib's join raised it
                # The pool takes no more work: the interpreter is shutting down, which a
                # process forked by a fiber (multiprocessing's "fork") does in that fiber,
                # joining its threads. Wait here, as the stdlib does.
                return original(self, timeout)
            finally:
                left.append(True)
        return original(self, timeout)

    join.__doc__ = original.__doc__
    return join


def _submit_to_finish(original: Callable[..., Any]) -> Callable[..., Any]:
    from ..lowlevel import run_to_finish

    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        # In a fiber, nothing is raised inside: submit may start a worker thread and wait for
        # it to say it started, and Ctrl-C there would leave a worker the pool never recorded,
        # which the interpreter's exit then waits for forever (see run_to_finish); the process
        # pool starts its manager thread so, at its first submit. Ctrl-C and cancellation come
        # at the fiber's next blocking call, typically future.result(). (A closure: the
        # callable's own keyword arguments may have any name, ``fn`` included.)
        return run_to_finish(lambda: original(self, fn, *args, **kwargs))

    submit.__doc__ = original.__doc__
    return submit


def _thread_wakeup_method(name: str) -> Callable[..., Any]:
    """``_ThreadWakeup.wakeup`` or ``.close`` of ``concurrent.futures.process``, run under one
    lock (`_THREAD_WAKEUP_LOCK`, a hybrid lock: threads and fibers), so that a wake-up never
    writes to a pipe that another thread is closing.

    CPython before 3.12.8 and 3.13.1 lets them race (gh-125451 added a lock of the wake-up's
    own): at exit ``_python_exit`` wakes every pool's manager thread without a lock, while a
    manager thread that is ending closes its pipe; the write then fails (``EBADF``), the exit
    handler stops before it has woken and joined the other pools' manager threads, and the
    interpreter waits for them for ever. Harmless where the stdlib has its own lock (this one
    is taken first, always).
    """
    cls = importlib.import_module("concurrent.futures.process")._ThreadWakeup
    original: Callable[[Any], Any] = cls.__dict__[name]

    def method(self: Any) -> Any:
        with _THREAD_WAKEUP_LOCK:
            return original(self)

    method.__name__ = method.__qualname__ = original.__name__
    method.__doc__ = original.__doc__
    return method


_THREAD_WAKEUP_LOCK = _hybrid.Lock()


def _socket_names() -> list[str]:
    # Not create_connection, create_server and getfqdn: the stdlib's own look up socket(),
    # getaddrinfo() and gethostbyaddr() in the socket module when called, so once these are
    # replaced they are cooperative as they are (and a later mock of socket.socket still
    # applies, as CPython's test_socket expects). unknot.socket has copies bound to its names.
    # (create_connection is wrapped, below, to close the socket of a cancelled attempt.)
    return ["socket", "socketpair", "fromfd"]


_ORIGINAL_CREATE_CONNECTION: Callable[..., Any] = socket.create_connection


def _create_connection() -> Callable[..., Any]:
    """The stdlib's ``create_connection`` itself, closing the socket of an attempt that a
    cancellation interrupts (its own code closes it on `OSError` only)."""
    from unknot.socket import closing_interrupted_attempts

    return closing_interrupted_attempts(_ORIGINAL_CREATE_CONNECTION)


def _os_wait_names() -> list[str]:
    return ["waitpid", "wait", "wait3", "wait4", "waitid"]


def _multiprocessing_rows() -> list[PatchRow]:
    """multiprocessing's pipes, queues, managers' proxies and pickler. Class attributes, so
    connections, queues and proxies made before `patch` (or unpickled in a child) are
    cooperative too; lazy: `patch` does not load multiprocessing. (Not on Windows, where
    Connection is over sockets or named pipes.)"""
    if sys.platform == "win32":
        return []
    rows = [
        # Connection binds os.read/os.write at class creation, as default arguments.
        ("connection", "Connection._recv", "_recv"),
        ("connection", "Connection._send", "_send"),
        # A message is read or written whole once begun: cancellation comes only before.
        ("connection", "Connection._recv_bytes", "_recv_bytes"),
        ("connection", "Connection._send_bytes", "_send_bytes"),
        ("connection", "Connection._poll", "_poll"),
        ("connection", "wait", "wait"),
        # Their locks are semaphores shared between processes, acquired in C.
        ("queues", "Queue.get", "_queue_get"),
        ("queues", "Queue.put", "_queue_put"),
        ("queues", "JoinableQueue.put", "_joinable_queue_put"),
        ("queues", "SimpleQueue.get", "_simple_queue_get"),
        ("queues", "SimpleQueue.put", "_simple_queue_put"),
        # A manager's proxies: one connection per fiber, dropped when a call is interrupted.
        ("managers", "BaseProxy._callmethod", "_callmethod"),
        # Sockets sent to another process: unknot's as the stdlib's, whichever class the
        # reducer was registered for at import.
        ("reduction", "ForkingPickler.__init__", "_forking_pickler_init"),
    ]
    return [
        PatchRow(
            f"multiprocessing.{module}",
            attr,
            NAME,
            f"unknot.multiprocessing.{module}:{name}",
            lazy=True,
        )
        for module, attr, name in rows
    ] + [
        # A threading.local's __init__ runs in each fiber: registered for the fork once.
        PatchRow(
            "multiprocessing.util",
            "ForkAwareLocal.__init__",
            NAME,
            "unknot.multiprocessing._util:_fork_aware_local_init",
            lazy=True,
        ),
    ]


_ORIGINAL_ASYNCIO_RUN: Callable[..., Any] = asyncio.run

# Set, in the context a fiber's asyncio.run runs its coroutine in, to an object of that call:
# tasks the coroutine creates inherit it, which tells its leftover tasks from the hub's others.
_ASYNCIO_RUN_CALL: contextvars.ContextVar[object] = contextvars.ContextVar("unknot_asyncio_run")


def _task_context(task: asyncio.Task[Any]) -> contextvars.Context | None:
    get_context = getattr(task, "get_context", None)  # Python 3.12+
    if get_context is not None:
        context: contextvars.Context = get_context()
        return context
    # Python 3.11's C Task does not expose its context; the garbage collector sees it.
    for referent in gc.get_referents(task):
        if isinstance(referent, contextvars.Context):
            return referent
    return None


def _asyncio_run() -> Callable[..., Any]:
    """``asyncio.run`` that, called in a fiber (whose thread's loop, the hub's, already runs),
    runs the coroutine on the hub's loop as a task and waits for it there (`unknot.await_`);
    anywhere else it is asyncio's own."""
    original = _ORIGINAL_ASYNCIO_RUN
    # (By name, at patch time, as the rows' replacements: `_patch` sits below the root face.)
    await_: Callable[[Any], Any] = getattr(importlib.import_module("unknot"), "await_")  # noqa: B009
    takes_loop_factory = sys.version_info >= (3, 12)

    def run(main: Any, *, debug: bool | None = None, loop_factory: Any = None) -> Any:
        f = getcurrent()
        if type(f) is not Fiber or (loop := f.hub.loop) is None:
            if loop_factory is None:
                return original(main, debug=debug)
            return original(main, debug=debug, loop_factory=loop_factory)
        if loop_factory is not None and not takes_loop_factory:
            raise TypeError("run() got an unexpected keyword argument 'loop_factory'")
        if not asyncio.iscoroutine(main):
            raise ValueError(f"a coroutine was expected, got {main!r}")
        # The hub's loop is shared: ``debug`` is not applied to it, ``loop_factory`` not called.
        call = object()
        context = contextvars.copy_context()  # as asyncio.run's: the caller's stays unchanged
        context.run(_ASYNCIO_RUN_CALL.set, call)
        task = loop.create_task(main, context=context)
        try:
            return await_(task)
        finally:
            _cancel_leftover_tasks(loop, call, await_)

    run.__doc__ = original.__doc__
    return run


def _cancel_leftover_tasks(
    loop: asyncio.AbstractEventLoop,
    call: object,
    await_: Callable[[Any], Any],
) -> None:
    """Cancel the tasks a fiber's asyncio.run left running (those created in its coroutine's
    context) and wait for them, as asyncio.run does with all the tasks of its own loop. (The
    main task too if `unknot.await_` did not wait for it: a fiber cancelled before the call.)"""
    leftovers = [
        t
        for t in asyncio.all_tasks(loop)
        if not t.done()
        and (context := _task_context(t)) is not None
        and context.get(_ASYNCIO_RUN_CALL, None) is call
    ]
    if not leftovers:
        return
    for t in leftovers:
        t.cancel()
    with CancelScope(shield=True):  # (asyncio.run waits for them whatever happens)
        await_(asyncio.gather(*leftovers, return_exceptions=True))
    for t in leftovers:
        if not t.cancelled() and t.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during asyncio.run() shutdown",
                    "exception": t.exception(),
                    "task": t,
                }
            )


def _dns_names() -> list[str]:
    return ["getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"]


PATCH_TABLE: dict[str, list[PatchRow]] = {
    "socket": [
        *(PatchRow("socket", n, NAME, f"unknot.socket:{n}") for n in _socket_names()),
        PatchRow("socket", "create_connection", FACTORY, _create_connection),
    ],
    "dns": [PatchRow("socket", n, NAME, f"unknot.socket:{n}") for n in _dns_names()],
    "ssl": [
        # Every context (also one created before patching) wraps sockets in unknot's
        # SSLSocket. The name ssl.SSLSocket stays the stdlib class (which unknot's subclasses):
        # the stdlib's own SSLSocket._create looks it up as a module global.
        PatchRow("ssl", "SSLContext.sslsocket_class", NAME, "unknot.ssl:SSLSocket"),
    ],
    "select": [
        PatchRow("select", "select", NAME, "unknot.select:select"),
        PatchRow("select", "poll", NAME, "unknot.select:poll"),
        # epoll objects wait cooperatively on their own fd (one hub registration for all).
        PatchRow("select", "epoll", NAME, "unknot.select:epoll"),
        # Pollers we cannot make cooperative are hidden, so libraries that pick the best
        # poller fall back to poll/select, which we can (none of these exist on Linux).
        PatchRow("select", "kqueue", DELETE),
        PatchRow("select", "devpoll", DELETE),
        PatchRow("selectors", "DefaultSelector", NAME, "unknot.selectors:DefaultSelector"),
        PatchRow("selectors", "SelectSelector", NAME, "unknot.selectors:SelectSelector"),
        PatchRow("selectors", "PollSelector", NAME, "unknot.selectors:PollSelector"),
        PatchRow("selectors", "EpollSelector", NAME, "unknot.selectors:EpollSelector"),
        PatchRow("selectors", "KqueueSelector", DELETE),
        PatchRow("selectors", "DevpollSelector", DELETE),
    ],
    "time": [PatchRow("time", "sleep", NAME, "unknot.time:sleep")],
    # Child processes.
    "subprocess": [
        # Only Popen: the stdlib's run, call, check_call, check_output, getoutput and
        # getstatusoutput look Popen (and run, check_output) up in the subprocess module when
        # called, so they use unknot's, and a later mock of subprocess.Popen still applies.
        PatchRow("subprocess", "Popen", NAME, "unknot.subprocess:Popen"),
        # Waiting for a child (multiprocessing's Process.join among others). Not os.system
        # (C's ignores SIGINT in the caller meanwhile, unknot.os's cannot) nor os.read/write.
        *(PatchRow("os", n, NAME, f"unknot.os:{n}") for n in _os_wait_names()),
        *_multiprocessing_rows(),
    ],
    "threading": [
        # The class (threading.Lock is one on Python 3.13: `Lock | None`, isinstance).
        PatchRow("threading", "Lock", NAME, "unknot._patch._hybrid:Lock"),
        PatchRow("threading", "_allocate_lock", NAME, "unknot._patch._hybrid:allocate_lock"),
        # threading.RLock stays the stdlib's function (its argument deprecation warning on
        # 3.13 included), which makes a _CRLock.
        PatchRow("threading", "_CRLock", NAME, "unknot._patch._hybrid:RLock"),
        # (Event, Semaphore, Barrier and queue.Queue make theirs from this name.)
        PatchRow("threading", "Condition", NAME, "unknot._patch._hybrid:Condition"),
        # (unknot.local: one namespace per greenlet, as the C _thread._local's per thread,
        # whose subclasses may list __dict__ in __slots__, which _threading_local's refuse.)
        PatchRow("threading", "local", NAME, "unknot._local:local"),
        PatchRow("threading", "Thread.join", FACTORY, lambda: _thread_join(_ORIGINAL_JOIN)),
        # A fiber is a thread of control whose thread's loop (the hub's) already runs: there
        # asyncio.run runs its coroutine on that loop, and the fiber waits for it.
        PatchRow("asyncio", "run", FACTORY, _asyncio_run),
        PatchRow(
            "concurrent.futures.thread",
            "ThreadPoolExecutor.submit",
            FACTORY,
            lambda: _submit_to_finish(
                _original_submit("concurrent.futures.thread", "ThreadPoolExecutor")
            ),
        ),
        # (Lazy: the module imports multiprocessing, some milliseconds at every patch.)
        PatchRow(
            "concurrent.futures.process",
            "ProcessPoolExecutor.submit",
            FACTORY,
            lambda: _submit_to_finish(
                _original_submit("concurrent.futures.process", "ProcessPoolExecutor")
            ),
            lazy=True,
        ),
        # A pool's wake-up pipe written at exit while its manager thread closes it (3.11-3.13.0).
        *(
            PatchRow(
                "concurrent.futures.process",
                f"_ThreadWakeup.{name}",
                FACTORY,
                lambda name=name: _thread_wakeup_method(name),
                lazy=True,
            )
            for name in ("wakeup", "close")
        ),
        PatchRow("_thread", "allocate_lock", NAME, "unknot._patch._hybrid:allocate_lock"),
        PatchRow("_thread", "allocate", NAME, "unknot._patch._hybrid:allocate_lock"),
        PatchRow("_thread", "RLock", NAME, "unknot._patch._hybrid:RLock"),
        PatchRow("_thread", "_local", NAME, "unknot._local:local"),
        # importlib's module locks: fibers importing one module at once wait for each other
        # (the fiber's own get_ident, hybrid locks), as threads do. (Named through the package:
        # a dotted attribute, so no loaded module's own ``_thread`` global is rebound.)
        PatchRow("importlib", "_bootstrap._thread", FACTORY, _hybrid.importlib_thread),
    ],
    "queue": [
        # (pure Python: its blocking get waits on a patched lock; its put takes no Ctrl-C)
        PatchRow("queue", "SimpleQueue", NAME, "unknot._patch._hybrid:SimpleQueue"),
    ],
}


# -- Driver integrations -------------------------------------------------------------------------
#
# Drivers that block in C code on a file descriptor of their own bypass the patched socket
# module. Those that expose a Python hook get a cooperative one: one `DriverHook` per hook.
# ``factory(module, original)`` builds the replacement; it is imported from
# `unknot._patch._drivers` only when the driver's module is loaded. Replacements call the
# original outside fibers, so a driver imported while patched stays correct after `unpatch`.

DRIVER_INTEGRATIONS: list[DriverHook] = [
    # psycopg 3: Connection runs every operation through waiting.wait / waiting.wait_conn,
    # looked up at call time; the default wait is wait_c, a C poll loop.
    DriverHook("psycopg.waiting", "wait", "unknot._patch._drivers:psycopg_wait"),
    DriverHook("psycopg.waiting", "wait_conn", "unknot._patch._drivers:psycopg_wait_conn"),
]
