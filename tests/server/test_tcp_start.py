"""TCPServer: `start()` in the background, an existing listening socket (`sock=`), `.port`."""

from __future__ import annotations

import errno
import logging
import socket as std
from typing import Any

import pytest

import unknot
import unknot.socket as us

pytestmark = pytest.mark.timeout(30)


def upper(conn: us.socket, addr: Any) -> None:
    conn.sendall(conn.recv(100).upper())


def ask(address: Any, data: bytes = b"hi") -> bytes:
    with us.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        return sock.recv(100)


def refused(address: Any) -> bool:
    try:
        us.create_connection(address, timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.unknot
def test_port_is_the_bound_port() -> None:
    with unknot.TCPServer(upper) as server:
        assert server.port == server.address[1] > 0
    with std.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with unknot.TCPServer(upper, "127.0.0.1", free) as server:
        assert server.port == free


@pytest.mark.unknot
def test_port_of_an_ipv6_server() -> None:
    if not std.has_ipv6:
        pytest.skip("no IPv6")
    with unknot.TCPServer(upper, "::1", 0) as server:
        assert len(server.address) == 4 and server.port == server.address[1] > 0
        server.start()
        assert ask(("::1", server.port)) == b"HI"


@pytest.mark.unknot
def test_start_returns_at_once_and_serves_in_a_fiber_of_its_own() -> None:
    caller = unknot.current()
    handlers: list[Any] = []

    def handler(conn: us.socket, addr: Any) -> None:
        handlers.append(unknot.current())
        upper(conn, addr)

    with unknot.TCPServer(handler) as server:
        server.start()  # (no switch yet: start never blocks)
        replies = [unknot.spawn(ask, server.address, b"x%d" % i) for i in range(3)]
        assert sorted(f.join(timeout=5) for f in replies) == [b"X0", b"X1", b"X2"]
        assert len(set(handlers)) == 3 and caller not in handlers
    assert refused(server.address)  # leaving the block stopped it


@pytest.mark.unknot
def test_stop_ends_the_background_fiber_and_waits_for_handlers() -> None:
    done: list[str] = []

    def slow(conn: us.socket, addr: Any) -> None:
        conn.recv(10)
        unknot.sleep(0.05)
        conn.sendall(b"done")
        done.append("handler")

    server = unknot.TCPServer(slow)
    server.start()
    client = unknot.spawn(ask, server.address)
    while server.connections == 0:
        unknot.sleep(0.005)
    server.stop(grace=5)
    assert done == ["handler"] and server.connections == 0
    assert client.join(timeout=5) == b"done"
    assert refused(server.address)


@pytest.mark.unknot
def test_background_fiber_is_not_cancelled_by_the_callers_scope() -> None:
    with unknot.TCPServer(upper) as server:
        with unknot.move_on_after(0.01):
            server.start()
            unknot.sleep(1)
        unknot.sleep(0.02)  # the caller's scope has been cancelled and left
        assert ask(server.address) == b"HI"


@pytest.mark.unknot
def test_start_twice_or_after_stop_or_while_serving_is_refused() -> None:
    server = unknot.TCPServer(upper)
    server.start()
    with pytest.raises(RuntimeError, match="already serving"):
        server.start()
    with pytest.raises(RuntimeError, match="already running"):
        server.serve_forever()
    server.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        server.start()


@pytest.mark.unknot
def test_stop_right_after_start_before_the_fiber_ran() -> None:
    server = unknot.TCPServer(upper)
    server.start()
    with unknot.fail_after(2):
        server.stop()
    assert refused(server.address)


def test_a_started_server_left_running_is_cancelled_when_run_ends() -> None:
    events: list[str] = []
    address: list[Any] = []

    def handler(conn: us.socket, addr: Any) -> None:
        try:
            conn.recv(10)  # the client never sends
        finally:
            events.append("handler unwound")

    def main() -> None:
        server = unknot.TCPServer(handler)
        server.start()
        address.append(server.address)
        client = us.create_connection(server.address, timeout=5)
        while server.connections == 0:
            unknot.sleep(0.005)
        events.append("main returns")
        client.close()  # (the handler is cancelled first anyway: it is blocked in recv)

    unknot.run(main)
    assert events == ["main returns", "handler unwound"]
    with std.socket() as probe:  # the listening socket was closed
        assert probe.connect_ex(address[0]) == errno.ECONNREFUSED


def test_an_error_ending_the_background_loop_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(us.socket):
        def accept(self) -> tuple[us.socket, Any]:
            raise OSError(errno.EINVAL, "broken listener")

    def main() -> None:
        listener = Failing(us.AF_INET, us.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = unknot.TCPServer(upper, sock=listener)
        server.start()
        unknot.sleep(0.01)
        with pytest.raises(RuntimeError, match="stopped"):
            server.start()  # (it has ended: the error stopped it)
        server.stop()
        assert listener.fileno() == -1

    with caplog.at_level(logging.ERROR, logger="unknot.server"):
        unknot.run(main)
    errors = [r for r in caplog.records if "stopped serving after an error" in r.getMessage()]
    assert len(errors) == 1 and "broken listener" in str(errors[0].exc_info)


# -- sock=: an existing listening socket ---------------------------------------------------------


@pytest.mark.unknot
def test_serves_on_a_stdlib_listening_socket_and_takes_it_over() -> None:
    listener = std.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = listener.getsockname()
    with unknot.TCPServer(upper, sock=listener) as server:
        assert listener.fileno() == -1  # detached: the server owns the descriptor now
        assert server.address == address and server.port == address[1]
        server.start()
        with unknot.fail_after(5):
            assert ask(address, b"abc") == b"ABC"
    assert refused(address)


@pytest.mark.unknot
def test_serves_on_an_unknot_listening_socket() -> None:
    listener = us.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    with unknot.TCPServer(upper, sock=listener) as server:
        server.start()
        assert ask(server.address) == b"HI"
    assert listener.fileno() == -1  # closed by stop


@pytest.mark.unknot
def test_serve_tcp_with_sock() -> None:
    listener = std.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = listener.getsockname()
    with unknot.TaskGroup() as tg:
        tg.spawn(unknot.serve_tcp, upper, sock=listener)
        unknot.sleep(0)
        assert ask(address, b"ok") == b"OK"
        tg.cancel()
    assert refused(address)


@pytest.mark.unknot
def test_non_listening_socket_is_refused_and_left_alone() -> None:
    with std.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match=r"listening socket: call sock.listen\(\) first"):
            unknot.TCPServer(upper, sock=bound)
        assert bound.fileno() != -1  # still the caller's, still open
    with us.socket() as fresh:
        with pytest.raises(ValueError, match="listening socket"):
            unknot.TCPServer(upper, sock=fresh)


@pytest.mark.unknot
def test_wrong_kinds_of_sock_are_refused() -> None:
    with std.socket(std.AF_INET, std.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            unknot.TCPServer(upper, sock=udp)
    closed = std.socket()
    closed.close()
    with pytest.raises(ValueError, match="closed socket"):
        unknot.TCPServer(upper, sock=closed)
    with pytest.raises(TypeError, match="needs a socket.socket"):
        unknot.TCPServer(upper, sock=("127.0.0.1", 0))
    with std.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(ValueError, match="sock or port"):
            unknot.TCPServer(upper, port=listener.getsockname()[1], sock=listener)
