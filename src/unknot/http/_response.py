"""What a handler answers: `Response` and its constructors, `FileBody`, `normalize_result`.

A handler returns a `Response` or the seed's triple ``(status, headers, body)``: headers
``None``, a dict, a list of pairs or `Headers`; the body bytes, ``str`` (UTF-8,
``text/plain; charset=utf-8`` unless a Content-Type is given), an iterable of bytes
(streamed), a binary file, or a `FileBody`. `normalize_result` turns either form into the
triple the server writes.
"""

from __future__ import annotations

import io
import json as _json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from ._headers import HeadersLike, MutableHeaders, RawHeaders, header_pair, normalize_headers

__all__ = ["Body", "FileBody", "Response", "normalize_result"]

log = logging.getLogger("unknot.http")


class FileBody:
    """A body sent from a file: ``count`` bytes from ``offset`` (``count=None``: to the end).

    The server sends it with ``sendfile`` (or `chunks` where it cannot, e.g. over TLS) and
    then closes ``file``: handing a `FileBody` over hands over the file. ``file`` is a binary
    file object with a ``fileno()``.
    """

    __slots__ = ("file", "offset", "count")

    def __init__(self, file: Any, offset: int = 0, count: int | None = None) -> None:
        if offset < 0 or (count is not None and count < 0):
            raise ValueError(f"offset and count must not be negative ({offset}, {count})")
        self.file = file
        self.offset = offset
        self.count = count

    def fileno(self) -> int:
        """The file's descriptor."""
        return int(self.file.fileno())

    def length(self) -> int:
        """How many bytes will be sent: ``count``, or from ``offset`` to the current end."""
        if self.count is not None:
            return self.count
        return max(0, os.fstat(self.fileno()).st_size - self.offset)

    def chunks(self, chunk_size: int = 65536) -> Iterator[bytes]:
        """The bytes to send, read with ``pread`` (the file position is left alone)."""
        fd = self.fileno()
        position = self.offset
        left = self.length()
        while left > 0:
            data = os.pread(fd, min(chunk_size, left), position)
            if not data:  # the file shrank: send what there is
                return
            position += len(data)
            left -= len(data)
            yield data

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> FileBody:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileBody({self.file!r}, offset={self.offset}, count={self.count})"


#: What `normalize_result` gives as body: bytes, a file to send, or chunks to stream.
Body = bytes | FileBody | Iterable[bytes]

_TEXT_CT_STR = "text/plain; charset=utf-8"
_TEXT_CT = (b"content-type", _TEXT_CT_STR.encode())
_HTML_CT = (b"content-type", b"text/html; charset=utf-8")
_JSON_CT = (b"content-type", b"application/json")


def _make_json_encoder() -> Callable[[Any], bytes]:
    """``obj -> compact UTF-8 JSON bytes``, NaN and infinities refused.

    ``JSONEncoder.encode`` builds a new C encoder on every call; this builds it once (the
    same call ``JSONEncoder.iterencode`` makes), falling back to ``encode`` if the private
    C API is not there or has changed.
    """
    encoder = _json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

        one_shot = c_make_encoder(
            None, encoder.default, c_encode_basestring, None, ":", ",", False, False, False
        )
        if "".join(one_shot({"a": [1, 2.5, "é", None]}, 0)) != '{"a":[1,2.5,"é",null]}':
            raise TypeError("unexpected output")
    except (ImportError, TypeError):
        return lambda obj: encoder.encode(obj).encode()
    return lambda obj: "".join(one_shot(obj, 0)).encode()


_json_bytes = _make_json_encoder()


def _with_default(raw: RawHeaders, pair: tuple[bytes, bytes]) -> RawHeaders:
    """``raw`` with ``pair`` appended unless a header of that name is there (a new list)."""
    name = pair[0]
    for k, _ in raw:
        if k == name:
            return raw
    return [*raw, pair]


class Response:
    """A response: ``Response(status=200, headers=None, body=b"")`` (the seed's order).

    ``headers`` as for a handler's triple; `headers` is then a `MutableHeaders` view of them.
    ``body`` is anything a handler may return as body (see `normalize_result`). Constructors
    for the common cases: `json`, `text`, `html`, `redirect`, `file`.
    """

    __slots__ = ("status", "_raw", "body")

    def __init__(self, status: int = 200, headers: HeadersLike = None, body: Any = b"") -> None:
        self.status = status
        self._raw = normalize_headers(headers)
        self.body = body

    @property
    def headers(self) -> MutableHeaders:
        """The headers, changeable in place (a view: changes apply to this response)."""
        return MutableHeaders.wrap(self._raw)

    @headers.setter
    def headers(self, value: HeadersLike) -> None:
        self._raw = normalize_headers(value)

    @classmethod
    def _build(cls, status: int, raw: RawHeaders, body: Any) -> Response:
        # For this package's code: ``raw`` is an already normalised, trusted list (not copied).
        response = cls.__new__(cls)
        response.status = status
        response._raw = raw
        response.body = body
        return response

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: HeadersLike = None) -> Response:
        """``obj`` as compact UTF-8 JSON, ``application/json`` (NaN and infinities refused)."""
        response = cls.__new__(cls)  # as _build, inlined: the routed-request benchmark's path
        response.status = status
        response._raw = (
            [_JSON_CT] if headers is None else _with_default(normalize_headers(headers), _JSON_CT)
        )
        response.body = _json_bytes(obj)
        return response

    @classmethod
    def text(
        cls,
        text: str,
        status: int = 200,
        headers: HeadersLike = None,
        content_type: str = _TEXT_CT_STR,
    ) -> Response:
        """``text`` encoded as UTF-8, with ``content_type`` unless ``headers`` give one."""
        pair = (
            _TEXT_CT if content_type == _TEXT_CT_STR else header_pair("content-type", content_type)
        )
        raw = [pair] if headers is None else _with_default(normalize_headers(headers), pair)
        return cls._build(status, raw, text.encode())

    @classmethod
    def html(cls, html: str, status: int = 200, headers: HeadersLike = None) -> Response:
        """``html`` encoded as UTF-8, ``text/html; charset=utf-8``."""
        raw = [_HTML_CT] if headers is None else _with_default(normalize_headers(headers), _HTML_CT)
        return cls._build(status, raw, html.encode())

    @classmethod
    def redirect(cls, url: str, status: int = 302, headers: HeadersLike = None) -> Response:
        """A redirection to ``url`` (non-ASCII characters and spaces percent-encoded), which
        replaces a Location given in ``headers`` (a field sent once, RFC 9110 10.2.2)."""
        location = (b"location", quote(url, safe=":/%#?=@[]!$&'()*+,;~").encode("ascii"))
        raw = normalize_headers(headers)
        for i, (name, _) in enumerate(raw):
            if name == b"location":
                raw[i] = location
                raw[i + 1 :] = [pair for pair in raw[i + 1 :] if pair[0] != b"location"]
                break
        else:
            raw.append(location)
        return cls._build(status, raw, b"")

    @classmethod
    def file(
        cls,
        file: str | os.PathLike[str] | Any,
        *,
        content_type: str | None = None,
        filename: str | None = None,
        status: int = 200,
        headers: HeadersLike = None,
    ) -> Response:
        """A file sent whole with ``sendfile``: a path (opened here) or a binary file object,
        from its current position.

        The type is guessed from the name (the file's, else ``filename``) unless
        ``content_type`` is given; ``filename`` asks the browser to download it under that
        name (Content-Disposition: attachment). The file object then belongs to the response
        (the server closes it). One without a regular file behind it (`io.BytesIO`, a pipe)
        is read and sent in chunks, with a Content-Length if it is seekable. A file opened in
        text mode is refused (`TypeError`) and closed. For conditional requests and ranges,
        serve a directory with `StaticFiles` instead.
        """
        from ._mime import guess_content_type

        if isinstance(file, (str, os.PathLike)):
            name = os.fspath(file)
            file = open(name, "rb")  # the server closes it after sending
        else:
            name = str(getattr(file, "name", ""))
        try:
            if isinstance(file, io.TextIOBase):  # (as a body returned in a triple)
                raise TypeError("a file body must be opened in binary mode ('rb'), not text mode")
            raw = normalize_headers(headers)
            ctype = content_type or guess_content_type(name or filename or "")
            raw = _with_default(raw, header_pair("content-type", ctype))
            if filename is not None:
                raw.append(header_pair("content-disposition", _attachment(filename)))
            body = _file_body(file)
            if not isinstance(body, FileBody):
                left = _bytes_left(file)
                if left is not None:
                    raw = _with_default(raw, (b"content-length", b"%d" % left))
        except BaseException:
            file.close()
            raise
        return cls._build(status, raw, body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers.items()!r} {type(self.body).__name__}>"


def _attachment(filename: str) -> str:
    """A Content-Disposition value naming ``filename`` (RFC 6266, RFC 8187 when not ASCII)."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


# -- normalisation ---------------------------------------------------------------------------


def normalize_result(result: Any) -> tuple[int, RawHeaders, Body]:
    """What a handler returned, as ``(status, headers, body)`` ready for the server.

    ``result`` is a `Response` or a ``(status, headers, body)`` tuple. ``status`` is an int
    from 100 to 999 (an `HTTPStatus` too, not a bool; the server refuses 1xx, which are not
    final, when it writes the answer). ``headers`` comes back as a list of lowercased byte
    pairs (the server must not change it: it may be a `Response`'s own list). ``body`` comes
    back as bytes, a `FileBody` (a binary file becomes one, from its current position), or an
    iterable of bytes (a generator, a list, a file-like object without a descriptor read in
    chunks). A ``str`` body is encoded as UTF-8 and gets
    ``Content-Type: text/plain; charset=utf-8`` unless the headers have a Content-Type.
    Anything else raises `TypeError` naming what was returned. The server adds Date,
    Content-Length or Transfer-Encoding, and Connection.

    A body that was handed over (a file, a `FileBody`, a generator...) is closed if the
    status or the headers are refused: it will not be sent, and a file would stay open. So is
    a file opened in text mode, refused (`TypeError`) as a body, and so is such a body returned
    bare, or in a tuple of another length (``(200, FileBody(...))``), which is refused too.
    """
    if type(result) is tuple and len(result) == 3:
        status, headers, body = result
        if headers is None:
            raw = []
        else:
            try:
                raw = normalize_headers(headers)
            except BaseException:
                _discard(body)
                raise
    elif isinstance(result, Response):
        status = result.status
        raw = result._raw
        body = result.body
    else:
        _discard_stray_bodies(result)
        raise TypeError(
            "a handler returns (status, headers, body) or a Response, not "
            f"{type(result).__name__}: {result!r:.100}"
        )
    if type(status) is not int or not 100 <= status <= 999:
        status = check_status(status, body)
    if type(body) is bytes:
        return status, raw, body
    return _normalize_body(status, raw, body)


def check_status(status: Any, body: Any) -> int:
    """``status`` as an int (an `HTTPStatus`, say) if it is one from 100 to 999; else
    `TypeError`, the one error the server logs for it whatever the answer's form and path
    (`HTTPError` checks its status with it too), and ``body`` is closed (see `_discard`)."""
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 999:
        return int(status)
    _discard(body)
    raise TypeError(f"the status must be an int from 100 to 999, not {status!r:.50}")


def _discard(body: Any) -> None:
    """Close a body that will not be sent, as the server closes one it sent (a file, a
    `FileBody`, a generator: anything with a ``close``); what closing raises is logged, not
    propagated."""
    close = getattr(body, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing the body of a refused answer failed")


def _discard_stray_bodies(result: Any) -> None:
    """Close what a refused answer that is neither a triple nor a `Response` handed over as a
    body: ``result`` itself, or the items of a tuple (a `FileBody`, a file, an iterator such
    as a generator). Anything else (a closable object that is no body) is left alone: it may
    not be the handler's to give away."""
    for item in result if type(result) is tuple else (result,):
        if isinstance(item, (FileBody, io.IOBase, Iterator)) or hasattr(item, "read"):
            _discard(item)


def _normalize_body(status: int, raw: RawHeaders, body: Any) -> tuple[int, RawHeaders, Body]:
    if isinstance(body, str):
        return status, _with_default(raw, _TEXT_CT), body.encode()
    if isinstance(body, (bytes, bytearray, memoryview)):
        return status, raw, bytes(body)
    if body is None:
        return status, raw, b""
    if isinstance(body, FileBody):
        return status, raw, body
    if isinstance(body, io.TextIOBase):
        _discard(body)  # (handed over, and refused: closed, as a refused answer's body)
        raise TypeError("a file body must be opened in binary mode ('rb'), not text mode")
    if hasattr(body, "read"):
        return status, raw, _file_body(body)
    if isinstance(body, Mapping):
        raise TypeError(
            "a dict is not a body: return Response.json(obj) to send JSON, or bytes/str"
        )
    if isinstance(body, Iterable):
        return status, raw, body
    raise TypeError(
        "a body is bytes, str, an iterable of bytes, a binary file or a FileBody, not "
        f"{type(body).__name__}"
    )


def _file_body(file: Any) -> Body:
    """A `FileBody` for a regular file with a descriptor; chunks read from anything else."""
    try:
        fd = file.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return FileBody(file, file.tell())
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        pass
    return _FileChunks(file)


def _bytes_left(file: Any) -> int | None:
    """How many bytes a seekable file object has after its position; None if not seekable."""
    try:
        if not file.seekable():
            return None
        position = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(position)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
    return max(0, end - position)


class _FileChunks:
    """The bytes of a file object, read in chunks: a streamed body. `close` closes the file,
    whether it was read or not (a generator's ``finally`` would not run if it never started:
    a HEAD request, a 204 or 304 answer); so does reaching its end."""

    __slots__ = ("_file", "_size")

    def __init__(self, file: Any, chunk_size: int = 65536) -> None:
        self._file = file
        self._size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk: bytes = self._file.read(self._size)
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        """Close the file."""
        close = getattr(self._file, "close", None)
        if close is not None:
            close()
