"""Server edges left from the last review: empty lines on an idle keep-alive connection are
ignored (RFC 9112, 2.2), not timed as a head; a file body opened in text mode is refused and
closed; ``stop`` after a streamed answer's head said keep-alive answers a request that has
already come and otherwise closes the connection cleanly (a FIN, not a reset: RFC 9112, 9.6)."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import trustme
from server_helpers import (
    ServerThread,
    closed_by_server,
    connect,
    get,
    raw_exchange,
    read_head,
    read_response,
    wait_until,
)

import unknot
from unknot.http import HTTPServer, Limits, Request, Response, Timeouts

pytestmark = pytest.mark.timeout(30)


def ok(request: Request) -> Any:
    return 200, None, request.path


def server_of(srv: ServerThread) -> HTTPServer:
    server = srv.server
    assert server is not None
    return server


def clean_eof(sock: socket.socket, f: BinaryIO, timeout: float = 5.0) -> None:
    """The server closes the connection with a FIN: EOF, no more bytes, and no reset
    (`closed_by_server` takes a reset for a close too)."""
    sock.settimeout(timeout)
    assert f.read1(1) == b""  # type: ignore[attr-defined]  # (ConnectionResetError fails)


@contextlib.contextmanager
def answered_once(**server_kwargs: Any) -> Iterator[tuple[ServerThread, socket.socket, BinaryIO]]:
    """A server of `ok` (with ``server_kwargs``) and a keep-alive connection to it that has had
    one answer (to ``GET /a``): the server, the socket and its reading file."""
    with ServerThread(ok, **server_kwargs) as srv:
        with connect(srv.port) as sock:
            f = sock.makefile("rb")
            sock.sendall(get("/a"))
            assert read_response(f).body == b"/a"
            yield srv, sock, f
            f.close()


# -- 1. empty lines before a request ---------------------------------------------------------


def test_an_empty_line_after_an_answer_gets_the_idle_timeout_not_a_408() -> None:
    # An old client sends a CRLF after a POST body; then nothing. The connection is idle: it
    # is closed without a word at the keep-alive timeout, where it used to be timed as a head
    # and answered 408 (which the client would take as the answer to its next request).
    timeouts = Timeouts(head=0.2, keep_alive=0.2)
    with answered_once(timeouts=timeouts) as (_, sock, f):
        sock.sendall(b"\r\n")
        assert closed_by_server(sock, f, 5)  # (fails on any byte: a 408)


def test_empty_lines_do_not_prolong_the_idle_wait() -> None:
    # Each empty line is ignored: none of them starts a head timer, and none restarts the
    # keep-alive one, so that a client sending CRLFs cannot hold the connection for ever.
    timeouts = Timeouts(head=30.0, keep_alive=0.3)
    with answered_once(timeouts=timeouts) as (_, sock, f):
        sock.settimeout(0.05)
        closed = False
        for _ in range(200):  # bounded: 10 s, against a keep-alive timeout of 0.3 s
            try:
                sock.sendall(b"\r\n")
                data = sock.recv(1)  # (f holds no byte: the server sent nothing more)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True  # (a CRLF crossed the close)
                break
            assert data == b"", f"unexpected bytes: {data!r}"
            closed = True
            break
        assert closed, "the empty lines kept the connection open"


def test_empty_lines_leave_the_connection_idle_for_stop() -> None:
    # stop() closes idle connections at once: one that sent empty lines only is one of them
    # (it used to wait in a head for the grace).
    timeouts = Timeouts(head=30.0, keep_alive=30.0)
    with answered_once(grace=20.0, timeouts=timeouts) as (srv, sock, f):
        sock.sendall(b"\r\n\r\n")
        server = server_of(srv)

        # The empty lines have been received (the reader counted them), and the connection
        # waits as an idle one again.
        def idle_after_empty_lines() -> bool:
            (conn,) = server._connections.values()
            return conn.proto._reader._head_exact > 0 and conn.idle

        wait_until(idle_after_empty_lines)
        srv._stop.set()
        assert closed_by_server(sock, f, 5)


def test_requests_after_empty_lines_are_answered() -> None:
    with ServerThread(ok) as srv:
        # before the first request, and between pipelined requests
        responses, closed = raw_exchange(
            srv.port,
            b"\r\n\r\n" + get("/a") + b"\r\n" + get("/b") + b"\r\n\r\n" + get("/c"),
            count=3,
        )
        assert [r.body for r in responses] == [b"/a", b"/b", b"/c"] and not closed
        # in a read of their own, between requests
        with connect(srv.port) as sock:
            f = sock.makefile("rb")
            for path in ("/d", "/e"):
                sock.sendall(get(path))
                assert read_response(f).body == path.encode()
                sock.sendall(b"\r\n")
            sock.sendall(get("/f"))
            assert read_response(f).body == b"/f"
            f.close()


def test_endless_empty_lines_are_cut_off_as_a_head_too_large() -> None:
    limits = Limits(max_target_size=1024, max_header_size=1024)
    with answered_once(limits=limits) as (_, sock, f):
        try:
            sock.sendall(b"\r\n" * 2048)  # 4 KiB, over 1 KiB + 1 KiB
        except OSError:
            pass  # (the server may have answered and closed already)
        refused = read_response(f)
        assert refused.status == 431 and refused.closes
        assert closed_by_server(sock, f, 5)


# -- 2. a file body opened in text mode --------------------------------------------------------


@pytest.mark.parametrize("form", ["triple", "response", "stringio"])
def test_a_text_mode_file_body_is_refused_and_closed(
    form: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data.txt"
    path.write_text("text\n")
    kept: list[Any] = []

    def handler(request: Request) -> Any:
        if request.path == "/ok":
            return 200, None, b"ok"
        # (kept here: nothing closes it by reference counting)
        body = io.StringIO("text\n") if form == "stringio" else open(path)  # noqa: SIM115
        kept.append(body)
        return Response(200, None, body) if form == "response" else (200, None, body)

    with caplog.at_level(logging.ERROR, logger="unknot.http"):
        with ServerThread(handler) as srv:
            (refused, after), closed = raw_exchange(srv.port, get("/text") + get("/ok"), count=2)
    assert refused.status == 500 and not refused.closes
    assert after.body == b"ok" and not closed  # the connection goes on
    assert len(kept) == 1 and kept[0].closed
    assert any("binary mode" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


# -- 3. stop() after a streamed answer's head said keep-alive --------------------------------


class Stream:
    """A handler whose ``/stream`` answer yields ``first``, then waits until `release` (at
    most 5 s), then yields ``last``; other paths answer their path, ``/slow`` once `release_slow`
    is set (at most 5 s)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.slow_started = threading.Event()
        self.release_slow = threading.Event()

    def __call__(self, request: Request) -> Any:
        if request.path == "/stream":
            return 200, None, self.rows()
        if request.path == "/slow":
            self.slow_started.set()
            for _ in range(500):
                if self.release_slow.is_set():
                    break
                unknot.sleep(0.01)
        return 200, None, request.path

    def rows(self) -> Iterator[bytes]:
        yield b"first"
        for _ in range(500):
            if self.release.is_set():
                break
            unknot.sleep(0.01)
        yield b"last"


def start_stream(sock: socket.socket, f: BinaryIO) -> None:
    """Ask for ``/stream`` and read its head (keep-alive) and first chunk."""
    sock.sendall(get("/stream"))
    head = read_head(f)
    assert head.header("transfer-encoding") == "chunked" and not head.closes
    assert f.readline() == b"5\r\n" and f.readline() == b"first\r\n"


def end_stream(f: BinaryIO) -> None:
    """Read the rest of ``/stream``: ``last`` and the end of the chunked body."""
    assert f.readline() == b"4\r\n" and f.readline() == b"last\r\n"
    assert f.readline() == b"0\r\n" and f.readline() == b"\r\n"


def stopping(srv: ServerThread) -> None:
    """Have the server thread call ``stop()`` (grace 5 s); return once it has begun."""
    srv._stop.set()
    server = server_of(srv)
    wait_until(lambda: server._settings.closing)


@contextlib.contextmanager
def stream_at_stop(
    srv: ServerThread, client_tls: ssl.SSLContext | None = None
) -> Iterator[tuple[socket.socket, BinaryIO]]:
    """A connection to ``srv`` (over TLS with ``client_tls``) whose ``/stream`` has begun
    (`start_stream`) when the server's ``stop()`` begins (`stopping`): the socket and its
    reading file."""
    raw = connect(srv.port)
    sock = client_tls.wrap_socket(raw, server_hostname="127.0.0.1") if client_tls else raw
    with sock:
        f = sock.makefile("rb")
        start_stream(sock, f)
        stopping(srv)
        yield sock, f
        f.close()


def test_a_request_already_come_after_a_keep_alive_stream_is_answered_at_stop() -> None:
    # The stream's head said keep-alive before stop(): the client was right to send another
    # request, which is in the server's buffer when the stream ends. It is answered, saying
    # close, then the connection ends with a FIN. (It used to be closed with the request
    # unread: a reset, and the request lost.)
    handler = Stream()
    with ServerThread(handler, grace=5.0) as srv, stream_at_stop(srv) as (sock, f):
        sock.sendall(get("/second"))
        handler.release.set()
        end_stream(f)
        second = read_response(f)
        assert second.body == b"/second" and second.closes
        clean_eof(sock, f)


def test_a_request_pipelined_behind_the_one_answered_at_stop_gets_no_reset() -> None:
    # The request answered at stop says close; the client had pipelined a third behind it,
    # which comes while the second is answered. The server does not close with it unread (a
    # reset, which may wipe out the answer before it): it shuts its side down and drops what
    # comes until the client closes.
    handler = Stream()
    with ServerThread(handler, grace=5.0) as srv, stream_at_stop(srv) as (sock, f):
        sock.sendall(get("/slow"))
        handler.release.set()
        end_stream(f)
        assert handler.slow_started.wait(5)
        sock.sendall(get("/third"))
        handler.release_slow.set()
        second = read_response(f)
        assert second.body == b"/slow" and second.closes
        clean_eof(sock, f)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_keep_alive_stream_ended_at_stop_closes_cleanly(
    scheme: str, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    # Nothing came after the stream: the connection ends with a FIN after its last chunk, and
    # the server stops as soon as the client has closed its side.
    handler = Stream()
    kwargs: dict[str, Any] = {"ssl": tls[0]} if scheme == "https" else {}
    with ServerThread(handler, grace=5.0, **kwargs) as srv:
        with stream_at_stop(srv, tls[1] if kwargs else None) as (sock, f):
            handler.release.set()
            end_stream(f)
            clean_eof(sock, f)
        server = server_of(srv)
        wait_until(lambda: server.connections == 0)
