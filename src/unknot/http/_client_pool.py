"""The client's connection pool: keep-alive connections per origin, shared by many fibers.

Connections are keyed by ``(scheme, host, port, TLS context)``. `ConnectionPool.acquire` hands
out the most recently used idle connection of the key (after dropping those the server closed
or that sat idle longer than ``keepalive_expiry``), or connects a new one if the limits allow
(``max_connections`` in all, ``max_connections_per_host`` per key: every open connection counts,
idle or busy), or waits. `release` takes a connection back when its exchange is complete.

Waiting is fair and direct: a fiber that must wait queues itself (FIFO) and parks; a released
connection goes straight to the first waiter for its key, and a freed slot (a connection closed)
to the first waiter whose key has room. When the pool is full of idle connections to other
hosts, the oldest of them is closed to make room, for the first waiter it can serve (a waiter
whose own host is at its limit is skipped, not waited behind).

The pool is fiber-safe without locks: all its bookkeeping runs between two switches, and a
fiber only ever waits in `acquire`, parked, or while connecting with its slot already counted.
It belongs to one thread (its hub); outside fibers it works too, but cannot wait: a full pool
raises `PoolTimeout` at once.

Idle connections past their expiry are closed lazily: when their key is next asked for, and
by a sweep of all keys at most once per expiry period, run from `acquire` and `release`.
"""

from __future__ import annotations

import time
from collections import deque

from unknot import lowlevel

from ._client_connection import HTTPConnection, PoolKey, open_connection
from ._client_errors import PoolTimeout, TotalTimeout

_monotonic = time.monotonic


class _Waiter:
    """A fiber queued in `acquire`; ``done`` once it got something or left."""

    __slots__ = ("fiber", "key", "done")

    def __init__(self, fiber: lowlevel.Fiber, key: PoolKey) -> None:
        self.fiber = fiber
        self.key = key
        self.done = False


#: What a waiter is woken with when it is handed a free slot rather than a connection.
_SLOT = object()


class ConnectionPool:
    """Keep-alive connections for one `Client` (see the module docstring)."""

    def __init__(
        self,
        max_connections: int | None = 100,
        max_connections_per_host: int | None = None,
        keepalive_expiry: float | None = 5.0,
    ) -> None:
        for name, limit in (
            ("max_connections", max_connections),
            ("max_connections_per_host", max_connections_per_host),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1 (or None for no limit)")
        expiry = keepalive_expiry
        if expiry is not None:
            if isinstance(expiry, bool) or not isinstance(expiry, int | float):
                raise TypeError(f"keepalive_expiry must be seconds or None, not {expiry!r}")
            if not expiry >= 0:  # (NaN too: it would keep idle connections for ever)
                raise ValueError(f"keepalive_expiry must be 0 or more seconds, not {expiry!r}")
        self.max_connections = max_connections
        self.max_per_host = max_connections_per_host
        self.keepalive_expiry = keepalive_expiry
        #: Idle connections per key, least recently used first.
        self._idle: dict[PoolKey, list[HTTPConnection]] = {}
        #: Open connections per key (idle, busy or being connected).
        self._open: dict[PoolKey, int] = {}
        self._total = 0
        self._waiters: deque[_Waiter] = deque()
        self._next_sweep = 0.0
        self._closed = False

    # -- figures ---------------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Open connections (idle, busy or being connected)."""
        return self._total

    @property
    def idle_connections(self) -> int:
        """Connections waiting in the pool for a request."""
        return sum(len(idle) for idle in self._idle.values())

    # -- acquiring -------------------------------------------------------------------------------

    def acquire(
        self,
        key: PoolKey,
        connect_timeout: float | None,
        pool_timeout: float | None,
        deadline: float | None = None,
        fresh: bool = False,
    ) -> HTTPConnection:
        """A connection for ``key``: an idle one (unless ``fresh``), or a new one (within
        ``connect_timeout``) when the limits allow, or the first one freed within
        ``pool_timeout``; ``deadline`` (monotonic) bounds it all."""
        if self._closed:
            raise RuntimeError("the client is closed")
        now = _monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        if not fresh:
            conn = self._take_idle(key, now)
            if conn is not None:
                return conn
        if not self._has_room(key):
            self._make_room(key)
        if self._has_room(key):
            return self._connect(key, connect_timeout, deadline)
        got = self._wait(key, pool_timeout, deadline)
        if got is _SLOT:
            return self._connect(key, connect_timeout, deadline, counted=True)
        assert isinstance(got, HTTPConnection)
        if fresh or got.is_dropped():
            self._discard(got)
            return self.acquire(key, connect_timeout, pool_timeout, deadline, fresh)
        return got

    def _take_idle(self, key: PoolKey, now: float) -> HTTPConnection | None:
        idle = self._idle.get(key)
        expiry = self.keepalive_expiry
        while idle:
            conn = idle.pop()
            if (expiry is not None and now - conn.idle_since > expiry) or conn.is_dropped():
                self._discard(conn)
                continue
            return conn
        return None

    def _has_room(self, key: PoolKey) -> bool:
        if self.max_connections is not None and self._total >= self.max_connections:
            return False
        return self.max_per_host is None or self._open.get(key, 0) < self.max_per_host

    def _make_room(self, key: PoolKey) -> None:
        """At the total limit (with room for ``key``): close the idle connection to another
        host unused for the longest."""
        if self.max_per_host is not None and self._open.get(key, 0) >= self.max_per_host:
            return
        oldest: HTTPConnection | None = None
        oldest_key: PoolKey | None = None
        for other, idle in self._idle.items():
            if other != key and idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest, oldest_key = idle[0], other
        if oldest is not None and oldest_key is not None:
            self._idle[oldest_key].pop(0)
            self._discard(oldest, wake=False)  # (the caller takes the room)

    def _connect(
        self, key: PoolKey, timeout: float | None, deadline: float | None, counted: bool = False
    ) -> HTTPConnection:
        if not counted:
            self._total += 1
            self._open[key] = self._open.get(key, 0) + 1
        try:
            conn = open_connection(key, timeout, deadline)
        except BaseException:
            self._forget(key)
            raise
        conn.counted = True
        if self._closed:
            self._discard(conn)
            raise RuntimeError("the client was closed while connecting")
        return conn

    def _wait(self, key: PoolKey, pool_timeout: float | None, deadline: float | None) -> object:
        total_first = False
        if deadline is not None:
            left = deadline - _monotonic()
            if left <= 0:
                raise TotalTimeout("the request took longer than its total timeout")
            if pool_timeout is None or left < pool_timeout:
                pool_timeout, total_first = left, True
        fiber = lowlevel.current_fiber()
        if fiber is None:
            raise PoolTimeout(
                "the connection pool is full (and this is not a fiber: it cannot "
                "wait for a connection to be released)"
            )
        waiter = _Waiter(fiber, key)
        self._waiters.append(waiter)
        try:
            got = lowlevel.park(pool_timeout)
        except BaseException:
            waiter.done = True
            self._prune_waiters()
            raise
        if got is lowlevel.TIMED_OUT:
            waiter.done = True
            self._prune_waiters()
            if total_first:
                raise TotalTimeout("the request took longer than its total timeout")
            raise PoolTimeout(f"no connection became free within {pool_timeout} s")
        return got

    # -- releasing -------------------------------------------------------------------------------

    def release(self, conn: HTTPConnection) -> None:
        """Take ``conn`` back: to a waiter or the idle list if reusable, else close it."""
        if not conn.is_reusable() or self._closed:
            self._discard(conn)
            return
        key = conn.key
        for waiter in self._waiters:
            if not waiter.done and waiter.key == key and lowlevel.wake(waiter.fiber, conn):
                waiter.done = True
                self._prune_waiters()
                return
        now = _monotonic()
        conn.idle_since = now
        idle = self._idle.get(key)
        if idle is None:
            self._idle[key] = [conn]
        else:
            idle.append(conn)
        if self._waiters:
            self._hand_slot_from_idle()
        if now >= self._next_sweep:
            self._sweep(now)

    def discard(self, conn: HTTPConnection) -> None:
        """Close ``conn`` (broken, or not fully read) and free its slot."""
        self._discard(conn)

    def _discard(self, conn: HTTPConnection, wake: bool = True) -> None:
        if conn.counted:
            conn.counted = False
            self._forget(conn.key, wake)
        conn.close()

    def _forget(self, key: PoolKey, wake: bool = True) -> None:
        """One connection of ``key`` is gone: count it out, hand its slot to a waiter."""
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)
            idle = self._idle.get(key)
            if idle is not None and not idle:
                del self._idle[key]
        self._total -= 1
        if wake and self._waiters:
            self._hand_slot()

    def _hand_slot(self) -> None:
        """A slot is free: give it to the first waiter whose key has room."""
        for waiter in self._waiters:
            if waiter.done or not self._has_room(waiter.key):
                continue
            self._total += 1
            self._open[waiter.key] = self._open.get(waiter.key, 0) + 1
            if lowlevel.wake(waiter.fiber, _SLOT):
                waiter.done = True
                break
            self._total -= 1  # it left first: undo, try the next one
            self._open[waiter.key] -= 1
            waiter.done = True
        self._prune_waiters()

    def _hand_slot_from_idle(self) -> None:
        """Serve the waiters that an idle connection to another host holds back (the total
        limit alone stops them): close such a connection for each, first come first served,
        skipping the waiters that no idle connection can help (their host is at its limit)."""
        while True:
            chosen: _Waiter | None = None
            for waiter in self._waiters:
                if waiter.done:
                    continue
                key = waiter.key
                if self._has_room(key) or (
                    (self.max_per_host is None or self._open.get(key, 0) < self.max_per_host)
                    and self._idle_elsewhere(key)
                ):
                    chosen = waiter
                    break
            if chosen is None:
                return
            if not self._has_room(chosen.key):
                self._make_room(chosen.key)
            # The first waiter with room now (``chosen``, unless the closed connection freed
            # room for an earlier one) is served, or found gone: each turn settles one waiter.
            self._hand_slot()

    def _idle_elsewhere(self, key: PoolKey) -> bool:
        """Whether an idle connection to a key other than ``key`` could be closed."""
        for other, idle in self._idle.items():
            if idle and other != key:
                return True
        return False

    def _prune_waiters(self) -> None:
        """Drop the waiters that are served or gone from the front of the queue."""
        waiters = self._waiters
        while waiters and waiters[0].done:
            waiters.popleft()

    # -- expiry and closing ----------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Close the idle connections past their expiry, in every key."""
        expiry = self.keepalive_expiry
        if expiry is None:
            self._next_sweep = float("inf")
            return
        self._next_sweep = now + expiry
        for idle in list(self._idle.values()):
            while idle and now - idle[0].idle_since > expiry:
                self._discard(idle.pop(0))

    def close(self) -> None:
        """Close every idle connection; busy ones are closed when released."""
        self._closed = True
        for idle in list(self._idle.values()):
            while idle:
                self._discard(idle.pop(), wake=False)
        self._idle.clear()
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done:
                waiter.done = True
                lowlevel.throw(waiter.fiber, RuntimeError("the client was closed"))
