"""One HTTP connection, served in its own fiber: read requests, call the handler, write answers.

`HTTPConnection.run` is the server's hot loop. It reads into the sans-I/O `ServerConnection`
with one ``recv`` of up to 64 KiB, answers each complete request in order, and sends a response
whose body is ``bytes`` as one ``send`` (head and body framed together by
``ServerConnection.send_response``). That ``send`` waits until the next ``recv`` is due, or
the next handler is called: the answers to pipelined requests go out one by one, each before
the next request's handler runs, so that a handler that blocks holds back only the answers
after its own. (Without pipelining there is no handler between an answer and the next
``recv``: one ``send`` per response all the same.) Bodies that are not bytes go out from
`_respond`: a file with ``sendfile``, an iterable chunk by chunk.

Timeouts cost no timer per request: before a call that may wait, the connection stores the
time it must end by in `HTTPConnection.deadline` (0.0 while it runs the handler), and the
server's watchdog fiber, waking a few times a second, raises `TimeoutError` in every
connection parked past its deadline (see ``HTTPServer``). The timeouts:

- before a request: ``keep_alive`` seconds for its first byte, then the connection closes
  silently (the client may be sending a request at that very moment: a 408 would be taken as
  its answer). The first request of a connection has ``head`` seconds instead, and gets 408:
  a client that connects and says nothing is told why it is dropped. Empty lines before a
  request (some old clients send a CRLF after a POST body) are ignored (RFC 9112, 2.2): they
  neither begin a head nor prolong the wait, and the reader counts them as a head (431 past
  the head size limit), so that endless ones end the connection as well.
- the head: ``head`` seconds from its first byte to its end, for all its ``recv``\\ s together
  (a client trickling bytes is cut at the deadline), then 408 and close. A head that began in
  the bytes of the requests before it (pipelined) is timed from when they have been answered;
  it is no idle connection either (``stop`` gives it the grace), from its first byte (a
  method alone counts; empty lines between requests do not, RFC 9112, 2.2).
- the body: ``body`` seconds for each wait for more body bytes (`TimeoutError` in the
  handler; 408 if the handler lets it through).
- each write: ``write`` seconds (a whole small response, a chunk, or 1 MiB of a larger body or
  file), then the connection is dropped.

Errors: a request the protocol layer refuses gets its status hint (400, 413, 414, 431, 505)
and ``Connection: close``; a CONNECT request gets 501 and ``Connection: close`` without
reaching the handler (no tunnels here; logged at debug level only). An exception from the
handler is logged (``unknot.http``) and answered 500, or, if the response had begun, the
connection is reset. Whenever a response is cut short after its head (the protocol layer is
still sending its body: it failed, the client stopped reading it for the write timeout,
``stop`` cancelled it), the connection is reset (RST: ``SO_LINGER`` 0), not closed, so that
the client can tell; a body delimited by the close (a stream to an HTTP/1.0 client) would
otherwise look complete. (A ``bytes`` body always has a Content-Length.) A client that goes
away ends its connection quietly; the handler's own fibers and other connections are not
touched.
Every other end is clean, and on TLS begins with the close_notify alert (see
`HTTPConnection.close_notify`), so that the client can tell it from a truncation.

``stop`` closes the idle connections at once, and gives the others the grace: their answers
say ``Connection: close``, unless their heads went out before (a streamed answer's head goes
with its first chunk). A connection whose last answer said keep-alive takes a request that
has already come (answered, saying close) and otherwise closes cleanly, our side shut down
first (see `HTTPConnection.after_stop`); one that closes at ``stop`` after an answer while the
client has sent more lingers (see `HTTPConnection.linger`): no reset can wipe out the answer
under the client's feet.

A request body the handler did not read (all of it) is read and dropped after the answer,
when its Content-Length says at most `DRAIN_LIMIT` bytes are left; otherwise (more left, or
a chunked body not received to its end) the answer says ``Connection: close`` and the
connection closes after it. An answer streamed from an iterable may read the request body as
it goes (an echo); its head, written with its first chunk, says keep-alive if the handler has
begun reading the body by then (whatever it leaves is then read and dropped after the answer,
however long), and close otherwise (see `_body_closes`). Whenever the server closes the
connection after an answer of its own choice (an unread body, ``stop``), the answer's head
says so, if it had not gone out before the choice was made.
"""

from __future__ import annotations

import logging
import math
import socket as _socket
import ssl as _ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from greenlet import GreenletExit

from .._native import mypyc_attr
from ..lowlevel import Cancelled
from ._access_log import AccessLog
from ._body import RequestBody
from ._headers import RawHeaders
from ._message import Body, FileBody, HTTPError, Request, normalize_result
from ._protocol import (
    ERROR,
    NEED_DATA,
    SEND_BODY,
    Event,
    Limits,
    LocalProtocolError,
    ProtocolError,
    RequestHead,
    ServerConnection,
)
from ._protocol._events import END_OF_MESSAGE
from ._respond import (
    ClientGone,
    ResponseAborted,
    record_sent,
    send_file,
    send_stream,
    sent_before,
    write,
)

__all__ = ["ConnectionSettings", "HTTPConnection", "Timeouts"]

log = logging.getLogger("unknot.http")

RECV_SIZE = 65536
#: A response waiting for the next ``recv`` (or handler) is sent at once if it is larger.
BATCH_LIMIT = 65536
#: After a response, at most this much of an unread request body is read and dropped so that
#: the connection can go on; a longer rest closes it instead (said in the response when it is
#: known in advance, see `_drains`).
DRAIN_LIMIT = 65536
#: Closing with input possibly unread: after shutting down our side, read and drop for at most
#: this long (and this much), so that the kernel does not reset the connection under the
#: client's feet before it read our answer.
LINGER_TIME = 2.0
LINGER_LIMIT = 1 << 20

_METHODS = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")
}
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}
_CLOSE = (b"connection", b"close")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
#: ``SO_LINGER`` on, for 0 seconds: closing the socket resets the connection.
_RESET = struct.pack("ii", 1, 0)


def _other(method: bytes) -> str:
    """The name of a method not in `_METHODS`; ``""`` for CONNECT (refused, see
    `HTTPConnection.refuse_connect`)."""
    return "" if method == b"CONNECT" else method.decode("latin-1")


def _drains(head: RequestHead, body: RequestBody) -> bool:
    """Whether the rest of ``body`` (not all received) is to be read and dropped after the
    answer, so that the connection can go on: only a body whose Content-Length says that at
    most `DRAIN_LIMIT` bytes are left (a chunked body's rest is of unknown length). If not, the
    answer says ``Connection: close``. (`RequestBody.drain` stops at the same bound.)"""
    if body.failure is not None:
        return False
    for name, value in head.headers:
        if name == b"content-length":
            return int(value) - body.received <= DRAIN_LIMIT
    return False


def _body_closes(head: RequestHead, body: RequestBody | None, streamed: bool) -> bool:
    """Whether the answer to ``head``, its head about to be written, must close the connection
    because of the request body: some of it is still to come and will not be read to its end.

    What the handler left is read and dropped after the answer if at most `DRAIN_LIMIT` bytes
    of it are left (`_drains`). An answer streamed from an iterable that runs after the head
    (``streamed``) may read the body as it goes (an echo), but its head goes out with its first
    chunk, before it is known how much it will read: if the handler has begun reading the body
    by then, the head says keep-alive and whatever is left after the answer is read and dropped
    however long it is (the body size limit bounds it), so that the head holds; if it has not,
    the head says close (and the connection closes, however much the iterable reads later)."""
    if body is None or body.done:
        return False
    if body.failure is not None:
        return True
    if streamed and body.started:
        return False
    return not _drains(head, body)


# Not a native class, compiled: an ordinary frozen dataclass in both builds (the server reads
# it once, at its start), so that both validate alike (a native class's constructor would
# refuse a "5" with its own TypeError before __post_init__, and convert a Decimal itself),
# and copy, deepcopy and pickle work (a native frozen class refuses the state being set back).
@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the server waits for a client, in seconds (finite and positive).

    ``head`` (10)
        From the first byte of a request head to its end, all ``recv``\\ s together: a
        client trickling its head is cut off (408, then close). Also how long a new
        connection may stay silent before its first request (408 too).
    ``keep_alive`` (5)
        How long an open connection may wait for the first byte of its next request; then
        it is closed without a word (a client may be sending a request at that moment: a 408
        would look like its answer).
    ``body`` (30)
        Each wait for more request body bytes while the handler reads the body:
        `TimeoutError` in the handler, 408 if the handler lets it through.
    ``write`` (60)
        Each write to the client (a whole small response, a chunk of a stream, 1 MiB of a
        larger body or file): a client that stops reading is dropped.

    Each is any real number (an int, a `Fraction`, a `Decimal`), kept as a float; `ValueError`
    for anything else (a string, None, a bool) and for one that is not finite and positive.
    """

    head: float = 10.0
    keep_alive: float = 5.0
    body: float = 30.0
    write: float = 60.0

    # (``self: Any``: compiled, a method of a non-native class checks that ``self`` is of the
    # class itself, and would refuse a subclass's instance.)
    def __post_init__(self: Any) -> None:
        for name in ("head", "keep_alive", "body", "write"):
            value = getattr(self, name)
            seconds = math.nan
            if not isinstance(value, (str, bytes, bytearray, bool)):
                try:
                    seconds = float(value)
                except (TypeError, ValueError, OverflowError):
                    pass
            if not 0 < seconds < math.inf:
                raise ValueError(f"timeout {name} must be a positive number, not {value!r}")
            object.__setattr__(self, name, seconds)


class ConnectionSettings:
    """What every connection of one server shares: the handler, limits, timeouts, logging."""

    __slots__ = (
        "handler",
        "limits",
        "head_timeout",
        "keep_alive_timeout",
        "body_timeout",
        "write_timeout",
        "access_log",
        "tls",
        "scheme",
        "closing",
    )

    def __init__(
        self,
        handler: Callable[[Request], Any],
        limits: Limits,
        timeouts: Timeouts,
        access_log: AccessLog | None,
        tls: bool,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.head_timeout: float = timeouts.head
        self.keep_alive_timeout: float = timeouts.keep_alive
        self.body_timeout: float = timeouts.body
        self.write_timeout: float = timeouts.write
        self.access_log = access_log
        self.tls = tls
        self.scheme = "https" if tls else "http"
        #: The server is stopping: answer what is in progress with ``Connection: close``.
        self.closing = False


class HTTPConnection:
    """One client connection: its socket, its protocol state and the responses not sent yet."""

    __slots__ = ("settings", "sock", "client", "proto", "pending", "idle", "eof", "deadline")

    def __init__(self, settings: ConnectionSettings, sock: Any, client: Any) -> None:
        self.settings = settings
        self.sock = sock
        self.client = client
        self.proto = ServerConnection(settings.limits)
        #: Response bytes waiting to go out with the next write.
        self.pending = b""
        #: Waiting for the first byte of a request: the connection can be closed at no loss.
        self.idle = True
        #: The client closed its side.
        self.eof = False
        #: When the I/O call under way times out (``time.monotonic()``); 0.0: none is.
        self.deadline = 0.0
        sock.settimeout(None)  # the watchdog times the waits out

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve requests until the connection ends (the socket is the caller's to close)."""
        # One frame, not a wrapper around the loop: an idle connection keeps every frame of its
        # fiber (about 215 bytes each on 3.12+; docs/internals.md, "Memory per idle
        # connection").
        try:
            # The methods are called on their objects, not kept as bound methods in locals: a
            # waiting connection's frame would hold four more objects for the garbage collector to
            # scan (thousands of connections, see docs/production.md); a method call costs a cached
            # lookup more.
            settings = self.settings
            proto = self.proto
            receive = proto.receive_data  # (the reader's method, stored on the connection)
            sock = self.sock
            monotonic = time.monotonic
            handler = settings.handler
            client = self.client
            write_timeout = settings.write_timeout
            head_timeout = settings.head_timeout
            wait_timeout = head_timeout  # for the first byte of the next request
            inline = settings.access_log is None and not settings.tls
            first = True
            # The end of the head under way; 0.0: none has begun; negative: none has, and minus
            # the end of the idle wait under way (empty lines came, which do not prolong it).
            head_deadline = 0.0
            result: Any = None  # (the handler's last result, let go before each wait)
            headers: Any = None
            content: Any = None
            while True:
                try:
                    events = proto.next_events()
                except ProtocolError as exc:
                    self.refuse(exc)
                    return
                if events is NEED_DATA:
                    pending = self.pending
                    if pending:  # (flush, inlined)
                        self.pending = b""
                        self.deadline = monotonic() + write_timeout
                        try:
                            sock.sendall(pending)
                        except OSError as exc:
                            raise ClientGone(f"cannot write to the client: {exc}") from exc
                    # Nothing of the last exchange is kept while waiting (an idle keep-alive
                    # connection would hold its last request, response and bytes read).
                    pending = data = b""
                    head = request = result = headers = content = None
                    try:
                        # A head under way: the reader is in a request (a method alone
                        # included), begun with the previous recv or pipelined behind the
                        # requests just answered; its deadline runs from now (head_deadline
                        # <= 0.0), or on (> 0.0: the head went on with the previous recv).
                        if head_deadline > 0.0 or proto.request_begun:
                            if head_deadline <= 0.0:
                                head_deadline = monotonic() + head_timeout
                            self.deadline = head_deadline
                            data = sock.recv(RECV_SIZE)
                        else:
                            # Idle: no byte of a request yet. head_deadline is 0.0, or minus
                            # the end of this wait if the previous recv brought empty lines
                            # only: they are ignored (RFC 9112, 2.2), and neither begin a head
                            # nor prolong the wait (the reader counts them as a head: 431 past
                            # its size limit).
                            if settings.closing:
                                # (bytes of a request that had come, answered: see after_stop)
                                data = b"" if first else self.after_stop()
                                if not data:
                                    return
                            else:
                                if not head_deadline:
                                    head_deadline = -(monotonic() + wait_timeout)
                                self.idle = True
                                self.deadline = -head_deadline
                                data = sock.recv(RECV_SIZE)
                                self.idle = False
                    except TimeoutError:
                        if head_deadline > 0.0 or first:
                            self.answer_error(408)
                            self.linger()
                        return
                    except OSError as exc:
                        log.debug("reading from %s failed: %s", self.client, exc)
                        return
                    finally:
                        self.deadline = 0.0
                    if not data:
                        self.eof = True
                    receive(data)
                    continue
                head = events[0]  # type: ignore[index]
                if type(head) is not RequestHead:
                    self.flush()
                    return  # ConnectionClosed: the client closed between requests
                head_deadline = 0.0
                if first:
                    first = False
                    wait_timeout = settings.keep_alive_timeout
                if (
                    inline
                    and len(events) == 2  # type: ignore[arg-type]
                    and events[1] is END_OF_MESSAGE  # type: ignore[index]
                    and head.http_version == b"1.1"
                ):
                    # The common request, HTTP/1.1 without a body, answered inline (`answer` and
                    # `respond` do the same in general).
                    method = head.method
                    # (GET first: comparing bytes costs less than hashing them)
                    name = "GET" if method == b"GET" else _METHODS.get(method) or _other(method)
                    if not name:  # CONNECT
                        self.refuse_connect(head)
                        self.linger()
                        return
                    # Pipelined: the answers before it go first (its handler may block).
                    if self.pending:
                        self.flush()
                    try:
                        request = Request(
                            name,
                            head.target,
                            head.headers,
                            "1.1",
                            client,
                        )
                        result = handler(request)
                        if type(result) is tuple and len(result) == 3:
                            status, headers, content = result
                            # (int, dict or None, bytes) goes to send_response as it is: the
                            # protocol layer checks the status and the headers itself. What it
                            # refuses (before any change of state), and any other answer or
                            # status (200.0, True, an HTTPStatus), goes through normalize_result
                            # and `respond`, as in `answer`: the same answer (and the same
                            # error, logged) on every path.
                            simple = (
                                type(content) is bytes
                                and type(status) is int
                                and (headers is None or type(headers) is dict)
                            )
                        else:
                            simple = False
                        data = b""
                        if simple and not settings.closing:
                            try:
                                data = proto.send_response(status, headers, content)
                            except LocalProtocolError:
                                simple = False  # (a bad status or header: see above)
                        else:
                            simple = False
                        if not simple:
                            status, headers, content = normalize_result(result)
                            if type(content) is bytes and not settings.closing:
                                data = proto.send_response(status, headers, content)
                                simple = True
                        if simple:
                            pending = self.pending + data
                            if len(pending) > BATCH_LIMIT:
                                self.pending = b""
                                write(self, pending)
                            else:
                                self.pending = pending
                            ok = True
                        else:
                            ok = self.respond(head, None, status, headers, content)
                    except ClientGone:
                        raise
                    except Exception as exc:
                        ok = self.handler_failed(head, None, exc)
                    except (Cancelled, GreenletExit):
                        raise
                    except BaseException as exc:  # SystemExit, KeyboardInterrupt...
                        ok = self.handler_interrupted(head, exc)
                else:
                    ok = self.answer(head, events)  # type: ignore[arg-type]
                if not ok:
                    self.linger()
                    return
                if not proto.keep_alive:
                    self.flush()
                    if settings.closing and self.read_now():
                        # `stop`, and the client has sent more (pipelined, or after an answer
                        # whose head said keep-alive, see `after_stop`): closing with it unread
                        # would reset the connection under the client's feet.
                        self.linger()
                    return
        except ClientGone as exc:
            log.debug("client %s went away: %s", self.client, exc.__cause__ or exc)
        finally:
            state = self.proto.our_state
            if state is SEND_BODY or state is ERROR:
                # A response cut short (its body failed, the client stopped reading, the
                # fiber was cancelled): reset, not close, so that the client can tell.
                self.abort()
            elif self.settings.tls:
                # Any other end is clean: the TLS stream ends with its close_notify (sent by
                # `linger` already, if it ran), or the client takes it for a truncation.
                self.close_notify()
            # What the connection leaves behind dies by reference counting, not in a cyclic
            # garbage collection (see `ServerConnection.release`).
            self.proto.release()

    # -- one exchange --------------------------------------------------------------------------

    def answer(self, head: RequestHead, events: list[Event]) -> bool:
        """Answer one request; False if the connection must close now (after a linger)."""
        settings = self.settings
        method = head.method
        name = _METHODS.get(method) or _other(method)
        if not name:  # CONNECT
            return self.refuse_connect(head)
        if len(events) == 2 and events[1] is END_OF_MESSAGE:
            body = None
        else:
            body = RequestBody(self, events)
        if self.pending:  # pipelined: the answers before it go first (its handler may block)
            self.flush()
        request = Request(
            name,
            head.target,
            head.headers,
            _VERSIONS[head.http_version],
            self.client,
            settings.scheme,
            body,
        )
        try:
            status, headers, content = normalize_result(settings.handler(request))
            return self.respond(head, body, status, headers, content)
        except ClientGone:
            raise
        except Exception as exc:
            return self.handler_failed(head, body, exc)
        except (Cancelled, GreenletExit):
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt...
            return self.handler_interrupted(head, exc)

    def respond(
        self,
        head: RequestHead,
        body: RequestBody | None,
        status: int,
        headers: RawHeaders,
        content: Body,
    ) -> bool:
        """Send the handler's answer to ``head``; False if the connection must close now.
        Exceptions from a bad answer propagate (nothing is sent then).

        A request body the handler left unread is read and dropped after the answer, if it
        can be; if not, the answer says ``Connection: close`` (see `_body_closes`, also for an
        answer streamed from an iterable, which may read the request body as it goes).

        An answer cut short after its head went out is logged to the access log all the same,
        with the body bytes written before the cut (see `sent_before`), then the exception
        propagates."""
        settings = self.settings
        is_head = head.method == b"HEAD"
        try:
            if type(content) is bytes:
                if settings.closing or body is not None:
                    headers = self.head_headers(head, body, headers, False)
                data = self.pending + self.proto.send_response(status, headers, content)
                sent = 0 if is_head else len(content)
                if len(data) > BATCH_LIMIT:
                    self.pending = b""
                    try:
                        write(self, data)
                    except ClientGone as exc:
                        # (the head and the answers before it come first in ``data``)
                        record_sent(exc, max(0, min(sent, exc.written - (len(data) - sent))))
                        raise
                else:
                    self.pending = data
                limit: int | None = DRAIN_LIMIT
            elif isinstance(content, FileBody):
                if settings.closing or body is not None:
                    headers = self.head_headers(head, body, headers, False)
                sent = send_file(self, status, headers, content, is_head)
                limit = DRAIN_LIMIT
            else:
                # (The head is written, and `head_headers` asked, when the first chunk is known.)
                sent = send_stream(self, status, headers, content, head, body)
                limit = None  # kept alive with more left only because the iterable was reading
        except BaseException as exc:
            if settings.access_log is not None:
                cut = sent_before(exc)
                if cut is not None:  # (None: no head went out; the error is answered)
                    settings.access_log.log(self.client, head, status, cut)
            raise
        if settings.access_log is not None:
            settings.access_log.log(self.client, head, status, sent)
        if body is not None and not body.done:
            return self.proto.keep_alive and body.drain(limit)
        return True

    def head_headers(
        self, head: RequestHead, body: RequestBody | None, headers: RawHeaders, streamed: bool
    ) -> RawHeaders:
        """``headers`` for the head of the answer to ``head``, being written now, with
        ``Connection: close`` added if the connection is to close after the answer: the server
        is stopping, or the request body will not be read to its end (`_body_closes`; the
        protocol layer adds it in its own cases). Asked when the head is written: a streamed
        answer's head waits for its first chunk, and ``stop`` may have been called meanwhile."""
        if self.settings.closing or _body_closes(head, body, streamed):
            return [*headers, _CLOSE]
        return headers

    def handler_failed(self, head: RequestHead, body: RequestBody | None, exc: Exception) -> bool:
        """The handler (or its response) failed with ``exc``; False if the connection must
        close. An `HTTPError` is answered with its response; a body that could not be read is
        answered as such; anything else is logged and answered 500, unless the response had
        begun (then the connection is reset, see `abort`)."""
        if isinstance(exc, HTTPError):  # a plain handler's (an App answers its own)
            try:
                return self.respond(head, body, *normalize_result(exc.response()))
            except ClientGone:
                raise
            except Exception as again:
                exc = again
        if body is not None and exc is body.failure:
            if isinstance(exc, ClientGone):
                raise exc
            status = 408 if isinstance(exc, TimeoutError) else getattr(exc, "status_hint", 400)
            self.answer_error(status, head)
            return False
        started = isinstance(exc, ResponseAborted)
        log.error(
            "handler failed for %s %s from %s%s",
            head.method.decode("latin-1"),
            head.target.decode("latin-1"),
            self.client,
            " after the response began: connection reset" if started else "",
            exc_info=exc.__cause__ if started else exc,
        )
        if started:
            self.eof = True  # (no lingering: `run` resets the connection, see `abort`)
            return False
        self.answer_error(500, head, close=self.settings.closing or _body_closes(head, body, False))
        if body is not None and not body.done:
            return self.proto.keep_alive and body.drain(DRAIN_LIMIT)
        return self.proto.keep_alive

    def handler_interrupted(self, head: RequestHead, exc: BaseException) -> bool:
        """The handler (or its response) raised ``exc``, a `BaseException` that is no
        cancellation (`SystemExit`, `KeyboardInterrupt`...). As from a fiber nobody waits for,
        it is logged with its traceback, and the server goes on; the request is answered 500,
        or the connection reset if the response had begun (see `abort`), and the connection
        closes (False)."""
        state = self.proto.our_state
        started = state is SEND_BODY or state is ERROR
        log.error(
            "handler raised %s for %s %s from %s: %s",
            type(exc).__name__,
            head.method.decode("latin-1"),
            head.target.decode("latin-1"),
            self.client,
            "connection reset" if started else "answered 500, connection closed",
            exc_info=exc,
        )
        if started:
            self.eof = True  # (no lingering: `run` resets the connection, see `abort`)
        else:
            self.answer_error(500, head)
        return False

    # -- body events for RequestBody -----------------------------------------------------------

    def next_body_events(self) -> list[Event]:
        """The next events of the body being read, received as needed (see `RequestBody`)."""
        proto = self.proto
        while True:
            try:
                events = proto.next_events()
            except ProtocolError:
                if self.eof:
                    raise ClientGone("the client closed the connection in the body") from None
                raise
            if type(events) is list:
                return events
            if events is not NEED_DATA:
                raise RuntimeError(f"no body to read: {events!r}")
            if proto.client_is_waiting_for_100_continue:
                self.pending += proto.send_informational(100)
            if self.pending:
                self.flush()
            try:
                self.deadline = time.monotonic() + self.settings.body_timeout
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                raise TimeoutError(
                    f"no request body bytes for {self.settings.body_timeout} s"
                ) from None
            except OSError as exc:
                raise ClientGone(str(exc)) from exc
            finally:
                self.deadline = 0.0
            if not data:
                self.eof = True
            proto.receive_data(data)

    # -- output --------------------------------------------------------------------------------

    def flush(self) -> None:
        """Send the responses waiting in `pending`."""
        data = self.pending
        if data:
            self.pending = b""
            write(self, data)

    def answer_error(
        self, status: int, head: RequestHead | None = None, close: bool = True
    ) -> None:
        """Answer with ``status`` and its phrase as plain text (closing the connection unless
        ``close`` is false), if a response can still be sent; the pending ones go first."""
        body = b"%d %s\n" % (status, HTTPStatus(status).phrase.encode())
        headers = [_TEXT, _CLOSE] if close else [_TEXT]
        try:
            data = self.proto.send_response(status, headers, body)
        except LocalProtocolError:
            return  # a response is under way (or the connection failed): nothing to add
        settings = self.settings
        if settings.access_log is not None:
            sent = 0 if head is not None and head.method == b"HEAD" else len(body)
            settings.access_log.log(self.client, head, status, sent)
        self.pending += data
        try:
            self.flush()
        except ClientGone:
            pass

    def refuse_connect(self, head: RequestHead) -> bool:
        """A CONNECT request: the server opens no tunnels. Answered 501 (Not Implemented)
        without calling the handler, then the connection closes (False)."""
        log.debug("refusing CONNECT %s from %s", head.target.decode("latin-1"), self.client)
        self.answer_error(501, head)
        return False

    def refuse(self, exc: ProtocolError) -> None:
        """The client broke the protocol: answer with the status hint, then close."""
        log.debug("refusing a request from %s: %s", self.client, exc)
        self.answer_error(exc.status_hint)
        self.linger()

    def abort(self) -> None:
        """Make the close abortive: ``SO_LINGER`` 0, so that closing the socket resets the
        connection (RST) and drops what is still unsent. For a response cut short: its end
        would otherwise look like the end of a body delimited by the close (HTTP/1.0)."""
        self.eof = True  # (no lingering)
        try:
            self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _RESET)
        except OSError:
            pass

    def after_stop(self) -> bytes:
        """``stop`` has begun, and the connection waits for the next request after answers
        whose heads said keep-alive (they went out before: a streamed answer's head goes with
        its first chunk). The client may be sending a request at this very moment, and the
        connection cannot take the keep-alive back.

        The bytes that have already come, read without waiting: the request is answered, as
        any request under way at ``stop``, within the grace and saying ``Connection: close``
        (the client may not be able to retry it: a POST is not retried on its own). ``b""``
        if none had (or the client closed its side): the connection is to close, and closes
        cleanly (`linger`: a FIN after the last answer, then what the client still sends is
        read and dropped until it closes its side), so that a request crossing our FIN gets
        no reset that could wipe out the answers before it (RFC 9112, 9.6); the client sees
        the connection closed without an answer to that request, and retries it on a new
        one."""
        data = self.read_now()
        if data is None:
            self.linger()
            return b""
        if not data:
            self.eof = True
        return data

    def read_now(self) -> bytes | None:
        """What the client has sent and is not read yet, read without waiting; ``b""`` if it
        has closed its side, None if nothing is there (or the connection failed: `eof` is
        set then, and `linger` does not wait)."""
        sock = self.sock
        try:
            sock.settimeout(0.0)
            try:
                data: bytes = sock.recv(RECV_SIZE)
                return data
            finally:
                sock.settimeout(None)
        except (BlockingIOError, _ssl.SSLWantReadError):
            return None
        except OSError as exc:
            log.debug("reading from %s failed: %s", self.client, exc)
            self.eof = True
            return None

    def close_notify(self) -> None:
        """TLS: send the close_notify alert, which ends the TLS stream cleanly, without waiting
        for the client's. Without it, the end of the connection looks to a TLS client like a
        truncation (Python's `ssl` raises `ssl.SSLEOFError` instead of returning ``b""``), and
        the end of an answer saying ``Connection: close`` like an attack cutting it short.

        It never waits (the socket is non-blocking for the call, so that a client that never
        answers, or has gone, holds nothing up, and a cancelled fiber can call it): the alert
        is sent if the socket takes it at once, and any failure (the client has gone, TLS was
        shut down already) is ignored, as the connection is closing anyway."""
        sock = self.sock
        try:
            sock.settimeout(0.0)
            try:
                # The first step of the TLS shutdown sends our alert; the second waits for the
                # client's, and raises SSLWantReadError here.
                sock.unwrap()
            finally:
                sock.settimeout(None)
        except (OSError, ValueError):  # (ValueError: shut down already, see `linger`)
            pass

    def linger(self) -> None:
        """Before closing with input maybe unread: send what is pending, shut our side down
        (on TLS, the close_notify alert first: `close_notify`), then read and drop what the
        client still sends, for a short while."""
        sock = self.sock
        try:
            self.flush()
            if self.eof:
                return
            if self.settings.tls:
                self.close_notify()
            # (On TLS, this drops the TLS layer too: what the client still sends, its own
            # close_notify included, is read and dropped as it comes.)
            sock.shutdown(1)  # SHUT_WR
            self.deadline = time.monotonic() + LINGER_TIME
            dropped = 0
            while dropped < LINGER_LIMIT:
                data = sock.recv(RECV_SIZE)
                if not data:
                    return
                dropped += len(data)
        except (OSError, ClientGone):
            pass
        finally:
            self.deadline = 0.0
