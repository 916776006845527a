"""What a handler is given: `Request` (with `QueryParams`), and `HTTPError` to refuse it.

The server builds one `Request` per request, so building one does almost nothing: the path,
query, headers view and body are computed on first use. Raising `HTTPError` from a handler
answers with its status. (`Response`, `FileBody` and `normalize_result` live in `_response`
and are re-exported here.)
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote_to_bytes

from .._native import mypyc_attr
from ._headers import Headers, HeadersLike, RawHeaders, normalize_headers
from ._response import Body, FileBody, Response, check_status, normalize_result

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


@mypyc_attr(allow_interpreted_subclasses=True)
class HTTPError(Exception):
    """Raise it from a handler to answer with ``status``: ``raise HTTPError(404)``.

    ``detail`` (default: the status phrase) becomes a plain-text body, except for the statuses
    that have none (1xx, 204, 205, 304: see `response`); ``headers`` are added to the answer
    (405 needs ``Allow``, 416 ``Content-Range``, a 304 its ``ETag``). An `App`'s error handlers
    see it first; otherwise `response` is what is sent.
    """

    def __init__(
        self, status: int | HTTPStatus, detail: str | None = None, headers: HeadersLike = None
    ):
        # (Checked as a handler's own status, with its error: int() would make 1 of True and
        # 404 of "404" or 404.9, and hide the mistake. A union, not ``int``: compiled, an
        # ``int`` parameter would already have made 1 of True.)
        self.status = check_status(status, None)
        self.detail = _phrase(self.status) if detail is None else detail
        self.headers = normalize_headers(headers)
        super().__init__(self.status, self.detail)

    def response(self) -> Response:
        """The default answer: the status, the headers, and the detail as plain text.

        A status whose answer has no body (1xx, 204 No Content, 205 Reset Content, 304 Not
        Modified: RFC 9110 s15) gets the status and the headers only: no body, no
        Content-Type.
        """
        status = self.status
        if status < 200 or status == 204 or status == 205 or status == 304:
            return Response(status, self.headers)
        return Response.text(self.detail + "\n", status, self.headers)

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"

    def __reduce__(self) -> tuple[Any, ...]:
        """Copies and pickles are made again from ``status``, ``detail`` and ``headers`` as
        they are now (and a subclass's own attributes), in both builds: the compiled class has
        no ``__dict__`` for `BaseException`'s own reduction to carry them."""
        return (
            type(self),
            (self.status, self.detail, self.headers),
            getattr(self, "__dict__", None) or None,
        )


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


#: Parsed request targets: ``target -> (raw_path, query_string, path)``. Clients ask for the
#: same few targets over and over; splitting and decoding one costs more than a lookup. Only
#: short targets are kept, and the whole cache is dropped when it is full (bounded memory,
#: whatever the targets a client makes up).
_TARGETS: dict[bytes, tuple[bytes, str, str]] = {}
_TARGETS_MAX = 1024
_TARGET_CACHED_MAX = 200


def _split_target(target: bytes | bytearray) -> tuple[bytes, str, str]:
    """``(raw_path, query_string, path)`` of a request target (see `Request`)."""
    whole = target if type(target) is bytes else bytes(target)
    # The fragment goes first: a "?" after the "#" is the fragment's, not a query (RFC 3986).
    # (The server never gets here with one: the protocol layer answers a "#" with 400.)
    # (bytes.find, not "in": ``b"#" in x`` first tries the int protocol and costs 3x more)
    fragment = whole.find(b"#")
    path, _, query = (whole if fragment < 0 else whole[:fragment]).partition(b"?")
    if path[:1] != b"/" and path != b"*":
        # absolute-form (``http://host/path``, sent to proxies): keep the path part only
        scheme_end = path.find(b"://")
        slash = path.find(b"/", scheme_end + 3) if scheme_end >= 0 else -1
        path = path[slash:] if slash >= 0 else b"/"
    query_string = query.decode("latin-1") if query else ""
    decoded = unquote_to_bytes(path) if path.find(b"%") >= 0 else path
    parts = (path, query_string, decoded.decode("utf-8", "replace"))
    if type(target) is bytes and len(target) <= _TARGET_CACHED_MAX:
        if len(_TARGETS) >= _TARGETS_MAX:
            _TARGETS.clear()
        _TARGETS[whole] = parts
    return parts


@mypyc_attr(allow_interpreted_subclasses=True)
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
    Building one is cheap: the target is split and decoded once per distinct target (a small
    cache), the query and the headers view are computed on first use.
    """

    __slots__ = (
        "method",
        "target",
        "http_version",
        "client",
        "scheme",
        "path_params",
        "root_path",
        "path",
        "_parts",
        "_raw_headers",
        "_source",
        "_body",
        "_pos",
        "_query",
        "_headers",
    )

    #: The percent-decoded path (UTF-8; relative to the mount point under a mount).
    path: str

    def __init__(
        self,
        method: str,
        target: bytes | bytearray,
        headers: RawHeaders,
        http_version: str = "1.1",
        client: tuple[Any, ...] | None = None,
        scheme: str = "http",
        body: BodySource | None = None,
    ) -> None:
        # (The server passes every argument by position: keywords cost more per call.)
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
        parts = _TARGETS.get(target) if type(target) is bytes else None
        if parts is None:
            parts = _split_target(target)
        self._parts = parts
        self.path = parts[2]
        self._body: bytes | None = None
        #: Where `read` is in the cached body; -1 once `read` took bytes from the source.
        self._pos = 0
        self._query: QueryParams | None = None
        self._headers: Headers | None = None

    @property
    def raw_path(self) -> bytes:
        """The path part of the target as received (still percent-encoded), the whole of it."""
        return self._parts[0]

    @property
    def query_string(self) -> str:
        """The query part of the target (after ``?``), ``""`` if there is none."""
        return self._parts[1]

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
            elif self._pos < 0:
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
        except (UnicodeError, LookupError) as exc:  # (idna, punycode: a plain UnicodeError)
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
        if source is None or n == 0:
            return b""
        taken = self._pos  # 0 while nothing was taken from the source, else -1
        self._pos = -1  # (also if read raises: what it took is unknown)
        chunk = source.read(n)
        if not chunk:  # the end: no bytes taken by this call
            self._pos = taken
        return chunk

    def stream(self, chunk_size: int = 65536) -> Iterator[bytes]:
        """The rest of the body, in chunks of at most ``chunk_size`` bytes."""
        while True:
            chunk = self.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target.decode('latin-1')!r}>"
