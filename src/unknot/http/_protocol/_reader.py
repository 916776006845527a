"""Bytes in, events out: the parser callbacks (httptools, i.e. llhttp) that build the events.

A reader owns one llhttp parser in strict mode (every leniency off: no bare LF, no obs-fold, no
data after ``Connection: close``, no CTL in header values, no chunk-size slack) and turns its
callbacks into events. It parses eagerly: everything fed is parsed at once, so the events of
several pipelined messages may be ready together. They are kept message by message:
:attr:`Reader.ready` holds the event lists of complete messages in order and
:attr:`Reader.current` the events of the message in progress; the connection hands them out one
message at a time, so no byte of request 2 is lost while request 1 is being answered.

A parse error (or a limit crossed) stops the reader: the events parsed before it stay queued,
and :attr:`Reader.error` is raised only when they have been handed out.

The callbacks are the hot path of a server: they store into preallocated slots, look at a
header's name only to spot the few that decide the framing, and create no event for a message
without trailers (:data:`END_OF_MESSAGE` is shared).
"""

from __future__ import annotations

from collections import deque

import httptools

from ._errors import ProtocolError, RemoteProtocolError
from ._events import (
    END_OF_MESSAGE,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    HeaderList,
    InformationalResponse,
    RequestHead,
    ResponseHead,
)
from ._limits import Limits

#: Header names that decide how a message is framed or handled; only these get a closer look.
_NOTED = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"}
)
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
_NO_LENIENCY = dict.fromkeys(
    (
        "lenient_headers",
        "lenient_chunked_length",
        "lenient_keep_alive",
        "lenient_transfer_encoding",
        "lenient_version",
        "lenient_data_after_close",
        "lenient_optional_lf_after_cr",
        "lenient_optional_cr_before_lf",
        "lenient_optional_crlf_after_chunk",
        "lenient_spaces_after_chunk_size",
    ),
    False,
)


def strict_parser(parser: httptools.HttpRequestParser | httptools.HttpResponseParser) -> None:
    """Turn every llhttp leniency off (they are off by default; this makes it certain)."""
    parser.set_dangerous_leniencies(**_NO_LENIENCY)


class Reader:
    """What request and response readers share: queues, header block, body, limits, errors."""

    __slots__ = (
        "parser",
        "ready",
        "current",
        "error",
        "stopped",
        "eof",
        "trailing_data",
        "_headers",
        "_noted",
        "_content_length",
        "_codings",
        "_connection",
        "_in_message",
        "_in_body",
        "_keep_alive",
        "_body_budget",
        "_progress",
        "_head_exact",
        "_head_bound",
        "_feed_size",
        "_max_target",
        "_max_header",
        "_max_count",
        "_max_body",
    )

    parser: httptools.HttpRequestParser | httptools.HttpResponseParser

    def __init__(self, limits: Limits) -> None:
        #: Event lists of the complete messages not handed out yet, oldest first.
        self.ready: deque[list[Event]] = deque()
        #: Events of the message in progress.
        self.current: list[Event] = []
        #: The error that stopped parsing, raised once ``ready`` and ``current`` are handed out.
        self.error: ProtocolError | None = None
        #: Nothing more is parsed (error, end of a last message, upgrade); input is ignored.
        self.stopped = False
        #: The peer closed its side (``feed_eof``).
        self.eof = False
        #: Bytes received after an Upgrade or CONNECT request, not parsed.
        self.trailing_data = b""
        self._headers: HeaderList = []
        self._noted = False
        self._content_length: int | None = None
        self._codings: list[bytes] = []
        self._connection = b""
        self._in_message = False
        self._in_body = False
        self._keep_alive = True
        self._body_budget: int | None = None
        self._progress = 0
        self._head_exact = 0
        self._head_bound = 0
        self._feed_size = 0
        self._max_target = limits.max_target_size
        self._max_header = limits.max_header_size
        self._max_count = limits.max_header_count
        self._max_body = limits.max_body_size

    # -- feeding ---------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Parse ``data``; the events go to :attr:`current` and :attr:`ready`."""
        if self.stopped:
            return
        progress = self._progress
        self._feed_size = size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.stopped = True
            self.trailing_data = bytes(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        if not self._in_body:
            # A head in progress (or the gap between messages). The bytes of a feed during
            # which no head or message completed all belong to it: count them, so that an
            # endless head is cut off even where llhttp calls back nothing (whitespace).
            if self._progress == progress:
                self._head_exact += size
                self._head_bound += size
                if self._head_exact > self._max_target + self._max_header:
                    self._fail(RemoteProtocolError("request head too large", 431))
            else:
                self._head_bound = size  # the head began somewhere in this feed

    def _parse_failed(self, exc: Exception) -> None:
        if self.error is not None:
            return  # our own error, raised from a callback: already recorded
        if self.stopped:
            return  # data after a message that ends the connection: ignored
        if isinstance(exc, httptools.HttpParserCallbackError) and exc.__context__ is not None:
            raise exc.__context__  # a bug in a callback, not a protocol error
        self._fail(RemoteProtocolError(f"malformed {self._kind()}: {exc}", 400))

    def _fail(self, error: ProtocolError) -> None:
        """Stop parsing; the events so far stay queued, then ``error`` is raised."""
        self.error = error
        self.stopped = True
        if self.current:
            self.ready.append(self.current)
            self.current = []

    def _raise(self, error: ProtocolError) -> None:
        """From a callback: record the error, then make llhttp stop."""
        self._fail(error)
        raise error

    def _kind(self) -> str:
        raise NotImplementedError

    def feed_eof(self) -> None:
        """The peer closed its side: ``ConnectionClosed`` follows the messages received, or an
        error if a message was cut short."""
        if self.eof:
            return
        self.eof = True
        if self.error is not None:
            return
        self.stopped = True
        if self._in_message:
            self._fail(RemoteProtocolError(f"connection closed in the middle of a {self._kind()}"))
            return
        self.ready.append([ConnectionClosed()])

    # -- callbacks shared by requests and responses ----------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        """A header (or trailer) field: lowercase the name, keep the value as received."""
        name = name.lower()
        self._headers.append((name, value))
        if name in _NOTED and not self._in_body:
            self._note(name, value)

    def _note(self, name: bytes, value: bytes) -> None:
        self._noted = True
        if name == b"content-length":
            # llhttp has already refused repeats, lists, signs and non-digits.
            if self._content_length is not None:
                self._raise(RemoteProtocolError("repeated Content-Length"))
            self._content_length = int(value)
        elif name == b"transfer-encoding":
            self._codings.extend(c.strip().lower() for c in value.split(b","))
        elif name == b"connection":
            self._connection += b"," + value.lower()

    def _check_head(self, headers: HeaderList) -> None:
        """At the end of a head: the header count and size limits."""
        if len(headers) > self._max_count:
            self._raise(RemoteProtocolError("too many header fields", 431))
        if self._head_bound + self._feed_size > self._max_header:
            # The head may be over the limit (these bytes include the head): measure it.
            size = sum(len(n) + len(v) for n, v in headers) + 4 * len(headers)
            if size > self._max_header:
                self._raise(RemoteProtocolError("header block too large", 431))
        self._head_exact = self._head_bound = 0

    def _check_content_length(self) -> None:
        """A body is coming: a Content-Length over the limit is refused before reading it."""
        length = self._content_length
        if length is not None and self._max_body is not None and length > self._max_body:
            self._raise(RemoteProtocolError("body larger than the limit", 413))

    def on_body(self, body: bytes) -> None:
        """A piece of body; a chunked or read-until-close body is counted against the limit."""
        budget = self._body_budget
        if budget is not None:
            budget -= len(body)
            if budget < 0:
                self._raise(RemoteProtocolError("body larger than the limit", 413))
            self._body_budget = budget
        self.current.append(Data(body))

    def _end_message(self) -> None:
        """The message is complete: queue its events with its end, reset for the next one."""
        trailers = self._headers
        current = self.current
        if trailers:
            if len(trailers) > self._max_count or (
                sum(len(n) + len(v) for n, v in trailers) + 4 * len(trailers) > self._max_header
            ):
                self._raise(RemoteProtocolError("trailer block too large", 431))
            current.append(EndOfMessage(trailers))
            self._headers = []
        else:
            current.append(END_OF_MESSAGE)
        self.ready.append(current)
        self.current = []
        self._reset_message()
        if not self._keep_alive:
            self.stopped = True  # llhttp refuses what follows; the connection ends here

    def _reset_message(self) -> None:
        self._in_message = self._in_body = False
        self._body_budget = None
        self._progress += 1
        self._head_exact = self._head_bound = 0
        if self._noted:
            self._noted = False
            self._connection = b""
            self._content_length = None
            self._codings = []

    def _connection_tokens(self) -> set[bytes]:
        return {token.strip() for token in self._connection.split(b",")}


class RequestReader(Reader):
    """The server side: parses requests."""

    __slots__ = ("_target", "_expect_continue", "_upgrade_offered")

    parser: httptools.HttpRequestParser

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self._target = b""
        self._expect_continue = False
        self._upgrade_offered = False
        self.parser = parser = httptools.HttpRequestParser(self)
        strict_parser(parser)

    def _kind(self) -> str:
        return "request"

    def _note(self, name: bytes, value: bytes) -> None:
        if name == b"expect":
            self._expect_continue = value.strip().lower() == b"100-continue"
            self._noted = True
        elif name == b"upgrade":
            self._upgrade_offered = self._noted = True
        else:
            Reader._note(self, name, value)

    def on_url(self, url: bytes) -> None:
        """The request target, maybe in pieces (llhttp reports what each feed holds)."""
        self._in_message = True
        target = self._target + url
        if len(target) > self._max_target:
            self._raise(RemoteProtocolError("request target too long", 414))
        self._target = target

    def on_headers_complete(self) -> None:
        """The head is complete: check it, then queue its ``RequestHead``."""
        parser = self.parser
        headers = self._headers
        self._headers = []  # trailers, if any, go to a fresh list
        self._in_body = True
        self._check_head(headers)
        keep_alive = parser.should_keep_alive()
        method = parser.get_method()
        expect_continue = upgrade = False
        if keep_alive and not self._connection:
            version = b"1.1"  # llhttp keeps only HTTP/1.1 alive without a Connection header
        else:
            version = self._version()
        if self._noted:
            expect_continue = self._expect_continue and version == b"1.1"
            self._expect_continue = False
            self._frame_body()
            self._check_content_length()
            if self._upgrade_offered or method == b"CONNECT":
                self._upgrade_offered = False
                upgrade = parser.should_upgrade()
                if upgrade:
                    if self._codings or self._content_length:
                        self._raise(RemoteProtocolError("an upgrade request with a body"))
                    keep_alive = False
        elif method == b"CONNECT":
            upgrade, keep_alive = True, False
        self._keep_alive = keep_alive
        self.current.append(
            RequestHead(method, self._target, headers, version, keep_alive, expect_continue,
                        upgrade)
        )
        self._target = b""

    def _version(self) -> bytes:
        version = _VERSIONS.get(self.parser.get_http_version())
        if version is None:
            self._raise(RemoteProtocolError("HTTP version not supported", 505))
        assert version is not None
        return version

    def _frame_body(self) -> None:
        codings = self._codings
        if codings:
            # llhttp refuses chunked not last and Content-Length with Transfer-Encoding (400);
            # a coding other than chunked is not implemented (RFC 9112, 6.1).
            if codings != [b"chunked"]:
                self._raise(RemoteProtocolError("unsupported transfer coding", 501))
            self._body_budget = self._max_body

    def on_message_complete(self) -> None:
        """The request is complete."""
        self._end_message()


class ResponseReader(Reader):
    """The client side: parses responses. Tell it about a HEAD request with
    :meth:`expect_head_response` before the response arrives."""

    __slots__ = ("_reason", "_informational", "_head_only", "_head_done", "_until_close",
                 "_buffer")

    parser: httptools.HttpResponseParser

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

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Parse ``data``. For a HEAD response, llhttp cannot be told to skip the body, so the
        heads are cut at their blank line (strict mode guarantees CRLF CRLF) and fed alone."""
        if not self._head_only or self.stopped:
            Reader.feed(self, data)
            return
        buffer = self._buffer + bytes(data)
        while self._head_only and not self.stopped:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._max_target + self._max_header:
                    self._fail(RemoteProtocolError("response head too large", 431))
                self._buffer = buffer
                return
            Reader.feed(self, buffer[: end + 4])
            buffer = buffer[end + 4 :]
            if self._head_done:  # the final head: end the message here, parse on afresh
                self._head_only = self._head_done = False
                self._end_message()
                self.parser = self._new_parser()
        self._buffer = b""
        if buffer:
            self.feed(buffer)

    def feed_eof(self) -> None:
        """The server closed: this ends a body delimited by the connection's end."""
        if self._until_close and not self.stopped:
            self._until_close = False
            self._end_message()
        Reader.feed_eof(self)

    def on_message_begin(self) -> None:
        """A response begins (unlike a server, a client can afford this callback)."""
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
        self._check_head(headers)
        status = parser.get_status_code()
        version = _VERSIONS.get(parser.get_http_version())
        reason, self._reason = self._reason, b""
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
        chunked = bool(self._codings) and self._codings[-1] == b"chunked"
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
                    self._body_budget = self._max_body
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
        response is ended by :meth:`feed`)."""
        self._until_close = False
        if self._informational:
            self._informational = False
            self._reset_message()
        elif not self._head_done:
            self._end_message()
