"""Helpers for the HTTP server tests: a server in a thread of its own, raw HTTP over sockets.

`ServerThread` runs an `unknot.http.HTTPServer` on 127.0.0.1 (a free port) in a background
thread with its own hub, so that any client (raw sockets here, or third-party libraries) can
talk to it from the test's thread. `raw_exchange`, `read_response` and friends speak HTTP/1.1
byte by byte with stdlib sockets, to check exactly what the server sends. `drain` hands out
the events of a sans-I/O connection (either role).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, BinaryIO

import unknot
from unknot.http import HTTPServer
from unknot.http._protocol import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    Event,
    RemoteProtocolError,
    ServerConnection,
)

TIMEOUT = 10.0


def tls_server_context(ca: Any) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 issued by ``ca`` (a `trustme.CA`)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def tls_client_context(ca: Any) -> ssl.SSLContext:
    """A client context that trusts ``ca`` (a `trustme.CA`)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class ServerThread:
    """``with ServerThread(handler, **kwargs) as srv:`` serves ``handler`` at ``srv.url``.

    ``kwargs`` go to `HTTPServer`. Leaving the block stops the server (``grace`` seconds for
    the requests under way) and joins the thread; an exception that ended the server thread
    is raised then.
    """

    def __init__(self, handler: Callable[[Any], Any], grace: float = 2.0, **kwargs: Any) -> None:
        self.handler = handler
        self.kwargs = kwargs
        self.grace = grace
        self.server: HTTPServer | None = None
        self.port = 0
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-server-thread", daemon=True)

    def _run(self) -> None:
        try:
            unknot.run(self._main)
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def _main(self) -> None:
        server = HTTPServer(self.handler, "127.0.0.1", 0, **self.kwargs)
        self.server = server
        self.port = server.port
        server.start()
        self._ready.set()
        unknot.to_thread(self._stop.wait)
        server.stop(grace=self.grace)

    @property
    def scheme(self) -> str:
        return "https" if self.kwargs.get("ssl") is not None else "http"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (https with ``ssl``)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many connections the server has open."""
        assert self.server is not None
        return self.server.connections

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until the server has ``count`` connections open."""
        deadline = time.monotonic() + timeout
        while self.connections != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.connections} connections open, not {count}")
            time.sleep(0.01)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            raise RuntimeError("the server thread did not start")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT + self.grace)
        assert not self._thread.is_alive(), "the server thread did not stop"
        if self.error is not None and exc is None:
            raise self.error


# -- raw HTTP ------------------------------------------------------------------------------------


def connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    """A stdlib socket connected to 127.0.0.1:``port``."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


class RawResponse:
    """A response as received: status line parts, headers (names lowercased), body."""

    def __init__(
        self, version: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.trailers: list[tuple[str, str]] = []

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (the only one: a repeated header fails the test)."""
        values = self.all(name)
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        return [v for k, v in self.headers if k == name]

    @property
    def closes(self) -> bool:
        """The response says the connection closes after it."""
        return "close" in (self.header("connection") or "").lower()

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.headers} {self.body[:60]!r}>"


def _line(f: BinaryIO) -> bytes:
    line = f.readline(65537)
    if not line:
        raise EOFError("the connection closed")
    assert line.endswith(b"\r\n"), f"a line without CRLF: {line!r}"
    return line[:-2]


def read_head(f: BinaryIO) -> RawResponse:
    """The status line and headers of the next response (its body not read)."""
    version, status, reason = _line(f).decode("latin-1").split(" ", 2)
    headers = []
    while True:
        line = _line(f)
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        assert name and name == name.strip(), f"bad header line {line!r}"
        headers.append((name.lower(), value.strip()))
    return RawResponse(version, int(status), reason, headers, b"")


def read_response(f: BinaryIO, method: str = "GET") -> RawResponse:
    """The next final response from ``f`` (a socket's ``makefile("rb")``), body included.

    1xx responses before it are skipped. The body is framed as RFC 9112 says: none for HEAD,
    204 and 304; chunked; Content-Length; else until the connection closes.
    """
    while True:
        response = read_head(f)
        if response.status >= 200:
            break
    if method == "HEAD" or response.status in (204, 304):
        return response
    if response.header("transfer-encoding") == "chunked":
        assert response.header("content-length") is None
        parts = []
        while True:
            size = int(_line(f).split(b";")[0], 16)
            if size == 0:
                break
            parts.append(f.read(size))
            assert len(parts[-1]) == size, "the connection closed in a chunk"
            assert _line(f) == b""
        while True:
            line = _line(f)
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            response.trailers.append((name.lower(), value.strip()))
        response.body = b"".join(parts)
    elif response.header("content-length") is not None:
        length = int(response.header("content-length") or 0)
        response.body = f.read(length)
        assert len(response.body) == length, "the connection closed in the body"
    else:
        response.body = f.read()
    return response


def raw_exchange(
    port: int, data: bytes, method: str = "GET", count: int = 1
) -> tuple[list[RawResponse], bool]:
    """Send ``data`` on a new connection, read ``count`` responses; also whether the server
    then closed the connection (at once: within a quarter of a second)."""
    with connect(port) as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        responses = [read_response(f, method) for _ in range(count)]
        return responses, closed_by_server(sock, f, 0.25)


def closed_by_server(sock: socket.socket, f: BinaryIO | None = None, timeout: float = 1.0) -> bool:
    """Whether the server closes the connection within ``timeout`` (no bytes may come first)."""
    sock.settimeout(timeout)
    try:
        data = f.read1(1) if f is not None else sock.recv(1)  # type: ignore[attr-defined]
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(TIMEOUT)
    assert data == b"", f"unexpected bytes after the response: {data!r}"
    return True


def get(path: str = "/", host: str = "x", extra: str = "") -> bytes:
    """The bytes of a simple GET request."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def drain(conn: ServerConnection | ClientConnection) -> list[Event]:
    """Every event the sans-I/O connection hands out now, until it needs data or pauses."""
    out: list[Event] = []
    while True:
        events = conn.next_events()
        if events is NEED_DATA or events is PAUSED:
            return out
        assert isinstance(events, list)
        out.extend(events)


def feed_until_refused(
    conn: ServerConnection | ClientConnection, pieces: Iterable[bytes], limit: int
) -> tuple[int, RemoteProtocolError | None, list[Event]]:
    """Feed ``pieces`` to the sans-I/O connection, handing out its events after each, until it
    refuses them: the bytes fed then, the error (None if ``limit`` bytes were taken first) and
    the events handed out."""
    fed = 0
    events: list[Event] = []
    for piece in pieces:
        if fed >= limit:
            break
        try:
            conn.receive_data(piece)
            fed += len(piece)
            events += drain(conn)
        except RemoteProtocolError as exc:
            return fed, exc, events
    return fed, None, events
