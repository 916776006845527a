"""The framing writer: prebuilt status lines, the Date line cached per second, the checked
header-line cache, request lines and body framings."""

from __future__ import annotations

import email.utils

import pytest

from unknot.http._protocol import LocalProtocolError, ServerConnection, _server_conn, _writer
from unknot.http._protocol._writer import (
    CHUNKED,
    LENGTH,
    NO_BODY,
    STATUS_LINES,
    STRIPPED,
    UNTIL_CLOSE,
    BodyFramer,
    date_line,
    render_headers,
    request_line,
    status_line,
)


def test_status_lines_are_prebuilt() -> None:
    assert status_line(200) is STATUS_LINES[200] == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 \r\n"
    assert status_line(200, b"Fine") == b"HTTP/1.1 200 Fine\r\n"
    for bad_status in (99, 1000, "200", 200.0):
        with pytest.raises(LocalProtocolError):
            status_line(bad_status, b"x")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        status_line(200, b"OK\r\nX: injected")


def test_date_line_is_formatted_once_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_700_000_000.25]
    calls = []

    def fake_formatdate(timeval: float, usegmt: bool = False) -> str:
        calls.append(timeval)
        return email.utils.formatdate(timeval, usegmt=usegmt)

    monkeypatch.setattr(_writer, "now", lambda: clock[0])
    monkeypatch.setattr(_server_conn, "now", lambda: clock[0])
    monkeypatch.setattr(_writer, "formatdate", fake_formatdate)
    monkeypatch.setattr(_writer.DATE_LINE, "expires", 0.0)
    monkeypatch.setattr(_writer.DATE_LINE, "line", _writer.DATE_LINE.line)  # (restored after)
    first = date_line()
    assert first == b"date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
    clock[0] += 0.7
    assert date_line() is first
    conn = ServerConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_events()
    assert first in conn.send_response(200)  # the server's inlined copy uses the same cache
    assert len(calls) == 1
    clock[0] += 0.1  # the next second
    assert date_line() == b"date: Tue, 14 Nov 2023 22:13:21 GMT\r\n"
    assert len(calls) == 2


def test_header_lines_are_checked_once_then_cached() -> None:
    pair = (b"X-Cached-Test", b"some value")
    _writer.CHECKED_LINES.pop(pair, None)
    lines: list[bytes] = []
    assert render_headers([pair], lines) is None
    assert lines == [b"X-Cached-Test: some value\r\n"]
    assert _writer.CHECKED_LINES[pair] == (lines[0], _writer.PLAIN)
    again: list[bytes] = []
    render_headers([pair], again)
    assert again[0] is lines[0]


def test_header_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_writer, "CHECKED_LINES", {})
    for i in range(_writer._CHECKED_LINES_MAX + 100):
        render_headers([(b"x-n", b"%d" % i)], [])
    render_headers([(b"x-long", b"v" * 1000)], [])
    render_headers([(b"content-length", b"5")], [])
    assert len(_writer.CHECKED_LINES) == _writer._CHECKED_LINES_MAX
    assert (b"content-length", b"5") not in _writer.CHECKED_LINES


def test_framing_headers_are_reported() -> None:
    lines: list[bytes] = []
    facts = render_headers(
        [
            (b"Content-Length", b"12"),
            (b"connection", b"Keep-Alive, Upgrade"),
            (b"Connection", b"close"),
            (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
            (b"HOST", b"h"),
            (b"expect", b"100-Continue"),
            (b"transfer-encoding", b"chunked"),
        ],
        lines,
    )
    assert facts is not None
    assert facts.content_length == 12 and facts.chunked and facts.close and facts.keep_alive
    assert facts.upgrade and facts.has_date and facts.has_host and facts.expect_continue
    assert not any(line.lower().startswith(b"transfer-encoding") for line in lines)
    assert len(lines) == 6


def test_repeated_equal_content_length_is_written_once() -> None:
    lines: list[bytes] = []
    facts = render_headers([(b"content-length", b"3"), (b"content-length", b"3")], lines)
    assert facts is not None and facts.content_length == 3
    assert lines == [b"content-length: 3\r\n"]


def test_header_values_may_hold_tabs_and_obs_text() -> None:
    lines: list[bytes] = []
    render_headers([(b"x", b"a\tb \xe9")], lines)
    assert lines == [b"x: a\tb \xe9\r\n"]


def test_request_line() -> None:
    assert request_line(b"OPTIONS", b"*") == b"OPTIONS * HTTP/1.1\r\n"
    assert request_line(b"GET", b"http://a/b?c") == b"GET http://a/b?c HTTP/1.1\r\n"
    for method, target in [(b"G T", b"/"), (b"GET", b""), (b"GET", b"/\x00"), (b"GET", b"/ x")]:
        with pytest.raises(LocalProtocolError):
            request_line(method, target)


def test_body_framings() -> None:
    chunked = BodyFramer(CHUNKED)
    assert chunked.data(b"abc") == b"3\r\nabc\r\n"
    assert chunked.data(b"") == b""
    assert chunked.end([(b"t", b"1")]) == b"0\r\nt: 1\r\n\r\n"
    with pytest.raises(LocalProtocolError):
        BodyFramer(CHUNKED).end([(b"content-length", b"1")])
    length = BodyFramer(LENGTH, 3)
    assert length.data(b"ab") == b"ab"
    with pytest.raises(LocalProtocolError):
        length.data(b"cd")
    with pytest.raises(LocalProtocolError):
        BodyFramer(LENGTH, 3).end()
    with pytest.raises(LocalProtocolError):
        BodyFramer(LENGTH, 0).end([(b"t", b"1")])
    assert BodyFramer(UNTIL_CLOSE).data(b"raw") == b"raw"
    assert BodyFramer(STRIPPED).data(b"dropped") == b""
    assert BodyFramer(NO_BODY).data(b"") == b""
    with pytest.raises(LocalProtocolError):
        BodyFramer(NO_BODY).data(b"x")
