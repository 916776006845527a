"""Review of the empty-lines change (RFC 9112, 2.2): empty lines split across reads (a CR in
one, its LF in the next), bare LFs, and a slow request after them. These held on review; they
guard what the idle wait and the head timer take for the start of a request."""

from __future__ import annotations

import socket
import time
from typing import Any, BinaryIO

import pytest
from server_helpers import ServerThread, connect, get, read_response, wait_until

from unknot.http import HTTPServer, Request, Timeouts

pytestmark = pytest.mark.timeout(30)


def ok(request: Request) -> Any:
    return 200, None, request.path


def counted(srv: ServerThread) -> int:
    """The bytes the connection's reader has counted outside requests (its one connection)."""
    server = srv.server
    assert isinstance(server, HTTPServer)
    (conn,) = server._connections.values()
    return int(conn.proto._reader._head_exact)


def send_read(srv: ServerThread, sock: socket.socket, data: bytes) -> None:
    """Send ``data`` (empty lines, or part of one) and wait until the server has read it."""
    before = counted(srv)
    sock.sendall(data)
    wait_until(lambda: counted(srv) >= before + len(data))


def first_answer(srv: ServerThread) -> tuple[socket.socket, BinaryIO]:
    sock = connect(srv.port)
    f = sock.makefile("rb")
    sock.sendall(get("/a"))
    assert read_response(f).body == b"/a"
    return sock, f


def test_a_cr_and_its_lf_in_two_reads_and_bare_lfs_are_ignored() -> None:
    with ServerThread(ok) as srv:
        sock, f = first_answer(srv)
        with sock:
            send_read(srv, sock, b"\r")  # an empty line cut between two reads
            send_read(srv, sock, b"\n")
            send_read(srv, sock, b"\n\n")  # bare LFs (RFC 9112, 2.2: a recipient may)
            sock.sendall(get("/b"))
            second = read_response(f)
            assert second.status == 200 and second.body == b"/b" and not second.closes
            f.close()


def test_the_head_timer_starts_with_the_request_not_the_empty_lines_before_it() -> None:
    # The empty lines came more than a head timeout before the request: the request is
    # answered (a head timer started by them would have answered 408).
    with ServerThread(ok, timeouts=Timeouts(head=0.2, keep_alive=30.0)) as srv:
        sock, f = first_answer(srv)
        with sock:
            send_read(srv, sock, b"\r\n\r")
            time.sleep(0.5)  # (longer than the head timeout; the keep-alive one is 30 s)
            sock.sendall(b"\n" + get("/b"))
            second = read_response(f)
            assert second.status == 200 and second.body == b"/b"
            f.close()
