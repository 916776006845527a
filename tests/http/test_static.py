"""StaticFiles: types, validators and 304, ranges and 416, gzip siblings, indexes, no escape."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unknot.http._message import HTTPError, Request
from unknot.http._response import FileBody, normalize_result
from unknot.http._routing import App
from unknot.http._static import (
    SMALL_FILE,
    StaticFiles,
    accepts_gzip,
    http_date,
    parse_http_date,
)

pytestmark = pytest.mark.timeout(10)

DATA = bytes(range(256)) * 4  # 1024 bytes: ranges are checked byte for byte
CSS = b"body { color: red }\n" * 20
SECRET = b"top secret, outside the root"


def get(
    handler: Any, target: str | bytes, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Answer a request built directly; a FileBody's bytes are read and its file closed."""
    raw_target = target if isinstance(target, bytes) else target.encode()
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    status, raw, body = normalize_result(handler(Request(method, raw_target, raw_headers)))
    if isinstance(body, FileBody):
        with body:
            content = b"".join(body.chunks())
    else:
        assert isinstance(body, bytes)
        content = body
    assert len(dict(raw)) == len(raw), f"repeated headers: {raw}"
    assert b"content-length" not in dict(raw)  # the server's job
    return status, dict(raw), content


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return build_tree(tmp_path)


def build_tree(tmp_path: Path) -> Path:
    """The served directory ``tmp_path/root``, with secrets around it and links out of it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.bin").write_bytes(DATA)
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "page.html").write_bytes(b"<p>hi</p>")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / "blob.unknownext").write_bytes(b"?")
    (root / "archive.tar.gz").write_bytes(gzip.compress(b"tar"))
    (root / "empty.txt").write_bytes(b"")
    (root / "a b.txt").write_bytes(b"space")
    (root / "caf\u00e9.txt").write_bytes(b"unicode")
    (root / "style.css").write_bytes(CSS)
    (root / "style.css.gz").write_bytes(gzip.compress(CSS))
    (root / "old.js").write_bytes(b"var x = 1;\n")
    (root / "old.js.gz").write_bytes(gzip.compress(b"var x = 1;\n"))
    os.utime(root / "old.js.gz", ns=(10**18, 10**18))
    os.utime(root / "old.js", ns=(2 * 10**18, 2 * 10**18))  # newer than its .gz: stale
    (root / ".hidden").write_bytes(b"dotfile")
    sub = root / "sub"
    sub.mkdir()
    (sub / "index.html").write_bytes(b"sub index")
    (sub / ".env").write_bytes(b"PASSWORD=1")
    (root / "noindex").mkdir()
    (root / "noindex" / "file.txt").write_bytes(b"in noindex")
    (root / "dir.html").mkdir()
    (root / "dir.html" / "index.html").mkdir()  # an index that is a directory
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.txt").write_bytes(SECRET)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "secret.txt.gz").write_bytes(gzip.compress(SECRET))
    (root / "link-out").symlink_to(tmp_path / "secret.txt")
    (root / "rel-link-out").symlink_to("../secret.txt")
    (root / "dir-out").symlink_to(outside)
    (root / "link-in").symlink_to("hello.txt")
    (root / "loop").symlink_to("loop")
    (root / "leak.txt").write_bytes(b"plain")
    (root / "leak.txt.gz").symlink_to(tmp_path / "secret.txt.gz")  # a sibling pointing out
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def files(root: Path) -> StaticFiles:
    return StaticFiles(root)


# -- plain answers -------------------------------------------------------------------------------


def test_a_file_with_its_headers(files: StaticFiles, root: Path) -> None:
    status, headers, body = get(files, "/data.bin")
    st = os.stat(root / "data.bin")
    assert (status, body) == (200, DATA)
    assert headers[b"content-type"] == b"application/octet-stream"
    assert headers[b"etag"] == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'.encode()
    assert headers[b"last-modified"] == http_date(st.st_mtime).encode()
    assert headers[b"accept-ranges"] == b"bytes"
    assert b"vary" not in headers and b"content-encoding" not in headers


def test_head_gets_the_same_headers(files: StaticFiles) -> None:
    get_status, get_headers, _ = get(files, "/page.html")
    assert get(files, "/page.html", method="HEAD")[:2] == (get_status, get_headers)


def test_other_methods(files: StaticFiles) -> None:
    assert get(files, "/hello.txt", method="POST")[:2] == (
        405,
        {b"allow": b"GET, HEAD, OPTIONS", b"content-type": b"text/plain; charset=utf-8"},
    )
    assert get(files, "/hello.txt", method="OPTIONS") == (
        204,
        {b"allow": b"GET, HEAD, OPTIONS"},
        b"",
    )
    with pytest.raises(HTTPError) as info:
        files.handle(Request("DELETE", b"/hello.txt", []))
    assert info.value.status == 405


@pytest.mark.parametrize(
    "name, content_type",
    [
        ("/page.html", b"text/html; charset=utf-8"),
        ("/hello.txt", b"text/plain; charset=utf-8"),
        ("/style.css", b"text/css; charset=utf-8"),
        ("/image.png", b"image/png"),
        ("/blob.unknownext", b"application/octet-stream"),
        ("/archive.tar.gz", b"application/gzip"),  # not Content-Encoding: a download
    ],
)
def test_content_types(files: StaticFiles, name: str, content_type: bytes) -> None:
    status, headers, _ = get(files, name)
    assert status == 200
    assert headers[b"content-type"] == content_type
    assert b"content-encoding" not in headers


def test_cache_control_option(root: Path) -> None:
    files = StaticFiles(root, cache_control="max-age=60")
    status, headers, _ = get(files, "/hello.txt")
    assert headers[b"cache-control"] == b"max-age=60"
    status, headers, _ = get(files, "/hello.txt", {"If-None-Match": headers[b"etag"].decode()})
    assert (status, headers[b"cache-control"]) == (304, b"max-age=60")


def test_the_etag_changes_with_the_file(files: StaticFiles, root: Path) -> None:
    before = get(files, "/hello.txt")[1][b"etag"]
    os.utime(root / "hello.txt", ns=(5 * 10**17, 5 * 10**17))
    after = get(files, "/hello.txt")[1][b"etag"]
    assert before != after
    (root / "hello.txt").write_bytes(b"hello, longer\n")
    assert get(files, "/hello.txt")[1][b"etag"] not in (before, after)


# -- conditional requests ------------------------------------------------------------------------


def validators(files: StaticFiles, target: str = "/hello.txt") -> tuple[str, str]:
    headers = get(files, target)[1]
    return headers[b"etag"].decode(), headers[b"last-modified"].decode()


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', '"a,b", W/{etag}, "c"', "*", " {etag} "],
)
def test_if_none_match_gives_304(files: StaticFiles, if_none_match: str) -> None:
    etag, last_modified = validators(files)
    status, headers, body = get(
        files, "/hello.txt", {"If-None-Match": if_none_match.format(etag=etag)}
    )
    assert (status, body) == (304, b"")
    assert headers == {b"etag": etag.encode(), b"last-modified": last_modified.encode()}
    assert get(files, "/hello.txt", {"If-None-Match": etag}, method="HEAD")[0] == 304


@pytest.mark.parametrize("if_none_match", ['"nope"', 'W/"nope"', "", "garbage", '"a", "b"'])
def test_if_none_match_mismatch_gives_200(files: StaticFiles, if_none_match: str) -> None:
    assert get(files, "/hello.txt", {"If-None-Match": if_none_match})[:3:2] == (200, b"hello\n")


def test_if_modified_since(files: StaticFiles, root: Path) -> None:
    etag, last_modified = validators(files)
    mtime = int(os.stat(root / "hello.txt").st_mtime)
    assert get(files, "/hello.txt", {"If-Modified-Since": last_modified})[0] == 304
    later = http_date(mtime + 3600)
    assert get(files, "/hello.txt", {"If-Modified-Since": later})[0] == 304
    earlier = http_date(mtime - 1)
    assert get(files, "/hello.txt", {"If-Modified-Since": earlier})[:3:2] == (200, b"hello\n")
    assert get(files, "/hello.txt", {"If-Modified-Since": "not a date"})[0] == 200
    # If-None-Match decides when present, even against a matching date
    both = {"If-None-Match": '"other"', "If-Modified-Since": later}
    assert get(files, "/hello.txt", both)[0] == 200


def test_http_dates_round_trip_in_all_three_formats() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777
    assert parse_http_date("") is None
    assert parse_http_date("Sun, 99 Nov 1994 08:49:37 GMT") is None


@pytest.mark.parametrize(
    "if_match", ["{etag}", "*", '"other", {etag}', ' "a,b" , {etag} ', 'W/"x", {etag}']
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_match_that_matches_serves_the_file(
    files: StaticFiles, if_match: str, method: str
) -> None:
    etag, _ = validators(files)
    status, headers, _ = get(files, "/hello.txt", {"If-Match": if_match.format(etag=etag)}, method)
    assert status == 200 and headers[b"etag"] == etag.encode()


@pytest.mark.parametrize("if_match", ['"nope"', "W/{etag}", '"a", "b"', "", "garbage", "{bare}"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_match_that_does_not_match_gives_412(
    files: StaticFiles, if_match: str, method: str
) -> None:
    etag, _ = validators(files)
    value = if_match.format(etag=etag, bare=etag.strip('"'))  # a weak tag: strong comparison
    status, _, body = get(files, "/hello.txt", {"If-Match": value}, method)
    assert status == 412
    assert b"hello" not in body
    with pytest.raises(HTTPError) as info:
        files.handle(Request(method, b"/hello.txt", [(b"if-match", value.encode())]))
    assert info.value.status == 412


def test_if_match_on_several_header_lines(files: StaticFiles) -> None:
    etag, _ = validators(files)
    lines = [(b"if-match", b'"other"'), (b"if-match", etag.encode())]
    assert normalize_result(files(Request("GET", b"/hello.txt", lines)))[0] == 200
    lines = [(b"if-match", b'"other"'), (b"if-match", b'"another"')]
    assert normalize_result(files(Request("GET", b"/hello.txt", lines)))[0] == 412


def test_if_unmodified_since(files: StaticFiles, root: Path) -> None:
    etag, last_modified = validators(files)
    mtime = int(os.stat(root / "hello.txt").st_mtime)
    for date, status in [
        (last_modified, 200),
        (http_date(mtime + 3600), 200),
        (http_date(mtime - 1), 412),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 412),
        ("not a date", 200),  # an invalid date is ignored
    ]:
        assert get(files, "/hello.txt", {"If-Unmodified-Since": date})[0] == status, date
        assert get(files, "/hello.txt", {"If-Unmodified-Since": date}, "HEAD")[0] == status
    # If-Match decides when present, even against a date the file is newer than
    earlier = http_date(mtime - 1)
    assert get(files, "/hello.txt", {"If-Match": etag, "If-Unmodified-Since": earlier})[0] == 200
    assert (
        get(files, "/hello.txt", {"If-Match": '"x"', "If-Unmodified-Since": last_modified})[0]
        == 412
    )


def test_preconditions_come_before_304_and_ranges(files: StaticFiles) -> None:
    # RFC 9110 s13.2.2: If-Match / If-Unmodified-Since, then If-None-Match /
    # If-Modified-Since, then If-Range.
    etag, last_modified = validators(files, "/data.bin")
    stale = {"If-Match": '"stale"'}
    assert get(files, "/data.bin", {**stale, "If-None-Match": etag})[0] == 412
    assert get(files, "/data.bin", {**stale, "If-Modified-Since": last_modified})[0] == 412
    assert get(files, "/data.bin", {**stale, "Range": "bytes=0-3", "If-Range": etag})[0] == 412
    assert get(files, "/data.bin", {**stale, "Range": "bytes=5000-"})[0] == 412  # not 416
    fresh = {"If-Match": etag}
    assert get(files, "/data.bin", {**fresh, "If-None-Match": etag})[0] == 304
    assert get(files, "/data.bin", {**fresh, "Range": "bytes=0-3"})[:3:2] == (206, DATA[:4])


def test_a_download_resumed_after_the_file_changed_gets_412(files: StaticFiles, root: Path) -> None:
    for name, size in [("resume.bin", 100), ("resume-big.bin", SMALL_FILE + 100)]:
        (root / name).write_bytes(b"A" * size)
        status, headers, body = get(files, "/" + name, {"Range": "bytes=0-49"})
        assert (status, body) == (206, b"A" * 50)
        old_etag = headers[b"etag"].decode()
        (root / name).write_bytes(b"B" * size)
        os.utime(root / name, ns=(3 * 10**18, 3 * 10**18))  # surely another modification time
        resumed = {"Range": "bytes=50-", "If-Match": old_etag}
        status, _, body = get(files, "/" + name, resumed)
        assert status == 412 and b"B" not in body, name
        new_etag = get(files, "/" + name)[1][b"etag"].decode()
        assert get(files, "/" + name, {**resumed, "If-Match": new_etag})[:3:2] == (
            206,
            b"B" * (size - 50),
        )


def test_if_match_compares_with_the_gzip_variant_tag(files: StaticFiles) -> None:
    gz = {"Accept-Encoding": "gzip"}
    gz_etag = get(files, "/style.css", gz)[1][b"etag"].decode()
    plain_etag = get(files, "/style.css")[1][b"etag"].decode()
    assert gz_etag != plain_etag
    assert get(files, "/style.css", {**gz, "If-Match": gz_etag})[0] == 200
    assert get(files, "/style.css", {**gz, "If-Match": plain_etag})[0] == 412
    assert get(files, "/style.css", {"If-Match": plain_etag})[0] == 200


# -- ranges --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "range_header, first, last",
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, 1023),
        ("bytes=-5", 1019, 1023),
        ("bytes=1000-5000", 1000, 1023),
        ("bytes=-5000", 0, 1023),
        ("bytes=1023-1023", 1023, 1023),
        ("BYTES = 3 - 4", 3, 4),
        ("bytes=0-" + "9" * 40, 0, 1023),
    ],
)
def test_single_range_gives_206(
    files: StaticFiles, range_header: str, first: int, last: int
) -> None:
    status, headers, body = get(files, "/data.bin", {"Range": range_header})
    assert status == 206
    assert headers[b"content-range"] == f"bytes {first}-{last}/1024".encode()
    assert body == DATA[first : last + 1]
    assert headers[b"content-type"] == b"application/octet-stream"
    assert b"etag" in headers and b"last-modified" in headers


@pytest.mark.parametrize(
    "target, range_header",
    [
        ("/data.bin", "bytes=1024-"),
        ("/data.bin", "bytes=2000-3000"),
        ("/data.bin", "bytes=-0"),
        ("/data.bin", "bytes=" + "9" * 5000 + "-"),
        ("/empty.txt", "bytes=0-"),
        ("/empty.txt", "bytes=-5"),
    ],
)
def test_unsatisfiable_range_gives_416(files: StaticFiles, target: str, range_header: str) -> None:
    size = 1024 if target == "/data.bin" else 0
    status, headers, _ = get(files, target, {"Range": range_header})
    assert status == 416
    assert headers[b"content-range"] == f"bytes */{size}".encode()


@pytest.mark.parametrize(
    "range_header",
    ["bytes=0-1,5-6", "bytes=5-2", "items=0-1", "bytes=abc", "bytes=-", "bytes=1-2-3", "0-1"],
)
def test_other_ranges_give_the_whole_file(files: StaticFiles, range_header: str) -> None:
    status, headers, body = get(files, "/data.bin", {"Range": range_header})
    assert (status, body) == (200, DATA)
    assert b"content-range" not in headers


def test_two_range_lines_give_the_whole_file(files: StaticFiles) -> None:
    """Two lines make one invalid value ("bytes=0-1, bytes=5-6"): ignored, not the first."""
    request = Request("GET", b"/data.bin", [(b"range", b"bytes=0-1"), (b"range", b"bytes=5-6")])
    status, raw, body = normalize_result(files(request))
    if isinstance(body, FileBody):
        with body:
            body = b"".join(body.chunks())
    assert (status, body) == (200, DATA)
    assert b"content-range" not in dict(raw)


def test_range_is_ignored_on_head(files: StaticFiles) -> None:
    status, headers, _ = get(files, "/data.bin", {"Range": "bytes=0-1"}, method="HEAD")
    assert status == 200 and b"content-range" not in headers


def test_if_range(files: StaticFiles, root: Path) -> None:
    # (Modified long ago: a date modified within the last second is weak, RFC 9110 8.8.2.2,
    # and matches no If-Range: tests/http/test_static_if_range_weak_date.py.)
    os.utime(root / "data.bin", ns=(10**18, 10**18))
    etag, last_modified = validators(files, "/data.bin")
    ranged = {"Range": "bytes=0-3"}
    assert get(files, "/data.bin", {**ranged, "If-Range": etag})[0] == 206
    assert get(files, "/data.bin", {**ranged, "If-Range": last_modified})[0] == 206
    assert get(files, "/data.bin", {**ranged, "If-Range": '"stale"'})[:3:2] == (200, DATA)
    assert get(files, "/data.bin", {**ranged, "If-Range": "W/" + etag})[0] == 200  # weak: never
    old_date = http_date(parse_http_date(last_modified) - 10)  # type: ignore[operator]
    assert get(files, "/data.bin", {**ranged, "If-Range": old_date})[0] == 200
    assert get(files, "/data.bin", {**ranged, "If-Range": "junk"})[0] == 200


# -- precompressed siblings ----------------------------------------------------------------------


def test_gzip_sibling_for_clients_that_accept_it(files: StaticFiles) -> None:
    status, headers, body = get(files, "/style.css", {"Accept-Encoding": "gzip, deflate, br"})
    assert status == 200
    assert gzip.decompress(body) == CSS
    assert headers[b"content-encoding"] == b"gzip"
    assert headers[b"content-type"] == b"text/css; charset=utf-8"
    assert headers[b"vary"] == b"Accept-Encoding"
    plain_status, plain_headers, plain_body = get(files, "/style.css")
    assert (plain_status, plain_body) == (200, CSS)
    assert plain_headers[b"vary"] == b"Accept-Encoding"  # the answer varies: say so to all
    assert b"content-encoding" not in plain_headers
    assert plain_headers[b"etag"] != headers[b"etag"]
    # validators and ranges apply to the representation sent
    cond = {"Accept-Encoding": "gzip", "If-None-Match": headers[b"etag"].decode()}
    status, headers304, _ = get(files, "/style.css", cond)
    assert status == 304 and headers304[b"vary"] == b"Accept-Encoding"
    assert get(files, "/style.css", {"If-None-Match": headers[b"etag"].decode()})[0] == 200
    ranged = get(files, "/style.css", {"Accept-Encoding": "gzip", "Range": "bytes=0-1"})
    assert ranged[2] == b"\x1f\x8b" and ranged[0] == 206


@pytest.mark.parametrize(
    "accept, gzipped",
    [
        ("gzip", True),
        ("GZIP;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("br;q=1, *;q=0.1", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *", False),
        ("*;q=0", False),
        ("identity", False),
        ("br", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding_q_values(files: StaticFiles, accept: str, gzipped: bool) -> None:
    assert accepts_gzip(accept) is gzipped
    headers = get(files, "/style.css", {"Accept-Encoding": accept})[1]
    assert (b"content-encoding" in headers) is gzipped


def test_stale_missing_or_escaping_siblings_are_not_used(root: Path) -> None:
    files = StaticFiles(root)
    gzip_please = {"Accept-Encoding": "gzip"}
    status, headers, body = get(files, "/old.js", gzip_please)  # older than old.js
    assert (status, body) == (200, b"var x = 1;\n")
    assert b"content-encoding" not in headers and b"vary" not in headers
    assert b"vary" not in get(files, "/hello.txt", gzip_please)[1]  # no sibling at all
    status, headers, body = get(files, "/leak.txt", gzip_please)  # sibling links outside
    assert (status, body) == (200, b"plain") and b"vary" not in headers
    assert b"vary" not in get(files, "/leak.txt")[1]
    off = StaticFiles(root, precompressed=False)
    status, headers, body = get(off, "/style.css", gzip_please)
    assert (status, body) == (200, CSS) and b"vary" not in headers


# -- directories ---------------------------------------------------------------------------------


def test_index_and_directory_redirect(files: StaticFiles) -> None:
    assert get(files, "/sub/")[:3:2] == (200, b"sub index")
    assert get(files, "/sub/")[1][b"content-type"] == b"text/html; charset=utf-8"
    assert get(files, "/sub") == (301, {b"location": b"/sub/"}, b"")
    assert get(files, "/sub?a=1&b")[1] == {b"location": b"/sub/?a=1&b"}
    assert get(files, "/")[0] == 404  # the root has no index.html
    assert get(files, "/noindex/")[0] == 404  # no listings
    assert get(files, "/noindex/file.txt")[0] == 200
    assert get(files, "/dir.html/")[0] == 404  # its index is a directory
    assert get(files, "/hello.txt/")[0] == 404  # a file asked for as a directory


@pytest.mark.parametrize(
    "target, location",
    [
        (b"//sub", b"/sub/"),
        (b"///sub", b"/sub/"),
        (b"//sub?a=1", b"/sub/?a=1"),
        (b"//example.com", b"/example.com/"),
        (b"/example.com//", None),  # (served: no redirect)
        (b"http://host//sub", b"/sub/"),
        (b"/sub//deeper", b"/sub//deeper/"),  # an inner empty segment is harmless: kept
    ],
)
def test_a_directory_redirect_never_leaves_the_origin(
    root: Path, target: bytes, location: bytes | None
) -> None:
    # ``Location: //example.com/`` would be a network-path reference: another host.
    (root / "example.com").mkdir()
    (root / "example.com" / "index.html").write_bytes(b"a directory")
    (root / "sub" / "deeper").mkdir()
    files = StaticFiles(root)
    status, headers, _ = get(files, target)
    if location is None:
        assert status == 200
        return
    assert (status, headers) == (301, {b"location": location})
    app = App()
    app.mount("/", files)  # a mount at the root passes the raw path unchanged
    assert get(app, target)[:2] == (301, {b"location": location})


def test_no_index(root: Path) -> None:
    files = StaticFiles(root, index=None)
    assert get(files, "/sub/")[0] == 404
    assert get(files, "/sub")[0] == 404
    assert get(files, "/sub/index.html")[0] == 200


def test_mounted_directory_redirect_keeps_the_prefix(root: Path) -> None:
    app = App()
    app.static("/static", str(root))
    assert get(app, "/static/sub")[:2] == (301, {b"location": b"/static/sub/"})
    assert get(app, "/static")[:2] == (301, {b"location": b"/static/"})
    assert get(app, "/static/sub/")[2] == b"sub index"
    assert get(app, "/static/data.bin", {"Range": "bytes=1-2"})[2] == DATA[1:3]


# -- no escape -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/../secret.txt",
        b"/sub/../../secret.txt",
        b"/sub/../hello.txt",  # even when it would stay inside
        b"/./hello.txt",
        b"/%2e%2e/secret.txt",
        b"/%2E%2E/secret.txt",
        b"/.%2e/secret.txt",
        b"/%2e/hello.txt",
        b"/hello%2etxt",
        b"/sub%2f..%2f..%2fsecret.txt",
        b"/..%2Fsecret.txt",
        b"/sub%2Findex.html",
        b"/..%5csecret.txt",
        b"/..%5Csecret.txt",
        b"/..\\secret.txt",
        b"/sub\\index.html",
        b"/hello.txt%00.png",
        b"/hello.txt\x00",
        b"/%252e%252e/secret.txt",
        b"/%252e%252e%252fsecret.txt",
        b"/%25%32%65%25%32%65/secret.txt",
        b"//etc/passwd",
        b"/" + os.fsencode(os.path.abspath(os.sep + "etc")),
        b"/.hidden",
        b"/sub/.env",
        b"/link-out",
        b"/rel-link-out",
        b"/dir-out/x.txt",
        b"/loop",
        b"/fifo",
        b"/missing.txt",
        b"/data.bin/x",
        b"http://host/../secret.txt",
    ],
)
def test_escapes_and_oddities_are_404(files: StaticFiles, target: bytes) -> None:
    status, _, body = get(files, target)
    assert status == 404
    assert SECRET not in body and body == b"Not Found\n"
    with pytest.raises(HTTPError) as info:
        files.handle(Request("GET", target, []))
    assert info.value.status == 404


@pytest.mark.parametrize(
    "target, body",
    [
        (b"/hello.txt", b"hello\n"),
        (b"/link-in", b"hello\n"),  # a symlink staying inside is followed
        (b"/a%20b.txt", b"space"),  # other escapes still work
        (b"/caf%C3%A9.txt", b"unicode"),
        (b"/sub//index.html", b"sub index"),
        (b"/hello.txt?x=../../secret", b"hello\n"),
    ],
)
def test_legitimate_paths_still_work(files: StaticFiles, target: bytes, body: bytes) -> None:
    assert get(files, target)[:3:2] == (200, body)


def test_hidden_files_when_allowed(root: Path) -> None:
    files = StaticFiles(root, hidden=True)
    assert get(files, "/.hidden")[:3:2] == (200, b"dotfile")
    assert get(files, "/sub/.env")[0] == 200
    assert get(files, "/../secret.txt")[0] == 404
    assert get(files, "/%2e%2e/secret.txt")[0] == 404


def test_a_root_given_through_a_symlink(root: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    files = StaticFiles(alias)
    assert get(files, "/hello.txt")[2] == b"hello\n"
    assert get(files, "/link-out")[0] == 404


def test_the_root_is_a_directory_and_the_index_a_name(root: Path) -> None:
    with pytest.raises(NotADirectoryError):
        StaticFiles(root / "missing")
    with pytest.raises(NotADirectoryError):
        StaticFiles(root / "hello.txt")
    with pytest.raises(ValueError):
        StaticFiles(root, cache_control="max-age=1\r\nX-Injected: 1")
    for index in ("../x.html", "a/b.html", ".index"):
        with pytest.raises(ValueError):
            StaticFiles(root, index=index)


def test_served_files_are_opened_without_leaks(files: StaticFiles, root: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for target, headers in [
        ("/hello.txt", {}),
        ("/hello.txt", {"If-None-Match": "*"}),
        ("/hello.txt", {"If-Match": '"stale"'}),
        ("/data.bin", {"If-Match": '"stale"', "Range": "bytes=0-1"}),
        ("/data.bin", {"Range": "bytes=5000-"}),
        ("/style.css", {"Accept-Encoding": "gzip"}),
        ("/old.js", {"Accept-Encoding": "gzip"}),
        ("/sub", {}),
        ("/sub/", {}),
        ("/fifo", {}),
        ("/dir.html/", {}),
    ]:
        get(files, target, headers)
    assert set(os.listdir("/proc/self/fd")) == before
    # A small file is read whole and sent as bytes (no file stays open)...
    assert normalize_result(files(Request("GET", b"/hello.txt", [])))[2] == b"hello\n"
    assert set(os.listdir("/proc/self/fd")) == before
    # ...a larger one goes out with sendfile: the server sends exactly this and closes it.
    (root / "big.bin").write_bytes(b"x" * (SMALL_FILE + 1))
    body = normalize_result(files(Request("GET", b"/big.bin", [])))[2]
    assert isinstance(body, FileBody)
    assert re.match(r"FileIO|BufferedReader", type(body.file).__name__)
    assert (body.offset, body.count) == (0, SMALL_FILE + 1)
    body.close()
    assert set(os.listdir("/proc/self/fd")) == before
    # ...and closed when a precondition fails
    assert get(files, "/big.bin", {"If-Match": '"stale"'})[0] == 412
    assert get(files, "/big.bin", {"If-Unmodified-Since": http_date(0)})[0] == 412
    assert set(os.listdir("/proc/self/fd")) == before


# -- no escape, whatever the path ----------------------------------------------------------------

PIECES = [
    "/",
    "//",
    "..",
    ".",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%00",
    "%25",
    "%",
    "2e",
    "\\",
    "\x00",
    "secret.txt",
    "x.txt",
    "link-out",
    "rel-link-out",
    "dir-out",
    "leak.txt",
    "sub",
    "hello.txt",
    "index.html",
    ".gz",
    "root",
    "outside",
    "?",
    "#",
    ";",
    "%252e",
    "%c0%ae",
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("tree"))


@settings(
    max_examples=int(os.environ.get("UNKNOT_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=10),
    gzip_ok=st.booleans(),
    hidden=st.booleans(),
)
def test_no_path_reaches_outside_the_directory(
    tree: Path, pieces: list[str], gzip_ok: bool, hidden: bool
) -> None:
    inside = {p.read_bytes() for p in tree.rglob("*") if p.is_file() and not p.is_symlink()}
    files = StaticFiles(tree, hidden=hidden)
    target = ("/" + "".join(pieces)).encode("latin-1")
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    status, answer_headers, body = get(files, target, headers)
    assert status in (200, 301, 404), (target, status)
    if status == 301:  # on this origin: a path, never a network-path reference
        location = answer_headers[b"location"]
        assert location[:1] == b"/" and location[:2] != b"//", (target, location)
    if status == 200:
        assert body in inside, target  # a file of the tree, byte for byte
        if answer_headers.get(b"content-encoding") == b"gzip":
            body = gzip.decompress(body)
    assert SECRET not in body, target


def test_a_redirect_percent_encodes_control_characters(tree: Path) -> None:
    # (found by the property test above: the parser refuses such a target on the wire, but a
    # Request built by hand may carry one, and the Location header must stay a valid field)
    status, headers, _ = get(StaticFiles(tree), b"/sub?a=\x00\x7f&b")
    assert status == 301
    assert headers[b"location"] == b"/sub/?a=%00%7F&b"
