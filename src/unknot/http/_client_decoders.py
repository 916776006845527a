"""Content-Encoding decoding (gzip, deflate) and the charset of a response's text."""

from __future__ import annotations

import codecs
import zlib
from email.message import Message
from typing import Any

from ._client_errors import DecodingError

#: The codings the client asks for (``Accept-Encoding``) and decodes.
ACCEPT_ENCODING = b"gzip, deflate"


class _Gzip:
    """gzip (RFC 1952); members that follow one another are decoded one after the other."""

    __slots__ = ("_z",)

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        out = self._z.decompress(data)
        while self._z.eof and self._z.unused_data:  # a next gzip member
            rest = self._z.unused_data
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self._z.decompress(rest)
        return out

    def flush(self) -> bytes:
        out = self._z.flush()
        if not self._z.eof:
            raise zlib.error("the gzip stream is truncated")
        return out


class _Deflate:
    """deflate: zlib-wrapped (RFC 1950) as the RFC says, or raw (RFC 1951) as some servers
    send it; which one is decided on the first two bytes (a zlib header or not)."""

    __slots__ = ("_z", "_head")

    def __init__(self) -> None:
        self._z: Any = None
        self._head = b""  # the first byte, until a second one arrives

    def decode(self, data: bytes) -> bytes:
        if self._z is None:
            head = self._head + data
            if len(head) < 2:
                self._head = head
                return b""
            self._head = b""
            if _zlib_header(head):
                self._z = zlib.decompressobj()
                try:
                    return self._z.decompress(head)
                except zlib.error:
                    pass  # raw deflate whose first bytes happen to look like a zlib header
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            data = head
        return self._z.decompress(data)

    def flush(self) -> bytes:
        z = self._z
        if z is None:  # a body of one byte cannot be deflate
            raise zlib.error("the deflate stream is truncated")
        out = z.flush()
        if not z.eof:
            raise zlib.error("the deflate stream is truncated")
        return out


def _zlib_header(head: bytes) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950: method 8, a window of at most 32 KiB,
    and the check bits)."""
    cmf, flg = head[0], head[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


_DECODERS: dict[bytes, type[_Gzip] | type[_Deflate]] = {
    b"gzip": _Gzip,
    b"x-gzip": _Gzip,
    b"deflate": _Deflate,
}


class ContentDecoder:
    """Undoes the codings of a Content-Encoding, last applied first, piece by piece. An empty
    body stays empty (a HEAD, 204 or 304 response, or ``Content-Length: 0``, with the
    Content-Encoding its full response would have)."""

    __slots__ = ("_steps", "_fed")

    def __init__(self, codings: list[bytes]) -> None:
        self._steps = [_DECODERS[c]() for c in reversed(codings)]
        self._fed = False

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes of the next piece (maybe empty)."""
        if data:
            self._fed = True
        try:
            for step in self._steps:
                data = step.decode(data)
        except zlib.error as exc:
            raise DecodingError(f"the body does not decode: {exc}") from exc
        return data

    def flush(self) -> bytes:
        """The decoded bytes held back at the end of the body; ``DecodingError`` if the body
        is cut short."""
        if not self._fed:
            return b""
        out = b""
        try:
            for step in self._steps:
                out = step.decode(out) + step.flush() if out else step.flush()
        except zlib.error as exc:
            raise DecodingError(f"the body does not decode: {exc}") from exc
        return out


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
