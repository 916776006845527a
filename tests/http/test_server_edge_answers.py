"""On the wire: bodiless HTTPError answers, read(0), static preconditions and redirects, and
path parameters holding a newline (regressions found in review)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerThread, get, raw_exchange

from unknot.http import App, HTTPError, Request, Response, StaticFiles

pytestmark = pytest.mark.timeout(30)


def test_http_error_304_and_204_are_sent_as_such(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: Request) -> Any:
        if request.path == "/cached":
            raise HTTPError(304, headers={"etag": '"v1"'})
        raise HTTPError(204)

    app = App()

    @app.get("/")
    def index(request: Request) -> Any:
        raise HTTPError(304)

    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(handler) as srv:
            # two answers on one connection: it stays usable after each
            (cached, deleted), closed = raw_exchange(
                srv.port, get("/cached") + get("/delete"), count=2
            )
        with ServerThread(app) as srv:
            (routed,), _ = raw_exchange(srv.port, get("/"))
    assert (cached.status, cached.body, cached.header("etag")) == (304, b"", '"v1"')
    assert cached.header("content-type") is None
    assert (deleted.status, deleted.body, deleted.header("content-length")) == (204, b"", None)
    assert not closed
    assert (routed.status, routed.body) == (304, b"")
    assert not [r for r in caplog.records if r.name == "unknot.http"]


def test_read_0_then_body_over_the_wire() -> None:
    def handler(request: Request) -> Any:
        assert request.read(0) == b""
        return 200, None, request.body()

    with ServerThread(handler) as srv:
        request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        (response,), _ = raw_exchange(srv.port, request)
    assert (response.status, response.body) == (200, b"abc")


def test_static_preconditions_and_redirects_over_the_wire(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"A" * 100)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_bytes(b"docs")
    with ServerThread(StaticFiles(tmp_path)) as srv:
        (first,), _ = raw_exchange(srv.port, get("/data.bin", extra="Range: bytes=0-49\r\n"))
        assert (first.status, first.body) == (206, b"A" * 50)
        old_etag = first.header("etag")
        (tmp_path / "data.bin").write_bytes(b"B" * 100)
        os.utime(tmp_path / "data.bin", ns=(3 * 10**18, 3 * 10**18))
        resume = f"Range: bytes=50-\r\nIf-Match: {old_etag}\r\n"
        (resumed,), closed = raw_exchange(srv.port, get("/data.bin", extra=resume))
        assert resumed.status == 412 and b"B" not in resumed.body and not closed
        since = "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        (late,), _ = raw_exchange(srv.port, get("/data.bin", extra=since))
        assert late.status == 412
        (redirect,), _ = raw_exchange(srv.port, get("//docs"))
        assert (redirect.status, redirect.header("location")) == (301, "/docs/")


def test_path_parameter_with_an_encoded_newline_over_the_wire() -> None:
    app = App()

    @app.get("/files/{rest:path}")
    def files(request: Request, rest: str) -> Any:
        return Response.json({"rest": rest})

    with ServerThread(app) as srv:
        (response,), _ = raw_exchange(srv.port, get("/files/a%0Ab"))
    assert (response.status, response.body) == (200, b'{"rest":"a\\nb"}')
