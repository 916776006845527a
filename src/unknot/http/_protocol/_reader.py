"""Bytes in, events out: what the request and response readers share.

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
without trailers (:data:`END_OF_MESSAGE` is shared). The request side is in
``_request_reader``, the response side in ``_response_reader``.
"""

from __future__ import annotations

from typing import Any

import httptools

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    END_OF_MESSAGE,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    HeaderList,
)
from ._limits import Limits, limit_value

#: Header names that decide how a message is framed or handled; only these get a closer look.
NOTED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"expect", b"upgrade"})
VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
#: llhttp's reason for a version of the right form (``DIGIT "." DIGIT``) that it does not know:
#: in strict mode it knows 0.9, 1.0, 1.1 and 2.0 only. (Malformed versions have reasons of their
#: own: "Invalid major version", "Expected dot"...)
_UNSUPPORTED_VERSION = "Invalid HTTP version"
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
    """Turn every llhttp leniency off (they are off by default; this makes it certain).

    An httptools without some of these flags has no such leniency to turn off."""
    try:
        parser.set_dangerous_leniencies(**_NO_LENIENCY)
    except TypeError:
        for name, off in _NO_LENIENCY.items():
            try:
                parser.set_dangerous_leniencies(**{name: off})
            except TypeError:
                pass


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
        "upgraded",
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
        "_budget_seen",
        "_tail_size",
        "_chunk_budget",
        "_max_target",
        "_max_header",
        "_max_count",
        "_max_body",
    )

    #: The llhttp parser (an ``httptools.HttpRequestParser`` or ``HttpResponseParser``, set by
    #: the subclass), None once released. ``Any``: a compiled subclass cannot narrow the type
    #: of an attribute, and the parser is used only through its Python methods anyway.
    parser: Any

    def __init__(self, limits: Limits) -> None:
        #: Event lists of the complete messages not handed out yet, oldest first. A list, not
        #: a deque: an empty deque still holds a 64-slot block (~760 bytes per idle
        #: connection), and more than one message is here only when the peer pipelines (at
        #: most what one read of RECV_SIZE bytes holds), so ``pop(0)`` stays cheap.
        self.ready: list[list[Event]] = []
        #: Events of the message in progress.
        self.current: list[Event] = []
        #: The error that stopped parsing, raised once ``ready`` and ``current`` are handed out.
        self.error: ProtocolError | None = None
        #: Nothing more is parsed (error, end of a last message, CONNECT); input is ignored.
        self.stopped = False
        #: The peer closed its side (``receive_data(b"")``).
        self.eof = False
        #: Bytes received after a CONNECT request (all of them), not parsed.
        self.trailing_data = b""
        #: Parsing stopped after a CONNECT request.
        self.upgraded = False
        self._headers: HeaderList = []
        self._noted = False
        self._content_length: int | None = None
        #: A tuple, not a list: most connections never see a Transfer-Encoding, and an empty
        #: tuple is shared, where each empty list is one more object for the garbage collector
        #: to scan per connection.
        self._codings: tuple[bytes, ...] = ()
        self._connection = b""
        self._in_message = False
        self._in_body = False
        self._keep_alive = True
        self._body_budget: int | None = None
        self._progress = 0
        self._head_exact = 0
        self._head_bound = 0
        self._feed_size = 0
        #: ``_body_budget`` after the last feed that ended in a chunked body, and the bytes fed
        #: since that brought no body byte: trailers (or chunk framing), bounded as a head is.
        self._budget_seen: int | None = -1
        self._tail_size = 0
        #: ``_body_budget`` when the last chunk-size line ended (-1: none yet in this message):
        #: equal to it, no body byte came since, so the bytes counted are trailers, not a
        #: chunk-size line (see ``_check_tail``).
        self._chunk_budget: int | None = -1
        # A limit that is off (None) becomes a huge int here, once: the checks on the hot path
        # compare ints only.
        self._max_target = limit_value(limits.max_target_size)
        self._max_header = limit_value(limits.max_header_size)
        self._max_count = limit_value(limits.max_header_count)
        self._max_body = limits.max_body_size

    # -- feeding ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Parse bytes received from the peer; ``b""`` means the peer closed its side (EOF).

        The events go to :attr:`current` and :attr:`ready`. (A connection's ``receive_data``
        *is* this method: one call per ``recv`` on a server's hot path.)"""
        if self.stopped or not data:
            if data:
                if self.eof:
                    raise LocalProtocolError("data received after the end of the input")
                if self.upgraded:
                    self.trailing_data += bytes(data)
            else:
                self.feed_eof()
            return
        progress = self._progress
        self._feed_size = size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._after_upgrade(bytes(data[exc.args[0] :]))
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
                    self._fail(RemoteProtocolError(f"{self._kind()} head too large", 431))
            else:
                self._head_bound = size  # the head began somewhere in this feed
        elif self._body_budget is not None:
            # A chunked body in progress (or one that runs until the connection closes).
            if self._body_budget != self._budget_seen and not self._headers:
                self._budget_seen = self._body_budget  # body bytes came: no trailers yet
                self._tail_size = 0
            else:
                self._check_tail(size)

    def _check_tail(self, size: int) -> None:
        """A feed ended in a chunked body and brought no body byte, or trailer fields have
        come: bound the trailers while they arrive, as heads are. The bytes of the feeds that
        bring no body byte are counted (an endless trailer block, or value, is cut off at
        about ``max_target_size + max_header_size``, like a head), and the trailer fields
        received so far are measured against the header count and size limits.

        The same bound holds for a chunk-size line (an endless chunk extension, or leading
        zeros): that is a framing error of the body, 400, not a header block too large."""
        budget = self._body_budget
        if budget != self._budget_seen:
            self._budget_seen = budget
            self._tail_size = 0
        else:
            self._tail_size += size
            if self._tail_size > self._max_target + self._max_header:
                if self._chunk_budget != budget:  # no chunk-size line ended since the data
                    error = RemoteProtocolError(
                        "chunk-size line too long (chunk extensions included)", 400
                    )
                else:
                    error = RemoteProtocolError("trailers too large", 431)
                self._fail(error)
                return
        trailers = self._headers
        if trailers and self._trailers_too_large(trailers):
            self._fail(RemoteProtocolError("trailer block too large", 431))

    def _trailers_too_large(self, trailers: HeaderList) -> bool:
        return len(trailers) > self._max_count or (
            sum(len(n) + len(v) for n, v in trailers) + 4 * len(trailers) > self._max_header
        )

    def _after_upgrade(self, rest: bytes) -> None:
        """llhttp stopped after a CONNECT (or Upgrade) message, as if the protocol switched:
        nothing more is parsed, and ``rest`` (what followed the message in this feed) is kept
        for whoever takes the connection over."""
        self.stopped = self.upgraded = True
        self.trailing_data = rest

    def release_parser(self) -> None:
        """Drop the parser (it refers back to this reader through its callbacks); nothing
        can be parsed afterwards (see ``Connection.release``)."""
        self.parser = None

    def _parse_failed(self, exc: Exception) -> None:
        if self.error is not None:
            return  # our own error, raised from a callback: already recorded
        if self.stopped:
            return  # data after a message that ends the connection: ignored
        if isinstance(exc, httptools.HttpParserCallbackError) and exc.__context__ is not None:
            raise exc.__context__  # a bug in a callback, not a protocol error
        if str(exc) == _UNSUPPORTED_VERSION:
            # A well-formed version llhttp does not know (HTTP/1.2, HTTP/3.0): 505, as for the
            # versions it knows but this layer does not serve. A malformed one stays a 400.
            self._fail(RemoteProtocolError("HTTP version not supported", 505))
            return
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
            part = "body" if self._in_body else "head"
            self._fail(
                RemoteProtocolError(f"connection closed in the middle of a {self._kind()} {part}")
            )
            return
        self.ready.append([ConnectionClosed()])

    # -- callbacks shared by requests and responses ----------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        """A header (or trailer) field: lowercase the name, keep the value as received."""
        name = name.lower()
        self._headers.append((name, value))
        if name in NOTED and not self._in_body:
            self._note(name, value)

    def _note(self, name: bytes, value: bytes) -> None:
        self._noted = True
        if name == b"content-length":
            # llhttp has already refused repeats, lists, signs and non-digits.
            if self._content_length is not None:
                self._raise(RemoteProtocolError("repeated Content-Length"))
            self._content_length = int(value)
        elif name == b"transfer-encoding":
            self._codings += tuple(c.strip().lower() for c in value.split(b","))
        elif name == b"connection":
            self._connection += b"," + value.lower()

    def _head_may_be_too_large(self, headers: HeaderList) -> bool:
        """The cheap test at the end of each head: could it be over the limits?"""
        return (
            len(headers) > self._max_count
            # The bytes fed since the head began bound its size: over the limit, measure it.
            or self._head_bound + self._feed_size > self._max_header
        )

    def _check_head(self, headers: HeaderList) -> None:
        """The header count and size limits, measured."""
        if len(headers) > self._max_count:
            self._raise(RemoteProtocolError("too many header fields", 431))
        size = sum(len(n) + len(v) for n, v in headers) + 4 * len(headers)
        if size > self._max_header:
            self._raise(RemoteProtocolError("header block too large", 431))

    def _check_content_length(self) -> None:
        """A body is coming: a Content-Length over the limit is refused before reading it."""
        length = self._content_length
        if length is not None and self._max_body is not None and length > self._max_body:
            self._raise(RemoteProtocolError("body larger than the limit", 413))

    def on_chunk_header(self) -> None:
        """A chunk-size line ended (the last chunk's too): note where the body stands, so that
        ``_check_tail`` tells a chunk-size line from trailers. (Once per chunk.)"""
        self._chunk_budget = self._body_budget

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
            if self._trailers_too_large(trailers):
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
            self._codings = ()
            self._budget_seen = -1  # (a chunked body has a noted header)
            self._tail_size = 0
            self._chunk_budget = -1

    def _connection_tokens(self) -> set[bytes]:
        return {token.strip() for token in self._connection.split(b",")}
