"""`ClientResponse` (what the client returns) and `ClientRequest` (what it sent).

The response reads like requests' and httpx's: ``status_code``, ``reason``, ``headers``,
``content``, ``text``, ``json()``, ``ok``, ``raise_for_status()``, ``elapsed``, ``history``, and
for a streamed one ``iter_bytes``/``iter_text``/``iter_lines``/``iter_raw``, ``read()`` and
``close()``. It is not called ``Response``: that is the server's response in ``unknot.http``.

A response that is not streamed arrives complete (its connection already back in the pool). A
streamed one (``stream=True``, ``client.stream(...)``) holds its connection until its body is
read to the end, which gives the connection back to the pool, or until ``close()``: a body
left unread is drained if at most 64 KiB of it remain, so that the connection can be reused;
otherwise the connection is closed.
"""

from __future__ import annotations

import codecs
import datetime
import json as _json
import re
from collections.abc import Callable, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._client_decoders import DECODE_STEP, ContentDecoder, charset, content_decoder
from ._client_errors import HTTPStatusError, RequestError
from ._client_headers import RawHeaders
from ._headers import Headers
from ._url import URL

if TYPE_CHECKING:
    from ._client_connection import HTTPConnection

_LINE_END = re.compile("\r\n|\r|\n")

#: A body left unread by ``close()`` is drained (for the connection's reuse) up to this size.
DRAIN_MAX = 65536
#: The smallest decoding step of ``iter_bytes(chunk_size)`` (tiny steps would be slow).
_DECODE_MIN = 16384


class ClientRequest:
    """A request as the client sent it (the last one, after redirects: ``response.request``).

    ``method`` (``str``), ``url`` (`URL`), ``headers`` (`Headers`, as sent, names lowercased)
    and ``content`` (the body bytes; None when the body was streamed from an iterable).
    """

    __slots__ = ("method", "url", "_raw_headers", "content")

    def __init__(
        self, method: str, url: URL, headers: RawHeaders, content: bytes | None = b""
    ) -> None:
        self.method = method
        self.url = url
        self._raw_headers = headers
        self.content = content

    @property
    def headers(self) -> Headers:
        """The header fields sent."""
        return Headers(self._raw_headers)

    def __repr__(self) -> str:
        return f"<ClientRequest [{self.method} {self.url}]>"


class _BodyStream:
    """The unread part of a streamed body: the connection it comes from and what to do with
    the connection once the body is complete (give it back to the pool)."""

    __slots__ = ("conn", "release", "parts", "done", "consumed", "read_timeout", "received")

    def __init__(
        self,
        conn: HTTPConnection,
        release: Callable[[HTTPConnection], None],
        parts: list[bytes],
        done: bool,
        read_timeout: float | None,
    ) -> None:
        self.conn: HTTPConnection | None = conn
        self.release = release
        self.parts = parts  # received, not handed out yet
        self.done = done  # the last part was received
        self.consumed = False  # iteration has started
        self.read_timeout = read_timeout
        self.received = 0  # raw bytes handed out

    def give_back(self) -> None:
        """The body is complete (or the connection closed): the pool takes the connection."""
        conn, self.conn = self.conn, None
        if conn is not None:
            self.release(conn)

    def drop(self) -> None:
        """Close the connection: its body is not read to its end."""
        conn = self.conn
        if conn is not None:
            conn.close()
            self.give_back()  # (the pool counts it out)

    def remaining(self, headers: RawHeaders) -> int:
        """Body bytes still to come if the Content-Length says (else more than DRAIN_MAX)."""
        for name, value in headers:
            if name == b"content-length" and value.isdigit():
                return int(value) - self.received - sum(len(p) for p in self.parts)
        return DRAIN_MAX + 1

    def drain(self) -> None:
        """Read the rest and give the connection back; close it on any error (a cancellation
        or Ctrl-C that interrupts the drain closes it too, and goes on)."""
        conn = self.conn
        try:
            while not self.done and conn is not None:
                self.parts, self.done = conn.receive_body(self.read_timeout)
        except Exception:
            self.drop()
        except BaseException:
            self.drop()
            raise
        else:
            self.give_back()


class ClientResponse:
    """An HTTP response received by the client (see the module docstring).

    ``status_code`` (int), ``reason`` (str), ``http_version`` (``"HTTP/1.1"``), ``headers``
    (`Headers`), ``url`` (`URL`: the URL that answered, after redirects), ``request``
    (`ClientRequest`), ``history`` (the redirect responses that led here, oldest first).
    """

    __slots__ = (
        "status_code",
        "_reason",
        "_version",
        "_raw_headers",
        "request",
        "history",
        "_content",
        "_stream",
        "_elapsed",
        "_encoding",
        "on_close",
    )

    def __init__(
        self,
        status_code: int,
        reason: bytes,
        http_version: bytes,
        headers: RawHeaders,
        request: ClientRequest,
        elapsed: float,
    ) -> None:
        self.status_code = status_code
        self._reason = reason
        self._version = http_version
        self._raw_headers = headers
        self.request = request
        self.history: list[ClientResponse] = []
        self._content: bytes | None = None
        self._stream: _BodyStream | None = None
        self._elapsed = elapsed
        self._encoding: str | None = None
        #: Called once when the response is closed (the module-level functions close their
        #: one-off client with it).
        self.on_close: Callable[[], None] | None = None

    # -- set by the client -----------------------------------------------------------------------

    def _set_body(self, parts: list[bytes]) -> None:
        """The whole raw body, received: decode it now."""
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        if raw:
            decoder = content_decoder(self._raw_headers)
            if decoder is not None:
                raw = decoder.decode(raw) + decoder.flush()
        self._content = raw

    def _set_stream(
        self,
        conn: HTTPConnection,
        release: Callable[[HTTPConnection], None],
        parts: list[bytes],
        done: bool,
        read_timeout: float | None,
    ) -> None:
        """The body is to be read from ``conn`` (``parts`` came with the head)."""
        self._stream = _BodyStream(conn, release, parts, done, read_timeout)
        if done:
            self._stream.give_back()

    # -- the head --------------------------------------------------------------------------------

    @property
    def reason(self) -> str:
        """The reason phrase (the standard one if the server sent none)."""
        reason = self._reason
        return reason.decode("latin-1") if reason else _phrase(self.status_code)

    @property
    def http_version(self) -> str:
        """``"HTTP/1.1"`` or ``"HTTP/1.0"``."""
        return "HTTP/1.1" if self._version == b"1.1" else "HTTP/1.0"

    @property
    def headers(self) -> Headers:
        """The header fields (case-insensitive; ``get_all`` for repeated ones)."""
        return Headers(self._raw_headers)

    @property
    def url(self) -> URL:
        """The URL that gave this response (the last one, after redirects)."""
        return self.request.url

    # -- the body --------------------------------------------------------------------------------

    @property
    def content(self) -> bytes:
        """The body, decoded from gzip or deflate (a streamed one is read first)."""
        content = self._content
        if content is None:
            content = self.read()
        return content

    def read(self) -> bytes:
        """Read the rest of the body and return all of it (``content``)."""
        if self._content is None:
            stream = self._stream
            if stream is not None and stream.consumed:
                raise RequestError(
                    "the body was already read with iter_*(): it is not kept", request=self.request
                )
            self._content = b"".join(self.iter_bytes())
        return self._content

    def iter_raw(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body as it arrives, not decoded (gzip stays gzip), in pieces of ``chunk_size``
        bytes (the last may be shorter) or as received."""
        stream = self._stream
        if self._content is not None or stream is None:
            raise RequestError(
                "iter_raw() needs a streamed response whose body is unread", request=self.request
            )
        if chunk_size is not None:
            yield from _rechunk(self.iter_raw(), chunk_size)
            return
        if stream.consumed:
            raise RequestError("the body was already read", request=self.request)
        stream.consumed = True
        try:
            while True:
                parts, stream.parts = stream.parts, []
                for part in parts:
                    stream.received += len(part)
                    yield part
                if stream.done:
                    break
                conn = stream.conn
                if conn is None:
                    raise RequestError(
                        "the response was closed before its body was read", request=self.request
                    )
                stream.parts, stream.done = conn.receive_body(stream.read_timeout)
        except GeneratorExit:
            raise  # the caller stopped early: close() drains or drops what is left
        except BaseException as exc:
            if isinstance(exc, RequestError) and exc._request is None:
                exc.request = self.request
            stream.drop()
            self._finish()
            raise
        stream.give_back()
        self._finish()

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body, decoded from gzip or deflate, in pieces (see `iter_raw`). A streamed body
        is decoded a step at a time: memory stays bounded by ``chunk_size`` (or 64 KiB)
        however much the body expands."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if self._content is not None:
            content = self._content
            step = chunk_size or max(len(content), 1)
            for i in range(0, len(content), step):
                yield content[i : i + step]
            return
        if chunk_size is not None:
            limit = max(chunk_size, _DECODE_MIN)
            yield from _rechunk(self._decoded(limit), chunk_size)
            return
        yield from self._decoded(DECODE_STEP)

    def _decoded(self, limit: int) -> Iterator[bytes]:
        """The decoded pieces of a streamed body, each at most ``limit`` bytes if it was
        encoded (the raw pieces as received otherwise)."""
        decoder: ContentDecoder | None = content_decoder(self._raw_headers)
        if decoder is None:
            for part in self.iter_raw():
                if part:
                    yield part
            return
        for part in self.iter_raw():
            decoder.feed(part)
            while True:
                out = decoder.read(limit)
                if not out:
                    break
                yield out
        yield from decoder.finish(limit)

    def iter_text(self, chunk_size: int | None = None) -> Iterator[str]:
        """The body as text (see `encoding`), piece by piece."""
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        for part in self.iter_bytes(chunk_size):
            text = decoder.decode(part)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def iter_lines(self) -> Iterator[str]:
        """The body's lines, without their line ends (``\n``, ``\r\n`` or ``\r``; no other
        character ends a line)."""
        pending = ""
        for text in self.iter_text():
            text = pending + text
            cr = text.endswith("\r")  # maybe half of a "\r\n": decided by the next piece
            lines = _LINE_END.split(text[:-1] if cr else text)
            pending = lines.pop() + ("\r" if cr else "")
            yield from lines
        if pending:
            yield pending[:-1] if pending.endswith("\r") else pending

    def __iter__(self) -> Iterator[bytes]:
        """``iter_bytes()``."""
        return self.iter_bytes()

    # -- text and JSON ---------------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        """The charset used for `text`: the Content-Type's, else UTF-8; settable."""
        if self._encoding is None:
            self._encoding = charset(self.headers.get("content-type")) or "utf-8"
        return self._encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        self._encoding = value

    @property
    def text(self) -> str:
        """The body decoded with `encoding` (undecodable bytes replaced)."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (``json.loads``; UTF-8, -16 or -32 detected)."""
        return _json.loads(self.content, **kwargs)

    # -- status ----------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        """True unless the status is 4xx or 5xx (as in requests)."""
        return self.status_code < 400

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        """A redirect status (301, 302, 303, 307, 308) with a Location header."""
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def is_error(self) -> bool:
        """A 4xx or 5xx status."""
        return self.status_code >= 400

    def raise_for_status(self) -> ClientResponse:
        """Raise `HTTPStatusError` for a 4xx or 5xx status; return the response otherwise."""
        status = self.status_code
        if status < 400:
            return self
        kind = "Client error" if status < 500 else "Server error"
        raise HTTPStatusError(
            f"{kind} '{status} {self.reason}' for url '{self.url}'",
            request=self.request,
            response=self,
        )

    @property
    def elapsed(self) -> datetime.timedelta:
        """The time from sending the request to receiving the head of the response."""
        return datetime.timedelta(seconds=self._elapsed)

    # -- closing ---------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """The body was read to the end, or the response closed: the connection is released."""
        stream = self._stream
        return stream is None or stream.conn is None

    def close(self) -> None:
        """Release the connection: back to the pool if the body was read (or what remains of
        it is small and can be drained), else closed."""
        stream = self._stream
        try:
            if stream is not None and stream.conn is not None:
                if stream.done or stream.remaining(self._raw_headers) <= DRAIN_MAX:
                    stream.drain()
                else:
                    stream.drop()
        finally:
            self._finish()

    def _finish(self) -> None:
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    def __enter__(self) -> ClientResponse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ClientResponse [{self.status_code} {self.reason}]>"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _rechunk(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    if size < 1:
        raise ValueError("chunk_size must be at least 1")
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= size:
            whole = len(buffer) - len(buffer) % size
            for i in range(0, whole, size):
                yield bytes(buffer[i : i + size])
            del buffer[:whole]
    if buffer:
        yield bytes(buffer)
