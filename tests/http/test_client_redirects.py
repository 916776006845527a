"""Redirects: each status code's method and body rule, relative Locations, the limit, and the
Authorization header across origins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from client_helpers import Server, serving

from unknot.http._client import Client, get, post, request
from unknot.http._client_errors import TooManyRedirects

pytestmark = [pytest.mark.timeout(30), pytest.mark.unknot]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serving() as running:
        yield running


@pytest.fixture(scope="module")
def other() -> Iterator[Server]:
    """A second server: another origin (another port)."""
    with serving() as running:
        yield running


def redirect(server: Server, code: int, to: str) -> str:
    return server.url(f"/redirect?code={code}&to={quote(to, safe='')}")


def echo(response: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(response.content)
    answer["headers"] = dict(answer["headers"])
    return answer


@pytest.mark.parametrize("code", [301, 302, 303])
def test_post_becomes_get_without_its_body(server: Server, code: int) -> None:
    r = post(
        redirect(server, code, "/echo"), content=b"payload", headers={"content-type": "text/plain"}
    )
    seen = echo(r)
    assert seen["method"] == "GET"
    assert seen["body"] == ""
    assert "content-length" not in seen["headers"]
    assert "content-type" not in seen["headers"]
    assert [h.status_code for h in r.history] == [code]
    assert r.history[0].request.method == "POST"
    assert r.url == server.url("/echo")
    assert r.request.method == "GET"


@pytest.mark.parametrize("code", [307, 308])
def test_307_and_308_keep_the_method_and_the_body(server: Server, code: int) -> None:
    r = post(
        redirect(server, code, "/echo"), content=b"payload", headers={"content-type": "text/plain"}
    )
    seen = echo(r)
    assert (seen["method"], seen["body"]) == ("POST", "payload")
    assert seen["headers"]["content-type"] == "text/plain"
    assert r.history[0].status_code == code


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_put_keeps_its_method_on_301_302_307_308(server: Server, code: int) -> None:
    assert echo(request("PUT", redirect(server, code, "/echo"), content=b"x"))["method"] == "PUT"


def test_303_keeps_head(server: Server) -> None:
    r = request("HEAD", redirect(server, 303, "/echo"))
    assert r.status_code == 200
    assert server.requests[-1] == ("HEAD", "/echo")


def test_a_streamed_body_is_not_sent_again(server: Server) -> None:
    r = post(redirect(server, 307, "/echo"), content=iter([b"once"]))
    assert r.status_code == 307  # returned as is: the generator cannot be replayed
    assert r.history == []


def test_relative_and_absolute_locations(server: Server, other: Server) -> None:
    r = get(server.url("/a/b/redirect?code=302&to=../echo%3Fx%3D1"))
    assert echo(r)["path"] == "/a/echo?x=1"
    r = get(redirect(server, 302, other.url("/echo")))
    assert r.url == other.url("/echo")
    r = get(redirect(server, 302, f"//127.0.0.1:{other.port}/echo"))  # scheme-relative
    assert r.url == other.url("/echo")


def test_a_chain_of_redirects_and_its_history(server: Server) -> None:
    third = redirect(server, 303, "/echo")
    second = redirect(server, 302, third)
    r = get(redirect(server, 301, second))
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [301, 302, 303]
    assert [h.url for h in r.history] == [redirect(server, 301, second), second, third]
    assert r.history[1].history == r.history[:1]


def test_max_redirects(server: Server) -> None:
    with pytest.raises(TooManyRedirects) as info:
        get(server.url("/loop"))
    assert info.value.response is not None and info.value.response.status_code == 302
    assert server.requests[-21:] == [("GET", "/loop")] * 21  # the first and 20 redirects
    with pytest.raises(TooManyRedirects):
        get(redirect(server, 302, "/echo"), max_redirects=0)
    with Client(max_redirects=2) as client:
        r = client.get(redirect(server, 302, redirect(server, 302, "/echo")))
        assert len(r.history) == 2
        with pytest.raises(TooManyRedirects):
            client.get(server.url("/loop"))


def test_follow_redirects_off(server: Server) -> None:
    r = get(redirect(server, 302, "/echo"), follow_redirects=False)
    assert (r.status_code, r.is_redirect, r.headers["location"]) == (302, True, "/echo")
    with Client(follow_redirects=False) as client:
        assert client.get(redirect(server, 301, "/echo")).status_code == 301
        assert client.get(redirect(server, 301, "/echo"), follow_redirects=True).ok


def test_authorization_is_kept_on_the_same_origin(server: Server) -> None:
    r = get(redirect(server, 302, "/echo"), auth=("u", "p"))
    assert echo(r)["headers"]["authorization"] == "Basic dTpw"
    r = get(redirect(server, 302, "/echo"), headers={"Authorization": "Bearer t"})
    assert echo(r)["headers"]["authorization"] == "Bearer t"


def test_authorization_is_dropped_across_origins(server: Server, other: Server) -> None:
    r = get(redirect(server, 302, other.url("/echo")), auth=("u", "p"))
    assert "authorization" not in echo(r)["headers"]
    r = get(
        redirect(server, 307, other.url("/echo")),
        headers={"Authorization": "Bearer t", "X-Other": "kept"},
    )
    headers = echo(r)["headers"]
    assert "authorization" not in headers
    assert headers["x-other"] == "kept"
    assert headers["host"] == f"127.0.0.1:{other.port}"


def test_redirects_reuse_the_pooled_connection(server: Server) -> None:
    accepts = server.accepts
    with Client() as client:
        r = client.get(redirect(server, 302, redirect(server, 302, "/echo")))
        assert r.ok and len(r.history) == 2
    assert server.accepts == accepts + 1


def test_streamed_redirects(server: Server) -> None:
    with Client() as client, client.stream("GET", redirect(server, 302, "/echo")) as r:
        assert json.loads(r.read())["method"] == "GET"
        assert r.history[0].status_code == 302
    assert client.pool.connections == 0
