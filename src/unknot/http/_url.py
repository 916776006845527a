"""URLs for the HTTP client: parsed once, with what a request needs prebuilt.

`URL` splits an ``http://`` or ``https://`` URL into what the client uses: the scheme, the host
(lowercased, IDNA-encoded, IPv6 literals without brackets), the port (the scheme's default when
absent), the request target (path and query, percent-encoded as needed), the credentials of
``user:password@`` and the ``Host`` header value. It compares equal to its string form, so
``response.url == "http://example.com/"`` reads as users expect.

`parse_url` keeps the URLs it parsed in a small cache keyed by the string: a client that asks for
the same URL over and over (a poller, a benchmark) parses it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

from ._client_errors import InvalidURL

DEFAULT_PORTS = {"http": 80, "https": 443}

# Characters left as they are in a path and a query: RFC 3986's unreserved, sub-delims, ":@/"
# and "%" (a URL that is already percent-encoded is not encoded twice); "?" too in a query.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"

#: What ``params=`` accepts: a mapping (a value may be a list of values), pairs, or a string.
QueryParams = Mapping[str, Any] | Iterable[tuple[str, Any]] | str | bytes

_cache: dict[str, URL] = {}
_CACHE_MAX = 512


class URL:
    """A parsed absolute ``http``/``https`` URL (see the module docstring).

    Attributes: ``scheme`` (``"http"`` or ``"https"``), ``host`` (``str``, no brackets),
    ``port`` (``int``, the default one filled in), ``path``, ``query`` (``str``, without
    ``?``), ``fragment``, ``username`` and ``password`` (percent-decoded, or None), ``target``
    (the request target, bytes), ``host_header`` (bytes: ``host``, or ``host:port`` when the port
    is not the scheme's default) and ``origin`` (``(scheme, host, port)``).
    """

    __slots__ = (
        "scheme",
        "host",
        "port",
        "path",
        "query",
        "fragment",
        "username",
        "password",
        "target",
        "host_header",
        "origin",
        "_text",
    )

    def __init__(self, url: str | URL) -> None:
        if isinstance(url, URL):
            for name in URL.__slots__:
                setattr(self, name, getattr(url, name))
            return
        if not isinstance(url, str):
            raise TypeError(f"a URL is a str, not {type(url).__name__}")
        authority = _AUTHORITY.match(url.strip())
        if authority is not None and _CONTROL.search(authority.group(1)):
            # (urlsplit would drop a tab, CR or LF silently, and the resolver stop at a NUL)
            raise InvalidURL(f"invalid URL {url!r}: a control character in its host part")
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            if not scheme:
                raise InvalidURL(f"no scheme in URL {url!r}: expected http:// or https://")
            raise InvalidURL(f"unsupported URL scheme {scheme!r} in {url!r}")
        host = parts.hostname
        if not host:
            raise InvalidURL(f"no host in URL {url!r}")
        self.scheme = scheme
        self.host = _ascii_host(host, url)
        default_port = DEFAULT_PORTS[scheme]
        self.port = default_port if port is None else port
        self.path = quote(parts.path, safe=_PATH_SAFE) or "/"
        self.query = quote(parts.query, safe=_QUERY_SAFE)
        self.fragment = parts.fragment
        self.username = None if parts.username is None else unquote(parts.username)
        self.password = None if parts.password is None else unquote(parts.password)
        self.origin = (scheme, self.host, self.port)
        bracketed = f"[{self.host}]" if ":" in self.host else self.host
        host_header = bracketed if self.port == default_port else f"{bracketed}:{self.port}"
        self.host_header = host_header.encode("ascii")
        self._text = ""
        self._set_target()

    def _set_target(self) -> None:
        target = self.path + "?" + self.query if self.query else self.path
        self.target = target.encode("ascii")
        self._text = ""

    def with_params(self, params: QueryParams | None) -> URL:
        """A copy with ``params`` added to the query (after the query it already has)."""
        extra = encode_params(params)
        if not extra:
            return self
        url = URL(self)
        url.query = url.query + "&" + extra if url.query else extra
        url._set_target()
        return url

    def join(self, location: str) -> URL:
        """The URL ``location`` (a ``Location`` header, maybe relative) points to from here."""
        try:
            joined = urljoin(str(self), location.strip())
        except ValueError as exc:
            raise InvalidURL(f"invalid URL {location!r}: {exc}") from None
        return URL(joined)

    @property
    def netloc(self) -> str:
        """``[user[:password]@]host[:port]`` as it would be written in the URL."""
        userinfo = ""
        if self.username is not None:
            userinfo = quote(self.username, safe="")
            if self.password is not None:
                userinfo += ":" + quote(self.password, safe="")
            userinfo += "@"
        return userinfo + self.host_header.decode("ascii")

    def __str__(self) -> str:
        text = self._text
        if not text:
            text = self._text = urlunsplit(
                (self.scheme, self.netloc, self.path, self.query, self.fragment)
            )
        return text

    def __repr__(self) -> str:
        return f"URL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, URL):
            return str(self) == str(other)
        if isinstance(other, str):
            return str(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: The authority (``user@host:port``) of an absolute URL, as written.
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")
#: ASCII control characters (and DEL).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: What a host cannot hold (after IDNA): controls, space, and what RFC 3986 excludes from a
#: host that urlsplit lets through.
_BAD_HOST = re.compile(r"[\x00-\x20\x7f\"<>\\^`{|}]")


def is_absolute(url: str) -> bool:
    """Whether ``url`` starts with a scheme and ``//`` (``"/next?to=http://x"`` does not)."""
    return _SCHEME.match(url.lstrip()) is not None


def _ascii_host(host: str, url: str) -> str:
    """The host as sent: IDNA-encoded if it is not ASCII (IDNA 2008 with UTS 46's mapping, as
    browsers do: ``straße.de`` is ``xn--strae-oqa.de``, not IDNA 2003's ``strasse.de``), each
    label at most 63 bytes and the whole at most 253; an IPv6 zone, a control character, a
    space or one of ``"<>\\^`{|}`` is refused."""
    if "%" in host:
        raise InvalidURL(f"invalid host {host!r} in {url!r} (an IPv6 zone is not supported)")
    if not host.isascii():
        import idna  # only for non-ASCII hosts

        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidURL(f"invalid host name {host!r} in {url!r}: {exc}") from None
    if _BAD_HOST.search(host):
        raise InvalidURL(f"invalid character in host {host!r} in {url!r}")
    if ":" not in host and (
        len(host.rstrip(".")) > 253 or any(len(label) > 63 for label in host.split("."))
    ):
        raise InvalidURL(
            f"invalid host name {host!r} in {url!r}: a label is longer than 63 "
            f"characters or the name longer than 253"
        )
    return host


def encode_params(params: QueryParams | None) -> str:
    """``params`` as a query string: a mapping or pairs are form-encoded (a list or tuple value
    repeats the name; None values are left out); a string (or bytes) is percent-encoded as a
    query written in the URL is (``%XX`` stays as it is, a space becomes ``%20``, non-ASCII its
    UTF-8 bytes), except that a ``#`` is part of the query, sent as ``%23`` (it cannot start a
    fragment there); a leading ``?`` is dropped."""
    if not params:
        return ""
    if isinstance(params, bytes):
        return quote(params.lstrip(b"?"), safe=_QUERY_SAFE)
    if isinstance(params, str):
        return quote(params.lstrip("?"), safe=_QUERY_SAFE)
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, Any]] = []
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, list | tuple):
            pairs.extend((name, v) for v in value if v is not None)
        else:
            pairs.append((name, value))
    return urlencode([(n, _param_text(v)) for n, v in pairs])


def _param_text(value: Any) -> str | bytes:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str | bytes) else str(value)


def parse_url(url: str | URL) -> URL:
    """``URL(url)``, from the cache when this string was parsed before."""
    if type(url) is str:
        parsed = _cache.get(url)
        if parsed is None:
            parsed = URL(url)
            if len(_cache) >= _CACHE_MAX:
                _cache.clear()
            _cache[url] = parsed
        return parsed
    if isinstance(url, URL):
        return url
    raise TypeError(f"a URL is a str, not {type(url).__name__}")
