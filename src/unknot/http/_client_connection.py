"""One client connection: a cooperative socket (TCP, maybe TLS) and the protocol layer's
``ClientConnection``, with the reads and writes of one request/response exchange at a time.

Timeouts are socket timeouts (the read timeout bounds each wait for bytes, the write timeout
each send), tightened to what is left of an overall deadline when there is one; the socket's
``TimeoutError`` and ``OSError`` become the client's `ReadTimeout`, `WriteError`... here, and the
layer's protocol errors become the client's `RemoteProtocolError`.
"""

from __future__ import annotations

import builtins
import select
import time
from collections.abc import Iterable, Iterator
from typing import Any

from unknot import lowlevel
from unknot import socket as usocket
from unknot import ssl as ussl

from ._client_errors import (
    ConnectError,
    ConnectTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    SSLError,
    TotalTimeout,
    WriteError,
    WriteTimeout,
)
from ._protocol import (
    IDLE,
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    ProtocolError,
    ResponseHead,
)

#: Bytes asked of the socket per receive.
RECV_SIZE = 65536
#: Request bodies up to this size leave in one send with the head.
_JOIN_BODY_MAX = 65536

_monotonic = time.monotonic
_poll = select.poll
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP

#: Pool key: (scheme, host, port, TLS context or None).
PoolKey = tuple[str, str, int, Any]


#: The socket timeout that stands for a timeout of 0: ``settimeout(0)`` would make the socket
#: non-blocking (``BlockingIOError``), where a zero time limit means "unless ready at once,
#: time out". This one tries the call once, and times out if it would wait.
_AT_ONCE = 1e-9


def _socket_timeout(timeout: float | None) -> float | None:
    """``timeout`` as given to ``settimeout``: 0 becomes `_AT_ONCE`."""
    return _AT_ONCE if timeout is not None and timeout <= 0 else timeout


def _remaining(deadline: float) -> float:
    left = deadline - _monotonic()
    if left <= 0:
        raise TotalTimeout("the request took longer than its total timeout")
    return left


def open_connection(
    key: PoolKey, connect_timeout: float | None, deadline: float | None
) -> HTTPConnection:
    """Connect to ``key``'s host and port (and do the TLS handshake with its context) within
    ``connect_timeout`` and the overall ``deadline``; ``ConnectError``/``ConnectTimeout``."""
    _scheme, host, port, _context = key
    timeout = connect_timeout
    total_first = False
    if deadline is not None:
        left = _remaining(deadline)
        if timeout is None or left < timeout:
            timeout, total_first = left, True
    timeout_error = (
        TotalTimeout("the request took longer than its total timeout")
        if total_first
        else ConnectTimeout(f"connecting to {host}:{port} timed out")
    )
    try:
        if timeout is not None and lowlevel.current_fiber() is not None:
            # The DNS look-up (on the thread pool) is bounded too, not only each connect().
            with lowlevel.move_on_after(timeout) as scope:
                conn = _connect(key, timeout)
            if scope.cancelled_caught:
                raise timeout_error
            return conn
        return _connect(key, timeout)
    except ConnectTimeout:
        raise timeout_error from None


def _tcp_connect(host: str, port: int, timeout: float | None) -> Any:
    """A connected cooperative TCP socket: each address of ``host`` in turn (as the stdlib's
    ``create_connection``, but closing the socket whatever interrupts the connect)."""
    try:
        infos = usocket.getaddrinfo(host, port, 0, usocket.SOCK_STREAM)
    except OSError as exc:
        raise ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    errors: list[OSError] = []
    for family, kind, proto, _name, address in infos:
        sock = usocket.socket(family, kind, proto)
        try:
            sock.settimeout(_socket_timeout(timeout))
            sock.connect(address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if errors and all(isinstance(e, builtins.TimeoutError) for e in errors):
        raise ConnectTimeout(f"connecting to {host}:{port} timed out")
    error = errors[0] if errors else OSError("no address")
    raise ConnectError(f"cannot connect to {host}:{port}: {error}") from error


def _connect(key: PoolKey, timeout: float | None) -> HTTPConnection:
    _scheme, host, port, context = key
    sock = _tcp_connect(host, port, timeout)
    try:
        sock.setsockopt(usocket.IPPROTO_TCP, usocket.TCP_NODELAY, 1)
        if context is not None:
            try:
                sock = ussl.wrap(sock, context, server_hostname=host)
            except builtins.TimeoutError:
                raise ConnectTimeout(f"the TLS handshake with {host}:{port} timed out") from None
            except ussl.SSLError as exc:
                raise SSLError(f"TLS with {host}:{port} failed: {exc}") from exc
            except OSError as exc:
                raise ConnectError(f"TLS with {host}:{port} failed: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    return HTTPConnection(sock, timeout, key)


class HTTPConnection:
    """A connected socket and its protocol state; one exchange at a time.

    ``key`` is its pool key; ``counted``: the pool counts it among its open connections.
    ``requests`` counts the exchanges started on it (more than one: it was reused);
    ``received`` says whether any byte of the current response arrived (a reused connection
    that failed before that may be retried); ``idle_since`` is set by the pool.
    """

    __slots__ = (
        "sock",
        "key",
        "counted",
        "proto",
        "requests",
        "received",
        "idle_since",
        "deadline",
        "_timeout",
        "_closed",
        "_poller",
    )

    def __init__(self, sock: Any, timeout: float | None, key: PoolKey) -> None:
        self.sock = sock
        self.key = key
        self.counted = False
        self.proto = ClientConnection()
        self.requests = 0
        self.received = False
        self.idle_since = 0.0
        #: The overall deadline of the current exchange (monotonic), or None.
        self.deadline: float | None = None
        self._timeout = timeout  # the socket's current timeout
        self._closed = False
        self._poller: Any = None

    # -- state -----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def is_reusable(self) -> bool:
        """The exchange is complete, the connection is kept alive and nothing more has arrived
        on it: it can go to the pool."""
        proto = self.proto
        return not self._closed and proto.our_state is IDLE and not proto.has_unrequested_data

    def is_dropped(self) -> bool:
        """For an idle connection: readable means the server closed it (or sent garbage)."""
        return self.has_input()

    def has_input(self) -> bool:
        """Whether the socket is readable now (bytes, the server's close or an error)."""
        try:
            poller = self._poller
            if poller is None:
                poller = self._poller = _poll()
                poller.register(self.sock, _POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if not self._closed:
            self._closed = True
            self.sock.close()

    def _set_timeout(self, timeout: float | None, deadline: float | None) -> bool:
        """Set the socket timeout for the next call; True if the deadline is the tighter."""
        total_first = False
        if deadline is not None:
            left = _remaining(deadline)
            if timeout is None or left < timeout:
                timeout, total_first = left, True
        if timeout != self._timeout:
            self.sock.settimeout(_socket_timeout(timeout))
            self._timeout = timeout
        return total_first

    # -- sending ---------------------------------------------------------------------------------

    def send_request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | Iterable[bytes] | None,
        write_timeout: float | None,
    ) -> None:
        """Send a request: ``body`` bytes go with Content-Length, an iterable chunked."""
        self.requests += 1
        self.received = False
        proto = self.proto
        try:
            if body is None or type(body) is bytes:
                if body is not None and len(body) > _JOIN_BODY_MAX:
                    self._send(
                        proto.start_request(method, target, headers, len(body)), write_timeout
                    )
                    # In pieces: the write timeout bounds each piece, not the whole body.
                    for start in range(0, len(body), _JOIN_BODY_MAX):
                        self._send(
                            proto.send_data(body[start : start + _JOIN_BODY_MAX]), write_timeout
                        )
                    self._send(proto.end_request(), write_timeout)
                else:
                    self._send(
                        proto.send_request(method, target, headers, body or b""), write_timeout
                    )
                return
            self._send(proto.start_request(method, target, headers), write_timeout)
            assert not isinstance(body, bytes)
            for chunk in _chunks(body):
                if chunk:
                    self._send(proto.send_data(chunk), write_timeout)
            self._send(proto.end_request(), write_timeout)
        except WriteError:
            # The server may have answered before taking the whole body (a 413, a 401), then
            # closed: the connection stays open for `receive_head` to read that answer.
            if not self.has_input():
                self.close()
            raise
        except BaseException:
            self.close()
            raise

    def _send(self, data: bytes | bytearray | memoryview, write_timeout: float | None) -> None:
        if self.deadline is not None or write_timeout != self._timeout:
            total_first = self._set_timeout(write_timeout, self.deadline)
        else:
            total_first = False
        try:
            self.sock.sendall(data)
        except builtins.TimeoutError:
            if total_first:
                raise TotalTimeout("the request took longer than its total timeout") from None
            raise WriteTimeout("sending the request timed out") from None
        except OSError as exc:
            raise WriteError(f"sending the request failed: {exc}") from exc

    # -- receiving -------------------------------------------------------------------------------

    def _next_events(self, read_timeout: float | None) -> list[Event]:
        """The next events of the response, receiving as needed."""
        proto = self.proto
        sock = self.sock
        try:
            while True:
                events = proto.next_events()
                if events is not NEED_DATA:
                    assert isinstance(events, list), events
                    return events
                if self.deadline is not None or read_timeout != self._timeout:
                    total_first = self._set_timeout(read_timeout, self.deadline)
                else:
                    total_first = False
                try:
                    data = sock.recv(RECV_SIZE)
                except builtins.TimeoutError:
                    if total_first:
                        raise TotalTimeout(
                            "the request took longer than its total timeout"
                        ) from None
                    raise ReadTimeout("the server sent nothing for the read timeout") from None
                except OSError as exc:
                    raise ReadError(f"receiving the response failed: {exc}") from exc
                if data:
                    self.received = True
                elif not self.received:
                    raise RemoteProtocolError(
                        "the server closed the connection without sending a response"
                    )
                proto.receive_data(data)
        except ProtocolError as exc:
            raise RemoteProtocolError(str(exc)) from exc

    def receive_head(self, read_timeout: float | None) -> tuple[ResponseHead, list[bytes], bool]:
        """Wait for the final response head; return it, the body bytes that came with it and
        whether the body is complete."""
        try:
            while True:
                events = self._next_events(read_timeout)
                for i, event in enumerate(events):
                    kind = type(event)
                    if kind is ResponseHead:
                        assert isinstance(event, ResponseHead)
                        rest = events[i + 1 :]
                        parts: list[bytes] = []
                        for later in rest:
                            if type(later) is Data:
                                parts.append(later.data)
                            else:
                                return event, parts, True
                        return event, parts, False
                    if kind is ConnectionClosed:
                        raise RemoteProtocolError(
                            "the server closed the connection without sending a response"
                        )
                    if kind is not InformationalResponse:
                        raise RemoteProtocolError(f"unexpected {kind.__name__} before the head")
        except BaseException:
            self.close()
            raise

    def receive_body(self, read_timeout: float | None) -> tuple[list[bytes], bool]:
        """The next body bytes (at least one piece unless the body ended) and whether the
        body is complete."""
        try:
            events = self._next_events(read_timeout)
        except BaseException:
            self.close()
            raise
        parts: list[bytes] = []
        for event in events:
            if type(event) is Data:
                parts.append(event.data)
            elif isinstance(event, EndOfMessage):
                return parts, True
        return parts, False


def _chunks(body: Iterable[bytes] | Any) -> Iterator[bytes]:
    """The pieces of a streamed body: an iterable of bytes (str is encoded as UTF-8), or a
    binary file-like object read 64 KiB at a time."""
    read = getattr(body, "read", None)
    if read is not None:
        while True:
            chunk = read(RECV_SIZE)
            if not chunk:
                return
            yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)
    for chunk in body:
        if isinstance(chunk, str):
            yield chunk.encode()
        elif isinstance(chunk, bytes | bytearray | memoryview):
            yield bytes(chunk)
        else:
            raise TypeError(f"a request body iterable yields bytes, not {type(chunk).__name__}")
