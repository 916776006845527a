"""`HTTPServer` and `serve`: an HTTP/1.1 server running ``handler(request)`` in a fiber per
connection.

::

    from unknot.http import App, serve

    app = App()

    @app.get("/")
    def hello(request):
        return 200, {"content-type": "text/plain"}, b"Hello, world!"

    serve(app, "127.0.0.1", 8000)

The handler is plain blocking code: any ``handler(request)`` returning ``(status, headers,
body)`` or a `Response` (an `App` is one). It runs in the connection's fiber, so a slow
handler holds up its own connection only. What the server does per connection and request is
described in ``_conn`` (loop, timeouts, errors) and ``_respond`` (bodies); the limits on what a
client may send are a `Limits`, the timeouts a `Timeouts`.

Timeouts are enforced by one watchdog fiber per server instead of a timer per wait: each
connection notes when its current wait must end, and the watchdog, waking every quarter of
the shortest timeout (at most every second), raises `TimeoutError` in those past it, in
batches of `WATCHDOG_BATCH` with the other fibers and I/O served in between. A timeout so
fires up to that tick late. The watchdog runs from `start` (or `serve_forever`) until `stop`
has seen the last connection end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import unknot

from ._access_log import AccessLog
from ._conn import ConnectionSettings, HTTPConnection, Timeouts
from ._message import Request
from ._protocol import DEFAULT_LIMITS, Limits

__all__ = ["HTTPServer", "Timeouts", "serve"]

log = logging.getLogger("unknot.http")

Handler = Callable[[Request], Any]

#: The most connections the watchdog cuts at once. Each cut connection runs in the next pass
#: (a 408, a close); thousands timing out together (a slowloris attack) would otherwise hold
#: the loop for one long pass, and every other connection's answer with it.
WATCHDOG_BATCH = 64


class HTTPServer:
    """An HTTP server answering each connection in a fiber of its own with ``handler``.

    Built on `unknot.TCPServer`, so the listening socket is bound at once (`address`, `port`;
    port 0 picks a free one; ``sock`` serves on a listening socket of yours instead) and ``ssl``
    (an `ssl.SSLContext`) makes it HTTPS, the TLS handshake running in the connection's fiber.
    ``limits`` bounds what clients send (see `Limits`: 414, 431, 413), ``timeouts`` how long
    they may take (see `Timeouts`: 408).
    ``access_log``: ``True`` (or ``"combined"``) or ``"common"`` logs a line per response to
    the ``unknot.http.access`` logger; errors go to ``unknot.http``. ``max_connections``,
    ``backlog``, ``reuse_port`` and ``handshake_timeout`` are the `TCPServer`'s.

    Run it with `serve_forever` (blocks the calling fiber) or `start` (serves in a new fiber
    and returns). `stop` closes idle keep-alive connections at once, lets the requests under
    way finish (their responses say ``Connection: close``) for up to ``grace`` seconds, then
    cancels the rest. As a context manager it stops on leaving the block.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = "127.0.0.1",
        port: int = 8000,
        *,
        sock: Any = None,
        ssl: Any = None,
        limits: Limits = DEFAULT_LIMITS,
        timeouts: Timeouts = Timeouts(),  # noqa: B008 (frozen: one shared default is fine)
        access_log: bool | str = False,
        max_connections: int | None = None,
        backlog: int = 1024,
        reuse_port: bool = False,
        handshake_timeout: float = 10.0,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        # (Checked here: a wrong type would otherwise fail every connection, logged one by one.)
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be an unknot.http.Limits, not {type(limits).__name__}")
        if not isinstance(timeouts, Timeouts):
            raise TypeError(
                f"timeouts must be an unknot.http.Timeouts, not {type(timeouts).__name__}"
            )
        if access_log:
            access: AccessLog | None = AccessLog(
                log_format="combined" if access_log is True else str(access_log)
            )
        else:
            access = None
        self.handler = handler
        self._settings = ConnectionSettings(handler, limits, timeouts, access, ssl is not None)
        self._connections: dict[unknot.Fiber, HTTPConnection] = {}
        self._tcp = unknot.TCPServer(
            self._serve_connection,
            host,
            0 if sock is not None else port,
            sock=sock,
            ssl=ssl,
            backlog=backlog,
            reuse_port=reuse_port,
            max_connections=max_connections,
            handshake_timeout=handshake_timeout,
        )
        self._watchdog: unknot.Fiber | None = None

    @property
    def address(self) -> Any:
        """The address the server listens on, e.g. ``("127.0.0.1", 8000)``."""
        return self._tcp.address

    @property
    def port(self) -> int:
        """The port the server listens on (the one picked for port 0)."""
        return self._tcp.port

    @property
    def connections(self) -> int:
        """How many connections are open."""
        return len(self._connections)

    def _serve_connection(self, sock: Any, client: Any) -> None:
        connection = HTTPConnection(self._settings, sock, client)
        fiber = unknot.current()
        assert fiber is not None
        self._connections[fiber] = connection
        try:
            connection.run()
        finally:
            del self._connections[fiber]

    def serve_forever(self) -> None:
        """Serve until `stop` (or until the calling fiber is cancelled, which cancels the
        connections)."""
        self._start_watchdog()
        try:
            self._tcp.serve_forever()
        finally:
            if not self._settings.closing:  # (cancelled: the connections are gone already)
                self._stop_watchdog()

    def start(self) -> None:
        """Serve in a background fiber of the server's own and return at once (`stop` ends
        it, as `unknot.TCPServer.start`)."""
        self._tcp.start()
        self._start_watchdog()

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, close idle connections, give the requests under way up to ``grace``
        seconds, then cancel them (a negative ``grace``: without limit; NaN: `ValueError`).
        Called from a handler, or from asyncio code outside fibers (a loop callback, a signal
        handler added with ``loop.add_signal_handler``), it returns at once and the server stops
        in a fiber of its own."""
        unknot.lowlevel.timeout_seconds(grace)  # (NaN: ValueError; not a number: TypeError)
        # First of all: the answer of a handler calling this says ``Connection: close``.
        self._settings.closing = True
        me = unknot.current()
        if me is None or me in self._connections:
            unknot.spawn(self.stop, grace, name="http-server-stop")
            return
        for fiber, connection in list(self._connections.items()):
            if connection.idle:
                fiber.cancel()
        try:
            self._tcp.stop(grace)
        finally:
            self._stop_watchdog()

    # -- timeouts ------------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = unknot.spawn(self._watch, name=f"http-watchdog-{self.port}")

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()

    def _watch(self) -> None:
        """The watchdog: a few times a second (a quarter of the shortest timeout, at most once a
        second), raise `TimeoutError` in each connection waiting past its deadline, at most
        `WATCHDOG_BATCH` at a time with ``sleep(0)`` between batches."""
        settings = self._settings
        shortest = min(
            settings.head_timeout,
            settings.keep_alive_timeout,
            settings.body_timeout,
            settings.write_timeout,
        )
        tick = min(max(shortest / 4, 0.01), 1.0)
        connections = self._connections
        throw = unknot.lowlevel.throw
        batch = WATCHDOG_BATCH
        while True:
            unknot.sleep(tick)
            now = time.monotonic()
            due = [
                fiber
                for fiber, connection in connections.items()
                if 0.0 < connection.deadline <= now
            ]
            for start in range(0, len(due), batch):
                if start:
                    # The batch just cut runs (a 408 and a close each) and I/O is polled
                    # before the next: the other connections are served in between.
                    unknot.sleep(0)
                    now = time.monotonic()
                for fiber in due[start : start + batch]:
                    # Again: it may have ended, or moved on (its deadline too), since the scan.
                    connection = connections.get(fiber)
                    if connection is not None and 0.0 < connection.deadline <= now:
                        throw(fiber, TimeoutError("timed out"))

    def __enter__(self) -> HTTPServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace=10.0 if exc is None else 0)

    def __repr__(self) -> str:
        return f"<HTTPServer {self.address} {self.connections} connections>"


def serve(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 8000,
    *,
    backlog: int = 1024,
    **kwargs: Any,
) -> None:
    """Serve HTTP on ``host:port`` with ``handler``; blocks, like `unknot.serve_tcp`.

    From a fiber it serves in that fiber (cancel the fiber to stop); called outside any hub it
    starts one with `unknot.run`. Keyword arguments are `HTTPServer`'s (``ssl``, ``limits``,
    ``timeouts``, ``access_log``, ``max_connections``, ``backlog``, ``sock``...).
    """
    if unknot.current() is None:
        unknot.run(serve, handler, host, port, backlog=backlog, **kwargs)
        return
    server = HTTPServer(handler, host, port, backlog=backlog, **kwargs)
    scheme = "https" if kwargs.get("ssl") is not None else "http"
    address = server.address
    shown = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
    log.info("serving on %s://%s:%d", scheme, shown, server.port)
    server.serve_forever()
