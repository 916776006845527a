"""Bytes out: status and request lines, header blocks, body framing, the Date header.

Everything here is prebuilt or cached where a server repeats itself: the status lines of all
standard codes, the validated ``name: value\\r\\n`` line of each header pair seen before (a
bounded cache), and the ``date`` line, formatted once per second. Outgoing header names and
values are checked (a token name; no CR, LF, NUL or other control character in a value) before
they are first cached, so nothing a caller passes can split a message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final

from ._errors import LocalProtocolError

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")  # HTAB and obs-text allowed
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")  # no space, no control character

# -- status lines --------------------------------------------------------------------------------

#: The status line of each standard status code.
STATUS_LINES: Final = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("ascii"))
    for status in HTTPStatus
}

#: The same, as a list indexed by status code (None where a code has no standard line): what
#: `ServerConnection.send_response` looks up. A float status finds nothing in it (a ``TypeError``),
#: where a dict would take 200.0 for 200; an ``IntEnum`` finds its code.
STATUS_LINE_BY_CODE: Final[list[bytes | None]] = [STATUS_LINES.get(code) for code in range(1000)]


def status_line(status: Any, reason: bytes | None = None) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``; the standard reason phrase unless one is given.

    (``status`` is an int, an ``IntEnum`` too, checked here: ``Any`` lets a wrong one reach the
    check, where the compiled build would raise a bare `TypeError` at the call.)"""
    if reason is None:
        line = STATUS_LINES.get(status)
        if line is not None:
            return line
        reason = b""
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise LocalProtocolError(f"invalid status code {status!r}")
    if not _FIELD_VALUE.fullmatch(reason):
        raise LocalProtocolError(f"invalid reason phrase {reason!r}")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def request_line(method: bytes, target: bytes) -> bytes:
    """``<method> <target> HTTP/1.1\\r\\n``, after checking both (no space or control byte)."""
    if not _TOKEN.fullmatch(method):
        raise LocalProtocolError(f"invalid method {method!r}")
    if not _TARGET.fullmatch(target):
        raise LocalProtocolError(f"invalid request target {target!r}")
    return b"%s %s HTTP/1.1\r\n" % (method, target)


# -- the Date header -----------------------------------------------------------------------------


class DateLine:
    """The ``date: <IMF-fixdate>\\r\\n`` line, formatted at most once per second.

    Hot path, inlined by the server: ``if now() >= DATE_LINE.expires: DATE_LINE.refresh()``,
    then ``DATE_LINE.line``; :func:`date_line` does the same."""

    __slots__ = ("line", "expires")

    def __init__(self) -> None:
        self.line = b""
        self.expires = 0.0

    def refresh(self) -> None:
        """Format the line for the current second."""
        second = int(now())
        self.line = b"date: %s\r\n" % formatdate(second, usegmt=True).encode("ascii")
        self.expires = second + 1.0


DATE_LINE: Final = DateLine()
now = time.time


def date_line() -> bytes:
    """The ``date`` header line for now."""
    if now() >= DATE_LINE.expires:
        DATE_LINE.refresh()
    return DATE_LINE.line


# -- header blocks -------------------------------------------------------------------------------

# What a header name means to the framing (anything else is PLAIN).
PLAIN: Final = 0
CONTENT_LENGTH: Final = 1
TRANSFER_ENCODING: Final = 2
CONNECTION: Final = 3
DATE: Final = 4
HOST: Final = 5
UPGRADE: Final = 6
EXPECT: Final = 7
_KINDS: Final[dict[bytes, int]] = {
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION,
    b"date": DATE,
    b"host": HOST,
    b"upgrade": UPGRADE,
    b"expect": EXPECT,
}

#: Checked header pairs: ``(name, value) -> (b"name: value\r\n", kind)`` (bounded).
CHECKED_LINES: dict[tuple[bytes, bytes], tuple[bytes, int]] = {}
_CHECKED_LINES_MAX = 4096
_CACHED_VALUE_MAX = 256


def _check_pair(pair: Any) -> tuple[bytes, int]:
    """The line and kind of a caller's header pair, checked (anything, hence ``Any``)."""
    try:
        name, value = pair
    except (TypeError, ValueError):
        raise LocalProtocolError(f"a header must be a (name, value) pair, not {pair!r}") from None
    if type(name) is not bytes or type(value) is not bytes:
        raise LocalProtocolError(f"header names and values are bytes, not {pair!r}")
    if not _TOKEN.fullmatch(name):
        raise LocalProtocolError(f"invalid header name {name!r}")
    if not _FIELD_VALUE.fullmatch(value):
        raise LocalProtocolError(f"invalid header value {value!r} for {name!r}")
    kind = _KINDS.get(name.lower(), PLAIN)
    entry = (b"%s: %s\r\n" % (name, value), kind)
    if (
        kind != CONTENT_LENGTH
        and len(value) <= _CACHED_VALUE_MAX
        and len(CHECKED_LINES) < _CHECKED_LINES_MAX
    ):
        CHECKED_LINES[(name, value)] = entry
    return entry


#: Handlers' pairs: ``(name, value)`` as given (``str`` or ``bytes``) -> the checked line of the
#: lowercased name and the value, for the non-framing headers (bounded). See `field_pairs`.
FIELD_LINES: dict[tuple[str | bytes, str | bytes], bytes] = {}


def field_pairs(fields: dict[Any, Any]) -> list[tuple[bytes, bytes]]:
    """The wire pairs of a dict of header fields as a handler gives them: names ``str`` or
    ``bytes`` (lowercased), values ``str`` (latin-1), ``bytes`` or ``int``. Each pair is
    checked (`_check_pair`); the lines of those without framing meaning are remembered in
    `FIELD_LINES` (only ``str``/``bytes`` pairs: an ``int`` key would also match ``True``)."""
    pairs = []
    for name, value in fields.items():
        kind_name, kind_value = type(name), type(value)
        try:
            if kind_name is str:
                key = name.lower().encode("latin-1")
            elif isinstance(name, bytes):
                key = name.lower()
            else:
                raise TypeError
            if kind_value is str:
                data = value.encode("latin-1")
            elif isinstance(value, (bytes, bytearray)):
                data = bytes(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                data = b"%d" % value
            else:
                raise TypeError
        except (TypeError, UnicodeEncodeError):
            raise LocalProtocolError(
                f"a header name is str or bytes and a value str (latin-1), bytes or int, "
                f"not {name!r:.40}: {value!r:.40}"
            ) from None
        pair = (key, data)
        line, kind = CHECKED_LINES.get(pair) or _check_pair(pair)
        if (
            kind == PLAIN
            and (kind_name is str or kind_name is bytes)
            and (kind_value is str or kind_value is bytes)
            and len(data) <= _CACHED_VALUE_MAX
            and len(FIELD_LINES) < _CHECKED_LINES_MAX
        ):
            FIELD_LINES[(name, value)] = line
        pairs.append(pair)
    return pairs


class HeaderFacts:
    """What the framing headers among a caller's headers say (only built when there are any)."""

    __slots__ = (
        "content_length",
        "chunked",
        "close",
        "keep_alive",
        "has_date",
        "has_host",
        "upgrade",
        "expect_continue",
    )

    def __init__(self) -> None:
        self.content_length: int | None = None
        self.chunked = False
        self.close = False
        self.keep_alive = False
        self.has_date = False
        self.has_host = False
        self.upgrade = False
        self.expect_continue = False


def render_headers(headers: Iterable[Any], lines: list[bytes]) -> HeaderFacts | None:
    """Append the checked line of each header to ``lines``; return what the framing headers
    say, or None if there were none (the common case).

    ``headers`` should be ``(name, value)`` pairs of bytes; anything else is refused here with
    `LocalProtocolError` (hence ``Any``: the compiled build would raise `TypeError` first).

    ``transfer-encoding`` lines are not appended (the caller frames the body and writes its
    own); only ``chunked`` is accepted. Content-Length must be digits, and repeats must agree.
    """
    facts = None
    get = CHECKED_LINES.get
    append = lines.append
    for pair in headers:
        try:
            entry = get(pair)
        except TypeError:  # unhashable: not a pair of bytes, _check_pair says why
            entry = None
        if entry is None:
            entry = _check_pair(pair)
        line, kind = entry
        if kind:
            if facts is None:
                facts = HeaderFacts()
            if not _note(facts, kind, pair[1]):
                continue
        append(line)
    return facts


def _note(facts: HeaderFacts, kind: int, value: bytes) -> bool:
    """Record a framing header; False if its line is not to be written as it is."""
    if kind == CONTENT_LENGTH:
        if not value.isdigit():
            raise LocalProtocolError(f"invalid Content-Length {value!r}")
        length = int(value)
        if facts.content_length is not None:
            if facts.content_length != length:
                raise LocalProtocolError("conflicting Content-Length headers")
            return False
        facts.content_length = length
    elif kind == TRANSFER_ENCODING:
        if value.strip().lower() != b"chunked":
            raise LocalProtocolError(f"only chunked transfer coding is supported, not {value!r}")
        facts.chunked = True
        return False
    elif kind == CONNECTION:
        tokens = {token.strip() for token in value.lower().split(b",")}
        facts.close = facts.close or b"close" in tokens
        facts.keep_alive = facts.keep_alive or b"keep-alive" in tokens
        facts.upgrade = facts.upgrade or b"upgrade" in tokens
    elif kind == DATE:
        facts.has_date = True
    elif kind == HOST:
        facts.has_host = True
    elif kind == UPGRADE:
        facts.upgrade = True
    elif kind == EXPECT:
        facts.expect_continue = value.strip().lower() == b"100-continue"
    return True


def render_trailers(trailers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """The checked lines of a trailer block (no framing header may appear in it)."""
    lines: list[bytes] = []
    facts = render_headers(trailers, lines)
    if facts is not None and (facts.content_length is not None or facts.chunked):
        raise LocalProtocolError("framing headers are not allowed in trailers")
    return lines


# -- bodies --------------------------------------------------------------------------------------

#: Body framings.
LENGTH: Final = 0  # Content-Length: exactly that many bytes
CHUNKED: Final = 1  # chunked transfer coding
UNTIL_CLOSE: Final = 2  # raw bytes, ended by closing the connection
NO_BODY: Final = 3  # 1xx/204/304: data is an error, trailers are dropped
STRIPPED: Final = 4  # the answer to HEAD: data and trailers are dropped
BODILESS: Final = 5  # a request without framing headers (a GET): data and trailers are errors


def content_length_of(value: Any) -> int:
    """A caller's ``content_length`` argument, checked: an ``int`` of at least 0, else a
    ``LocalProtocolError`` (a float, a str, a bool...). (``Any``: a wrong type reaches the
    check in both builds.)"""
    if type(value) is not int or value < 0:
        raise LocalProtocolError(f"content_length must be an int of at least 0, not {value!r:.40}")
    return value


class BodyFramer:
    """Frames the body of one outgoing message: ``data(bytes)`` then ``end(trailers)``."""

    __slots__ = ("framing", "remaining")

    def __init__(self, framing: int, length: int = 0) -> None:
        self.framing = framing
        self.remaining = length

    def data(self, data: bytes) -> bytes:
        """The bytes that carry ``data`` on the wire."""
        framing = self.framing
        if framing == CHUNKED:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if framing == LENGTH:
            self.remaining -= len(data)
            if self.remaining < 0:
                raise LocalProtocolError("more body data than the declared Content-Length")
            return data
        if framing == UNTIL_CLOSE:
            return data
        if data and framing != STRIPPED:
            if framing == NO_BODY:
                raise LocalProtocolError("this response cannot have a body")
            raise LocalProtocolError(
                "this request has no body: give a content_length, a Content-Length or a "
                "Transfer-Encoding: chunked header to send one"
            )
        return b""

    def end(self, trailers: Iterable[tuple[bytes, bytes]] | None = None) -> bytes:
        """The bytes that end the body (the last chunk and the trailers, if chunked).

        A message without body on the wire (the answer to HEAD, a 204 or 304) drops the
        trailers, as it drops the data, once they are checked as a chunked body's would be."""
        if self.framing == CHUNKED:
            if trailers:
                return b"".join([b"0\r\n", *render_trailers(trailers), b"\r\n"])
            return b"0\r\n\r\n"
        if trailers:
            if self.framing != STRIPPED and self.framing != NO_BODY:
                raise LocalProtocolError("trailers need a chunked body")
            render_trailers(trailers)  # checked, then dropped
        if self.framing == LENGTH and self.remaining:
            raise LocalProtocolError(f"body ended {self.remaining} bytes short of its length")
        return b""
