"""The client side's reader: responses in, ``InformationalResponse``/``ResponseHead``/
``Data``/``EndOfMessage`` out.

A response to HEAD has no body whatever its headers say (llhttp cannot be told so: the heads
are cut at their blank line and fed alone); 204 and 304 have none either; a response without
Content-Length or chunked framing runs until the server closes.
"""

from __future__ import annotations

import httptools

from ._errors import RemoteProtocolError
from ._events import InformationalResponse, ResponseHead
from ._limits import Limits, limit_value
from ._reader import VERSIONS, Reader, strict_parser


class ResponseReader(Reader):
    """The client side: parses responses. Tell it about a HEAD request with
    :meth:`expect_head_response` before the response arrives."""

    __slots__ = ("_reason", "_informational", "_head_only", "_head_done", "_until_close", "_buffer")

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self._reason = b""
        self._informational = False
        self._head_only = False  # the response answers a HEAD: it has no body
        self._head_done = False
        self._until_close = False
        self._buffer = b""
        self.parser = self._new_parser()

    def _new_parser(self) -> httptools.HttpResponseParser:
        parser = httptools.HttpResponseParser(self)
        strict_parser(parser)
        return parser

    def _kind(self) -> str:
        return "response"

    def expect_head_response(self) -> None:
        """The next final response answers a HEAD request: its head only, whatever it says."""
        self._head_only = True

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Parse ``data`` (``b""``: EOF). For a HEAD response, llhttp cannot be told to skip
        the body, so the heads are cut at their blank line (strict mode guarantees CRLF CRLF)
        and fed alone."""
        if not self._head_only or self.stopped or not data:
            Reader.receive_data(self, data)
            return
        buffer = self._buffer + bytes(data)
        while self._head_only and not self.stopped:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._max_target + self._max_header:
                    self._fail(RemoteProtocolError("response head too large", 431))
                self._buffer = buffer
                return
            Reader.receive_data(self, buffer[: end + 4])
            buffer = buffer[end + 4 :]
            if self._head_done:  # the final head: end the message here, parse on afresh
                self._head_only = self._head_done = False
                self._end_message()
                self.parser = self._new_parser()
        self._buffer = b""
        if buffer:
            self.receive_data(buffer)

    def holds_input(self) -> bool:
        """Whether anything received is still unread: events not handed out, a response begun,
        a parse error, or a HEAD response's bytes held back."""
        return bool(
            self.ready or self.current or self._buffer or self._in_message or self.error is not None
        )

    def feed_eof(self) -> None:
        """The server closed: this ends a body delimited by the connection's end. The bytes of
        a HEAD's answer held back (no blank line yet) are parsed first, so that a head cut
        short is reported as one (or as malformed), as it is for any other request."""
        if self._buffer and not self.stopped:
            held, self._buffer = self._buffer, b""
            Reader.receive_data(self, held)
        if self._until_close and not self.stopped:
            self._until_close = False
            self._end_message()
        Reader.feed_eof(self)

    def on_message_begin(self) -> None:
        """A response begins: its first byte has come (as for a request: see RequestReader)."""
        self._in_message = True

    def on_status(self, reason: bytes) -> None:
        """The reason phrase, maybe in pieces."""
        reason = self._reason + reason
        if len(reason) > self._max_target:
            self._raise(RemoteProtocolError("reason phrase too long", 431))
        self._reason = reason

    def on_headers_complete(self) -> None:
        """The head is complete: queue an ``InformationalResponse`` or a ``ResponseHead``."""
        parser = self.parser
        headers = self._headers
        self._headers = []
        self._in_body = True
        status = parser.get_status_code()
        version = VERSIONS.get(parser.get_http_version())
        reason, self._reason = self._reason, b""
        if self._head_may_be_too_large(headers):
            self._check_head(headers)
        if version is None:
            self._raise(RemoteProtocolError("HTTP version not supported", 505))
        assert version is not None
        if status < 100:
            self._raise(RemoteProtocolError(f"invalid status {status}"))
        if status < 200:
            if status == 101:
                self._raise(RemoteProtocolError("switching protocols is not supported"))
            self._informational = True  # llhttp completes it with no body
            self.current.append(InformationalResponse(status, headers, reason, version))
            return
        codings = self._codings
        chunked = False
        if codings:
            # The client sends no TE header, so chunked is the only coding a server may use
            # (RFC 9110, 10.1.4); another would reach the caller still encoded.
            if codings != (b"chunked",):
                self._raise(
                    RemoteProtocolError(
                        "unsupported transfer coding: " + b", ".join(codings).decode("latin-1")
                    )
                )
            chunked = True
        if self._head_only:
            # llhttp expects a body it will never see; keep-alive is decided here instead.
            self._head_done = True
            tokens = self._connection_tokens()
            if version == b"1.1":
                keep_alive = b"close" not in tokens
            else:
                keep_alive = b"keep-alive" in tokens
        else:
            keep_alive = parser.should_keep_alive()
            if status != 204 and status != 304:
                if chunked:
                    # An int even with no body limit: the reader tells the trailers by it.
                    self._body_budget = limit_value(self._max_body)
                elif self._content_length is None:
                    # No length: the body runs until the server closes (RFC 9112, 6.3).
                    self._until_close = True
                    self._body_budget = self._max_body
                    keep_alive = False
                else:
                    self._check_content_length()
        self._keep_alive = keep_alive
        self.current.append(ResponseHead(status, headers, reason, version, keep_alive))

    def on_message_complete(self) -> None:
        """A response is complete (an informational one produces no ``EndOfMessage``; a HEAD
        response is ended by :meth:`receive_data`)."""
        self._until_close = False
        if self._informational:
            self._informational = False
            self._reset_message()
        elif not self._head_done:
            self._end_message()
