"""A closed HTTP connection leaves no reference cycle behind: everything it held dies by
reference counting, so that a server closing thousands of connections a second (slowloris,
fuzz/slowloris.py) does not pile garbage up for long full collections. The cycles this guards
against: the parser and the reader holding each other (through the reader's callbacks), and a
kept protocol error whose traceback holds frames that hold the connection."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest
from server_helpers import ServerThread, connect, read_response

import unknot

pytestmark = pytest.mark.timeout(30)


def handler(request: Any) -> Any:
    body = request.body() if request.method == "POST" else b""
    return 200, [("content-type", "text/plain")], b"hello " + body


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    timeouts = unknot.http.Timeouts(head=0.3, keep_alive=0.3)
    with ServerThread(handler, timeouts=timeouts) as server:
        yield server


CONNECTION_MODULES = ("unknot.http", "unknot.socket", "unknot.ssl", "unknot._tcp", "httptools")
CONNECTION_FILES = ("/unknot/http/", "/unknot/socket.py", "/unknot/ssl.py", "/unknot/_tcp.py")


def cyclic_garbage_of_unknot() -> list[str]:
    """What the cyclic collector finds now that a connection is made of: the objects of the
    HTTP, socket, TLS and TCP server modules and of httptools, and frames running their code.
    (Not the core's: a finished `Fiber` refers to itself, its own root cancel scope, in
    unknot._core; and earlier tests in the same process may leave hubs and loops behind.)"""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    found = []
    obj = None
    for obj in garbage:
        kind = type(obj)
        module = getattr(kind, "__module__", "") or ""
        if module.startswith(CONNECTION_MODULES):
            found.append(f"{module}.{kind.__qualname__}")
        elif kind.__name__ == "frame" and any(
            part in obj.f_code.co_filename for part in CONNECTION_FILES
        ):
            found.append(f"frame of {obj.f_code.co_name} ({obj.f_code.co_filename})")
    del garbage, obj
    gc.collect()  # (what DEBUG_SAVEALL kept is cyclic garbage again: free it for good)
    return found


def wait_closed(srv: ServerThread) -> None:
    deadline = time.monotonic() + 5
    while srv.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.connections == 0


def test_closed_connections_leave_no_cycles(srv: ServerThread) -> None:
    gc.collect()
    # keep-alive: requests with and without a body, then the client closes
    for _ in range(3):
        with connect(srv.port) as sock, sock.makefile("rb") as f:
            for i in range(10):
                if i % 2:
                    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
                else:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(f).status == 200
    # the server closes: Connection: close
    with connect(srv.port) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_response(f).status == 200
    # a head trickled too slowly: cut with 408
    with connect(srv.port) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert read_response(f).status == 408
    # the client closes in the middle of a head (the reader keeps an error)
    with connect(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        srv.wait_for_connections(1)
    # a malformed request: 400
    with connect(srv.port) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        assert read_response(f).status == 400
    # a connection that never says a word: 408 too
    with connect(srv.port) as sock:
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 408")
    wait_closed(srv)
    assert cyclic_garbage_of_unknot() == []


def test_the_check_sees_a_parser_cycle() -> None:
    """The check above would see the cycle it guards against (a connection not released)."""
    from unknot.http._protocol import ServerConnection

    gc.collect()
    proto = ServerConnection()
    proto.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    del proto
    found = cyclic_garbage_of_unknot()
    assert any("RequestReader" in name for name in found), found
    proto = ServerConnection()
    proto.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    proto.release()
    del proto
    assert cyclic_garbage_of_unknot() == []


def test_released_connection_refuses_data() -> None:
    from unknot.http._protocol import NEED_DATA, LocalProtocolError, ServerConnection

    proto = ServerConnection()
    proto.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    proto.release()
    proto.release()  # again: nothing happens
    assert proto.next_events() is NEED_DATA
    with pytest.raises(LocalProtocolError):
        proto.receive_data(b"GET / HTTP/1.1\r\n")
