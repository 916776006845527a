"""The server side's reader: requests in, ``RequestHead``/``Data``/``EndOfMessage`` out.

Beyond what llhttp's strict mode refuses (400), it refuses: a transfer coding other than chunked
(400), an HTTP version other than 1.0 and 1.1 (505), a missing or repeated Host (400), an
upgrade request with a body (400), and whatever crosses the limits (413, 414, 431). An HTTP/1.0
request with a Transfer-Encoding is answered, and the connection then closes.
"""

from __future__ import annotations

import httptools

from ._errors import RemoteProtocolError
from ._events import END_OF_MESSAGE, HeaderList, RequestHead
from ._limits import Limits
from ._reader import NOTED, VERSIONS, Reader, strict_parser

#: The names ``Reader`` notes, and Host (exactly one in HTTP/1.1, at most one in HTTP/1.0).
_REQUEST_NOTED = NOTED | {b"host"}


class RequestReader(Reader):
    """The server side: parses requests."""

    __slots__ = ("_target", "_hosts", "_expect_continue", "_upgrade_offered")

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self._target = b""
        self._hosts = 0
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

    def on_header(self, name: bytes, value: bytes) -> None:
        """A header (or trailer) field: lowercase the name, keep the value as received."""
        name = name.lower()
        self._headers.append((name, value))
        if name in _REQUEST_NOTED and not self._in_body:
            if name == b"host":
                self._hosts += 1
            else:
                self._note(name, value)

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
        # _head_may_be_too_large, inlined: this runs for every request.
        if len(headers) > self._max_count or self._head_bound + self._feed_size > self._max_header:
            self._check_head(headers)
        keep_alive = parser.should_keep_alive()
        method = parser.get_method()
        if keep_alive and not self._noted and self._hosts == 1 and method != b"CONNECT":
            # The common request: no framing header, so no body; HTTP/1.1 (llhttp keeps only
            # HTTP/1.1 alive without a Connection header); one Host. (``_keep_alive`` is
            # still true: a request that ends the connection stops the parsing.)
            self.current.append(RequestHead(method, self._target, headers))
            self._target = b""
            return
        self._special_head(method, headers, keep_alive)

    def _special_head(self, method: bytes, headers: HeaderList, keep_alive: bool) -> None:
        """The rest of ``on_headers_complete``: a body, a version to check, an expectation or
        an upgrade."""
        parser = self.parser
        expect_continue = upgrade = False
        if keep_alive and not self._connection:
            version = b"1.1"
        else:
            version = self._version()
        if self._hosts != 1 and (self._hosts or version == b"1.1"):
            # RFC 9112, 3.2: exactly one Host in HTTP/1.1; two could be read two ways.
            self._raise(RemoteProtocolError("a request needs exactly one Host header"))
        if self._noted:
            expect_continue = self._expect_continue and version == b"1.1"
            self._expect_continue = False
            self._frame_body()
            if self._codings and version == b"1.0":
                # RFC 9112, 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, whatever
                # Connection says: answer, then close (no request is read after this body).
                keep_alive = False
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
        version = VERSIONS.get(self.parser.get_http_version())
        if version is None:
            self._raise(RemoteProtocolError("HTTP version not supported", 505))
        assert version is not None
        return version

    def _frame_body(self) -> None:
        codings = self._codings
        if codings:
            # llhttp refuses chunked not last and Content-Length with Transfer-Encoding (400);
            # any other coding is refused with 400 as well, and the connection closes: without
            # chunked last the body's length cannot be known (RFC 9112, 6.3: 400 and close),
            # and with it the body would be handed out still coded. (RFC 9112, 6.1 suggests
            # 501 for the latter; one answer for every coding this server cannot frame is
            # simpler for clients and proxies to reason about.)
            if codings != (b"chunked",):
                self._raise(RemoteProtocolError("unsupported transfer coding", 400))
            self._body_budget = self._max_body

    def on_message_complete(self) -> None:
        """The request is complete."""
        self._hosts = 0
        if self._headers or self._noted or not self._keep_alive:
            self._end_message()
            return
        # _end_message for the common request, inlined: this runs for every request.
        current = self.current
        current.append(END_OF_MESSAGE)
        self.ready.append(current)
        self.current = []
        self._in_message = self._in_body = False
        self._progress += 1
        self._head_exact = self._head_bound = 0
