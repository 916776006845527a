"""Headers, Request, Response, HTTPError, FileBody and normalize_result: the handler's objects."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path

import pytest

from unknot.http import _message
from unknot.http._headers import Headers, MutableHeaders, normalize_headers
from unknot.http._message import HTTPError, QueryParams, Request
from unknot.http._response import FileBody, Response, normalize_result


class ChunkedSource:
    """A BodySource giving at most ``chunk`` bytes per read (all the rest for read(-1))."""

    def __init__(self, data: bytes, chunk: int = 3) -> None:
        self.data = data
        self.chunk = chunk
        self.calls: list[int] = []

    def read(self, n: int = -1) -> bytes:
        self.calls.append(n)
        size = len(self.data) if n < 0 else min(n, self.chunk)
        out, self.data = self.data[:size], self.data[size:]
        return out


def request(
    target: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Request:
    source = None if body is None else ChunkedSource(body)
    return Request(method, target, headers or [], body=source)


# -- Headers -------------------------------------------------------------------------------------

RAW = [
    (b"host", b"example.com"),
    (b"set-cookie", b"a=1"),
    (b"content-type", b"text/plain"),
    (b"set-cookie", b"b=2"),
    (b"x-latin", "caf\u00e9".encode("latin-1")),
]


def test_headers_lookup_is_case_insensitive_and_gives_the_first_value() -> None:
    h = Headers(RAW)
    assert h["Content-Type"] == "text/plain"
    assert h["CONTENT-TYPE"] == "text/plain"
    assert h["set-cookie"] == "a=1"
    assert h.get("Set-Cookie") == "a=1"
    assert h.get("missing") is None
    assert h.get("missing", "dflt") == "dflt"
    with pytest.raises(KeyError):
        h["missing"]


def test_headers_keep_repeats_and_order() -> None:
    h = Headers(RAW)
    assert h.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert h.get_all("missing") == []
    assert len(h) == 5
    assert list(h) == ["host", "set-cookie", "content-type", "set-cookie", "x-latin"]
    assert h.keys() == list(h)
    assert h.items()[3] == ("set-cookie", "b=2")
    assert h.values()[0] == "example.com"


def test_headers_contains_raw_and_latin1_values() -> None:
    h = Headers(RAW)
    assert "Host" in h and "host" in h and b"HOST" in h
    assert "cookie" not in h
    assert 42 not in h
    assert h.raw is RAW  # no copy
    assert h["x-latin"] == "caf\u00e9"
    assert isinstance(h, Mapping)
    assert h == Headers(list(RAW))
    assert h != Headers(RAW[:2])
    assert "example.com" in repr(h)


def test_empty_headers() -> None:
    h = Headers()
    assert len(h) == 0 and list(h) == [] and h.get("a") is None


def test_mutable_headers_set_add_delete() -> None:
    h = MutableHeaders({"Content-Type": "text/html"})
    assert h.raw == [(b"content-type", b"text/html")]
    h.add("Set-Cookie", "a=1")
    h.add("set-cookie", "b=2")
    h["X-Count"] = 3
    assert h.get_all("set-cookie") == ["a=1", "b=2"]
    h["SET-COOKIE"] = "c=3"  # replaces every line, in the first one's place
    assert h.raw == [
        (b"content-type", b"text/html"),
        (b"set-cookie", b"c=3"),
        (b"x-count", b"3"),
    ]
    del h["x-count"]
    assert "x-count" not in h
    with pytest.raises(KeyError):
        del h["x-count"]
    assert h.setdefault("content-type", "text/plain") == "text/html"
    assert h.setdefault("x-new", b"v") == "v"
    h.update({"x-new": "w"}, x_other="o")
    assert h["x-new"] == "w" and h["x-other"] == "o"
    assert h.pop("x-new") == "w" and "x-new" not in h
    assert h.pop("x-new", "gone") == "gone"


def test_mutable_headers_wrap_shares_the_list() -> None:
    raw: list[tuple[bytes, bytes]] = []
    MutableHeaders.wrap(raw)["a"] = "1"
    assert raw == [(b"a", b"1")]


@pytest.mark.parametrize(
    "name, value",
    [
        ("X-Evil", "a\r\nSet-Cookie: pwned"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\x00b"),
        ("X-Evil", b"a\rb"),
        ("X-Evil", "a\x7fb"),
        ("Bad Name", "v"),
        ("Bad:Name", "v"),
        ("", "v"),
        ("X-Evil\r\nInjected", "v"),
    ],
)
def test_header_injection_is_refused(name: str, value: str | bytes) -> None:
    with pytest.raises(ValueError):
        normalize_headers({name: value})
    with pytest.raises(ValueError):
        MutableHeaders()[name] = value
    with pytest.raises(ValueError):
        Response(200, [(name, value)])


def test_normalize_headers_forms() -> None:
    expected = [(b"content-type", b"a/b"), (b"x-n", b"5")]
    assert normalize_headers(None) == []
    assert normalize_headers({"Content-Type": "a/b", "X-N": 5}) == expected
    assert normalize_headers([("Content-Type", "a/b"), (b"X-N", b"5")]) == expected
    assert normalize_headers((["content-type", "a/b"], ("x-n", 5))) == expected
    assert normalize_headers(Headers(list(expected))) == expected
    assert normalize_headers({"x-tab": "a\tb"}) == [(b"x-tab", b"a\tb")]  # HTAB is allowed


@pytest.mark.parametrize(
    "bad", ["content-type: x", b"raw", 42, [("a", "b", "c")], ["ab"], {"x": 1.5}, {"x": None}]
)
def test_normalize_headers_refuses_non_headers(bad: object) -> None:
    with pytest.raises(TypeError):
        normalize_headers(bad)  # type: ignore[arg-type]


def test_non_latin1_header_value_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="latin-1"):
        normalize_headers({"x": "\u2603"})


# -- Request -------------------------------------------------------------------------------------


def test_request_basic_attributes() -> None:
    r = Request(
        "POST",
        b"/a/b?x=1",
        [(b"host", b"h")],
        http_version="1.0",
        client=("127.0.0.1", 5000),
        scheme="https",
    )
    assert r.method == "POST"
    assert r.target == b"/a/b?x=1"
    assert r.path == "/a/b"
    assert r.raw_path == b"/a/b"
    assert r.query_string == "x=1"
    assert r.http_version == "1.0"
    assert r.client == ("127.0.0.1", 5000)
    assert r.scheme == "https"
    assert r.headers["Host"] == "h"
    assert r.path_params == {}
    assert r.root_path == ""
    assert "POST" in repr(r) and "/a/b" in repr(r)


def test_request_is_slotted() -> None:
    r = request()
    with pytest.raises(AttributeError):
        r.anything = 1  # type: ignore[attr-defined]


def test_request_path_is_percent_decoded_utf8() -> None:
    r = request(b"/caf%C3%A9/a%20b/%2Fslash?q=%20")
    assert r.path == "/caf\u00e9/a b//slash"
    assert r.raw_path == b"/caf%C3%A9/a%20b/%2Fslash"
    assert r.query_string == "q=%20"
    assert request(b"/bad%FFutf8").path == "/bad\ufffdutf8"
    assert request(b"/raw\xc3\xa9").path == "/raw\u00e9"


def test_request_path_can_be_set() -> None:
    r = request(b"/a/b")
    r.path = "/b"
    assert r.path == "/b" and r.raw_path == b"/a/b"


def test_request_target_forms() -> None:
    absolute = request(b"http://example.com:8080/x/y?z=1")
    assert (absolute.path, absolute.query_string) == ("/x/y", "z=1")
    assert request(b"http://example.com").path == "/"
    assert request(b"*", method="OPTIONS").path == "*"
    assert request(b"/p#frag").path == "/p"
    no_query = request(b"/p?")
    assert (no_query.path, no_query.query_string) == ("/p", "")


def test_request_query_is_parsed_lazily_and_multi_valued() -> None:
    r = request(b"/?a=1&b=x+y&a=2&empty=&flag&c=%26")
    q = r.query
    assert r.query is q  # cached
    assert q["a"] == "1"
    assert q.get_all("a") == ["1", "2"]
    assert q["b"] == "x y"
    assert q["empty"] == "" and q["flag"] == ""
    assert q["c"] == "&"
    assert q.get("missing") is None and "missing" not in q and "a" in q
    assert len(q) == 6
    assert list(q) == ["a", "b", "a", "empty", "flag", "c"]
    assert q.items()[2] == ("a", "2")
    assert q == QueryParams(
        [("a", "1"), ("b", "x y"), ("a", "2"), ("empty", ""), ("flag", ""), ("c", "&")]
    )
    with pytest.raises(KeyError):
        q["missing"]
    assert len(request(b"/").query) == 0


def test_request_content_length() -> None:
    assert request(headers=[(b"content-length", b"12")]).content_length == 12
    assert request().content_length is None
    assert request(headers=[(b"content-length", b"x")]).content_length is None


def test_body_is_read_whole_once_and_cached() -> None:
    source = ChunkedSource(b"hello world")
    r = Request("POST", b"/", [], body=source)
    assert r.body() == b"hello world"
    assert r.body() == b"hello world"
    assert source.calls == [-1]
    assert request().body() == b""  # no body source


def test_read_and_stream_are_incremental() -> None:
    r = request(body=b"abcdefgh")
    assert r.read(2) == b"ab"
    assert r.read(100) == b"cde"  # the source gives 3 at most
    assert list(r.stream(2)) == [b"fg", b"h"]
    assert r.read() == b""
    with pytest.raises(RuntimeError, match="partly consumed"):
        r.body()


def test_read_0_takes_nothing_and_body_still_works() -> None:
    source = ChunkedSource(b"abc")
    r = Request("POST", b"/", [], body=source)
    assert r.read(0) == b""
    assert source.calls == []  # the source is not even asked
    assert r.body() == b"abc"
    assert r.read(0) == b"" and r.read(1) == b"a"  # (the cached body: replayed)
    r = request(body=b"abc")
    assert r.read(2) == b"ab"
    assert r.read(0) == b""
    with pytest.raises(RuntimeError, match="partly consumed"):
        r.body()  # bytes were taken before the read(0)


def test_reading_an_empty_body_takes_nothing() -> None:
    # only taking bytes makes body() refuse: an empty body read to its end is still b""
    r = request(body=b"")
    assert r.read(10) == b"" and list(r.stream()) == [] and r.read() == b""
    assert r.body() == b""
    r = request(body=b"xy")
    assert list(r.stream()) == [b"xy"]
    assert r.read() == b""  # the end, after bytes were taken: body() still refuses
    with pytest.raises(RuntimeError, match="partly consumed"):
        r.body()


def test_read_after_body_replays_the_cached_body() -> None:
    r = request(body=b"abcdef")
    assert r.body() == b"abcdef"
    assert r.read(4) == b"abcd"
    assert list(r.stream(1)) == [b"e", b"f"]
    assert r.read() == b""
    assert request().read() == b"" and list(request().stream()) == []


def test_json_and_text() -> None:
    doc = {"name": "caf\u00e9", "n": [1, 2.5, None]}
    assert request(body=json.dumps(doc).encode()).json() == doc
    assert request(body="caf\u00e9".encode()).text() == "caf\u00e9"
    latin = request(headers=[(b"content-type", b'text/plain; charset="latin-1"')], body=b"caf\xe9")
    assert latin.text() == "caf\u00e9"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1}',
        b' {"a": [1, 2.5e3, "\\u00e9", null]}\n',  # whitespace around: the slow path
        b"[]",
        b'"caf\xc3\xa9"',
        b"NaN",  # accepted by Python's json, so here too
        '{"a":"\u00e9"}'.encode("utf-16"),  # not UTF-8: json.loads detects the encoding
        '{"a":1}'.encode("utf-32-le"),
        b"12345678901234567890",
    ],
)
def test_json_parses_as_the_stdlib_does(body: bytes) -> None:
    assert repr(request(body=body).json()) == repr(json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"{'a': 1}",
        b"\xff\xfe\xfd",
        b"[" * 100_000,
        b"NaNa",
        b"1 2",
        b"{} x",
        b"1\xc2\xa0",
    ],
)
def test_invalid_json_is_a_400(body: bytes) -> None:
    with pytest.raises(HTTPError) as info:
        request(body=body).json()
    assert info.value.status == 400
    assert "invalid JSON" in info.value.detail


def test_undecodable_text_is_a_400() -> None:
    with pytest.raises(HTTPError) as info:
        request(body=b"\xff").text()
    assert info.value.status == 400
    unknown = request(headers=[(b"content-type", b"text/plain; charset=nope")], body=b"x")
    with pytest.raises(HTTPError):
        unknown.text()


def test_body_source_errors_propagate() -> None:
    class Failing:
        def read(self, n: int = -1) -> bytes:
            raise HTTPError(413)

    r = Request("POST", b"/", [], body=Failing())
    with pytest.raises(HTTPError) as info:
        r.json()
    assert info.value.status == 413


# -- HTTPError -----------------------------------------------------------------------------------


def test_http_error_defaults_and_response() -> None:
    exc = HTTPError(404)
    assert (exc.status, exc.detail, exc.headers) == (404, "Not Found", [])
    assert str(exc) == "404 Not Found"
    status, headers, body = normalize_result(exc.response())
    assert status == 404
    assert headers == [(b"content-type", b"text/plain; charset=utf-8")]
    assert body == b"Not Found\n"


def test_http_error_detail_headers_and_unknown_status() -> None:
    exc = HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, "nope", {"Allow": "GET"})
    assert exc.status == 405 and type(exc.status) is int
    assert normalize_result(exc.response())[:3] == (
        405,
        [(b"allow", b"GET"), (b"content-type", b"text/plain; charset=utf-8")],
        b"nope\n",
    )
    assert HTTPError(599).detail == "Error"
    custom = HTTPError(400, headers={"content-type": "application/json"}, detail='{"e":1}')
    assert normalize_result(custom.response())[1] == [(b"content-type", b"application/json")]


@pytest.mark.parametrize("status", [100, 103, 204, 205, 304, HTTPStatus.NOT_MODIFIED])
def test_http_error_with_a_status_that_has_no_body(status: int) -> None:
    # 1xx, 204, 205 and 304 answers have no content (RFC 9110 s15): the server would refuse
    # a body (a 500 instead of the status)
    assert normalize_result(HTTPError(status).response())[:3] == (int(status), [], b"")
    exc = HTTPError(status, "ignored detail", {"etag": '"v1"'})
    assert exc.detail == "ignored detail"
    assert normalize_result(exc.response())[:3] == (int(status), [(b"etag", b'"v1"')], b"")


@pytest.mark.parametrize("status", [200, 201, 206, 299, 301, 400, 412])
def test_http_error_with_other_statuses_keeps_its_text_body(status: int) -> None:
    assert normalize_result(HTTPError(status, "why").response())[2] == b"why\n"


@pytest.mark.parametrize("status", ["404", 404.0, 404.9, True, 99, 1000, -404, None])
def test_http_error_refuses_a_status_that_is_not_an_int_from_100_to_999(status: object) -> None:
    # int() made 404 of "404" and 404.9, and 1 of True (a 500 later, with a puzzling log):
    # the mistake is named where it is made, as for a handler's own status.
    with pytest.raises(TypeError, match="the status must be an int from 100 to 999"):
        HTTPError(status)  # type: ignore[arg-type]


# -- Response ------------------------------------------------------------------------------------


def test_response_defaults_and_headers_view() -> None:
    r = Response()
    assert (r.status, r.body) == (200, b"")
    assert normalize_result(r) == (200, [], b"")
    r.headers["X-A"] = "1"
    r.headers.add("x-a", "2")
    assert normalize_result(r)[1] == [(b"x-a", b"1"), (b"x-a", b"2")]
    r.headers = {"x-b": "3"}
    assert r.headers.items() == [("x-b", "3")]
    assert "200" in repr(r)


def test_response_json() -> None:
    r = Response.json({"a": [1, "\u00e9", None, True]}, status=201)
    status, headers, body = normalize_result(r)
    assert status == 201
    assert headers == [(b"content-type", b"application/json")]
    assert body == '{"a":[1,"\u00e9",null,true]}'.encode()
    assert json.loads(body) == {"a": [1, "\u00e9", None, True]}
    with_type = Response.json([], headers={"Content-Type": "application/x+json", "X": "y"})
    assert normalize_result(with_type)[1] == [
        (b"content-type", b"application/x+json"),
        (b"x", b"y"),
    ]
    with_other = Response.json(1, headers={"x": "y"})
    assert normalize_result(with_other)[1] == [(b"x", b"y"), (b"content-type", b"application/json")]


def test_response_json_matches_the_stdlib_and_refuses_what_it_refuses() -> None:
    doc = {"s": '\u2603"\\\n', "f": 0.1, "big": 10**30, "nested": {"l": [[], {}]}, "t": (1,)}
    expected = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    assert Response.json(doc).body == expected
    assert Response.json("top").body == b'"top"'
    with pytest.raises(ValueError):
        Response.json(float("nan"))
    with pytest.raises(TypeError, match="not JSON serializable"):
        Response.json({"x": object()})


def test_response_text_html_redirect() -> None:
    assert normalize_result(Response.text("h\u00e9", 202)) == (
        202,
        [(b"content-type", b"text/plain; charset=utf-8")],
        "h\u00e9".encode(),
    )
    csv = Response.text("a,b", content_type="text/csv; charset=utf-8")
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert normalize_result(Response.html("<p>")) == (
        200,
        [(b"content-type", b"text/html; charset=utf-8")],
        b"<p>",
    )
    redirect = Response.redirect("/caf\u00e9 x?a=b&c=%20")
    assert normalize_result(redirect) == (302, [(b"location", b"/caf%C3%A9%20x?a=b&c=%20")], b"")
    assert Response.redirect("https://x.org/", 308, {"x": "1"}).headers.items() == [
        ("x", "1"),
        ("location", "https://x.org/"),
    ]
    assert b"\r" not in normalize_result(Response.redirect("/a\r\nSet-Cookie: x"))[1][0][1]


def test_response_file_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(b"<html>")
    r = Response.file(path)
    status, headers, body = normalize_result(r)
    assert isinstance(body, FileBody)
    with body:
        assert (status, headers) == (200, [(b"content-type", b"text/html; charset=utf-8")])
        assert (body.offset, body.count, body.length()) == (0, None, 6)
        assert b"".join(body.chunks()) == b"<html>"
    assert body.file.closed


def test_response_file_from_a_file_object_with_download_name(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789")
    f = open(path, "rb")
    f.seek(4)
    r = Response.file(f, filename='r\u00e9sum\u00e9 "1".pdf', content_type="application/pdf")
    status, headers, body = normalize_result(r)
    assert isinstance(body, FileBody)
    with body:
        assert dict(headers) == {
            b"content-type": b"application/pdf",
            b"content-disposition": b'attachment; filename="r_sum_ _1_.pdf"; '
            b"filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf",
        }
        assert b"".join(body.chunks()) == b"456789"  # from the current position


def test_response_file_names_and_types_cannot_inject_headers(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"a")
    r = Response.file(path, filename="x\r\nSet-Cookie: y.txt")
    disposition = r.headers["content-disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert 'filename="x__Set-Cookie: y.txt"' in disposition
    assert "filename*=UTF-8''x%0D%0ASet-Cookie%3A%20y.txt" in disposition
    r.body.close()
    plain = Response.file(path, filename="plain.txt")
    plain.body.close()
    assert plain.headers["content-disposition"] == 'attachment; filename="plain.txt"'
    with pytest.raises(ValueError):
        Response.file(path, content_type="text/plain\r\nX: y")
    with pytest.raises(ValueError):
        Response.text("x", content_type="text/plain\nX: y")


def test_response_file_closes_the_file_on_a_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"a")
    f = open(path, "rb")
    with pytest.raises(ValueError):
        Response.file(f, headers={"x": "\n"})
    assert f.closed
    with pytest.raises(FileNotFoundError):
        Response.file(tmp_path / "missing")


# -- FileBody ------------------------------------------------------------------------------------


def test_file_body_range_and_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 4)
    with FileBody(open(path, "rb"), 10, 600) as body:
        assert body.length() == 600
        chunks = list(body.chunks(256))
        assert [len(c) for c in chunks] == [256, 256, 88]
        assert b"".join(chunks) == (bytes(range(256)) * 4)[10:610]
        assert body.file.tell() == 0  # pread leaves the position alone
        assert body.fileno() == body.file.fileno()
    with FileBody(open(path, "rb"), 1000) as tail:
        assert tail.length() == 24 and len(b"".join(tail.chunks())) == 24
    with FileBody(open(path, "rb"), 2000) as past:
        assert past.length() == 0 and list(past.chunks()) == []
    with FileBody(open(path, "rb"), 1020, 100) as shrunk:  # the file is shorter than count
        assert b"".join(shrunk.chunks()) == bytes(range(252, 256))
    with pytest.raises(ValueError):
        FileBody(None, -1)
    with pytest.raises(ValueError):
        FileBody(None, 0, -5)


# -- normalize_result ----------------------------------------------------------------------------


def test_normalize_the_seed_triple() -> None:
    assert normalize_result((200, None, b"hi")) == (200, [], b"hi")
    assert normalize_result((404, {"X-A": "b"}, b"")) == (404, [(b"x-a", b"b")], b"")
    assert normalize_result((200, [("x", "1"), ("x", "2")], b"")) == (
        200,
        [(b"x", b"1"), (b"x", b"2")],
        b"",
    )
    assert normalize_result((HTTPStatus.CREATED, None, b""))[0] == 201
    assert normalize_result((200, Headers([(b"a", b"b")]), b""))[1] == [(b"a", b"b")]


def test_normalize_str_body_gets_utf8_and_a_default_type() -> None:
    assert normalize_result((200, None, "caf\u00e9")) == (
        200,
        [(b"content-type", b"text/plain; charset=utf-8")],
        "caf\u00e9".encode(),
    )
    assert normalize_result((200, {"Content-Type": "text/html"}, "<p>")) == (
        200,
        [(b"content-type", b"text/html")],
        b"<p>",
    )
    shared = Response(200, None, "x")
    normalize_result(shared)
    assert shared.headers.raw == []  # the default type did not go into the Response


def test_normalize_other_bodies(tmp_path: Path) -> None:
    assert normalize_result((200, None, None))[2] == b""
    assert normalize_result((200, None, bytearray(b"ab")))[2] == b"ab"
    assert normalize_result((200, None, memoryview(b"ab")))[2] == b"ab"

    def gen():  # type: ignore[no-untyped-def]
        yield b"a"
        yield b"b"

    chunks = gen()
    assert normalize_result((200, None, chunks))[2] is chunks
    assert list(normalize_result((200, None, [b"a", b"b"]))[2]) == [b"a", b"b"]  # type: ignore
    file_body = FileBody(io.BytesIO(), 0, 0)
    assert normalize_result(Response(body=file_body))[2] is file_body


def test_normalize_file_objects(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    f = open(path, "rb")
    f.seek(3)
    body = normalize_result((200, None, f))[2]
    assert isinstance(body, FileBody)
    with body:
        assert (body.file, body.offset, body.count) == (f, 3, None)
    buffer = io.BytesIO(b"x" * 70000)
    chunks = normalize_result((200, None, buffer))[2]
    assert [len(c) for c in chunks] == [65536, 4464]  # type: ignore[union-attr]
    assert buffer.closed
    with open(path) as text:
        with pytest.raises(TypeError, match="binary"):
            normalize_result((200, None, text))


@pytest.mark.parametrize(
    "result, message",
    [
        (None, "NoneType"),
        ("hello", "str"),
        (b"hello", "bytes"),
        ((200, b"x"), "tuple"),
        ((200, None, b"", None), "tuple"),
        ([200, None, b""], "list"),
        (200, "int"),
        (("200", None, b""), "status"),
        ((True, None, b""), "status"),
        ((99, None, b""), "status"),
        ((1000, None, b""), "status"),
        ((200, None, {"a": 1}), "Response.json"),
        ((200, None, 42), "int"),
        ((200, "x: y", b""), "headers"),
    ],
)
def test_normalize_refuses_anything_else(result: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        normalize_result(result)


def test_the_response_names_are_also_in_message() -> None:
    assert (_message.Response, _message.FileBody, _message.normalize_result) == (
        Response,
        FileBody,
        normalize_result,
    )
