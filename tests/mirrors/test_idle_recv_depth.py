"""An idle connection costs memory for every frame between its fiber's entry and the place it
parks (docs/internals.md, "Memory per idle connection"): a fiber idle in ``recv`` after an
exchange waits in `Hub.wait_readable` called straight from ``recv``, with nothing above it (no
``_io``, ``_wait``, ``park`` or ``_switch_out`` frames); in its very first recv, ``recv`` is there
twice (the first call makes the fd's record and calls again). In the compiled build neither
makes a Python frame: the hub and ``recv`` are compiled, and ``socket.recv`` is the compiled
function itself (through `unknot._nbio.method`), so the handler's frame is the top one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

import unknot
from unknot import socket

T = TypeVar("T")


def _stack(f: unknot.Fiber) -> list[str]:
    frame: Any = f.gr_frame
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


@pytest.mark.parametrize("exchanges", [0, 1, 3])
def test_an_idle_recv_waits_two_frames_deep(exchanges: int) -> None:
    stacks = []

    def main() -> None:
        a, b = socket.socketpair()
        with a, b:

            def echo() -> None:
                while data := a.recv(4096):
                    a.sendall(data)

            f = unknot.spawn(echo)
            for _ in range(exchanges):
                b.sendall(b"ping")
                assert b.recv(4096) == b"ping"
            unknot.sleep(0.01)
            stacks.append(_stack(f))
            b.close()
            f.join()

    unknot.run(main)
    if unknot.compiled:
        top = []
    else:
        top = ["wait_readable", "recv", "recv"] if exchanges == 0 else ["wait_readable", "recv"]
    assert stacks[0][: len(top) + 1] == [*top, "echo"], stacks


def _idle_tcp_handler(look: Callable[[unknot.Fiber], T], payload: bytes, exchanges: int) -> T:
    """What ``look`` finds on the fiber of a TCPServer's echo handler left idle in ``recv``
    after ``exchanges`` round trips of ``payload``."""
    found: list[T] = []

    def main() -> None:
        def handler(conn: socket.socket, addr: Any) -> None:
            while data := conn.recv(65536):
                conn.sendall(data)

        server = unknot.TCPServer(handler, "127.0.0.1", 0)
        unknot.spawn(server.serve_forever)
        with socket.create_connection(server.address) as c:
            for _ in range(exchanges):
                c.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    got += c.recv(4096)
                assert got == payload
            unknot.sleep(0.01)
            (f,) = server._handlers
            found.append(look(f))
        server.stop()

    unknot.run(main)
    return found[0]


def test_an_idle_tcp_server_handler_has_no_wrapper_frame() -> None:
    # A TCPServer without TLS spawns the handler itself: under the handler's frame there is
    # only the fiber's entry (its errors are logged and its socket closed by a done-callback:
    # tests/server/test_tcp_server.py).
    stack = _idle_tcp_handler(_stack, b"ping", 1)
    top = [] if unknot.compiled else ["wait_readable", "recv"]
    assert stack == [*top, "handler", "_fiber_main"], stack


#: Bytes of C stack greenlet keeps for a handler idle in a TCP ``recv`` (``_stack_saved``: the
#: stack between the fiber's entry and its switch, copied to the heap at every switch and kept
#: per idle connection). Measured in session 15 with gcc 12 on x86-64: pure 1,416 (3.11) and
#: 1,464 (3.13); compiled 1,976 and 2,056: mypyc's ``recv`` wrapper (72), ``recv`` (208) and
#: ``Hub.wait_readable`` (256) are C frames where the pure build has none. The bounds leave
#: about 15% for other compilers; a new frame on the idle path (the 100-300 bytes of a compiled
#: function) goes past them.
C_STACK_BOUND = {False: 1_700, True: 2_350}


def test_an_idle_tcp_handler_keeps_a_bounded_c_stack() -> None:
    saved = _idle_tcp_handler(lambda f: f._stack_saved, b"x" * 1024, 3)
    assert 0 < saved <= C_STACK_BOUND[unknot.compiled], saved


def test_an_idle_http_keep_alive_connection_keeps_one_loop_frame_and_no_last_response() -> None:
    # unknot.http's connection loop is one frame (no wrapper around it), and it lets go of the
    # handler's last result before it waits for the next request.
    from unknot import http

    found: list[Any] = []

    def main() -> None:
        def handler(request: Any) -> Any:
            return 200, {"content-type": "text/plain"}, b"hello"

        with http.HTTPServer(handler, "127.0.0.1", 0) as server:
            server.start()
            with socket.create_connection(server.address) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = b""
                while not reply.endswith(b"hello"):
                    reply += c.recv(4096)
                unknot.sleep(0.01)
                (f,) = server._connections
                frame: Any = f.gr_frame
                while frame is not None and frame.f_code.co_name != "run":
                    frame = frame.f_back
                found.append(_stack(f))
                if frame is not None:  # (the compiled build runs the loop without a frame)
                    found.append({k: frame.f_locals[k] for k in ("result", "headers", "content")})
            server.stop()

    unknot.run(main)
    if unknot.compiled:
        assert found[0][:1] == ["_serve_connection"], found
    else:
        assert found[0] == ["wait_readable", "recv", "run", "_serve_connection", "_fiber_main"]
        assert found[1] == {"result": None, "headers": None, "content": None}
