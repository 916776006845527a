"""The HTTP client: `Client` (a pool of keep-alive connections) and ``get``/``post``/...

Plain blocking-style calls on unknot's cooperative sockets: in a fiber, a request suspends only
that fiber, with no global patching; outside fibers it blocks the thread like ``requests``::

    import unknot.http

    r = unknot.http.get("https://example.com/", params={"q": "fibers"})
    r.raise_for_status()
    print(r.status_code, r.headers["content-type"], r.text)

    with unknot.http.Client(base_url="http://127.0.0.1:8000") as client:
        with unknot.TaskGroup() as tg:                    # 100 fibers, one pool
            for i in range(100):
                tg.spawn(client.get, f"/items/{i}")

Choices, where requests and httpx differ or this client does less:

* The module-level functions use a fresh `Client`, closed when the response is complete (for
  ``stream=True``: when the response is closed), as ``requests.get`` and ``httpx.get`` do: no
  state outlives the call. Use a `Client` for keep-alive and pooling.
* HTTPS is verified by default against the system's trust store (``verify=True``:
  ``ssl.create_default_context()``); ``verify`` may also be a CA bundle file (or directory) path
  or an ``ssl.SSLContext`` (the stdlib's or ``unknot.ssl``'s), and ``False`` turns checks off.
* Redirects are followed by default (as requests does; httpx does not), at most
  ``max_redirects`` (20); see `Client.request` for the rules.
* Timeouts: see `Timeout` (a number bounds each wait; ``total`` bounds the whole exchange).
* Bodies: ``content`` (bytes or str: Content-Length; an iterable of bytes or a binary file:
  chunked), ``data`` (a dict: form-encoded), ``json``. No multipart ``files=``, no cookie jar,
  no proxies, no HTTP/2.
* Request header names are sent lowercased; ``headers={"name": None}`` removes a default one.
* A pooled connection the server closed is detected before reuse, and a request that fails on
  a reused connection before any byte of the answer arrived is retried once on a new one, if
  its method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and its body is bytes.
"""

from __future__ import annotations

import base64
import json as _json
import os
import ssl
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from unknot import ssl as ussl

from ._client_connection import PoolKey
from ._client_decoders import ACCEPT_ENCODING
from ._client_errors import (
    InvalidURL,
    LocalProtocolError,
    ReadError,
    RemoteProtocolError,
    RequestError,
    TooManyRedirects,
    WriteError,
)
from ._client_headers import HeaderTypes, RawHeaders, header_pairs, merge_headers
from ._client_pool import ConnectionPool
from ._client_response import ClientRequest, ClientResponse
from ._client_timeout import DEFAULT_TIMEOUT, Timeout, TimeoutTypes, as_timeout
from ._protocol import LocalProtocolError as _ProtocolLocalError
from ._protocol._writer import render_headers, request_line
from ._url import URL, QueryParams, is_absolute, parse_url

__all__ = [
    "Client",
    "Timeout",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
]

_monotonic = time.monotonic
_UNSET: Any = object()

#: Methods a failed request may be sent again with (RFC 9110, 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"transfer-encoding"})

#: What ``verify=`` accepts.
VerifyTypes = bool | str | os.PathLike[str] | ssl.SSLContext
#: What ``auth=`` accepts: ``(username, password)`` for HTTP basic authentication.
AuthTypes = tuple[str | bytes, str | bytes]
#: A request body: bytes, str, an iterable of bytes, or a binary file.
ContentTypes = bytes | str | Iterable[bytes] | Any


# -- TLS contexts --------------------------------------------------------------------------------

_contexts: dict[Any, ssl.SSLContext] = {}


def ssl_context(verify: VerifyTypes) -> ssl.SSLContext:
    """The TLS context for ``verify`` (see the module docstring). Contexts the client makes
    are cached per setting (per CA file version) and shared: making one reads the CA store."""
    if isinstance(verify, ssl.SSLContext):  # the stdlib's or unknot.ssl's: both work
        return verify
    if verify is True or verify is False:
        key: Any = verify
    elif isinstance(verify, str | os.PathLike):
        path = os.fspath(verify)
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise ValueError(f"verify={path!r}: no CA bundle there ({exc})") from None
        key = (path, stat.st_mtime_ns, stat.st_size)
    else:
        raise TypeError(f"verify is True, False, a CA file path or an SSLContext, not {verify!r}")
    context = _contexts.get(key)
    if context is None:
        if verify is False:
            context = ussl.SSLContext(ussl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ussl.CERT_NONE
        elif verify is True:
            context = ussl.create_default_context()
        elif os.path.isdir(key[0]):
            context = ussl.create_default_context(capath=key[0])
        else:
            context = ussl.create_default_context(cafile=key[0])
        context.set_alpn_protocols(["http/1.1"])
        _contexts[key] = context
    return context


# -- request bodies ------------------------------------------------------------------------------


def _encode_body(
    content: Any, data: Any, json: Any
) -> tuple[bytes | Iterable[bytes] | None, bytes | None]:
    """The body and its default Content-Type, from ``content``, ``data`` or ``json``."""
    if json is not None:
        if content is not None or data is not None:
            raise TypeError("give one of content=, data= and json=")
        text = _json.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode(), b"application/json"
    if data is not None:
        if content is not None:
            raise TypeError("give one of content=, data= and json=")
        if isinstance(data, Mapping):
            return urlencode(data, doseq=True).encode(), b"application/x-www-form-urlencoded"
        content = data  # bytes, str or a stream, as requests accepts them
    if content is None:
        return None, None
    if isinstance(content, str):
        return content.encode(), None
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content), None
    if hasattr(content, "read") or isinstance(content, Iterable):
        return content, None
    raise TypeError(f"content is bytes, str, an iterable of bytes or a file, not {content!r}")


def _basic_auth(username: str | bytes, password: str | bytes) -> bytes:
    """The Authorization value; str credentials are encoded as UTF-8 (RFC 7617, 2.1)."""
    user = username.encode() if isinstance(username, str) else username
    secret = password.encode() if isinstance(password, str) else password
    return b"Basic " + base64.b64encode(user + b":" + secret)


def _method_bytes(method: str) -> bytes:
    """The method as sent, checked (a token of ASCII letters and the like; not CONNECT)."""
    try:
        raw = method.encode("ascii")
        request_line(raw, b"/")
    except (UnicodeEncodeError, _ProtocolLocalError):
        raise LocalProtocolError(f"invalid method {method!r}") from None
    if raw == b"CONNECT":
        raise LocalProtocolError("CONNECT is not supported")
    return raw


def _check_head(request: ClientRequest, body: bytes | Iterable[bytes] | None) -> None:
    """Refuse, before connecting, a request the protocol layer would refuse once connected:
    bad header names or values, a Content-Length the bytes body contradicts, chunked framing
    asked for a bytes body (or none), a protocol upgrade."""
    try:
        facts = render_headers(request._raw_headers, [])
        if facts is None:
            return
        if body is None or type(body) is bytes:
            if facts.chunked:
                raise LocalProtocolError(
                    "Transfer-Encoding: chunked needs a streamed body (an iterable of bytes or "
                    "a file), not bytes"
                )
            length = 0 if body is None else len(body)
            if facts.content_length is not None and facts.content_length != length:
                raise LocalProtocolError(
                    f"the Content-Length header ({facts.content_length}) does not match the "
                    f"body ({length} bytes)"
                )
        if facts.upgrade:
            raise LocalProtocolError("protocol upgrades are not supported")
    except LocalProtocolError as exc:
        exc.request = request
        raise
    except _ProtocolLocalError as exc:
        raise LocalProtocolError(str(exc), request=request) from None


# -- the client ----------------------------------------------------------------------------------


class Client:
    """An HTTP/1.1 client with a pool of keep-alive connections, safe to share between fibers.

    ``base_url``: relative URLs given to the methods are appended to it. ``headers``: sent with
    every request (``User-Agent: unknot/<version>``, ``Accept: */*`` and ``Accept-Encoding:
    gzip, deflate`` are the defaults; a None value removes one). ``auth``: ``(user, password)``
    for basic authentication. ``timeout``: a `Timeout`, a number or None. ``verify``: see the
    module docstring. ``max_connections`` (100; None: no limit) bounds the open connections,
    ``max_connections_per_host`` (None) those to one ``(scheme, host, port)``; past them a
    request waits for a free connection (``Timeout.pool``). ``keepalive_expiry`` (5 s): idle
    connections older than that are closed (None: never; a negative value or NaN raises
    `ValueError` here, as a NaN or negative ``timeout`` does). ``follow_redirects`` and
    ``max_redirects``: see `request`.

    Use it as a context manager, or call `close`. It belongs to one thread (its hub); any
    number of fibers of that hub may use it at once.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        headers: HeaderTypes | None = None,
        auth: AuthTypes | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        verify: VerifyTypes = True,
        max_connections: int | None = 100,
        max_connections_per_host: int | None = None,
        keepalive_expiry: float | None = 5.0,
        follow_redirects: bool = True,
        max_redirects: int = 20,
    ) -> None:
        import unknot

        self.base_url = None if base_url is None else parse_url(base_url)
        defaults: RawHeaders = [
            (b"user-agent", f"unknot/{unknot.__version__}".encode()),
            (b"accept", b"*/*"),
            (b"accept-encoding", ACCEPT_ENCODING),
        ]
        self._headers = merge_headers(defaults, header_pairs(headers))
        self._check_headers = bool(headers)  # (the defaults need no check)
        self.auth = auth
        self.timeout = as_timeout(timeout)
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self.follow_redirects = follow_redirects
        if max_redirects < 0:
            raise ValueError("max_redirects cannot be negative")
        self.max_redirects = max_redirects
        self._pool = ConnectionPool(max_connections, max_connections_per_host, keepalive_expiry)
        self._methods: dict[str, bytes] = {}
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """`close` was called."""
        return self._closed

    @property
    def pool(self) -> ConnectionPool:
        """The connection pool (``connections``, ``idle_connections``)."""
        return self._pool

    def close(self) -> None:
        """Close the idle connections; those of open streamed responses close with them.
        Requests after this raise ``RuntimeError``."""
        self._closed = True
        self._pool.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str | URL,
        *,
        params: QueryParams | None = None,
        headers: HeaderTypes | None = None,
        content: ContentTypes | None = None,
        data: Any = None,
        json: Any = None,
        auth: AuthTypes | None = _UNSET,
        timeout: TimeoutTypes = _UNSET,
        follow_redirects: bool | None = None,
        max_redirects: int | None = None,
        stream: bool = False,
    ) -> ClientResponse:
        """Send a request and return its `ClientResponse` (its body read, unless ``stream``).

        ``params`` are added to the URL's query (a str or bytes is percent-encoded as the same
        query in the URL would be; a ``#`` in it is sent as ``%23``). One body at most:
        ``content`` (bytes or str, sent with Content-Length; an iterable of bytes or a binary
        file, sent chunked),
        ``data`` (a dict, form-encoded; other values as ``content``) or ``json`` (serialised,
        ``Content-Type: application/json``). ``auth``, ``timeout``, ``follow_redirects`` and
        ``max_redirects`` override the client's.

        Redirects (301, 302, 303, 307, 308 with a Location, relative or absolute): 303 turns
        any method but HEAD into GET, and 301 and 302 turn POST into GET, without the body;
        307 and 308 repeat the method and the body, if the body was bytes (a streamed body
        cannot be sent again: the redirect response is returned instead). Authorization is
        dropped when the redirect leaves the origin (scheme, host, port). More than
        ``max_redirects`` redirects raise `TooManyRedirects`. ``response.history`` lists the
        redirect responses.
        """
        if self._closed:
            raise RuntimeError("the client is closed")
        t = self.timeout if timeout is _UNSET else as_timeout(timeout)
        deadline = None if t.total is None else _monotonic() + t.total
        request, body = self._build_request(
            method, url, params, headers, content, data, json, self.auth if auth is _UNSET else auth
        )
        response = self._send(request, body, t, deadline, stream)
        if response.status_code not in _REDIRECTS:
            return response
        if not (self.follow_redirects if follow_redirects is None else follow_redirects):
            return response
        limit = self.max_redirects if max_redirects is None else max_redirects
        history: list[ClientResponse] = []
        while True:
            try:
                following = self._redirect(request, body, response)
            except BaseException:
                response.close()  # (a streamed one holds its connection)
                raise
            if following is None:
                break
            response.close()
            if len(history) >= limit:
                raise TooManyRedirects(
                    f"more than {limit} redirects", request=request, response=response
                )
            history.append(response)
            request, body = following
            response = self._send(request, body, t, deadline, stream)
            response.history = list(history)
            if response.status_code not in _REDIRECTS:
                break
        return response

    def stream(self, method: str, url: str | URL, **kwargs: Any) -> ClientResponse:
        """``request(method, url, stream=True, ...)``: the body is read as you iterate over it
        (``iter_bytes``, ``iter_text``, ``iter_lines``, ``read``). Use it in a ``with`` block
        (or call ``close()``) so that the connection is released::

            with client.stream("GET", url) as r:
                for chunk in r.iter_bytes():
                    ...
        """
        return self.request(method, url, stream=True, **kwargs)

    def get(self, url: str | URL, **kwargs: Any) -> ClientResponse:
        """A GET request (see `request` for the keyword arguments)."""
        return self.request("GET", url, **kwargs)

    def head(self, url: str | URL, **kwargs: Any) -> ClientResponse:
        """A HEAD request: the response has no body."""
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str | URL, **kwargs: Any) -> ClientResponse:
        """An OPTIONS request."""
        return self.request("OPTIONS", url, **kwargs)

    def delete(self, url: str | URL, **kwargs: Any) -> ClientResponse:
        """A DELETE request."""
        return self.request("DELETE", url, **kwargs)

    def post(self, url: str | URL, **kwargs: Any) -> ClientResponse:
        """A POST request (``content=``, ``data=`` or ``json=`` give its body)."""
        return self.request("POST", url, **kwargs)

    def put(self, url: str | URL, **kwargs: Any) -> ClientResponse:
        """A PUT request."""
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str | URL, **kwargs: Any) -> ClientResponse:
        """A PATCH request."""
        return self.request("PATCH", url, **kwargs)

    # -- building ---------------------------------------------------------------------------------

    def _url(self, url: str | URL, params: QueryParams | None) -> URL:
        base = self.base_url
        if base is not None and isinstance(url, str) and not is_absolute(url):
            prefix = f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}"
            url = prefix + ("/" + url.lstrip("/") if url else "/")
        parsed = parse_url(url)
        return parsed.with_params(params) if params else parsed

    def _build_request(
        self,
        method: str,
        url: str | URL,
        params: QueryParams | None,
        headers: HeaderTypes | None,
        content: ContentTypes | None,
        data: Any,
        json: Any,
        auth: AuthTypes | None,
    ) -> tuple[ClientRequest, bytes | Iterable[bytes] | None]:
        target = self._url(url, params)
        method = method.upper()
        if method not in self._methods:
            self._methods[method] = _method_bytes(method)
        raw = [(b"host", target.host_header), *self._headers]
        body, content_type = (
            (None, None) if content is data is json is None else _encode_body(content, data, json)
        )
        if headers or content_type or auth or target.username is not None:
            extra: list[tuple[bytes, bytes | None]] = []
            if content_type is not None:
                extra.append((b"content-type", content_type))
            if auth:  # auth= wins over credentials in the URL
                extra.append((b"authorization", _basic_auth(*auth)))
            elif target.username is not None:
                extra.append(
                    (b"authorization", _basic_auth(target.username, target.password or ""))
                )
            if headers:
                given = header_pairs(headers)
                names = {name for name, _ in given}
                extra = [pair for pair in extra if pair[0] not in names] + given
            raw = merge_headers(raw, extra)
        request = ClientRequest(method, target, raw, body if type(body) is bytes else None)
        if headers or self._check_headers:
            _check_head(request, body)
        return request, body

    def _redirect(
        self, request: ClientRequest, body: bytes | Iterable[bytes] | None, response: ClientResponse
    ) -> tuple[ClientRequest, bytes | Iterable[bytes] | None] | None:
        """The request that follows a redirect response, or None to stop here."""
        location = response.headers.get("location")
        if not location:
            return None
        if not location.isascii():  # raw UTF-8 (header values are read as latin-1)
            try:
                location = location.encode("latin-1").decode("utf-8")
            except UnicodeError:
                pass
        status = response.status_code
        try:
            url = request.url.join(location)
        except InvalidURL as exc:
            exc.request = request
            raise
        method = request.method
        raw = request._raw_headers
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
            body = None
            raw = [pair for pair in raw if pair[0] not in _BODY_HEADERS]
        elif body is not None and type(body) is not bytes:
            return None  # a streamed body cannot be sent again
        same_origin = url.origin == request.url.origin
        headers = [(b"host", url.host_header)]
        headers.extend(
            pair
            for pair in raw
            if pair[0] != b"host" and (same_origin or pair[0] != b"authorization")
        )
        if url.username is not None:
            headers = merge_headers(
                headers, [(b"authorization", _basic_auth(url.username, url.password or ""))]
            )
        return ClientRequest(method, url, headers, body if type(body) is bytes else None), body

    # -- sending ---------------------------------------------------------------------------------

    def _send(
        self,
        request: ClientRequest,
        body: bytes | Iterable[bytes] | None,
        timeout: Timeout,
        deadline: float | None,
        stream: bool,
        fresh: bool = False,
    ) -> ClientResponse:
        """One exchange: a connection from the pool, the request out, the response in."""
        method = self._methods.get(request.method)
        if method is None:
            method = self._methods[request.method] = request.method.encode("ascii")
        url = request.url
        if url.scheme == "https":
            context = self._ssl_context
            if context is None:
                context = self._ssl_context = ssl_context(self._verify)
            key: PoolKey = ("https", url.host, url.port, context)
        else:
            key = ("http", url.host, url.port, None)
        pool = self._pool
        try:
            conn = pool.acquire(key, timeout.connect, timeout.pool, deadline, fresh)
        except RequestError as exc:
            exc.request = request
            raise
        reused = conn.requests > 0
        conn.deadline = deadline
        started = _monotonic()
        try:
            try:
                conn.send_request(method, url.target, request._raw_headers, body, timeout.write)
            except WriteError as write_error:
                if conn.closed:
                    raise
                try:  # an answer that came before the server stopped reading (RFC 9112, 9.5)
                    head, parts, done = conn.receive_head(timeout.read)
                except (ReadError, RemoteProtocolError):
                    raise write_error from None
            else:
                head, parts, done = conn.receive_head(timeout.read)
        except _ProtocolLocalError as exc:  # (what _check_head could not see: a short body)
            pool.discard(conn)
            if not isinstance(exc, LocalProtocolError):
                raise LocalProtocolError(str(exc), request=request) from exc
            exc.request = request
            raise
        except (ReadError, WriteError, RemoteProtocolError) as exc:
            pool.discard(conn)
            if (
                reused
                and not conn.received
                and not fresh
                and request.method in IDEMPOTENT
                and (body is None or type(body) is bytes)
            ):
                return self._send(request, body, timeout, deadline, stream, fresh=True)
            exc.request = request
            raise
        except BaseException as exc:
            pool.discard(conn)
            if isinstance(exc, RequestError):
                exc.request = request
            raise
        response = ClientResponse(
            head.status,
            head.reason,
            head.http_version,
            head.headers,
            request,
            _monotonic() - started,
        )
        if stream:
            response._set_stream(conn, pool.release, parts, done, timeout.read)
            return response
        try:
            while not done:
                more, done = conn.receive_body(timeout.read)
                parts.extend(more)
        except BaseException as exc:
            pool.discard(conn)
            if isinstance(exc, RequestError):
                exc.request = request
            raise
        pool.release(conn)  # (the body arrived whole: a DecodingError leaves it reusable)
        try:
            response._set_body(parts)
        except RequestError as exc:
            exc.request = request
            raise
        return response

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._pool.connections} connections"
        return f"<Client {state}>"


# -- module-level functions ----------------------------------------------------------------------


def request(
    method: str,
    url: str | URL,
    *,
    params: QueryParams | None = None,
    headers: HeaderTypes | None = None,
    content: ContentTypes | None = None,
    data: Any = None,
    json: Any = None,
    auth: AuthTypes | None = None,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = True,
    max_redirects: int = 20,
    verify: VerifyTypes = True,
    stream: bool = False,
) -> ClientResponse:
    """Send one request with a fresh `Client` (closed once the response is complete, or, with
    ``stream=True``, when the response is closed); see `Client.request`."""
    client = Client(
        timeout=timeout,
        verify=verify,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
    )
    try:
        response = client.request(
            method,
            url,
            params=params,
            headers=headers,
            content=content,
            data=data,
            json=json,
            auth=auth,
            stream=stream,
        )
    except BaseException:
        client.close()
        raise
    if response.is_closed:
        client.close()
    else:
        response.on_close = client.close
    return response


def get(url: str | URL, **kwargs: Any) -> ClientResponse:
    """A GET request with a fresh client (see `request`)."""
    return request("GET", url, **kwargs)


def head(url: str | URL, **kwargs: Any) -> ClientResponse:
    """A HEAD request with a fresh client (see `request`)."""
    return request("HEAD", url, **kwargs)


def options(url: str | URL, **kwargs: Any) -> ClientResponse:
    """An OPTIONS request with a fresh client (see `request`)."""
    return request("OPTIONS", url, **kwargs)


def delete(url: str | URL, **kwargs: Any) -> ClientResponse:
    """A DELETE request with a fresh client (see `request`)."""
    return request("DELETE", url, **kwargs)


def post(url: str | URL, **kwargs: Any) -> ClientResponse:
    """A POST request with a fresh client (see `request`)."""
    return request("POST", url, **kwargs)


def put(url: str | URL, **kwargs: Any) -> ClientResponse:
    """A PUT request with a fresh client (see `request`)."""
    return request("PUT", url, **kwargs)


def patch(url: str | URL, **kwargs: Any) -> ClientResponse:
    """A PATCH request with a fresh client (see `request`)."""
    return request("PATCH", url, **kwargs)
