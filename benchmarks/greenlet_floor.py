"""The floor under any greenlet echo server: the ``greenlet-floor`` peer of echo_servers.py.

The same blocking handler as every blocking peer (`echo_servers._echo_blocking`: an
interpreted loop of ``conn.recv`` and ``conn.sendall``), a greenlet per connection, and below
it the least a greenlet server can do: one edge-triggered epoll registration per connection,
unknot's C syscalls (``unknot._nbio``: recv(2), send(2), epoll_wait(2)), a readiness hint so
that a drained socket is not read again before its next edge, and a switch from the parking
greenlet straight to the next ready one. Nothing else: no timers, no cancellation, no fairness
budget, no asyncio loop, no error handling beyond the echo's (a send that does not take the
whole message, or any error but EAGAIN, ends the connection).

Compiled with mypyc like unknot's hot path (`benchlib.native.build_mypyc` puts the extension
in ``benchmarks/.build/greenlet_floor-<cache tag>/``), it says what unknot's own machinery
costs on top of greenlet and the interpreter: the part of the gap to the native server that no
change to unknot can close (BENCHMARKS.md, "The greenlet floor (session 16)"). Not a server to
use.
"""

from __future__ import annotations

import select
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from greenlet import getcurrent, greenlet

from unknot import _nbio

# (Compiled, a Final name is a C static; other module-level names are dict lookups at each use.)
_recv: Final = _nbio.recv
_send: Final = _nbio.send
_switch: Final = greenlet.switch
_MASK = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_READ = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP


class Conn:
    """A connected socket as the handler sees it: ``recv`` and ``sendall``."""

    def __init__(self, hub: Hub, fd: int) -> None:
        self.hub = hub
        self.fd = fd
        self.readable = True  # (accepted: data may be there already)
        self.parked = False
        self.g: Any = None

    def recv(self, n: int) -> bytes:
        while True:
            if self.readable:
                try:
                    data: bytes = _recv(self.fd, n)
                except BlockingIOError:
                    self.readable = False
                else:
                    if len(data) < n:
                        self.readable = False  # a short read drained it: wait for an edge
                    return data
            self.hub.park(self)

    def sendall(self, data: bytes) -> None:
        if _send(self.fd, data) != len(data):
            raise ConnectionError("the floor server does not wait for a full send buffer")


class Hub:
    """The epoll loop and the ready queue."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.ready: deque[Conn] = deque()
        self.hub: Any = getcurrent()

    def park(self, conn: Conn) -> None:
        """Wait for ``conn``'s next read edge; switch to the next ready greenlet meanwhile."""
        conn.parked = True
        ready = self.ready
        if ready:
            _switch(ready.popleft().g)
        else:
            _switch(self.hub)

    def run(self, listener: socket.socket, handler: Callable[[Any], None]) -> None:
        """Serve ``listener`` for ever, ``handler(conn)`` in a greenlet per connection."""
        lfd = listener.fileno()
        listener.setblocking(False)
        self.ep.register(lfd, select.EPOLLIN)
        epfd = self.ep.fileno()
        epoll_wait = _nbio.epoll_wait
        ready = self.ready
        conns = self.conns
        while True:
            for fd, ev in epoll_wait(epfd, -1.0, 1024):
                if fd == lfd:
                    self._accept(listener, handler)
                    continue
                conn = conns.get(fd)
                if conn is not None and ev & _READ:
                    conn.readable = True
                    if conn.parked:
                        conn.parked = False
                        ready.append(conn)
            while ready:
                _switch(ready.popleft().g)

    def _accept(self, listener: socket.socket, handler: Callable[[Any], None]) -> None:
        # New greenlets start here, on the hub's stack, as unknot's fibers do.
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = sock.detach()
            conn = Conn(self, fd)
            self.conns[fd] = conn
            self.ep.register(fd, _MASK)
            conn.g = greenlet(self._serve, self.hub)
            conn.g.switch(conn, handler)

    def _serve(self, conn: Conn, handler: Callable[[Any], None]) -> None:
        try:
            handler(conn)
        except ConnectionError:
            pass
        finally:
            fd = conn.fd
            del self.conns[fd]
            self.ep.unregister(fd)
            socket.close(fd)
            conn.g = None


def serve(host: str, port: int, handler: Callable[[Any], None], backlog: int) -> None:
    """Serve ``host:port`` for ever, ``handler(conn)`` per connection."""
    listener = socket.create_server((host, port), backlog=backlog)
    Hub().run(listener, handler)
