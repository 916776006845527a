"""The server end of a connection: requests in, responses out.

The fast path is :meth:`ServerConnection.send_response`: one call frames a whole response
(status line, headers, Content-Length, Date, Connection, body) into one ``bytes`` that leaves
in one ``send``, and moves the state machine on to the next request. Streaming responses use
:meth:`~ServerConnection.start_response`, :meth:`~ServerConnection.send_data` and
:meth:`~ServerConnection.end_response`.

Protocols are never switched. An ``Upgrade`` offered (with ``Connection: upgrade``) is ignored,
as RFC 9110, 7.8 allows: the request is an ordinary one, body included, and the connection is
kept alive or not by the usual rules (101 is refused). A CONNECT is handed out with ``upgrade``
true, parsing stops after it (the bytes that followed are in ``trailing_data``), the server
answers it with an ordinary response (a 2xx is refused: no tunnels) and the connection then
closes.

The server decides keep-alive, and writes the Connection header that says it: a caller's
``connection: close`` closes the connection; a caller's ``keep-alive`` is taken out of its
header when the connection closes anyway (the request said close, an HTTP/1.0 body runs until
the close...), so a response never says both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

from ..._native import mypyc_attr
from ._connection import Connection
from ._errors import LocalProtocolError
from ._events import (
    END_OF_MESSAGE,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    RequestHead,
    ResponseHead,
    as_bytes,
)
from ._limits import DEFAULT_LIMITS, Limits
from ._request_reader import RequestReader
from ._state import CLIENT, DONE, IDLE, SEND_BODY, SEND_RESPONSE, SERVER
from ._writer import (
    CHECKED_LINES,
    CHUNKED,
    DATE_LINE,
    FIELD_LINES,
    LENGTH,
    NO_BODY,
    STATUS_LINE_BY_CODE,
    STRIPPED,
    UNTIL_CLOSE,
    BodyFramer,
    HeaderFacts,
    content_length_of,
    date_line,
    field_pairs,
    now,
    render_headers,
    status_line,
)

# What the state machine is shown for a final response (it reads only the type and keep_alive).
_KEPT_ALIVE = ResponseHead(200, [], keep_alive=True)
_CLOSING = ResponseHead(200, [], keep_alive=False)
_INTERIM = InformationalResponse(100, [])
_CONNECTION_CLOSE = b"connection: close\r\n"
_CONNECTION_KEEP_ALIVE = b"connection: keep-alive\r\n"
_CONTENT_LENGTH_LINES = [b"content-length: %d\r\n" % n for n in range(1024)]

Headers = Iterable[tuple[bytes, bytes]]
#: What `ServerConnection.send_response` takes as headers: pairs of bytes, or a handler's dict
#: (see `field_pairs`), or None.
Fields = Headers | dict[Any, Any] | None


@mypyc_attr(allow_interpreted_subclasses=True)
class ServerConnection(Connection):
    """A server's side of one HTTP/1.1 connection.

    Typical loop (blocking style, one fiber per connection)::

        conn = ServerConnection()
        while True:
            events = conn.next_events()
            if events is NEED_DATA:
                conn.receive_data(sock.recv(65536))   # b"" at EOF
                continue
            ...                                       # RequestHead, Data..., EndOfMessage
            sock.sendall(conn.send_response(200, [(b"content-type", b"text/plain")], b"hi"))

    ``limits`` bounds what the client may send (see :class:`Limits`).
    """

    __slots__ = ("_framer",)

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(SERVER)
        self._reader = RequestReader(limits)
        self.receive_data = self._reader.receive_data
        self._framer = BodyFramer(LENGTH)

    @property
    def client_is_waiting_for_100_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and may wait for a 100 before its body.

        Send ``send_informational(100)`` before reading the body, or a final response to refuse
        it (then the connection closes after the response)."""
        return self._state.client_waiting_for_continue

    @property
    def request_begun(self) -> bool:
        """Bytes of a request not handed out yet have been received: its head is under way, from
        its first byte (a method alone counts; empty lines before a request do not)."""
        return self._reader._in_message

    # -- whole responses -------------------------------------------------------------------------

    def send_response(
        self, status: int, headers: Fields = (), body: Any = b"", reason: bytes | None = None
    ) -> bytes:
        """The bytes of a whole final response (200-599) with ``body``, framed by Content-Length.

        ``body`` is bytes-like (``bytes``; a ``bytearray`` or ``memoryview`` is copied); anything
        else is a ``LocalProtocolError``, raised before anything changes. (``Any``: a wrong type
        reaches that check in both builds.)

        ``headers``: ``(name, value)`` pairs of bytes, written as given; or a dict as a handler
        returns it (names ``str`` or ``bytes``, written lowercased; values ``str``, ``bytes``
        or ``int``); or None.

        Adds ``content-length`` (unless given; it must then match the body), ``date`` (unless
        given) and ``connection`` as needed. The answer to a HEAD request keeps its headers and
        drops the body. 204 and 304 take no body. The state machine moves on: the next request
        (maybe already received) can be read right after.
        """
        # The hot path of a server: one call per request, no helper calls in the common case.
        data: bytes = body if type(body) is bytes else as_bytes(body)
        state = self._state
        our_state = state.states[SERVER]
        if our_state is SEND_RESPONSE:
            request = self._request
        elif our_state is IDLE:
            request = None
        else:
            raise LocalProtocolError(f"cannot send a response in state {our_state}")
        try:
            line = STATUS_LINE_BY_CODE[status] if reason is None and status >= 200 else None
        except (IndexError, OverflowError, TypeError):  # 1000 and over; not an int (pure build)
            line = None
        if line is None:
            line = _final_status_line(status, reason)
        lines = [line]
        facts = None
        # (The loops below call ``.get`` and ``.append`` on their objects, not through bound
        # methods kept in locals: for the one to three headers of a typical response that is
        # cheaper interpreted as well, and compiled it is a direct C call.)
        if type(headers) is list:
            # render_headers, inlined for the common case: every pair seen before, none framing.
            try:
                for pair in headers:
                    entry = CHECKED_LINES.get(pair)
                    if entry is None or entry[1]:
                        raise LookupError
                    lines.append(entry[0])
            except (LookupError, TypeError):
                del lines[1:]
                facts = render_headers(headers, lines)
        elif type(headers) is dict:
            # A handler's dict, each pair seen before and none framing (FIELD_LINES); else
            # field_pairs converts and checks them all.
            try:
                for pair in headers.items():
                    field = FIELD_LINES.get(pair)
                    if field is None:
                        raise LookupError
                    lines.append(field)
            except (LookupError, TypeError):
                del lines[1:]
                facts = render_headers(field_pairs(headers), lines)
        elif headers:
            facts = render_headers(headers, lines)
        if request is not None and request.upgrade:
            _refuse_upgrade_answer(request.method, status)
        if facts is None and status != 204 and status != 304:
            size = len(data)
            lines.append(
                _CONTENT_LENGTH_LINES[size] if size < 1024 else b"content-length: %d\r\n" % size
            )
            if now() >= DATE_LINE.expires:  # (date_line, inlined)
                DATE_LINE.refresh()
            lines.append(DATE_LINE.line)
            keep_alive = (
                request is not None and state.keep_alive and not state.client_waiting_for_continue
            )  # (ConnectionState.response_may_keep_alive, inlined)
            if not keep_alive:
                lines.append(_CONNECTION_CLOSE)
            elif request.http_version != b"1.1":  # type: ignore[union-attr]
                lines.append(_CONNECTION_KEEP_ALIVE)  # HTTP/1.0 keeps alive only if told
        else:
            _frame_whole_body(lines, status, facts, data, request)
            keep_alive = self._connection_headers(lines, facts, request)
        lines.append(b"\r\n")
        if data and (request is None or request.method != b"HEAD"):
            lines.append(data)
        # INLINED-COPY-BEGIN(whole-response): ConnectionState.whole_response, the common case
        # (the general one goes through it).
        states = state.states
        if (
            keep_alive
            and our_state is SEND_RESPONSE
            and states[CLIENT] is DONE
            and state.keep_alive
            and not state.client_waiting_for_continue
        ):
            states[CLIENT] = states[SERVER] = IDLE  # the next cycle
        # INLINED-COPY-END(whole-response)
        else:
            state.whole_response(_KEPT_ALIVE if keep_alive else _CLOSING)
        self._request = None
        return b"".join(lines)

    def _connection_headers(
        self, lines: list[bytes], facts: HeaderFacts | None, request: RequestHead | None
    ) -> bool:
        """Append ``date`` and ``connection`` lines as needed; whether keep-alive goes on.

        The server decides keep-alive: the caller's ``Connection: close`` closes, but its
        ``keep-alive`` cannot keep open a connection that closes (it is taken out then)."""
        if facts is None or not facts.has_date:
            lines.append(date_line())
        keep_alive = (
            request is not None
            and self._state.response_may_keep_alive()
            and (facts is None or not facts.close)
        )
        if not keep_alive:
            if facts is not None and facts.keep_alive:
                _drop_keep_alive(lines)
            if facts is None or not facts.close:
                lines.append(_CONNECTION_CLOSE)
        elif request is not None and request.http_version == b"1.0":
            if facts is None or not facts.keep_alive:
                lines.append(_CONNECTION_KEEP_ALIVE)  # HTTP/1.0 keeps alive only if told
        return keep_alive

    # -- streamed responses ----------------------------------------------------------------------

    def start_response(
        self,
        status: int,
        headers: Headers = (),
        content_length: Any = None,
        reason: bytes | None = None,
    ) -> bytes:
        """The head of a final response whose body follows with ``send_data``/``end_response``.

        Framing: Content-Length if ``content_length`` is given (or a ``content-length``
        header); otherwise chunked for an HTTP/1.1 client, or until the connection closes for an
        HTTP/1.0 one. A HEAD's answer drops the data and the trailers sent; 204 and 304 refuse
        data and drop trailers. ``content_length`` is None or an ``int`` of at least 0 (else
        ``LocalProtocolError``; ``Any``: a wrong type reaches that check in both builds).
        """
        state = self._state
        our_state = state.states[SERVER]
        if our_state is not SEND_RESPONSE and our_state is not IDLE:
            raise LocalProtocolError(f"cannot send a response in state {our_state}")
        if content_length is not None:
            content_length = content_length_of(content_length)
        lines = [_final_status_line(status, reason)]
        facts = render_headers(headers, lines)
        request = self._request if our_state is SEND_RESPONSE else None
        if request is not None and request.upgrade:
            _refuse_upgrade_answer(request.method, status)
        if content_length is not None:
            if facts is not None and facts.content_length not in (None, content_length):
                raise LocalProtocolError("content_length does not match the Content-Length header")
            if facts is None or facts.content_length is None:
                lines.append(b"content-length: %d\r\n" % content_length)
        elif facts is not None:
            content_length = facts.content_length
        is_head = request is not None and request.method == b"HEAD"
        force_close = False
        if status == 204 or status == 304:
            if status == 204 and content_length is not None:
                raise LocalProtocolError("a 204 response cannot have a Content-Length")
            framer = BodyFramer(NO_BODY)
        elif is_head:
            framer = BodyFramer(STRIPPED)
        elif content_length is not None:
            framer = BodyFramer(LENGTH, content_length)
        elif request is not None and request.http_version == b"1.1":
            lines.append(b"transfer-encoding: chunked\r\n")
            framer = BodyFramer(CHUNKED)
        else:
            framer = BodyFramer(UNTIL_CLOSE)  # an HTTP/1.0 client (or none): close to end it
            force_close = True
        if force_close:  # (a caller's Connection: keep-alive is overridden)
            state.disable_keep_alive()
        keep_alive = self._connection_headers(lines, facts, request)
        lines.append(b"\r\n")
        state.process_event(SERVER, _KEPT_ALIVE if keep_alive else _CLOSING)
        self._framer = framer
        return b"".join(lines)

    def send_data(self, data: Any) -> bytes:
        """The bytes that carry ``data`` in the body started by ``start_response``.

        ``data`` is bytes-like, as ``send_response``'s body (else ``LocalProtocolError``,
        nothing changed)."""
        piece: bytes = data if type(data) is bytes else as_bytes(data)
        if self._state.states[SERVER] is not SEND_BODY:
            raise LocalProtocolError("no response body is being sent")
        try:
            return self._framer.data(piece)
        except LocalProtocolError as exc:
            self._fail_locally(exc)

    def data_sent(self, count: int) -> None:
        """Count ``count`` body bytes that the caller sent itself, as they are (a file sent with
        ``sendfile``): only a body framed by Content-Length (or by the end of the connection)
        can go out unframed. Too many bytes for the Content-Length is an error, as in
        ``send_data``. (``count`` is an ``int``: anything else is a ``TypeError``.)"""
        if not isinstance(count, int):
            raise TypeError(f"data_sent counts bytes in an int, not {type(count).__name__}")
        if self._state.states[SERVER] is not SEND_BODY:
            raise LocalProtocolError("no response body is being sent")
        framer = self._framer
        if framer.framing == LENGTH:
            framer.remaining -= count
            if framer.remaining < 0:
                self._fail_locally(
                    LocalProtocolError("more body data than the declared Content-Length")
                )
        elif framer.framing != UNTIL_CLOSE and framer.framing != STRIPPED:
            raise LocalProtocolError("only a body framed by its length can be sent unframed")

    def end_response(self, trailers: Headers | None = None) -> bytes:
        """The bytes that end the body (trailers only with chunked framing; the answer to HEAD,
        a 204 and a 304 drop them, as they drop the data)."""
        state = self._state
        if state.states[SERVER] is not SEND_BODY:
            raise LocalProtocolError("no response body is being sent")
        try:
            tail = self._framer.end(trailers)
        except LocalProtocolError as exc:
            self._fail_locally(exc)
        state.process_event(SERVER, END_OF_MESSAGE)
        self._request = None
        return tail

    # -- the rest --------------------------------------------------------------------------------

    def send_informational(self, status: int, headers: Headers = ()) -> bytes:
        """The bytes of a 1xx interim response: 100 (Continue), 103 (Early Hints)...

        Not for HTTP/1.0 clients; 101 (Switching Protocols) is refused: this layer does not
        switch protocols."""
        if not isinstance(status, int):
            _refuse_status_type(status)
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"{status} is not an informational status this layer sends")
        state = self._state
        if state.states[SERVER] is not SEND_RESPONSE:
            raise LocalProtocolError("an informational response needs a request being answered")
        request = self._request
        if request is None or request.http_version != b"1.1":
            raise LocalProtocolError("no informational responses to an HTTP/1.0 client")
        lines = [status_line(status)]
        facts = render_headers(headers, lines)
        if facts is not None and (facts.content_length is not None or facts.chunked):
            raise LocalProtocolError("an informational response has no body")
        lines.append(b"\r\n")
        state.process_event(SERVER, _INTERIM)
        return b"".join(lines)

    def send(self, event: Event) -> bytes:
        """The h11-like form: the bytes of one event sent by this side."""
        event_type = type(event)
        if isinstance(event, ResponseHead):
            return self.start_response(event.status, event.headers, reason=event.reason or None)
        if isinstance(event, Data):
            return self.send_data(event.data)
        if isinstance(event, EndOfMessage):
            return self.end_response(event.trailers)
        if isinstance(event, InformationalResponse):
            return self.send_informational(event.status, event.headers)
        if isinstance(event, ConnectionClosed):
            self._state.process_event(SERVER, event)
            return b""
        if not isinstance(event, Event):  # (the compiled build refuses it at the call)
            raise TypeError(f"send takes an event, not {event_type.__name__}")
        raise LocalProtocolError(f"a server does not send {event_type.__name__}")


def _frame_whole_body(
    lines: list[bytes],
    status: int,
    facts: HeaderFacts | None,
    body: bytes,
    request: RequestHead | None,
) -> None:
    """``send_response``'s framing for a 204/304, or when the caller gave framing headers."""
    if status == 204 or status == 304:
        if body:
            raise LocalProtocolError(f"a {status} response cannot have a body")
        if status == 204 and facts is not None and facts.content_length is not None:
            raise LocalProtocolError("a 204 response cannot have a Content-Length")
        return
    assert facts is not None
    if facts.chunked:
        raise LocalProtocolError(
            "send_response frames with Content-Length; stream with start_response for chunked"
        )
    if facts.content_length is None:
        lines.append(b"content-length: %d\r\n" % len(body))
    elif len(body) != facts.content_length:
        is_head = request is not None and request.method == b"HEAD"
        if body or not is_head:  # a HEAD's answer may announce the length of a GET's body
            raise LocalProtocolError("Content-Length does not match the body")


def _drop_keep_alive(lines: list[bytes]) -> None:
    """Take the ``keep-alive`` option out of the caller's ``connection`` lines (the server
    closes the connection): other options stay, a line left with none goes."""
    for index in range(len(lines) - 1, 0, -1):  # (lines[0] is the status line)
        name, _, value = lines[index].partition(b":")
        if name.lower() != b"connection":
            continue
        options = [option.strip() for option in value.split(b",")]
        kept = [option for option in options if option.lower() != b"keep-alive"]
        if len(kept) == len(options):
            continue
        kept = [option for option in kept if option]
        if kept:
            lines[index] = b"%s: %s\r\n" % (name, b", ".join(kept))
        else:
            del lines[index]


def _final_status_line(status: Any, reason: bytes | None) -> bytes:
    """The status line of a final response (``send_response``'s slow path, ``start_response``).

    ``status`` is an int (an ``IntEnum`` too); anything else is a ``TypeError``, as the compiled
    build raises at the call (``Any``: the same check runs in both builds)."""
    if not isinstance(status, int):
        _refuse_status_type(status)
    return status_line(status, reason) if status >= 200 else _refuse_status(status)


def _refuse_status_type(status: object) -> NoReturn:
    raise TypeError(f"an HTTP status is an int, not {type(status).__name__}")


def _refuse_status(status: int) -> bytes:
    raise LocalProtocolError(f"status {status} is not a final status (1xx: send_informational)")


def _refuse_upgrade_answer(method: bytes, status: int) -> None:
    if method == b"CONNECT" and 200 <= status < 300:
        raise LocalProtocolError("CONNECT tunnels are not supported: answer with an error")
