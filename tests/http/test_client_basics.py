"""The HTTP client against the stdlib's ``http.server``: requests, bodies, the response API."""

from __future__ import annotations

import datetime
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from client_helpers import PLAIN, Server, raw_server, serving

import unknot
from unknot.http._client import Client, delete, get, head, options, patch, post, put, request
from unknot.http._client_errors import (
    ConnectError,
    DecodingError,
    HTTPStatusError,
    InvalidURL,
    RemoteProtocolError,
)
from unknot.http._client_headers import Headers
from unknot.http._client_timeout import Timeout
from unknot.http._url import URL

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


def echo(response: Any) -> dict[str, Any]:
    """The echo path's answer, with headers as a dict (last value wins)."""
    answer: dict[str, Any] = response.json()
    answer["headers"] = dict(answer["headers"])
    return answer


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_get_sends_host_user_agent_accept_encoding_and_params(server: Server) -> None:
    r = get(server.url("/echo?a=1"), params={"b": ["2", "3"], "c": "x y", "skip": None})
    seen = echo(r)
    assert seen["method"] == "GET"
    assert seen["path"] == "/echo?a=1&b=2&b=3&c=x+y"
    assert seen["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert seen["headers"]["user-agent"] == f"unknot/{unknot.__version__}"
    assert seen["headers"]["accept-encoding"] == "gzip, deflate"
    assert seen["headers"]["accept"] == "*/*"
    assert "content-length" not in seen["headers"]
    assert r.url == server.url("/echo?a=1&b=2&b=3&c=x+y")


@pytest.mark.unknot
def test_headers_override_and_remove_defaults(server: Server) -> None:
    with Client(headers={"X-Client": "c", "Accept": "text/plain"}) as client:
        r = client.get(
            server.url("/echo"), headers={"x-request": "r", "User-Agent": None, "X-CLIENT": "again"}
        )
    headers = echo(r)["headers"]
    assert headers["x-client"] == "again"
    assert headers["x-request"] == "r"
    assert headers["accept"] == "text/plain"
    assert "user-agent" not in headers
    assert r.request.headers["x-request"] == "r"


@pytest.mark.unknot
def test_header_injection_is_refused_before_anything_is_sent(server: Server) -> None:
    before = len(server.requests)
    with pytest.raises(ValueError):
        get(server.url("/echo"), headers={"x-evil": "a\r\nx-injected: 1"})
    with pytest.raises(ValueError):
        get(server.url("/echo"), headers={"bad name": "v"})
    assert len(server.requests) == before


@pytest.mark.unknot
def test_post_json_form_and_bytes_bodies(server: Server) -> None:
    seen = echo(post(server.url("/echo"), json={"n": 1, "s": "é"}))
    assert json.loads(seen["body"].encode("latin-1")) == {"n": 1, "s": "é"}
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["content-length"] == str(len(seen["body"]))

    seen = echo(post(server.url("/echo"), data={"a": "1", "b": ["x", "y z"]}))
    assert seen["body"] == "a=1&b=x&b=y+z"
    assert seen["headers"]["content-type"] == "application/x-www-form-urlencoded"

    seen = echo(put(server.url("/echo"), content=b"\x00\xffraw"))
    assert (seen["method"], seen["body"]) == ("PUT", "\x00\xffraw")
    assert seen["headers"]["content-length"] == "5"
    assert "content-type" not in seen["headers"]

    seen = echo(patch(server.url("/echo"), content="text body", headers={"content-type": "a/b"}))
    assert (seen["method"], seen["body"], seen["headers"]["content-type"]) == (
        "PATCH",
        "text body",
        "a/b",
    )


@pytest.mark.unknot
def test_an_empty_post_says_content_length_zero(server: Server) -> None:
    seen = echo(post(server.url("/echo")))
    assert seen["headers"]["content-length"] == "0"
    assert seen["body"] == ""


@pytest.mark.unknot
def test_chunked_upload_of_a_generator_arrives_intact(server: Server) -> None:
    pieces = [bytes([i]) * (1000 + i) for i in range(50)]

    def body() -> Iterator[bytes]:
        for piece in pieces:
            unknot.sleep(0)  # the generator may block: other fibers run meanwhile
            yield piece

    seen = echo(post(server.url("/echo"), content=body()))
    assert seen["headers"]["transfer-encoding"] == "chunked"
    assert "content-length" not in seen["headers"]
    assert seen["body"].encode("latin-1") == b"".join(pieces)


@pytest.mark.unknot
def test_a_large_bytes_body_and_a_file_body(server: Server, tmp_path: Any) -> None:
    big = bytes(range(256)) * 1024  # 256 KiB: head and body leave separately
    seen = echo(post(server.url("/echo"), content=big))
    assert seen["body"].encode("latin-1") == big
    assert seen["headers"]["content-length"] == str(len(big))
    path = tmp_path / "upload.bin"
    path.write_bytes(big[:100_000])
    with open(path, "rb") as f:
        seen = echo(post(server.url("/echo"), content=f))
    assert seen["body"].encode("latin-1") == big[:100_000]


@pytest.mark.unknot
def test_every_method_shortcut(server: Server) -> None:
    for call, method in (
        (get, "GET"),
        (post, "POST"),
        (put, "PUT"),
        (patch, "PATCH"),
        (delete, "DELETE"),
        (options, "OPTIONS"),
    ):
        assert echo(call(server.url("/echo")))["method"] == method
    r = head(server.url("/echo"))
    assert r.status_code == 200
    assert int(r.headers["content-length"]) > 0
    assert r.content == b""
    assert echo(request("get", server.url("/echo")))["method"] == "GET"


@pytest.mark.unknot
def test_head_then_get_on_one_pooled_connection(server: Server) -> None:
    accepts = server.accepts
    with Client() as client:
        assert client.head(server.url("/big?size=100000")).content == b""
        assert len(client.get(server.url("/big?size=100000")).content) == 100_000
        assert client.head(server.url("/echo")).content == b""
    assert server.accepts == accepts + 1


def test_works_outside_fibers_too(server: Server) -> None:
    r = get(server.url("/text?body=plain"))
    assert r.text == "plain"
    with Client() as client:
        assert [client.get(server.url("/text?body=x")).text for _ in range(3)] == ["x"] * 3


# -- the response --------------------------------------------------------------------------------


@pytest.mark.unknot
def test_response_attributes(server: Server) -> None:
    r = get(server.url("/text?body=hi"))
    assert (r.status_code, r.reason, r.http_version) == (200, "OK", "HTTP/1.1")
    assert r.ok and r.is_success and not r.is_error and not r.is_redirect
    assert isinstance(r.headers, Headers)
    assert r.headers["Content-Type"] == r.headers["content-type"] == "text/plain; charset=utf-8"
    assert "CONTENT-LENGTH" in r.headers
    assert r.headers.get("x-missing", "d") == "d"
    assert isinstance(r.url, URL) and str(r.url) == server.url("/text?body=hi")
    assert r.request.method == "GET" and r.request.url == r.url
    assert r.history == []
    assert isinstance(r.elapsed, datetime.timedelta) and r.elapsed.total_seconds() > 0
    assert repr(r) == "<ClientResponse [200 OK]>"
    assert r.raise_for_status() is r


@pytest.mark.unknot
def test_text_uses_the_charset_else_utf8(server: Server) -> None:
    r = get(server.url("/text"), params={"body": "café", "charset": "latin-1"})
    assert r.content == "café".encode("latin-1")
    assert r.encoding == "iso8859-1"
    assert r.text == "café"
    r = get(server.url("/text"), params={"body": "café", "type": "text/plain"})
    assert r.encoding == "utf-8" and r.text == "café"
    r.encoding = "latin-1"
    assert r.text == "cafÃ©"


@pytest.mark.unknot
def test_json(server: Server) -> None:
    assert echo(get(server.url("/echo")))["method"] == "GET"
    with pytest.raises(ValueError):
        get(server.url("/text?body=not-json")).json()


@pytest.mark.unknot
def test_raise_for_status(server: Server) -> None:
    r = get(server.url("/status?code=404"))
    assert r.status_code == 404 and not r.ok and r.is_error
    with pytest.raises(HTTPStatusError) as info:
        r.raise_for_status()
    assert info.value.response is r
    assert info.value.request is r.request
    assert "404 Not Found" in str(info.value) and "Client error" in str(info.value)
    with pytest.raises(HTTPStatusError, match="Server error '503"):
        get(server.url("/status?code=503")).raise_for_status()


@pytest.mark.unknot
@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/raw-deflate"])
def test_gzip_and_deflate_bodies_are_decoded(server: Server, path: str) -> None:
    r = get(server.url(path))
    assert r.content == PLAIN
    assert r.headers["content-encoding"] in ("gzip", "deflate")
    with Client() as client, client.stream("GET", server.url(path)) as streamed:
        raw = b"".join(streamed.iter_raw())
    assert raw != PLAIN and len(raw) < len(PLAIN)  # iter_raw leaves the coding alone


@pytest.mark.unknot
def test_a_body_that_does_not_decode(server: Server) -> None:
    with pytest.raises(DecodingError) as info:
        get(server.url("/bad-gzip"))
    assert info.value.request.url.path == "/bad-gzip"


@pytest.mark.unknot
def test_a_body_delimited_by_the_end_of_the_connection(server: Server) -> None:
    with Client() as client:
        r = client.get(server.url("/no-length"))
        assert r.content == b"until the end"
        assert client.pool.connections == 0  # it could not be kept


# -- URLs, auth, errors --------------------------------------------------------------------------


@pytest.mark.unknot
def test_base_url(server: Server) -> None:
    with Client(base_url=server.url("/ignored/")) as client:
        assert echo(client.get("/echo?x=1"))["path"] == "/ignored/echo?x=1"
    with Client(base_url=server.origin) as client:
        assert echo(client.get("echo"))["path"] == "/echo"
        assert echo(client.get(server.url("/echo")))["path"] == "/echo"  # absolute: as is


@pytest.mark.unknot
def test_basic_auth_from_a_tuple_and_from_the_url(server: Server) -> None:
    seen = echo(get(server.url("/echo"), auth=("user", "pass word")))
    assert seen["headers"]["authorization"] == "Basic dXNlcjpwYXNzIHdvcmQ="
    seen = echo(get(f"http://user:pass%20word@127.0.0.1:{server.port}/echo"))
    assert seen["headers"]["authorization"] == "Basic dXNlcjpwYXNzIHdvcmQ="
    assert seen["headers"]["host"] == f"127.0.0.1:{server.port}"
    r = get(f"http://user:pass@127.0.0.1:{server.port}/echo", auth=("other", "x"))
    assert [v for k, v in r.json()["headers"] if k == "authorization"] == ["Basic b3RoZXI6eA=="]
    r = get(server.url("/echo"), auth=("u", "p"), headers={"authorization": "Bearer t"})
    assert [v for k, v in r.json()["headers"] if k == "authorization"] == ["Bearer t"]


@pytest.mark.unknot
def test_ipv6_literal() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        running = Server("::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        r = get(f"http://[::1]:{running.port}/echo")
        assert echo(r)["headers"]["host"] == f"[::1]:{running.port}"
    finally:
        running.close()


def test_url_parsing() -> None:
    url = URL("HTTP://Example.COM/a b/ü?q=ä#frag")
    assert (url.scheme, url.host, url.port) == ("http", "example.com", 80)
    assert url.target == b"/a%20b/%C3%BC?q=%C3%A4"
    assert url.host_header == b"example.com"
    assert URL("https://example.com:8443").target == b"/"
    assert URL("https://example.com:8443").host_header == b"example.com:8443"
    assert URL("https://bücher.example/").host == "xn--bcher-kva.example"
    assert URL("http://[::1]:81/").host_header == b"[::1]:81"
    assert URL("http://u:p%40@h/").password == "p@"
    assert URL("http://h/a/b").join("../c?x") == "http://h/c?x"
    assert URL("http://h/a/b").join("//other/z") == "http://other/z"
    for bad in ("ftp://h/", "example.com/path", "http:///nohost", "http://h:99999/"):
        with pytest.raises(InvalidURL):
            URL(bad)
    with pytest.raises(ValueError):  # InvalidURL is a ValueError
        get("gopher://h/")


def test_timeout_forms() -> None:
    assert Timeout(5) == Timeout(connect=5, read=5, write=5, pool=5)
    assert Timeout(5).total is None
    assert Timeout((1, 7)) == Timeout(connect=1, read=7, write=7, pool=7)
    assert Timeout(None).read is None
    assert Timeout(5, connect=1).connect == 1.0 and Timeout(5, connect=1).read == 5.0
    assert Timeout(total=3).read == 30.0 and Timeout(total=3).total == 3.0
    with pytest.raises(ValueError):
        Timeout(-1)


@pytest.mark.unknot
def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectError) as info:
            get(f"http://127.0.0.1:{port}/")
    assert isinstance(info.value, ConnectionError)  # the builtin, too
    assert info.value.request.url.port == port


@pytest.mark.unknot
def test_garbage_from_the_server_is_a_remote_protocol_error() -> None:
    from unknot.http._protocol import RemoteProtocolError as LayerError

    def garbage(conn: Any, addr: Any) -> None:
        conn.recv(65536)
        conn.sendall(b"SMTP ready\r\n\r\n")
        conn.close()

    with unknot.TCPServer(garbage, "127.0.0.1", 0) as tcp:
        unknot.spawn(tcp.serve_forever)
        with pytest.raises(RemoteProtocolError) as info:
            get(f"http://127.0.0.1:{tcp.address[1]}/")
    assert isinstance(info.value, LayerError)


@pytest.mark.unknot
def test_a_closed_client_refuses_requests(server: Server) -> None:
    client = Client()
    client.close()
    assert client.is_closed
    with pytest.raises(RuntimeError):
        client.get(server.url("/echo"))


@pytest.mark.unknot
def test_informational_responses_are_skipped() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-final: yes\r\n\r\nfinal"
    )
    with raw_server([answer]) as tcp, Client() as client:
        r = client.get(f"http://127.0.0.1:{tcp.address[1]}/")
        assert (r.status_code, r.content, r.headers["x-final"]) == (200, b"final", "yes")
        assert "link" not in r.headers


@pytest.mark.unknot
def test_connection_close_from_the_server_is_honoured() -> None:
    answers = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"] * 2
    with raw_server(answers) as tcp, Client() as client:
        url = f"http://127.0.0.1:{tcp.address[1]}/"
        assert client.get(url).content == b"ok"
        assert client.pool.connections == 0
        assert client.get(url).content == b"ok"
        assert len(tcp.accepted) == 2  # type: ignore[attr-defined]


@pytest.mark.unknot
def test_connection_close_from_the_caller_is_honoured(server: Server) -> None:
    accepts = server.accepts
    with Client() as client:
        assert (
            echo(client.get(server.url("/echo"), headers={"connection": "close"}))["headers"][
                "connection"
            ]
            == "close"
        )
        assert client.pool.connections == 0
        client.get(server.url("/echo"))
    assert server.accepts == accepts + 2


@pytest.mark.unknot
def test_http_1_0_responses() -> None:
    answer = b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold"
    with raw_server([answer]) as tcp, Client() as client:
        r = client.get(f"http://127.0.0.1:{tcp.address[1]}/")
        assert (r.http_version, r.content) == ("HTTP/1.0", b"old")
        assert client.pool.connections == 0  # 1.0 without keep-alive: closed
