"""Content-Encoding decoding (gzip, deflate) and the charset of a response's text."""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Iterator
from email.message import Message
from typing import Any

from ._client_errors import DecodingError

#: The codings the client asks for (``Accept-Encoding``) and decodes.
ACCEPT_ENCODING = b"gzip, deflate"


#: Output of one decoding step when none is asked for (`ContentDecoder.read`), and what a
#: coding stacked under another is given at a time: memory stays bounded by it whatever the
#: compression ratio (a few KB of gzip may expand to GBs).
DECODE_STEP = 65536


class _Zlib:
    """One zlib-based coding, decoded with bounded output: `feed` takes body bytes, `read`
    returns at most ``limit`` decoded bytes (the rest of the input is kept: zlib's
    ``unconsumed_tail``). gzip (RFC 1952): members that follow one another are decoded one
    after the other. deflate: zlib-wrapped (RFC 1950) as the RFC says, or raw (RFC 1951) as
    some servers send it; which one is decided on the first two bytes (a zlib header or not)."""

    __slots__ = ("_z", "_input", "_gzip", "_full", "_started")

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        self._input = b""  # received, not decoded yet
        self._full = False  # the last step filled its output: zlib may hold more
        self._started = False  # (deflate) the first step succeeded: the kind is decided

    def feed(self, data: bytes) -> None:
        if data:
            self._input = self._input + data if self._input else data

    def read(self, limit: int) -> bytes:
        """At most ``limit`` (> 0) decoded bytes; empty when more input is needed."""
        z = self._z
        if z is None:  # deflate, its kind not decided yet
            if len(self._input) < 2:
                return b""
            z = self._z = zlib.decompressobj(
                zlib.MAX_WBITS if _zlib_header(self._input) else -zlib.MAX_WBITS
            )
        parts: list[bytes] = []
        size = 0
        while size < limit and (self._input or self._full):
            if z.eof:
                if not self._gzip or not self._input:
                    self._input = b""  # (after the end of a deflate stream: ignored)
                    break
                z = self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a next gzip member
            data, self._input = self._input, b""
            want = limit - size
            try:
                out = z.decompress(data, want)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                # Raw deflate whose first bytes happen to look like a zlib header.
                z = self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                out = z.decompress(data, want)
            self._started = True
            self._input = z.unused_data if z.eof else z.unconsumed_tail
            self._full = len(out) == want and not z.eof
            if out:
                parts.append(out)
                size += len(out)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def check_end(self) -> None:
        """The body ended (and everything was read): ``zlib.error`` if it was cut short."""
        z = self._z
        if z is None or not z.eof:
            kind = "gzip" if self._gzip else "deflate"
            raise zlib.error(f"the {kind} stream is truncated")


def _zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950: method 8, a window of at most 32 KiB,
    and the check bits)."""
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


#: The codings decoded, and whether each is gzip (else deflate).
_DECODERS: dict[bytes, bool] = {
    b"gzip": True,
    b"x-gzip": True,
    b"deflate": False,
}


class ContentDecoder:
    """Undoes the codings of a Content-Encoding, last applied first, piece by piece, with
    bounded output: `feed` the body's pieces, `read` at most so many decoded bytes at a time
    (a coding under another is given at most `DECODE_STEP` bytes at a time), and `finish` at
    the end. An empty body stays empty (a HEAD, 204 or 304 response, or ``Content-Length:
    0``, with the Content-Encoding its full response would have). `decode` and `flush` are the
    unbounded forms (everything at once)."""

    __slots__ = ("_steps", "_fed")

    def __init__(self, codings: list[bytes]) -> None:
        self._steps = [_Zlib(_DECODERS[c]) for c in reversed(codings)]
        self._fed = False

    def feed(self, data: bytes) -> None:
        """The next piece of the body, as received."""
        if data:
            self._fed = True
            self._steps[0].feed(data)

    def read(self, limit: int = DECODE_STEP) -> bytes:
        """At most ``limit`` decoded bytes; empty when the pieces fed so far are all decoded."""
        try:
            return self._pull(len(self._steps) - 1, limit)
        except zlib.error as exc:
            raise DecodingError(f"the body does not decode: {exc}") from exc

    def _pull(self, index: int, limit: int) -> bytes:
        step = self._steps[index]
        while True:
            out = step.read(limit)
            if out or index == 0:
                return out
            more = self._pull(index - 1, DECODE_STEP)
            if not more:
                return b""
            step.feed(more)

    def finish(self, limit: int = DECODE_STEP) -> Iterator[bytes]:
        """The body ended: the decoded bytes still held back, at most ``limit`` at a time;
        ``DecodingError`` if the body is cut short."""
        if not self._fed:
            return
        while True:
            out = self.read(limit)
            if not out:
                break
            yield out
        try:
            for step in self._steps:
                step.check_end()
        except zlib.error as exc:
            raise DecodingError(f"the body does not decode: {exc}") from exc

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes of the next piece (maybe empty), all of them."""
        self.feed(data)
        parts: list[bytes] = []
        while True:
            out = self.read(_WHOLE_STEP)
            if not out:
                return b"".join(parts)
            parts.append(out)

    def flush(self) -> bytes:
        """The decoded bytes held back at the end of the body; ``DecodingError`` if the body
        is cut short."""
        return b"".join(self.finish(_WHOLE_STEP))


#: The step of the unbounded `ContentDecoder.decode` (a non-streamed body is decoded whole).
_WHOLE_STEP = 1 << 20


def content_decoder(headers: list[tuple[bytes, bytes]]) -> ContentDecoder | None:
    """The decoder for a response's Content-Encoding; None when there is nothing to undo, or
    a coding this client does not know (the body is then left as it came)."""
    codings: list[bytes] = []
    for name, value in headers:
        if name == b"content-encoding":
            codings.extend(c.strip().lower() for c in value.split(b","))
    codings = [c for c in codings if c and c != b"identity"]
    if not codings or any(c not in _DECODERS for c in codings):
        return None
    return ContentDecoder(codings)


def charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type, if it names a codec Python knows."""
    if not content_type or "charset" not in content_type.lower():
        return None
    message = Message()
    message["content-type"] = content_type
    name = message.get_param("charset")
    if not isinstance(name, str):
        return None
    name = name.strip("\"' ")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None
