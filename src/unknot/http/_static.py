"""`StaticFiles`: serve the regular files under one directory, and nothing outside it.

What a request gets:

- GET and HEAD only (OPTIONS gets 204 with ``Allow``, other methods 405).
- ``Content-Type`` from `mimetypes` (``; charset=utf-8`` added for text), a strong ``ETag``
  made of the file's modification time in nanoseconds and its size (no inode number, so
  servers sharing a copy of the files agree), ``Last-Modified``, ``Accept-Ranges: bytes``,
  and ``Cache-Control`` if one is configured.
- Preconditions first (RFC 9110 s13.2.2), on GET and HEAD: 412 (Precondition Failed) when
  ``If-Match`` names no tag of the file (a list of tags or ``*``, which any file matches;
  strong comparison: a weak tag never matches) or, without ``If-Match``, when the file is
  newer than ``If-Unmodified-Since`` (an invalid date is ignored). So a download resumed with
  ``If-Match`` and ``Range`` after the file changed is refused, not given bytes of the new file.
- Then 304 when ``If-None-Match`` matches (a list of tags or ``*``; weak comparison) or,
  without ``If-None-Match``, when the file is not newer than ``If-Modified-Since``.
- One range (``bytes=a-b``, ``a-``, ``-n``) on GET: 206 with ``Content-Range``; a range
  starting past the end (or an empty file, or ``-0``): 416 with ``Content-Range: bytes */size``.
  Several ranges get the whole file (200): allowed by RFC 9110, and simpler than multipart.
  A malformed or non-bytes ``Range`` is ignored, and so are two ``Range`` lines. ``If-Range``
  (a strong tag, or the exact ``Last-Modified`` date if that is a strong validator: the file
  was modified at least a second ago, RFC 9110 8.8.2.2) that does not match also gets the
  whole file.
- ``x.gz`` instead of ``x`` when the client accepts gzip (``q=0`` honoured, and an invalid
  weight such as ``q=inf`` taken as ``q=0``, see `accepts_gzip`) and ``x.gz`` is a
  regular file not older than ``x``: ``Content-Encoding: gzip``, the type of ``x``, its own
  tag; ``Vary: Accept-Encoding`` whenever such a sibling exists, whoever asks.
- A directory: its index file (``index.html``) if ``index`` is set, after redirecting
  ``/dir`` to ``/dir/`` (301; leading slashes collapsed into one, so ``//dir`` goes to
  ``/dir/`` and never to ``//dir/``, which a browser would take for another host); no listings.

Refused with 404, before any file system access: ``..`` and ``.`` segments, names starting
with a dot unless ``hidden=True``, percent-encoded dots, slashes, backslashes, NULs and percent
signs (``%2e %2f %5c %00 %25``: the last stops double encoding), raw backslashes and NULs.
Then the path is resolved (``realpath``) and must still be inside the directory, so symlinks
pointing out are refused while symlinks within are followed; the resolved file is opened with
``O_NOFOLLOW | O_NONBLOCK`` (no FIFO can block the open) and only a regular file is served,
checked with ``fstat`` on the opened descriptor. ``open`` and ``stat`` run inline in the
fiber: on a local disk they take microseconds (a network file system could stall the hub).

Sending: a file larger than `SMALL_FILE` (64 KiB) is a `FileBody` for the server to send with
``sendfile``, which the server closes, also after a HEAD (whose body it drops). A smaller one
is read whole and goes out as bytes, with the head in the same write: for such sizes the extra
system calls of ``sendfile`` cost more than copying the bytes.

Small files are also kept in memory (``memory_cache`` bytes per `StaticFiles`, 4 MiB by
default; the whole cache is dropped when a file would not fit). The checks above still run for
every request, and the ``lstat`` they make of the file must still show the same file: same
inode, size, and modification and change times to the nanosecond, else the file is read again.
(A file rewritten in place with the same size within one tick of the file system's clock keeps
its times, and so its ETag: such a change can go unseen by the cache as by the clients'
conditional requests.) A request for a file that has a ``.gz`` sibling does not use the cache.
"""

from __future__ import annotations

import datetime
import email.utils
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any

from ._headers import RawHeaders, header_pair
from ._message import HTTPError, Request
from ._mime import guess_content_type
from ._response import FileBody, Response

__all__ = ["StaticFiles", "guess_content_type", "http_date", "parse_http_date"]

#: Files up to this size (bytes) are read whole and sent as bytes; larger ones with sendfile.
SMALL_FILE = 64 * 1024
_ACCEPT_RANGES = (b"accept-ranges", b"bytes")

#: Percent-encoded ".", "/", "\", NUL and "%"; raw "\" and NUL.
_SUSPICIOUS = re.compile(rb"%(?:2[eEfF5]|5[cC]|00)|[\\\x00]")
_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*\Z", re.IGNORECASE)
_ETAG = re.compile(r'\*|(?:W/)?"[^"]*"')
#: RFC 9110 12.4.2's qvalue (whole string).
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
#: The methods a `StaticFiles` answers (what its ``Allow`` lists).
STATIC_METHODS = ("GET", "HEAD", "OPTIONS")
_ALLOW = {"allow": ", ".join(STATIC_METHODS)}
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(timestamp: float) -> str:
    """``timestamp`` as an HTTP date (``Sun, 06 Nov 1994 08:49:37 GMT``), locale-free."""
    t = time.gmtime(timestamp)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_http_date(value: str) -> int | None:
    """An HTTP date (any of the three formats RFC 9110 accepts) as a timestamp, else None."""
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # asctime format: GMT by definition
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding value admits gzip (by name or ``*``, with q above 0).

    A weight outside RFC 9110's qvalue grammar (12.4.2: ``0`` to ``1`` with at most three
    decimals; so not ``inf``, ``nan``, ``2``, ``-1``, ``1e0``, ``0.5555``) counts as ``q=0``,
    as nginx reads it: that entry refuses its coding (an invalid ``gzip`` weight is not
    overridden by ``*``)."""
    if not accept_encoding:
        return False
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = _qvalue(params)
        elif coding == "*":
            star_q = _qvalue(params)
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _qvalue(params: str) -> float:
    """The weight in an Accept-Encoding entry's parameters: 1 if none, 0 if invalid."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            value = value.strip()
            # (float() alone would take "inf", "2", "1e0"...: the grammar first)
            return float(value) if _QVALUE.match(value) else 0.0
    return 1.0


def _etag_matches_strongly(header: str, etag: str) -> bool:
    """Strong comparison of ``etag`` (always a strong tag here) with an If-Match list: ``*``
    matches any file; a weak tag never matches."""
    for match in _ETAG.finditer(header):
        tag = match.group()
        if tag == "*" or tag == etag:
            return True
    return False


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison of ``etag`` with an If-None-Match list (``*`` matches anything)."""
    bare = etag[2:] if etag.startswith("W/") else etag
    for match in _ETAG.finditer(header):
        tag = match.group()
        if tag == "*" or (tag[2:] if tag.startswith("W/") else tag) == bare:
            return True
    return False


_UNSATISFIABLE = (-1, -1)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of one byte range; `_UNSATISFIABLE`; or None to send the whole file."""
    if "," in header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        length = _to_int(last)
        if length == 0 or size == 0:
            return _UNSATISFIABLE
        return max(0, size - length), size - 1
    start = _to_int(first)
    end = size - 1
    if last:
        end = _to_int(last)
        if end < start:
            return None  # invalid: ignored
    if start >= size:
        return _UNSATISFIABLE
    return start, min(end, size - 1)


def _to_int(digits: str) -> int:
    # int() refuses over 4300 digits; anything over 18 is past any file's end anyway.
    return int(digits) if len(digits) <= 18 else 10**18


@dataclass(slots=True)
class _Cached:
    """A small file kept in memory, with what its answers say about it."""

    key: tuple[int, int, int, int]  # _identity of the file
    raw: RawHeaders  # Content-Type
    validators: RawHeaders  # ETag, Last-Modified (Cache-Control)
    etag: str
    last_modified: str
    mtime: int
    mtime_ns: int
    content: bytes


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What must not change for a cached file to be served from memory."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StaticFiles:
    """A handler serving the files under ``directory`` (see the module docstring for rules).

    ``index``: the file served for a directory (``None``: directories are 404).
    ``precompressed``: serve ``x.gz`` for ``x`` to clients that accept gzip.
    ``hidden``: serve names starting with a dot (``.well-known``); refused by default.
    ``cache_control``: a Cache-Control value for every file (e.g. ``"max-age=3600"``).
    ``memory_cache``: how many bytes of small files (up to `SMALL_FILE`) to keep in memory,
    checked against the file's ``lstat`` on every request (0: none).

    The request path is taken relative to the directory (under `App.mount` or `App.static`,
    relative to the mount point). Errors are `HTTPError`\\ s: calling the handler turns them
    into responses, `handle` lets them reach a parent app's error handlers.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        index: str | None = "index.html",
        precompressed: bool = True,
        hidden: bool = False,
        cache_control: str | None = None,
        memory_cache: int = 4 << 20,
    ) -> None:
        if not isinstance(memory_cache, int) or memory_cache < 0:
            raise ValueError(f"memory_cache must be a number of bytes, not {memory_cache!r}")
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise NotADirectoryError(f"StaticFiles: {directory!r} is not a directory")
        if index is not None and ("/" in index or "\\" in index or index.startswith(".")):
            raise ValueError(f"index must be a plain file name, not {index!r}")
        self.directory = root
        self._root_slash = root if root.endswith(os.sep) else root + os.sep
        self.index = index
        self.precompressed = precompressed
        self.hidden = hidden
        self.cache_control = cache_control
        self._cache_control = (
            None if cache_control is None else header_pair("cache-control", cache_control)
        )
        self.memory_cache = memory_cache
        self._cache: dict[str, _Cached] = {}
        self._cached_bytes = 0

    def __call__(self, request: Request) -> Response:
        """Answer ``request``; errors become their responses."""
        try:
            return self.handle(request)
        except HTTPError as exc:
            return exc.response()

    def handle(self, request: Request) -> Response:
        """Answer ``request``; 404, 405, 412 and 416 are raised as `HTTPError`."""
        method = request.method
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":
                return Response(204, _ALLOW)
            raise HTTPError(405, headers=_ALLOW)
        if _SUSPICIOUS.search(request.raw_path):
            raise HTTPError(404)
        path = request.path
        real, seen = self._resolve(self._relative(path))
        if seen is not None:
            cached = self._cache.get(real)
            if (
                cached is not None
                and cached.key == _identity(seen)
                and stat.S_ISREG(seen.st_mode)
                and path[-1:] != "/"
                and not (self.precompressed and _exists(real + ".gz"))
            ):
                return _answer(
                    request,
                    cached.raw,
                    cached.validators,
                    cached.etag,
                    cached.last_modified,
                    cached.mtime,
                    cached.mtime_ns,
                    cached.content,
                )
        fd, st = _open(real)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            if self.index is None:
                raise HTTPError(404)
            if not path.endswith("/"):
                return _redirect_to_directory(request)
            real = self._inside(os.path.join(real, self.index))
            fd, st = _open(real)
        elif path.endswith("/"):  # a file asked for as a directory
            os.close(fd)
            raise HTTPError(404)
        if not stat.S_ISREG(st.st_mode):  # a FIFO, a device, a socket, an index directory
            os.close(fd)
            raise HTTPError(404)
        return self._respond(request, real, _file(fd), st)

    def _relative(self, path: str) -> str:
        """The request path as a relative file path, or 404 for anything that could escape."""
        if path and not path.startswith("/"):
            raise HTTPError(404)
        if "\x00" in path or "\\" in path:
            raise HTTPError(404)
        parts = []
        for segment in path.split("/"):
            if not segment:
                continue
            if segment == "." or segment == ".." or (segment[0] == "." and not self.hidden):
                raise HTTPError(404)
            parts.append(segment)
        return "/".join(parts)

    def _resolve(self, relative: str) -> tuple[str, os.stat_result | None]:
        """The real path of ``relative`` (as `_relative` gives it) in the directory, 404 if it
        leads out; and the ``lstat`` of its last component when that was made (None when a
        link was met, or for the directory itself). The directory is resolved already, so
        while no component is a symbolic link, joining is resolving: one ``lstat`` per
        component, where ``realpath`` would also walk the directory's own path. A link (or a
        missing component) takes `_inside`'s way."""
        real = self.directory
        seen = None
        if relative:
            for part in relative.split("/"):
                real = os.path.join(real, part)
                try:
                    seen = os.lstat(real)
                    if not stat.S_ISLNK(seen.st_mode):
                        continue
                except (OSError, ValueError):
                    pass
                return self._inside(os.path.join(self.directory, relative)), None
        return real, seen

    def _inside(self, path: str) -> str:
        """``path`` resolved, if it is the directory or inside it; else 404."""
        real = os.path.realpath(path)
        if real != self.directory and not real.startswith(self._root_slash):
            raise HTTPError(404)
        return real

    def _respond(self, request: Request, real: str, file: Any, st: os.stat_result) -> Response:
        """The answer for the regular file ``real``, open as ``file`` (handed over or closed)."""
        try:
            headers = request.headers
            raw: RawHeaders = [(b"content-type", guess_content_type(real).encode("latin-1"))]
            etag_suffix = ""
            exists = False
            if self.precompressed and not real.endswith(".gz"):
                accept = headers.get_all("accept-encoding")  # (repeated lines: one list)
                exists, sibling = self._gzip_sibling(
                    real, st, ", ".join(accept) if accept else None
                )
                if exists:
                    raw.append((b"vary", b"Accept-Encoding"))
                if sibling is not None:
                    file.close()
                    file, st = sibling
                    raw.append((b"content-encoding", b"gzip"))
                    etag_suffix = "-gz"
            size = st.st_size
            etag = f'"{st.st_mtime_ns:x}-{size:x}{etag_suffix}"'
            last_modified = http_date(st.st_mtime)
            validators = [(b"etag", etag.encode()), (b"last-modified", last_modified.encode())]
            if self._cache_control is not None:  # checked by __init__
                validators.append(self._cache_control)
            mtime = int(st.st_mtime)
            body: Any = file
            if size <= SMALL_FILE:
                content = _read_whole(file, size)
                if content is not None:
                    file.close()
                    body = content
                    if not exists:
                        self._remember(real, st, raw, validators, etag, last_modified, content)
            return _answer(
                request, raw, validators, etag, last_modified, mtime, st.st_mtime_ns, body
            )
        except BaseException:
            file.close()
            raise

    def _remember(
        self,
        real: str,
        st: os.stat_result,
        raw: RawHeaders,
        validators: RawHeaders,
        etag: str,
        last_modified: str,
        content: bytes,
    ) -> None:
        """Keep a small file's answer in memory, if the cache may hold it."""
        size = len(content)
        if size > self.memory_cache:
            return
        old = self._cache.pop(real, None)
        if old is not None:
            self._cached_bytes -= len(old.content)
        if self._cached_bytes + size > self.memory_cache:
            self._cache.clear()  # (bounded, and simple: the files in use come back at once)
            self._cached_bytes = 0
        self._cache[real] = _Cached(
            _identity(st),
            raw,
            validators,
            etag,
            last_modified,
            int(st.st_mtime),
            st.st_mtime_ns,
            content,
        )
        self._cached_bytes += size

    def _gzip_sibling(
        self, real: str, st: os.stat_result, accept_encoding: str | None
    ) -> tuple[bool, tuple[Any, os.stat_result] | None]:
        """Whether a usable ``real.gz`` exists, and it opened if the client accepts gzip."""
        try:
            os.lstat(real + ".gz")  # (one syscall settles the common case: there is none)
        except (OSError, ValueError):
            return False, None
        try:
            sibling = self._inside(real + ".gz")  # a symlink out of the directory: none
            if not accepts_gzip(accept_encoding):
                return _fresh_regular(os.stat(sibling), st), None
            fd, sibling_st = _open(sibling)
        except (HTTPError, OSError, ValueError):
            return False, None
        if _fresh_regular(sibling_st, st):
            return True, (_file(fd), sibling_st)
        os.close(fd)
        return False, None


def _answer(
    request: Request,
    raw: RawHeaders,
    validators: RawHeaders,
    etag: str,
    last_modified: str,
    mtime: int,
    mtime_ns: int,
    body: Any,
) -> Response:
    """The answer to a GET or HEAD of a file: 412 (raised), 304, 206, 416 (raised) or 200, the
    conditions evaluated in the order of RFC 9110 s13.2.2. ``raw`` holds its
    Content-Type (and Vary, Content-Encoding), ``validators`` its ETag and Last-Modified (and
    Cache-Control); ``mtime`` is the modification time in whole seconds, ``mtime_ns`` in
    nanoseconds; ``body`` is the file's content (bytes) or the file itself, open (then
    closed here, or handed over in the response)."""
    headers = request.headers
    for name, _ in headers.raw:  # one scan: most requests carry no condition at all
        if name[:3] == b"if-":
            if _precondition_failed(headers, etag, mtime):
                _close(body)
                raise HTTPError(412)
            if _not_modified(headers, etag, mtime):
                _close(body)
                vary = [pair for pair in raw if pair[0] == b"vary"]
                return Response._build(304, [*validators, *vary], b"")
            break
    raw = [*raw, *validators, _ACCEPT_RANGES]
    size = len(body) if type(body) is bytes else os.fstat(body.fileno()).st_size
    ranges = headers.get_all("range")
    # (Two Range lines make one invalid value, "bytes=0-1, bytes=5-6": ignored, as a malformed
    # Range is: the whole file.)
    range_header = ranges[0] if len(ranges) == 1 else None
    if range_header is not None and request.method == "GET":
        if_range = headers.get("if-range")
        if if_range is None or _if_range_matches(if_range, etag, last_modified, mtime_ns):
            byte_range = _byte_range(range_header, size)
            if byte_range is _UNSATISFIABLE:
                _close(body)
                raise HTTPError(416, headers={"content-range": f"bytes */{size}"})
            if byte_range is not None:
                first, last = byte_range
                raw.append((b"content-range", f"bytes {first}-{last}/{size}".encode()))
                if type(body) is bytes:
                    return Response._build(206, raw, body[first : last + 1])
                return Response._build(206, raw, FileBody(body, first, last - first + 1))
    if type(body) is bytes:
        return Response._build(200, raw, body)
    return Response._build(200, raw, FileBody(body, 0, size))


def _close(body: Any) -> None:
    if type(body) is not bytes:
        body.close()


def _exists(path: str) -> bool:
    """Whether anything is at ``path`` (a link not followed)."""
    try:
        os.lstat(path)
    except (OSError, ValueError):
        return False
    return True


def _read_whole(file: Any, size: int) -> bytes | None:
    """The ``size`` bytes of a file, read from its start; None if it has not that many now."""
    data = os.pread(file.fileno(), size, 0) if size else b""
    return data if len(data) == size else None


def _fresh_regular(sibling: os.stat_result, original: os.stat_result) -> bool:
    """Whether a compressed sibling is a regular file not older than the original."""
    return stat.S_ISREG(sibling.st_mode) and sibling.st_mtime_ns >= original.st_mtime_ns


def _open(real: str) -> tuple[int, os.stat_result]:
    """``real`` opened read-only (not following a final symlink), and its fstat; else 404."""
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except (OSError, ValueError):
        raise HTTPError(404) from None
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def _file(fd: int) -> Any:
    """A binary file object owning ``fd`` (closed if that fails)."""
    try:
        return open(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _precondition_failed(headers: Any, etag: str, mtime: int) -> bool:
    """Whether If-Match (strong comparison), or without it If-Unmodified-Since, is false."""
    if_match = headers.get("if-match")
    if if_match is not None:
        return not _etag_matches_strongly(", ".join(headers.get_all("if-match")), etag)
    if_unmodified_since = headers.get("if-unmodified-since")
    if if_unmodified_since is not None:
        since = parse_http_date(if_unmodified_since)
        return since is not None and mtime > since  # not a date: ignored
    return False


def _not_modified(headers: Any, etag: str, mtime: int) -> bool:
    """Whether the conditional headers ask for a 304 (If-None-Match over If-Modified-Since)."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        # Repeated lines are one comma-separated list (RFC 9110, 5.3), as for If-Match.
        return _etag_matches(", ".join(headers.get_all("if-none-match")), etag)
    if_modified_since = headers.get("if-modified-since")
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and mtime <= since
    return False


#: How long before now a file must have been modified for its Last-Modified to be strong.
_STRONG_DATE_AGE_NS = 1_000_000_000


def _if_range_matches(if_range: str, etag: str, last_modified: str, mtime_ns: int) -> bool:
    """If-Range: a strong tag equal to ``etag``, or exactly the Last-Modified date if that is a
    strong validator (RFC 9110 13.1.5). It is not when the file was modified less than a
    second ago (8.8.2.2): it could change again within the second the date names, and a
    client would then be given a range of the new file spliced onto the old one. A time in
    the future (a clock set wrong) is not trusted either."""
    if_range = if_range.strip()
    if if_range.startswith('"') or if_range.startswith("W/"):
        return if_range == etag  # a weak tag never matches (strong comparison)
    since = parse_http_date(if_range)
    return (
        since is not None
        and since == parse_http_date(last_modified)
        and time.time_ns() - mtime_ns >= _STRONG_DATE_AGE_NS
    )


def _redirect_to_directory(request: Request) -> Response:
    """301 to the same path with a slash added (the raw path, so the encoding is kept; control
    characters, which a header may not carry, percent-encoded). Leading slashes are collapsed
    into one: ``//host/`` would be a network-path reference, read as another host (the file
    is the same: empty segments are skipped)."""
    location = b"/" + request.raw_path.lstrip(b"/") + b"/"
    if request.query_string:
        location += b"?" + request.query_string.encode("latin-1")
    return Response(301, [(b"location", _CONTROL_CHARACTER.sub(_percent_encoded, location))])


_CONTROL_CHARACTER = re.compile(rb"[\x00-\x1f\x7f]")


def _percent_encoded(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]
