"""`serve_tcp` and `TCPServer`: a fiber per connection, running a plain blocking handler.

Also what the TCP and UDP servers share: taking over a socket the caller made (`adopt_socket`)
and logging the end of a server running in the background (`log_background_end`).
"""

from __future__ import annotations

import _socket
import errno
import logging
import math
from collections.abc import Callable
from types import TracebackType
from typing import Any

from greenlet import GreenletExit

from . import socket as usocket
from . import ssl as ussl
from ._sync import Event, Semaphore
from .lowlevel import (
    Cancelled,
    CancelScope,
    Fiber,
    checkpoint_if_cancelled,
    current,
    move_on_after,
    run,
    sleep,
    spawn,
    spawn_named,
    timeout_seconds,
)

log = logging.getLogger("unknot.server")

#: accept() errors meaning "out of a resource for now": back off and keep serving.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: accept() errors about one connection only: skip it.
_CONNECTION_ERRORS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR}
#: the families whose accepted sockets get TCP_NODELAY
_NODELAY_FAMILIES = (usocket.AF_INET, usocket.AF_INET6)

Handler = Callable[[usocket.socket, Any], Any]


def adopt_socket(
    sock: Any, sock_type: int, server: str, check: Callable[[Any], str | None]
) -> usocket.socket:
    """``sock`` as an unknot socket the server owns, after checking it is of ``sock_type`` and
    passes ``check`` (which returns what is wrong with it, or None).

    An unknot socket is used as it is; a stdlib one is detached into an unknot socket (the
    caller's object is closed, its descriptor now belongs to the server). Either way the server
    closes it when it stops. `TypeError` for what is not a socket; `ValueError` for a socket of
    another type, a closed one, or one ``check`` refuses (all left untouched).
    """
    if not isinstance(sock, _socket.socket):  # (the base of the stdlib's and unknot's)
        raise TypeError(f"{server}(sock=...) needs a socket.socket, got {sock!r}")
    if sock.fileno() < 0:
        raise ValueError(f"{server}(sock=...) was given a closed socket")
    if sock.type != sock_type:
        kind = "SOCK_STREAM" if sock_type == usocket.SOCK_STREAM else "SOCK_DGRAM"
        raise ValueError(f"{server}(sock=...) needs a {kind} socket, got {sock!r}")
    problem = check(sock)
    if problem is not None:
        raise ValueError(f"{server}(sock=...) {problem}")
    if isinstance(sock, usocket.socket):
        sock.setblocking(True)  # (blocking in the fiber's sense: waits suspend the fiber)
        return sock
    return usocket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())


def _not_listening(sock: Any) -> str | None:
    option = getattr(usocket, "SO_ACCEPTCONN", None)
    if option is None or sock.getsockopt(usocket.SOL_SOCKET, option):
        return None  # (without SO_ACCEPTCONN there is no way to tell: accept() will say)
    return "needs a listening socket: call sock.listen() first"


def port_of(address: Any) -> int:
    """The port in a socket address; `AttributeError` for an address without one (AF_UNIX)."""
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return address[1]
    raise AttributeError(f"the server's address {address!r} has no port")


def check_handler(handler: Any) -> None:
    """`TypeError` for a server's handler that is not callable (checked when the server is
    made: else the first connection or datagram would fail, and the server with it)."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, not {type(handler).__name__}")


def stop_grace(grace: Any) -> float:
    """A server's ``stop(grace)`` as the seconds to wait (a negative grace: without limit);
    `ValueError` for NaN, `TypeError` for what is not a number."""
    seconds = timeout_seconds(grace)
    return seconds if seconds >= 0 else math.inf


def log_background_end(f: Fiber, server: Any) -> None:
    """Done-callback of a server's background fiber (`start`): an error that ended it is
    logged, since no caller is waiting in `serve_forever` to receive it."""
    if not f.cancelled() and f.exception() is not None:
        log.error("%r stopped serving after an error", server, exc_info=f.exception())


class TCPServer:
    """A TCP server that runs ``handler(conn, addr)`` in a new fiber for each connection.

    The listening socket is bound when the server is created, so `address` is known at once
    (pass port 0 for a free port). `serve_forever` runs the accept loop in the calling fiber
    until `stop`. The connection is closed when the handler returns; an exception from a handler
    is logged and the server goes on. ``ssl`` is an `ssl.SSLContext`: each connection's TLS
    handshake runs in its own fiber, bounded by ``handshake_timeout`` (seconds, 0 or more;
    ``math.inf``: no limit). ``max_connections``
    bounds the number of handlers running at once (accepting pauses at the limit). Accepted
    sockets get ``TCP_NODELAY`` unless ``nodelay=False``. A ``handler`` that is not callable is
    a `TypeError`, a negative or NaN ``handshake_timeout`` a `ValueError`, both raised here.

    ``sock``: serve on an existing listening socket instead of binding ``host:port`` (a stdlib
    or an unknot socket; the server takes it over and closes it when it stops).

    `serve_forever` runs the accept loop in the calling fiber; `start` runs it in a background
    fiber of the server's own and returns at once.

    No handler is left running unowned: `stop` waits for the handlers (cancelling them after
    its grace period); `serve_forever` ending any other way (its fiber cancelled, say) cancels
    them and waits for them to unwind. Leaving a ``with`` block calls ``stop()`` (a 10 s
    grace), or ``stop(grace=0)`` if the block raised (or was cancelled).
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        sock: Any = None,
        ssl: Any = None,
        backlog: int = 1024,
        reuse_port: bool = False,
        max_connections: int | None = None,
        nodelay: bool = True,
        handshake_timeout: float = 30.0,
    ) -> None:
        check_handler(handler)
        if max_connections is not None and max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        handshake_seconds = timeout_seconds(handshake_timeout)  # (TypeError, NaN: ValueError)
        if handshake_seconds < 0:
            raise ValueError(f"handshake_timeout cannot be negative: {handshake_timeout!r}")
        if ssl is not None and not callable(getattr(ssl, "wrap_socket", None)):
            # (else each connection would fail, logged one by one, with an AttributeError)
            raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}")
        self.handler = handler
        self.ssl = ssl
        self.nodelay = nodelay
        self.handshake_timeout = handshake_seconds
        if sock is not None:
            if port:
                raise ValueError("TCPServer: pass sock or port, not both")
            self._listener = adopt_socket(sock, usocket.SOCK_STREAM, "TCPServer", _not_listening)
        else:
            family = usocket.AF_INET6 if host and ":" in host else usocket.AF_INET
            self._listener = usocket.create_server(
                (host or "", port), family=family, backlog=backlog, reuse_port=reuse_port
            )
        self._address = self._listener.getsockname()  # (still known once it is closed)
        self._slots = Semaphore(max_connections) if max_connections else None
        self._handlers: dict[Fiber, usocket.socket] = {}  # handler -> its accepted socket
        self._idle = Event()
        self._idle.set()
        self._stopping = False
        self._stopped = Event()
        self._serving: Fiber | None = None
        self._backoff = 0.0

    @property
    def address(self) -> Any:
        """The address the server listens on, e.g. ``("127.0.0.1", 40123)``."""
        return self._address

    @property
    def port(self) -> int:
        """The port the server listens on (the one picked for port 0)."""
        return port_of(self._address)

    @property
    def connections(self) -> int:
        """How many handlers are running."""
        return len(self._handlers)

    # -- accept loop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving in a background fiber of the server's own and return at once.

        The fiber belongs to the server, not to the caller's scopes: `stop` (or leaving the
        server's ``with`` block) ends it. One still running when its hub's `unknot.run` ends is
        cancelled with the other leftover fibers: its handlers are cancelled, the socket closed.
        An error that ends the accept loop is logged (logger ``unknot.server``).
        """
        if self._serving is not None:
            raise RuntimeError("the server is already serving")
        if self._stopping:
            raise RuntimeError("the server was stopped")
        f = spawn(self._serve, name=f"TCPServer-{self._address}")
        self._serving = f
        f.add_done_callback(self._background_done)

    def _background_done(self, f: Fiber) -> None:
        # (it may have been cancelled before it ran, its own ``finally`` never running)
        self._listener.close()
        self._serving = None
        self._stopped.set()
        log_background_end(f, self)

    def serve_forever(self) -> None:
        """Accept connections until `stop` is called (or the calling fiber is cancelled).

        If it ends any other way than by `stop` (cancelled, interrupted, or an accept error it
        cannot recover from), it cancels the running handlers and waits for them to unwind before
        raising: no handler outlives the fiber that served it unless `stop` took them over.
        """
        if self._serving is not None:
            raise RuntimeError("serve_forever() is already running")
        self._serving = current()
        self._serve()

    def _serve(self) -> None:
        handler_done = self._handler_done  # (one bound method for all the connections)
        try:
            while not self._stopping:
                if self._slots is not None:
                    self._slots.acquire()
                try:
                    conn, addr = self._listener.accept()
                except OSError as e:
                    if self._slots is not None:
                        self._slots.release()
                    if self._stopping:
                        break
                    self._accept_failed(e)
                    continue
                self._backoff = 0.0
                try:
                    if self.nodelay and conn.family in _NODELAY_FAMILIES:
                        try:
                            conn.setsockopt(usocket.IPPROTO_TCP, usocket.TCP_NODELAY, 1)
                        except OSError:
                            pass
                    if self.ssl is None:
                        # The handler is the fiber's function, with no wrapper frame: an idle
                        # connection keeps every frame of its fiber (about 215 bytes each on
                        # 3.12+; docs/internals.md, "Memory per idle connection"). Its errors
                        # are logged, and its socket closed, by `_handler_done`. Named
                        # "conn-{addr}" when the name is first read: no string per connection.
                        f = spawn_named(self.handler, (conn, addr), "conn-{}", addr)
                    else:
                        # (the function and self, not a bound method: one object less)
                        f = spawn_named(
                            TCPServer._run_tls_handler, (self, conn, addr), "conn-{}", addr
                        )
                except BaseException:
                    # (no handler owns the connection yet: not left open, nor its slot taken)
                    conn.close()
                    if self._slots is not None:
                        self._slots.release()
                    raise
                self._handlers[f] = conn
                self._idle.clear()
                # (a callback, not the handler's finally: a handler cancelled before it starts
                # never runs, and must still give back its slot and connection)
                f.add_done_callback(handler_done)
        except BaseException:
            self._shutdown(grace=0)
            raise
        finally:
            self._listener.close()
            self._serving = None
            self._stopped.set()

    def _accept_failed(self, e: OSError) -> None:
        if e.errno in _RESOURCE_ERRORS:
            self._backoff = min(max(self._backoff * 2, 0.01), 1.0)
            log.warning(
                "accept() failed: %s; retrying in %.2f s (raise the fd limit?)", e, self._backoff
            )
            sleep(self._backoff)
        elif e.errno in _CONNECTION_ERRORS:
            log.debug("accept() dropped a connection: %s", e)
        else:
            raise e

    def _run_tls_handler(self, conn: usocket.socket, addr: Any) -> None:
        try:
            tls = self._tls_handshake(conn, addr)
            if tls is None:
                return  # (conn, detached into the TLS socket, needs no closing)
            conn = tls
            self.handler(conn, addr)
        finally:
            conn.close()

    def _handler_done(self, f: Fiber) -> None:
        conn = self._handlers.pop(f)
        if not f.cancelled():
            e = f.exception()
            if isinstance(e, ConnectionError):  # the peer went away: routine for a server
                log.debug("connection %s ended: %s", f.name, e)
            elif e is not None and not isinstance(e, (Cancelled, GreenletExit)):
                # Any other error, SystemExit and KeyboardInterrupt included: as from a fiber
                # nobody waits for, logged with its traceback; the server goes on (`stop` it).
                log.error("handler for %s failed", f.name, exc_info=e)
        conn.close()  # (the handler's own socket: closed here, whatever became of it)
        if self._slots is not None:
            self._slots.release()
        if not self._handlers:
            self._idle.set()

    def _tls_handshake(self, conn: usocket.socket, addr: Any) -> Any:
        # ussl.wrap: a cooperative socket even for a stdlib ssl.SSLContext, whose own
        # wrap_socket would make the socket blocking (and the handshake block the hub).
        tls = ussl.wrap(conn, self.ssl, server_side=True, do_handshake_on_connect=False)
        with move_on_after(self.handshake_timeout) as scope:
            try:
                tls.do_handshake()
            except OSError as e:
                log.info("TLS handshake with %s failed: %s", addr, e)
                tls.close()
                return None
            except BaseException:  # cancelled (the server is stopping), or a bug
                tls.close()
                raise
        if scope.cancelled_caught:
            log.info("TLS handshake with %s timed out", addr)
            tls.close()
            return None
        return tls

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, wait up to ``grace`` seconds for handlers to finish, cancel the rest.

        Returns when the accept loop has exited and every handler is gone. Call it from any
        fiber on the server's hub; called from a handler, or from asyncio code outside fibers (a
        loop callback, a signal handler added with ``loop.add_signal_handler``), it runs in a new
        fiber and returns at once (neither can wait). A negative ``grace`` waits without limit;
        NaN is a `ValueError`.
        """
        grace = stop_grace(grace)
        me = current()
        if me is None or me in self._handlers:
            spawn(self.stop, grace, name="server-stop")  # (no hub at all: NotInFiberError)
            return
        self._shutdown(grace)
        if self._serving is not None:
            with CancelScope(shield=True):
                self._stopped.wait()
        # The waits above are shielded (a stop must finish): a cancellation that came meanwhile
        # (a timeout around the stop) is raised now, for its scope to catch.
        checkpoint_if_cancelled()

    def _shutdown(self, grace: float) -> None:
        """Stop accepting; wait up to ``grace`` s for the handlers, cancel the rest, wait again."""
        if not self._stopping:
            self._stopping = True
            self._listener.close()  # wakes the accept loop with an error
        with CancelScope(shield=True):
            with move_on_after(grace):
                self._idle.wait()
            for f in list(self._handlers):
                f.cancel()
            self._idle.wait()

    def __enter__(self) -> TCPServer:
        return self

    def __repr__(self) -> str:
        return f"<TCPServer {self._address} connections={len(self._handlers)}>"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace=10.0 if exc is None else 0)


def serve_tcp(
    handler: Handler, host: str | None = "127.0.0.1", port: int = 0, **kwargs: Any
) -> None:
    """Serve TCP connections on ``host:port``, running ``handler(conn, addr)`` per connection.

    Blocks, like a blocking server would; from a fiber it serves in that fiber (cancel the fiber
    to stop it); called outside any hub it starts one with `run`. Keyword arguments are those of
    `TCPServer` (``sock``, ``ssl``, ``backlog``, ``reuse_port``, ``max_connections``,
    ``nodelay``, ``handshake_timeout``). Use `TCPServer` directly to learn the bound port, to
    serve in the background (`TCPServer.start`) or to stop gracefully. A handler that is not
    callable is a `TypeError` at once.
    """
    check_handler(handler)
    if current() is None:
        run(serve_tcp, handler, host, port, **kwargs)
        return
    TCPServer(handler, host, port, **kwargs).serve_forever()  # cancelled: cancels the handlers
