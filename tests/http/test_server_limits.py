"""The HTTP server's limits, timeouts and refusals: each answered with its status, then closed."""

from __future__ import annotations

import logging
import re
import select
import socket
import threading
import time
from typing import Any

import pytest
from server_helpers import (
    ServerThread,
    closed_by_server,
    connect,
    get,
    raw_exchange,
    read_response,
)

from unknot.http import Limits, Request, Timeouts

pytestmark = pytest.mark.timeout(30)

LIMITS = Limits(max_target_size=100, max_header_size=1024, max_header_count=10, max_body_size=1000)
called: list[str] = []


def recording(request: Request) -> Any:
    called.append(request.path)
    return 200, None, request.body()


@pytest.fixture
def limited() -> Any:
    called.clear()
    with ServerThread(recording, limits=LIMITS) as srv:
        yield srv


def refused(port: int, data: bytes) -> tuple[int, bool]:
    """Send ``data``; the status of the answer, and whether the server closed after it."""
    (response,), closed = raw_exchange(port, data)
    assert response.closes, "a refusal says Connection: close"
    return response.status, closed


# -- limits ----------------------------------------------------------------------------------


def test_request_target_too_long_is_414(limited: ServerThread) -> None:
    assert refused(limited.port, get("/" + "a" * 200)) == (414, True)
    assert raw_exchange(limited.port, get("/" + "a" * 90))[0][0].status == 200


def test_header_block_too_large_is_431(limited: ServerThread) -> None:
    big = "X-Big: " + "b" * 1100 + "\r\n"
    assert refused(limited.port, get("/", extra=big)) == (431, True)


def test_too_many_header_fields_is_431(limited: ServerThread) -> None:
    many = "".join(f"X-{i}: v\r\n" for i in range(11))
    assert refused(limited.port, get("/", extra=many)) == (431, True)
    fine = "".join(f"X-{i}: v\r\n" for i in range(8))
    assert raw_exchange(limited.port, get("/", extra=fine))[0][0].status == 200


def test_endless_head_is_cut_off(limited: ServerThread) -> None:
    with connect(limited.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        try:
            for _ in range(100):
                sock.sendall(b"e" * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = read_response(sock.makefile("rb"))
    assert response.status == 431


def test_content_length_over_the_limit_is_413_before_the_handler(limited: ServerThread) -> None:
    request = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
    assert refused(limited.port, request + b"x" * 2000) == (413, True)
    assert called == []


def test_expect_100_with_a_body_over_the_limit_gets_413_and_no_100(limited: ServerThread) -> None:
    with connect(limited.port) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
        )
        response = read_response(sock.makefile("rb"))
    assert response.status == 413
    assert called == []


def test_chunked_body_over_the_limit_is_413_while_streaming(limited: ServerThread) -> None:
    chunk = b"100\r\n" + b"c" * 256 + b"\r\n"
    request = b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert refused(limited.port, request + chunk * 5 + b"0\r\n\r\n") == (413, True)


def test_a_handler_reading_a_body_over_the_limit_sees_the_error() -> None:
    seen: list[BaseException] = []

    def careful(request: Request) -> Any:
        try:
            request.body()
        except Exception as exc:
            seen.append(exc)
            return 200, None, b"handled"
        return 200, None, b"read"

    with ServerThread(careful, limits=Limits(max_body_size=100)) as srv:
        request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        (response,), closed = raw_exchange(srv.port, request + b"c8\r\n" + b"d" * 200 + b"\r\n")
    assert response.body == b"handled"
    assert response.closes and closed  # the rest of the stream cannot be parsed: close
    assert getattr(seen[0], "status_hint", None) == 413


# -- refusals --------------------------------------------------------------------------------


AMBIGUOUS = {
    "content-length-and-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    "two-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "repeated-content-length": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "content-length-list": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    "content-length-sign": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
    "content-length-letters": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3a\r\n\r\nab", 400),
    "chunked-not-last": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    # A transfer coding other than chunked: the body's length cannot be known (RFC 9112, 6.3).
    "unknown-coding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "unknown-coding-before-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "bare-lf": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "bare-lf-in-headers": (b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "invalid-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        400,
    ),
    "chunk-size-overflow": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10000000000000000\r\nab\r\n",
        400,
    ),
    "chunk-without-crlf": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello tls\r\n\r\n", 400),
    "http-2-0": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "control-character-in-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
}


#: Malformed bodies: found while the handler reads the body (after a good head).
IN_THE_BODY = {"invalid-chunk-size", "chunk-size-overflow", "chunk-without-crlf"}


@pytest.mark.parametrize("name", AMBIGUOUS)
def test_ambiguous_or_malformed_requests_are_refused(limited: ServerThread, name: str) -> None:
    data, status = AMBIGUOUS[name]
    with connect(limited.port) as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        response = read_response(f)
        assert (response.status, response.closes) == (status, True)
        assert closed_by_server(sock, f)
        f.close()
    assert called == (["/"] if name in IN_THE_BODY else [])


def test_a_refusal_after_good_requests_answers_them_first(limited: ServerThread) -> None:
    data = get("/one") + get("/two") + b"GET / HTTP/1.1\nHost: x\n\n"
    (one, two, bad), closed = raw_exchange(limited.port, data, count=3)
    assert (one.status, two.status, bad.status) == (200, 200, 400)
    assert closed
    assert called == ["/one", "/two"]


# -- timeouts --------------------------------------------------------------------------------


FAST = Timeouts(head=0.4, keep_alive=0.4, body=0.4, write=0.5)


@pytest.fixture
def impatient() -> Any:
    called.clear()
    with ServerThread(recording, timeouts=FAST) as srv:
        yield srv


def test_a_connection_that_says_nothing_gets_408(impatient: ServerThread) -> None:
    with connect(impatient.port) as sock:
        start = time.monotonic()
        f = sock.makefile("rb")
        response = read_response(f)
        elapsed = time.monotonic() - start
        assert closed_by_server(sock, f)
        f.close()
    assert response.status == 408 and response.closes
    assert 0.35 < elapsed < 2


def test_a_head_trickled_byte_by_byte_is_cut_at_the_deadline(impatient: ServerThread) -> None:
    trickle = get("/", extra="X-Slow: " + "s" * 200 + "\r\n")
    with connect(impatient.port) as sock:
        start = time.monotonic()
        for byte in trickle:  # 5 s at this pace, if nobody cut it short
            sock.send(bytes([byte]))
            if select.select([sock], [], [], 0.02)[0]:
                break  # the answer is there
        elapsed = time.monotonic() - start
        response = read_response(sock.makefile("rb"))
    assert response.status == 408
    assert 0.35 < elapsed < 2  # cut off although bytes kept coming
    assert called == []


def test_an_idle_keep_alive_connection_is_closed_silently(impatient: ServerThread) -> None:
    with connect(impatient.port) as sock:
        sock.sendall(get("/"))
        f = sock.makefile("rb")
        assert read_response(f).status == 200
        start = time.monotonic()
        sock.settimeout(3)
        assert f.read() == b""  # closed, and not a byte said
        f.close()
        assert 0.35 < time.monotonic() - start < 2


def test_a_body_that_stops_coming_times_out_with_408(impatient: ServerThread) -> None:
    with connect(impatient.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
        response = read_response(sock.makefile("rb"))
    assert response.status == 408 and response.closes


def test_a_handler_may_catch_the_body_timeout() -> None:
    def patient(request: Request) -> Any:
        try:
            return 200, None, request.body()
        except TimeoutError:
            return 200, None, b"gave up"

    with ServerThread(patient, timeouts=FAST) as srv:
        with connect(srv.port) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
            response = read_response(sock.makefile("rb"))
    assert response.body == b"gave up"


def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout() -> None:
    closed = threading.Event()

    def flood(request: Request) -> Any:
        def chunks() -> Any:
            try:
                while True:
                    yield b"f" * 65536
            finally:
                closed.set()

        return 200, None, chunks()

    with ServerThread(flood, timeouts=FAST) as srv:
        with connect(srv.port) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(get("/"))
            start = time.monotonic()
            assert closed.wait(5)  # never read: the server gives up
            assert 0.45 < time.monotonic() - start < 4
        srv.wait_for_connections(0)


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Timeouts(head=0)
    with pytest.raises(ValueError):
        Timeouts(write=float("inf"))


# -- the access log --------------------------------------------------------------------------


def test_access_log_combined_format(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="unknot.http.access"):
        with ServerThread(recording, access_log=True, limits=LIMITS) as srv:
            raw_exchange(
                srv.port,
                get("/path?q=1", extra='User-Agent: agent "quoted"\r\nReferer: http://r/\r\n')
                + b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
                count=2,
            )
            raw_exchange(srv.port, b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD")
            raw_exchange(srv.port, get("/" + "a" * 200))
    lines = [r.getMessage() for r in caplog.records if r.name == "unknot.http.access"]
    stamp = r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"
    assert re.fullmatch(
        rf'127\.0\.0\.1 - - {stamp} "GET /path\?q=1 HTTP/1\.1" 200 - "http://r/" '
        r'"agent \\x22quoted\\x22"',
        lines[0],
    ), lines[0]
    assert re.fullmatch(rf'127\.0\.0\.1 - - {stamp} "POST /p HTTP/1\.1" 200 3 "-" "-"', lines[1])
    assert re.fullmatch(rf'127\.0\.0\.1 - - {stamp} "HEAD /h HTTP/1\.1" 200 - "-" "-"', lines[2])
    assert re.fullmatch(rf'127\.0\.0\.1 - - {stamp} "-" 414 \d+ "-" "-"', lines[3])
    assert len(lines) == 4


def test_access_log_common_format_and_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="unknot.http.access"):
        with ServerThread(recording, access_log="common") as srv:
            raw_exchange(srv.port, get("/c"))
        with ServerThread(recording) as srv:
            raw_exchange(srv.port, get("/off"))
    lines = [r.getMessage() for r in caplog.records if r.name == "unknot.http.access"]
    assert len(lines) == 1
    assert lines[0].endswith('"GET /c HTTP/1.1" 200 -')
