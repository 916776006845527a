"""What a handler sees and says: `Request`, `Response`, `HTTPError`, `FileBody`, `normalize_result`.

A handler is ``handler(request)`` returning either a `Response` or the seed's triple
``(status, headers, body)``: headers ``None``, a dict, a list of pairs or `Headers`; the body
bytes, ``str`` (UTF-8, ``text/plain; charset=utf-8`` unless a Content-Type is given), an
iterable of bytes (streamed), a binary file, or a `FileBody`. `normalize_result` turns either
form into the triple the server writes; raising `HTTPError` answers with its status instead.

The server builds one `Request` per request, so building one does almost nothing: the path,
query, headers view and body are computed on first use.
"""

from __future__ import annotations

import io
import json as _json
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote_to_bytes

from ._headers import (
    Headers,
    HeadersLike,
    MutableHeaders,
    RawHeaders,
    header_pair,
    normalize_headers,
)

__all__ = [
    "Body",
    "BodySource",
    "FileBody",
    "HTTPError",
    "QueryParams",
    "Request",
    "Response",
    "normalize_result",
]


class BodySource(Protocol):
    """Where a request body comes from: ``read(n)`` gives up to ``n`` bytes, ``b""`` at the end.

    ``read()`` (``n`` = -1) gives everything left. The server's reader raises its own errors
    (a body over the size limit, a client gone) from ``read``; they propagate to the handler.
    """

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes of the body (all that is left if ``n`` < 0), ``b""`` at its end."""
        ...


# -- errors ----------------------------------------------------------------------------------


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class HTTPError(Exception):
    """Raise it from a handler to answer with ``status``: ``raise HTTPError(404)``.

    ``detail`` (default: the status phrase) becomes a plain-text body; ``headers`` are added
    to the answer (405 needs ``Allow``, 416 ``Content-Range``). An `App`'s error handlers see
    it first; otherwise `response` is what is sent.
    """

    def __init__(self, status: int, detail: str | None = None, headers: HeadersLike = None):
        self.status = int(status)
        self.detail = _phrase(self.status) if detail is None else detail
        self.headers = normalize_headers(headers)
        super().__init__(self.status, self.detail)

    def response(self) -> Response:
        """The default answer: the status, the headers, and the detail as plain text."""
        headers = self.headers
        if not any(k == b"content-type" for k, _ in headers):
            headers = [*headers, _TEXT_CT]
        return Response(self.status, headers, self.detail.encode() + b"\n")

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"


# -- request ---------------------------------------------------------------------------------


class QueryParams(Mapping[str, str]):
    """A parsed query string: a read-only multi-mapping of ``str`` names to ``str`` values.

    ``q["a"]`` is the first value of ``a``, ``get_all("a")`` all of them; ``+`` means space,
    blank values are kept (``?a=&b`` gives ``a`` and ``b`` the value ``""``). As with
    `Headers`, ``len`` and iteration count each pair, repeats included.
    """

    __slots__ = ("_pairs",)

    def __init__(self, query: str | Iterable[tuple[str, str]] = "") -> None:
        if isinstance(query, str):
            self._pairs = parse_qsl(query, keep_blank_values=True)
        else:
            self._pairs = list(query)

    def __getitem__(self, name: str) -> str:
        for k, v in self._pairs:
            if k == name:
                return v
        raise KeyError(name)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (an empty list if there is none)."""
        return [v for k, v in self._pairs if k == name]

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._pairs)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every ``(name, value)`` pair in order, repeats included."""
        return list(self._pairs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QueryParams):
            return self._pairs == other._pairs
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"QueryParams({self._pairs!r})"


_scan_json_value = _json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json_loads(data: bytes) -> Any:
    """``json.loads(data)``, without its Python overhead when ``data`` is plain UTF-8 JSON.

    The C scanner parses one value; a document it does not take whole (leading or trailing
    whitespace, not UTF-8, UTF-16/32 that happens to decode as UTF-8, invalid) goes through
    ``json.loads``, for the same result or error as ``json.loads`` alone.
    """
    try:
        text = data.decode()
        value, end = _scan_json_value(text, 0)
    except (ValueError, StopIteration):  # UnicodeDecodeError, JSONDecodeError
        return _json.loads(data)
    if end != len(text):
        return _json.loads(data)
    return value


class Request:
    """One HTTP request, as a handler sees it. The server builds it; handlers read it.

    Attributes: `method` (``"GET"``), `target` (the raw request target, bytes), `raw_path`
    (its path part, bytes, still percent-encoded), `path` (percent-decoded ``str``, UTF-8),
    `query_string` (``str``), `query` (`QueryParams`), `headers` (`Headers`), `client`
    (``(host, port)`` or ``None``), `http_version` (``"1.1"``), `scheme` (``"http"`` or
    ``"https"``), `path_params` (filled by the router). Under a mounted app, `path` is the part
    below the mount point and `root_path` the mount prefix (``root_path + path`` is the
    whole decoded path), as WSGI's PATH_INFO and SCRIPT_NAME.

    The body is read on demand: `body` (all of it, cached), `text`, `json`, or incrementally
    `read` and `stream`. Once `read`/`stream` took bytes from the connection, `body` refuses
    (the start is gone); after `body`, `read` and `stream` replay the cached body.
    Building one stores its arguments and nothing else: path, query and headers view are
    computed on first use.
    """

    __slots__ = (
        "method",
        "target",
        "http_version",
        "client",
        "scheme",
        "path_params",
        "root_path",
        "_raw_headers",
        "_source",
        "_body",
        "_streamed",
        "_pos",
        "_raw_path",
        "_query_string",
        "_path",
        "_query",
        "_headers",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        headers: RawHeaders,
        *,
        http_version: str = "1.1",
        client: tuple[Any, ...] | None = None,
        scheme: str = "http",
        body: BodySource | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self._raw_headers = headers
        self.http_version = http_version
        self.client = client
        self.scheme = scheme
        self._source = body
        #: The router's converted path parameters.
        self.path_params: dict[str, Any] = {}
        #: The prefixes of the mounts the request went through (see `App.mount`).
        self.root_path = ""
        self._body: bytes | None = None
        self._streamed = False
        self._pos = 0
        self._raw_path: bytes | None = None
        self._query_string: str | None = None
        self._path: str | None = None
        self._query: QueryParams | None = None
        self._headers: Headers | None = None

    def _split_target(self) -> bytes:
        """Fill ``_raw_path`` and ``_query_string`` from the request target; the raw path."""
        # (bytes.find, not "in": ``b"#" in x`` first tries the int protocol and costs 3x more)
        path, _, query = self.target.partition(b"?")
        if path.find(b"#") >= 0:
            path = path.partition(b"#")[0]
        if path[:1] != b"/" and path != b"*":
            # absolute-form (``http://host/path``, sent to proxies): keep the path part only
            scheme_end = path.find(b"://")
            slash = path.find(b"/", scheme_end + 3) if scheme_end >= 0 else -1
            path = path[slash:] if slash >= 0 else b"/"
        self._raw_path = path
        self._query_string = query.partition(b"#")[0].decode("latin-1") if query else ""
        return path

    @property
    def raw_path(self) -> bytes:
        """The path part of the target as received (still percent-encoded), the whole of it."""
        raw_path = self._raw_path
        if raw_path is None:
            raw_path = self._split_target()
        return raw_path

    @property
    def query_string(self) -> str:
        """The query part of the target (after ``?``), ``""`` if there is none."""
        query_string = self._query_string
        if query_string is None:
            self._split_target()
            query_string = self._query_string or ""
        return query_string

    @property
    def path(self) -> str:
        """The percent-decoded path (UTF-8; relative to the mount point under a mount)."""
        path = self._path
        if path is None:
            raw = self._raw_path
            if raw is None:
                raw = self._split_target()
            if raw.find(b"%") >= 0:
                raw = unquote_to_bytes(raw)
            path = self._path = raw.decode("utf-8", "replace")
        return path

    @path.setter
    def path(self, value: str) -> None:
        self._path = value

    @property
    def query(self) -> QueryParams:
        """The parsed query string."""
        query = self._query
        if query is None:
            query = self._query = QueryParams(self.query_string)
        return query

    @property
    def headers(self) -> Headers:
        """The request headers (case-insensitive, repeats kept)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = Headers(self._raw_headers)
        return headers

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as an int, or ``None`` (absent, chunked body)."""
        value = self.headers.get("content-length")
        if value is None or not value.isdigit():
            return None
        return int(value)

    def body(self) -> bytes:
        """The whole body (``b""`` if there is none), read once and cached."""
        body = self._body
        if body is None:
            source = self._source
            if source is None:
                body = b""
            elif self._streamed:
                raise RuntimeError("the body was already partly consumed by read() or stream()")
            else:
                body = source.read()
            self._body = body
        return body

    def text(self) -> str:
        """The body decoded with the Content-Type's charset (UTF-8 by default).

        Raises ``HTTPError(400)`` if it does not decode.
        """
        charset = "utf-8"
        content_type = self.headers.get("content-type")
        if content_type is not None:
            for param in content_type.split(";")[1:]:
                key, _, value = param.partition("=")
                if key.strip().lower() == "charset" and value.strip():
                    charset = value.strip().strip('"')
        try:
            return self.body().decode(charset)
        except (UnicodeDecodeError, LookupError) as exc:
            raise HTTPError(400, f"request body is not valid {charset} text") from exc

    def json(self) -> Any:
        """The body parsed as JSON. Raises ``HTTPError(400)`` if it is not valid JSON."""
        try:
            return _json_loads(self.body())
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError too
            raise HTTPError(400, f"invalid JSON body: {exc}") from exc

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` more bytes of the body (all the rest if ``n`` < 0); ``b""`` at the end."""
        body = self._body
        if body is not None:
            start = self._pos
            end = len(body) if n < 0 else min(len(body), start + n)
            self._pos = end
            return body[start:end]
        source = self._source
        if source is None:
            return b""
        self._streamed = True
        return source.read(n)

    def stream(self, chunk_size: int = 65536) -> Iterator[bytes]:
        """The rest of the body, in chunks of at most ``chunk_size`` bytes."""
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target.decode('latin-1')!r}>"


# -- response --------------------------------------------------------------------------------


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
        """A redirection to ``url`` (non-ASCII characters and spaces percent-encoded)."""
        location = quote(url, safe=":/%#?=@[]!$&'()*+,;~")
        raw = normalize_headers(headers)
        raw.append((b"location", location.encode("ascii")))
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
        """A file sent whole with ``sendfile``: a path (opened here) or a binary file object.

        The type is guessed from the name unless ``content_type`` is given; ``filename`` asks
        the browser to download it under that name (Content-Disposition: attachment). The
        file object then belongs to the response (the server closes it). For conditional
        requests and ranges, serve a directory with `StaticFiles` instead.
        """
        from ._static import guess_content_type

        if isinstance(file, (str, os.PathLike)):
            name = os.fspath(file)
            file = open(name, "rb")  # the server closes it after sending
        else:
            name = str(getattr(file, "name", ""))
        try:
            raw = normalize_headers(headers)
            ctype = content_type or guess_content_type(name)
            raw = _with_default(raw, header_pair("content-type", ctype))
            if filename is not None:
                raw.append(header_pair("content-disposition", _attachment(filename)))
            body = FileBody(file, file.tell())
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

    ``result`` is a `Response` or a ``(status, headers, body)`` tuple. ``headers`` comes back
    as a list of lowercased byte pairs (the server must not change it: it may be a
    `Response`'s own list). ``body`` comes back as bytes, a `FileBody` (a binary file becomes
    one, from its current position), or an iterable of bytes (a generator, a list, a file-like
    object without a descriptor read in chunks). A ``str`` body is encoded as UTF-8 and gets
    ``Content-Type: text/plain; charset=utf-8`` unless the headers have a Content-Type.
    Anything else raises `TypeError` naming what was returned. The server adds Date,
    Content-Length or Transfer-Encoding, and Connection.
    """
    if type(result) is tuple and len(result) == 3:
        status, headers, body = result
        raw = [] if headers is None else normalize_headers(headers)
    elif isinstance(result, Response):
        status = result.status
        raw = result._raw
        body = result.body
    else:
        raise TypeError(
            "a handler returns (status, headers, body) or a Response, not "
            f"{type(result).__name__}: {result!r:.100}"
        )
    if type(status) is not int or not 100 <= status <= 999:
        status = _check_status(status)
    if type(body) is bytes:
        return status, raw, body
    return _normalize_body(status, raw, body)


def _check_status(status: Any) -> int:
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 999:
        return int(status)  # an HTTPStatus, say
    raise TypeError(f"the status must be an int from 100 to 999, not {status!r:.50}")


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
    return _read_chunks(file)


def _read_chunks(file: Any, chunk_size: int = 65536) -> Iterator[bytes]:
    try:
        while True:
            chunk = file.read(chunk_size)
            if not chunk:
                return
            yield chunk
    finally:
        close = getattr(file, "close", None)
        if close is not None:
            close()
