"""The client end of a connection: requests out, responses in.

One request at a time (no pipelining): a new request can start once the previous response
is complete and the connection is kept alive. The response to a HEAD request has no body
whatever its headers say; a response without Content-Length or chunked framing runs until the
server closes (``receive_data(b"")`` ends it). Protocol upgrades (CONNECT, ``Upgrade``) are not
supported on this side and are refused when sending.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..._native import mypyc_attr
from ._connection import Connection
from ._errors import LocalProtocolError
from ._events import (
    END_OF_MESSAGE,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    RequestHead,
    as_bytes,
)
from ._limits import DEFAULT_CLIENT_LIMITS, Limits
from ._response_reader import ResponseReader
from ._state import CLIENT, IDLE, SEND_BODY
from ._writer import (
    BODILESS,
    CHUNKED,
    LENGTH,
    BodyFramer,
    HeaderFacts,
    content_length_of,
    render_headers,
    request_line,
)

Headers = Iterable[tuple[bytes, bytes]]

#: Methods whose requests announce their (maybe empty) body with Content-Length; the others
#: (GET, HEAD, DELETE, OPTIONS, TRACE...) normally carry none.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


@mypyc_attr(allow_interpreted_subclasses=True)
class ClientConnection(Connection):
    """A client's side of one HTTP/1.1 connection.

    ::

        conn = ClientConnection()
        sock.sendall(conn.send_request(b"GET", b"/", [(b"host", b"example.com")]))
        while (events := conn.next_events()) is NEED_DATA:
            conn.receive_data(sock.recv(65536))       # b"" at EOF
        ...                                           # ResponseHead, Data..., EndOfMessage

    ``limits`` bounds what the server may send (heads; bodies are unbounded by default).
    """

    __slots__ = ("_framer", "_responses")

    def __init__(self, limits: Limits = DEFAULT_CLIENT_LIMITS) -> None:
        super().__init__(CLIENT)
        #: The reader, with its type (``_reader``, the same object, is a `Reader` to the base
        #: class; a compiled subclass cannot narrow an attribute's type).
        self._responses = self._reader = ResponseReader(limits)
        self.receive_data = self._reader.receive_data
        self._framer = BodyFramer(LENGTH)

    @property
    def has_unrequested_data(self) -> bool:
        """With no request outstanding: whether the server has sent bytes already (a response to
        no request, or more than the last response's framing said). They cannot answer the
        next request, so such a connection must not carry one: close it."""
        return self._responses.holds_input()

    def send_request(
        self, method: bytes, target: bytes, headers: Headers, body: Any = b""
    ) -> bytes:
        """The bytes of a whole request with ``body``, framed by Content-Length.

        ``headers`` must include ``host``. Content-Length is added when there is a body (or
        the method is POST, PUT or PATCH), unless given (it must then match). ``body`` is
        bytes-like (``bytes``; a ``bytearray`` or ``memoryview`` is copied); anything else is a
        ``LocalProtocolError``, raised before anything changes. (``Any``: a wrong type reaches
        that check in both builds.)"""
        if type(body) is not bytes:
            body = as_bytes(body)
        lines, facts = self._head(method, target, headers)
        if facts.chunked:
            raise LocalProtocolError(
                "send_request frames with Content-Length; stream with start_request to send chunked"
            )
        if facts.content_length is None:
            if body or method in _BODY_METHODS:
                lines.append(b"content-length: %d\r\n" % len(body))
        elif facts.content_length != len(body):
            raise LocalProtocolError("Content-Length does not match the body")
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        self._start(method, facts)
        self._state.process_event(CLIENT, END_OF_MESSAGE)
        return b"".join(lines)

    def start_request(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        content_length: Any = None,
    ) -> bytes:
        """The head of a request whose body follows with ``send_data``/``end_request``:
        Content-Length framing if ``content_length`` is given (or a header), else chunked.

        ``content_length`` is None or an ``int`` of at least 0 (else ``LocalProtocolError``;
        ``Any``: a wrong type reaches that check in both builds)."""
        return self._start_streamed(method, target, headers, content_length, True)

    def _start_streamed(
        self, method: bytes, target: bytes, headers: Headers, content_length: Any, chunked: bool
    ) -> bytes:
        """``start_request``; without a length the body is chunked if ``chunked`` (or a
        ``transfer-encoding: chunked`` header says so), else the request has none."""
        if content_length is not None:
            content_length = content_length_of(content_length)
        lines, facts = self._head(method, target, headers)
        if content_length is not None:
            if facts.content_length not in (None, content_length):
                raise LocalProtocolError("content_length does not match the Content-Length header")
            if facts.content_length is None:
                lines.append(b"content-length: %d\r\n" % content_length)
        else:
            content_length = facts.content_length
        if content_length is None:
            if chunked or facts.chunked:
                lines.append(b"transfer-encoding: chunked\r\n")
                framer = BodyFramer(CHUNKED)
            else:
                framer = BodyFramer(BODILESS)
        else:
            framer = BodyFramer(LENGTH, content_length)
        lines.append(b"\r\n")
        self._start(method, facts)
        self._framer = framer
        return b"".join(lines)

    def _head(
        self, method: bytes, target: bytes, headers: Headers
    ) -> tuple[list[bytes], HeaderFacts]:
        our_state = self._state.states[CLIENT]
        if our_state is not IDLE:
            raise LocalProtocolError(f"cannot start a request in state {our_state}")
        if self._responses.holds_input():
            raise LocalProtocolError(
                "the server sent data before this request: the connection cannot carry it"
            )
        if method == b"CONNECT":
            raise LocalProtocolError("CONNECT is not supported")
        lines = [request_line(method, target)]
        facts = render_headers(headers, lines)
        if facts is None or not facts.has_host:
            raise LocalProtocolError("an HTTP/1.1 request needs a host header")
        if facts.upgrade:
            raise LocalProtocolError("protocol upgrades are not supported")
        return lines, facts

    def _start(self, method: bytes, facts: HeaderFacts) -> None:
        head = RequestHead(method, b"", [], b"1.1", not facts.close, facts.expect_continue)
        self._state.process_event(CLIENT, head)
        if method == b"HEAD":
            self._responses.expect_head_response()

    def send_data(self, data: Any) -> bytes:
        """The bytes that carry ``data`` in the body started by ``start_request``.

        ``data`` is bytes-like, as ``send_request``'s body (else ``LocalProtocolError``,
        nothing changed)."""
        if type(data) is not bytes:
            data = as_bytes(data)
        state = self._state
        if state.states[CLIENT] is not SEND_BODY:
            raise LocalProtocolError("no request body is being sent")
        if state.client_waiting_for_continue and data:
            state.process_event(CLIENT, Data(data))
        try:
            return self._framer.data(data)
        except LocalProtocolError as exc:
            self._fail_locally(exc)

    def end_request(self, trailers: Headers | None = None) -> bytes:
        """The bytes that end the request body (trailers only with chunked framing)."""
        state = self._state
        if state.states[CLIENT] is not SEND_BODY:
            raise LocalProtocolError("no request body is being sent")
        try:
            tail = self._framer.end(trailers)
        except LocalProtocolError as exc:
            self._fail_locally(exc)
        state.process_event(CLIENT, END_OF_MESSAGE)
        return tail

    def send(self, event: Event) -> bytes:
        """The h11-like form: the bytes of one event sent by this side.

        A ``RequestHead`` is framed by its headers (``content-length``, or
        ``transfer-encoding: chunked``); without either, a POST, PUT or PATCH is chunked (as
        ``start_request`` frames it) and any other method (GET, HEAD, DELETE, OPTIONS...) is
        sent as h11 sends it: without framing and without body (``Data`` with bytes is then a
        ``LocalProtocolError``)."""
        if isinstance(event, RequestHead):
            method = event.method
            return self._start_streamed(
                method, event.target, event.headers, None, method in _BODY_METHODS
            )
        if isinstance(event, Data):
            return self.send_data(event.data)
        if isinstance(event, EndOfMessage):
            return self.end_request(event.trailers)
        if isinstance(event, ConnectionClosed):
            self._state.process_event(CLIENT, event)
            return b""
        if not isinstance(event, Event):  # (the compiled build refuses it at the call)
            raise TypeError(f"send takes an event, not {type(event).__name__}")
        raise LocalProtocolError(f"a client does not send {type(event).__name__}")
