"""Driver integrations: cooperative replacements for the waits of libraries that bypass sockets.

Most drivers block in Python socket calls, which `unknot.patch` makes cooperative. A few wait in
C code on a file descriptor they own, where no patch of the stdlib can reach; some of those offer
a Python hook instead. `unknot._patch.DRIVER_INTEGRATIONS` lists the hooks `patch` fills with the
functions here (applied whether the driver is imported before or after `patch`).

psycopg 3
    Every blocking operation of a ``psycopg.Connection`` runs a generator (non-blocking libpq
    calls) under ``psycopg.waiting.wait`` (queries) or ``psycopg.waiting.wait_conn`` (connecting,
    cancelling); the default ``wait`` is ``wait_c``, a C loop over ``poll``. The replacements
    below drive the same generators but wait for the connection's fd on the hub, so only the
    calling fiber waits. Outside fibers (threads, code before `unknot.run`) they call the
    original. Difference from psycopg's own loops: no periodic wake-up every ``interval``
    seconds (its purpose, noticing Ctrl-C, is the hub's job).

    A fiber cancelled in ``wait`` (a query, a fetch, a commit...) would leave psycopg's
    generator half-way through the protocol, and the connection refusing every later command.
    psycopg's ``Connection.wait`` recovers from Ctrl-C (and its ``AsyncConnection`` from
    asyncio's cancellation) by cancelling the query on the server and finishing the generator;
    ``wait`` does the same for `unknot.Cancelled` (`_psycopg_recover`), shielded and bounded,
    before the `Cancelled` goes on. It finds the connection in the frame of its caller,
    ``Connection.wait``: `patch` fills hooks of modules, not of classes.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from greenlet import getcurrent

from .._mirror import POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, poll_fd
from ..lowlevel import TIMED_OUT, Cancelled, Fiber, Hub, move_on_after

_monotonic = time.monotonic
log = logging.getLogger("unknot")

_READ = 1  # psycopg's Wait.R / Ready.R (selectors.EVENT_READ)
_WRITE = 2  # Wait.W / Ready.W (selectors.EVENT_WRITE)


def _ready_now(fd: int, wanted: int) -> int:
    """Which of ``wanted`` (a `_READ`/`_WRITE` mask) ``fd`` is ready for right now."""
    ev = poll_fd(fd, bool(wanted & _READ), bool(wanted & _WRITE))
    if ev & POLLNVAL:
        raise OSError(9, "Bad file descriptor")
    ready = 0
    if ev & (POLLIN | POLLHUP | POLLERR):
        ready |= _READ & wanted
    if ev & (POLLOUT | POLLHUP | POLLERR):
        ready |= _WRITE & wanted
    return ready


def wait_fd_events(f: Fiber, fd: int, wanted: int, timeout: float | None) -> int:
    """Suspend fiber ``f`` until ``fd`` is ready for any of ``wanted``; the ready mask (0: timeout).

    For fds unknot does not own: watched (level-triggered) only while the fiber waits.
    """
    ready = _ready_now(fd, wanted)
    if ready:
        return ready
    hub: Hub = f.hub
    if wanted != _READ | _WRITE:
        if hub.wait_raw_fd(f, fd, wanted == _WRITE, timeout) is TIMED_OUT:
            return 0
        return _ready_now(fd, wanted) or wanted  # woken by an event: trust it if poll disagrees
    if hub.wait_fds(f, (fd,), (fd,), timeout) is TIMED_OUT:  # both directions at once
        return 0
    return _ready_now(fd, wanted) or wanted


# -- psycopg 3 ---------------------------------------------------------------------------------


def psycopg_wait(waiting: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    """A cooperative ``psycopg.waiting.wait`` (``original`` runs outside fibers)."""

    def wait(gen: Any, fileno: int, interval: float = 0.0, timeout: float | None = None) -> Any:
        f = getcurrent()
        if type(f) is not Fiber:
            return original(gen, fileno, interval=interval, timeout=timeout)
        try:
            return _psycopg_drive(waiting, f, gen, fileno, interval, timeout)
        except Cancelled:
            conn = _psycopg_waiting_connection(sys._getframe(1), gen)
            if conn is not None:
                _psycopg_recover(waiting, f, conn, gen, fileno)
            raise

    return _replacing(original, wait)


def psycopg_wait_conn(waiting: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    """A cooperative ``psycopg.waiting.wait_conn`` (the fd may change while connecting)."""

    def wait_conn(gen: Any, interval: float = 0.0, timeout: float | None = None) -> Any:
        f = getcurrent()
        if type(f) is not Fiber:
            return original(gen, interval=interval, timeout=timeout)
        return _psycopg_drive(waiting, f, gen, None, interval, timeout)

    return _replacing(original, wait_conn)


def _psycopg_drive(
    waiting: ModuleType,
    f: Fiber,
    gen: Any,
    fileno: int | None,
    interval: float | None,
    timeout: float | None,
) -> Any:
    """Run the psycopg generator ``gen`` to its end, fiber ``f`` waiting on the hub.

    With ``fileno`` None, ``gen`` yields ``(fileno, wait)`` pairs (``wait_conn``: the fd may
    change while connecting); otherwise it yields the wait alone, for ``fileno``.
    """
    if interval is None:
        raise ValueError("indefinite wait not supported anymore")
    deadline = None if timeout is None else _monotonic() + timeout
    try:
        step = next(gen)
        while True:
            fd, s = step if fileno is None else (fileno, step)
            left = None if deadline is None else max(0.0, deadline - _monotonic())
            ready = wait_fd_events(f, fd, int(s), left)
            if not ready and fileno is not None:  # (psycopg's wait checks, its wait_conn not)
                waiting._check_fd_closed(fd)
            step = gen.send(ready)
            if deadline is not None and _monotonic() >= deadline:
                raise waiting.e._WaitTimeout("wait timeout expired")
    except StopIteration as ex:
        return ex.value


#: How long the clean-up of a psycopg operation interrupted by a fiber's cancellation may take
#: (cancelling the query on the server, reading the rest of its results) before the connection
#: is closed instead: psycopg's own bound after Ctrl-C.
PSYCOPG_CLEANUP_SECONDS = 5.0


def _psycopg_waiting_connection(frame: Any, gen: Any) -> Any:
    """The ``psycopg.Connection`` whose ``wait`` (the function of ``frame``) drives ``gen``; None
    if ``frame`` is not that."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or frame is None:
        return None
    names = frame.f_locals
    conn = names.get("self")
    if names.get("gen") is not gen or not isinstance(conn, psycopg.Connection):
        return None
    return conn


def _psycopg_recover(waiting: ModuleType, f: Fiber, conn: Any, gen: Any, fileno: int) -> None:
    """Bring ``conn`` back to a known state after fiber ``f`` was cancelled while ``gen`` (an
    operation of ``conn``) waited, before the `Cancelled` goes on.

    If a command is still in progress: ask the server to cancel it (again, while the connection
    stays silent: `_psycopg_drive_cancelling`), run ``gen`` to its end (it
    normally raises ``QueryCanceled``; an operation that reads a result row by row,
    ``cursor.stream``, may leave more of it, read too). All of it shielded from the fiber's
    cancellation, which stays in force, and within `PSYCOPG_CLEANUP_SECONDS`. The connection is
    then idle (or in a failed transaction, as after psycopg's own recovery from Ctrl-C).
    Otherwise it is closed (``pgconn.finish()``, as psycopg does: ``conn.broken``), with a
    warning: the clean-up ran out of time, failed, or was interrupted (Ctrl-C); a new
    interruption is raised, replacing the `Cancelled`, an error is not.
    """
    psycopg = sys.modules["psycopg"]
    pq = psycopg.pq
    pgconn = conn.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
        return  # nothing in progress (waiting for notifications, say): nothing to undo
    try:
        with move_on_after(PSYCOPG_CLEANUP_SECONDS, shield=True) as scope:
            _psycopg_cancel_on_server(conn)
            try:
                _psycopg_drive_cancelling(waiting, f, conn, gen, fileno)
            except psycopg.Error:
                pass  # QueryCanceled, as asked (or the operation's own error): it is over
            if (
                pgconn.transaction_status == pq.TransactionStatus.ACTIVE
                and pgconn.pipeline_status == pq.PipelineStatus.OFF
            ):
                fetch_many = importlib.import_module("psycopg.generators").fetch_many
                _psycopg_drive_cancelling(waiting, f, conn, fetch_many(pgconn), fileno)
    except BaseException as exc:
        # (The scope's own Cancelled, its time up, goes on to the enclosing cancelled scope.)
        if not (isinstance(exc, Cancelled) and scope.cancel_called):
            log.warning(
                "psycopg: cleaning up after a cancelled fiber failed (%s: %s): "
                "closing the connection",
                type(exc).__name__,
                exc,
            )
            pgconn.finish()
            if not isinstance(exc, Exception):
                raise  # interrupted again (Ctrl-C): that goes on instead
            return
    if scope.cancel_called or pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
        log.warning(
            "psycopg: query not over %s s after its cancellation: closing the connection",
            PSYCOPG_CLEANUP_SECONDS,
        )
        pgconn.finish()


#: After a cancel request, how long the clean-up waits for the connection before it asks again
#: (then twice as long each time). PostgreSQL drops a cancel request that reaches the backend
#: while it is still reading the command (a fiber cancelled just after its query went out):
#: asked once, the query would run to its end, or to `PSYCOPG_CLEANUP_SECONDS`.
PSYCOPG_CANCEL_RETRY_SECONDS = 0.05


def _psycopg_drive_cancelling(
    waiting: ModuleType, f: Fiber, conn: Any, gen: Any, fileno: int
) -> Any:
    """`_psycopg_drive` for the clean-up (``gen`` yields waits for ``fileno``): while the
    connection stays silent and its command in progress, the cancel request is sent again, after
    `PSYCOPG_CANCEL_RETRY_SECONDS`, then twice as long each time."""
    active = sys.modules["psycopg"].pq.TransactionStatus.ACTIVE
    pgconn = conn.pgconn
    retry = PSYCOPG_CANCEL_RETRY_SECONDS
    try:
        step = next(gen)
        while True:
            ready = wait_fd_events(f, fileno, int(step), retry)
            if not ready:  # silent: the query may still run, its cancellation dropped
                waiting._check_fd_closed(fileno)
                if pgconn.transaction_status == active:
                    _psycopg_cancel_on_server(conn)
                    retry *= 2
                continue  # (the generator waits for the same event still)
            step = gen.send(ready)
    except StopIteration as ex:
        return ex.value


def _psycopg_cancel_on_server(conn: Any) -> None:
    """Ask the server to cancel ``conn``'s query (a failure is logged: the caller's bound on the
    clean-up then decides)."""
    try:
        if hasattr(conn, "cancel_safe"):  # psycopg >= 3.2: a non-blocking cancel request
            conn.cancel_safe(timeout=PSYCOPG_CLEANUP_SECONDS)
        else:
            conn.cancel()
    except Exception as exc:
        log.warning("psycopg: query cancellation failed: %s", exc)


def _replacing(original: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, documented and marked as the cooperative replacement of ``original``."""
    fn.__doc__ = f"Cooperative in fibers (unknot); elsewhere {original.__name__}."
    fn.__unknot_original__ = original  # type: ignore[attr-defined]
    return fn
