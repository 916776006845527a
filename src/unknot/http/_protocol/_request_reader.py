"""The server side's reader: requests in, ``RequestHead``/``Data``/``EndOfMessage`` out.

Beyond what llhttp's strict mode refuses (400), it refuses: a transfer coding other than chunked
(400), an HTTP version other than 1.0 and 1.1 (505, the versions llhttp does not know included;
a malformed version is a 400), a missing, repeated or invalid Host (400), a request target with
a fragment (``#``, 400), a CONNECT request with a body (400), and whatever crosses the limits
(413, 414, 431). An HTTP/1.0 request with a
Transfer-Encoding is answered, and the connection then closes; so is an HTTP/1.0 request whose
Connection says both keep-alive and close (RFC 9112, 9.3: close wins, where llhttp keeps it alive).

Upgrade is ignored (RFC 9110, 7.8: this layer never switches protocols): a request that offers
one (``Upgrade`` with ``Connection: upgrade``) is read as a plain HTTP/1.1 request, body included,
and the connection is kept alive by the usual rules. llhttp treats such a request as the end of
HTTP on the connection: it skips its body and stops after its head, and reading on with it would
read the body as requests (smuggling). So the reader hands the rest to a fresh parser, which is
first told the body's framing with a head of the reader's own (see ``_after_upgrade``). Only
CONNECT still ends the parsing (``upgrade`` true, ``trailing_data``).
"""

from __future__ import annotations

import re

import httptools

from ._errors import RemoteProtocolError
from ._events import END_OF_MESSAGE, HeaderList, RequestHead
from ._limits import Limits, limit_value
from ._reader import NOTED, VERSIONS, Reader, strict_parser

#: The names ``Reader`` notes, and Host (exactly one in HTTP/1.1, at most one in HTTP/1.0).
_REQUEST_NOTED = NOTED | {b"host"}

#: A valid Host value (RFC 9110, 7.2: ``uri-host [ ":" port ]``, RFC 3986's grammar; empty
#: too, RFC 9112, 3.2): an IP literal in brackets or a reg-name, then maybe a port.
_HOST = re.compile(
    rb"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
    rb"(?::[0-9]*)?"
)
#: Host values found valid: clients send the same few over and over, and a lookup costs less
#: than the match. Dropped whole when full (bounded, whatever hosts clients make up).
_GOOD_HOSTS: set[bytes] = set()
_GOOD_HOSTS_MAX = 256


class _StopParsing(Exception):
    """Raised from ``on_message_complete`` to stop llhttp after a request that ends the
    connection where llhttp would read on (it never reaches the caller: the reader has
    stopped, and ``_parse_failed`` ignores what llhttp reports then)."""


class RequestReader(Reader):
    """The server side: parses requests."""

    __slots__ = (
        "_target",
        "_hosts",
        "_expect_continue",
        "_upgrade_offered",
        "_upgrade_ignored",
        "_body_skipped",
        "_framing_head",
        "_stop_llhttp",
        "_feeding_rest",
        "_rest",
    )

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self._target = b""
        self._hosts = 0
        self._expect_continue = False
        self._upgrade_offered = False
        #: llhttp took the current request for an upgrade, which the reader ignores: llhttp
        #: stops after it (``_after_upgrade`` takes over).
        self._upgrade_ignored = False
        #: ... and it has a body, which llhttp skipped: the message ends after it is read.
        self._body_skipped = False
        #: The head ``_after_upgrade`` makes up is being parsed: it is no request.
        self._framing_head = False
        #: The current request ends the connection where llhttp would keep it alive.
        self._stop_llhttp = False
        #: ``_after_upgrade`` is feeding what followed an ignored upgrade; ``_rest`` is what
        #: followed the next one in it, for it to feed next.
        self._feeding_rest = False
        self._rest = b""
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
                if value not in _GOOD_HOSTS:
                    self._check_host(value)
            else:
                self._note(name, value)

    def _check_host(self, value: bytes) -> None:
        """A Host value not seen before: 400 unless it is valid (RFC 9112, 3.2)."""
        if _HOST.fullmatch(value.strip(b" \t")) is None:
            self._raise(RemoteProtocolError("invalid Host header"))
        if len(_GOOD_HOSTS) >= _GOOD_HOSTS_MAX:
            _GOOD_HOSTS.clear()
        _GOOD_HOSTS.add(bytes(value))

    def on_message_begin(self) -> None:
        """A request begins: its first byte has come (llhttp skips empty lines before one, as
        RFC 9112, 2.2 asks). From now on a request is under way (``request_begun``), also while
        only its method has come, pipelined behind the requests before it: a server times it
        as a head, and does not take the connection for an idle one. (One call per request.)"""
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        """The request target, maybe in pieces (llhttp reports what each feed holds)."""
        target = self._target + url
        if len(target) > self._max_target:
            self._raise(RemoteProtocolError("request target too long", 414))
        if url.find(b"#") >= 0:
            # RFC 9112, 3.2: no form of request target has a fragment (llhttp takes one).
            self._raise(RemoteProtocolError("a fragment (#) in the request target"))
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
        """The rest of ``on_headers_complete``: a body, a version to check, an expectation, a
        Connection header or an upgrade."""
        if self._framing_head:
            self._framing_head = False  # (see _after_upgrade)
            self._target = b""
            return
        parser = self.parser
        expect_continue = upgrade = False
        llhttp_keep_alive = keep_alive
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
            if (
                keep_alive
                and version == b"1.0"
                and (
                    # RFC 9112, 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, whatever
                    # Connection says: answer, then close (no request is read after this body).
                    self._codings
                    # RFC 9112, 9.3: close wins over keep-alive (llhttp keeps an HTTP/1.0 request
                    # with both alive). (The substring test spares ab -k's requests the split.)
                    or (b"close" in self._connection and b"close" in self._connection_tokens())
                )
            ):
                keep_alive = False
            self._check_content_length()
            if self._upgrade_offered or method == b"CONNECT":
                self._upgrade_offered = False
                if parser.should_upgrade():
                    if method == b"CONNECT":
                        if self._codings or self._content_length:
                            self._raise(RemoteProtocolError("a CONNECT request with a body"))
                        upgrade, keep_alive = True, False
                    else:
                        # Upgrade with Connection: upgrade. Ignored (RFC 9110, 7.8): a plain
                        # request; llhttp stops after it anyway (see _after_upgrade).
                        self._upgrade_ignored = True
                        self._body_skipped = bool(self._codings or self._content_length)
        elif method == b"CONNECT":
            upgrade, keep_alive = True, False
        if llhttp_keep_alive and not keep_alive and not upgrade:
            self._stop_llhttp = True  # llhttp would read on after this request
        self._keep_alive = keep_alive
        self.current.append(
            RequestHead(
                method, self._target, headers, version, keep_alive, expect_continue, upgrade
            )
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
            # An int even with no body limit: the reader tells the trailers by it.
            self._body_budget = limit_value(self._max_body)

    def on_message_complete(self) -> None:
        """The request is complete."""
        self._hosts = 0
        if self._headers or self._noted or not self._keep_alive:
            self._end_special()
            return
        # _end_message for the common request, inlined: this runs for every request.
        current = self.current
        current.append(END_OF_MESSAGE)
        self.ready.append(current)
        self.current = []
        self._in_message = self._in_body = False
        self._progress += 1
        self._head_exact = self._head_bound = 0

    def _end_special(self) -> None:
        """The rest of ``on_message_complete``: trailers, a framing header, or the last
        request."""
        if self._body_skipped:
            return  # llhttp skipped the body (an ignored upgrade): it ends after it is read
        self._end_message()
        if self._stop_llhttp:
            # The reader ends the connection here and llhttp would parse what follows (an
            # HTTP/1.0 request with keep-alive and close, or with a Transfer-Encoding): stop it.
            self._stop_llhttp = False
            raise _StopParsing

    def _after_upgrade(self, rest: bytes) -> None:
        """llhttp stopped after a request it took for an upgrade; ``rest`` followed it.

        A CONNECT ends the parsing (``Reader._after_upgrade``). An Upgrade is ignored: the
        request is a plain one, and a fresh parser reads on (llhttp's own would read a body it
        skipped as requests). If llhttp skipped a body, the fresh parser is first fed a head
        that frames it as the request did (its Content-Length, or chunked) and keeps the
        connection alive or not as the request does; that head is no request (``_special_head``
        drops it), and the body and what follows are then parsed as usual."""
        if not self._upgrade_ignored:
            Reader._after_upgrade(self, rest)
            return
        self._upgrade_ignored = False
        if self.stopped:
            return  # the request ended the connection: nothing after it is read
        self.parser = parser = httptools.HttpRequestParser(self)
        strict_parser(parser)
        if self._body_skipped:
            self._body_skipped = False
            length = self._content_length
            if self._codings or length is None:
                framing = b"transfer-encoding: chunked"
            else:
                framing = b"content-length: %d" % length
            version = b"1.1" if self._keep_alive else b"1.0"
            # The head is not counted against the limits (the request's own head was).
            self._head_bound = self._feed_size = 0
            self._framing_head = True
            try:
                parser.feed_data(b"PUT / HTTP/%s\r\n%s\r\n\r\n" % (version, framing))
            except httptools.HttpParserError as exc:  # (not expected: it is a plain head)
                self._parse_failed(exc)
                return
        if self._feeding_rest:
            self._rest = rest  # a pipelined upgrade in what the loop below feeds: it goes on
            return
        # A loop, not a call per upgrade: a read may hold hundreds of pipelined upgrades.
        self._feeding_rest = True
        try:
            while rest:
                self._rest = b""
                self.receive_data(rest)
                rest = self._rest
        finally:
            self._feeding_rest = False
            self._rest = b""
