"""A UDP handler's SystemExit/KeyboardInterrupt in both modes, non-callable handlers
refused at construction, the accepted socket closed when the accept loop fails, and
TCPServer's handshake_timeout checked."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

import unknot
import unknot._tcp
import unknot.socket as us

pytestmark = pytest.mark.timeout(30)


def exits(data: bytes, addr: Any) -> bytes:
    if data == b"exit":
        raise SystemExit(3)
    if data == b"interrupt":
        raise KeyboardInterrupt
    return b"ok:" + data


def ask(c: us.socket, address: Any, data: bytes) -> bytes:
    c.sendto(data, address)
    return c.recvfrom(100)[0]


def server_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "unknot.server" and r.levelno >= logging.ERROR]


# -- UDPServer: a handler's BaseException ---------------------------------------------------


@pytest.mark.parametrize("mode", ["fiber-per-datagram", "loop"])
@pytest.mark.parametrize("raised", [b"exit", b"interrupt"])
@pytest.mark.unknot
def test_a_udp_handlers_base_exception_is_logged_and_serving_goes_on(
    mode: str, raised: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server = unknot.UDPServer(exits, mode=mode)  # type: ignore[arg-type]
    serving = unknot.spawn(server.serve_forever)
    with us.socket(us.AF_INET, us.SOCK_DGRAM) as c:
        c.settimeout(2)
        c.sendto(raised, server.address)
        assert ask(c, server.address, b"ping") == b"ok:ping"  # still serving
    try:
        server.stop(0)
        serving.join()  # ended by stop(), not by the handler's exception
    except BaseException as e:  # noqa: B036 (a SystemExit here would end the test run)
        pytest.fail(f"serve_forever ended with {e!r}")
    errors = server_errors(caplog)
    assert len(errors) == 1 and "handler for a datagram" in errors[0].getMessage()
    expected = SystemExit if raised == b"exit" else KeyboardInterrupt
    assert errors[0].exc_info and errors[0].exc_info[0] is expected


@pytest.mark.unknot
def test_a_udp_handlers_system_exit_in_the_root_fibers_loop_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = unknot.UDPServer(exits, mode="loop")
    replies: list[bytes] = []

    def client() -> None:
        with us.socket(us.AF_INET, us.SOCK_DGRAM) as c:
            c.settimeout(5)
            c.sendto(b"exit", server.address)
            replies.append(ask(c, server.address, b"ping"))
        server.stop(0)

    unknot.spawn(client)
    try:
        server.serve_forever()  # in the root fiber: returns once stopped
    except SystemExit as e:
        pytest.fail(f"serve_forever ended with {e!r}")
    assert replies == [b"ok:ping"]
    assert [r.exc_info[0] for r in server_errors(caplog) if r.exc_info] == [SystemExit]


@pytest.mark.unknot
def test_a_keyboard_interrupt_in_the_root_fibers_loop_ends_serving_as_ctrl_c_would() -> None:
    server = unknot.UDPServer(exits, mode="loop")

    def client() -> None:
        with us.socket(us.AF_INET, us.SOCK_DGRAM) as c:
            c.sendto(b"interrupt", server.address)

    unknot.spawn(client)
    with pytest.raises(KeyboardInterrupt):
        server.serve_forever()  # (Ctrl-C lands in the root fiber: it must not be swallowed)
    server.stop(0)


@pytest.mark.unknot
def test_stopping_a_udp_handler_running_in_the_loop_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def blocks(data: bytes, addr: Any) -> None:
        unknot.sleep(10)

    server = unknot.UDPServer(blocks, mode="loop")
    serving = unknot.spawn(server.serve_forever)
    with us.socket(us.AF_INET, us.SOCK_DGRAM) as c:
        c.sendto(b"x", server.address)
        with unknot.fail_after(5):
            while server.in_flight == 0:
                unknot.sleep(0.001)
    server.stop(0)  # cancels the handler
    serving.join()
    assert server_errors(caplog) == []


# -- handlers that are not callable ---------------------------------------------------------


@pytest.mark.unknot
def test_servers_refuse_a_handler_that_is_not_callable() -> None:
    for make in (unknot.TCPServer, unknot.UDPServer, unknot.serve_tcp, unknot.serve_udp):
        with pytest.raises(TypeError, match="handler must be callable"):
            make("not a function")  # type: ignore[arg-type]


@pytest.mark.timeout(5)  # (accepted, it would serve for ever)
def test_serve_tcp_and_serve_udp_refuse_it_before_starting_a_hub() -> None:
    for serve in (unknot.serve_tcp, unknot.serve_udp):
        with pytest.raises(TypeError, match="handler must be callable"):
            serve(None)  # type: ignore[arg-type]


# -- TCPServer: the accepted socket when the accept loop fails ------------------------------


@pytest.mark.unknot
def test_the_accepted_socket_is_closed_if_the_accept_loop_fails_before_the_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_spawn(*args: Any) -> Any:
        raise RuntimeError("spawn failed")

    monkeypatch.setattr(unknot._tcp, "spawn_named", broken_spawn)
    server = unknot.TCPServer(lambda conn, addr: None, max_connections=1)
    serving = unknot.spawn(server.serve_forever)
    unknot.sleep(0)
    with us.create_connection(server.address, timeout=2) as client:
        try:
            assert client.recv(10) == b""  # closed by the server, not left hanging
        except ConnectionResetError:
            pass
    with pytest.raises(RuntimeError, match="spawn failed"):
        serving.join()
    assert server.connections == 0


# -- TCPServer: handshake_timeout ------------------------------------------------------------


@pytest.mark.unknot
@pytest.mark.parametrize("value", [-1, -0.5, math.nan])
def test_handshake_timeout_negative_or_nan_is_a_value_error(value: float) -> None:
    with pytest.raises(ValueError, match="handshake_timeout|NaN"):
        unknot.TCPServer(lambda conn, addr: None, handshake_timeout=value)


@pytest.mark.unknot
def test_handshake_timeout_not_a_number_is_a_type_error() -> None:
    for value in (None, "5"):
        with pytest.raises(TypeError):
            unknot.TCPServer(lambda conn, addr: None, handshake_timeout=value)  # type: ignore[arg-type]


@pytest.mark.unknot
@pytest.mark.parametrize("value", [0, 2, 0.5, math.inf])
def test_handshake_timeout_zero_or_more_is_accepted(value: float) -> None:
    with unknot.TCPServer(lambda conn, addr: None, handshake_timeout=value) as server:
        assert server.handshake_timeout == value


# -- stop() from asyncio code outside fibers, and a NaN grace ------------------------------------


def _stop_from_a_loop_callback(server: Any) -> list[str]:
    """Call ``server.stop(grace=0)`` from a loop callback (not a fiber, as a signal handler added
    with ``loop.add_signal_handler`` runs); what it did."""
    import asyncio

    outcome: list[str] = []

    def callback() -> None:
        try:
            server.stop(grace=0)
            outcome.append("returned")
        except BaseException as e:  # (recorded: the test says what it was)
            outcome.append(f"{type(e).__name__}: {e}")

    asyncio.get_running_loop().call_soon(callback)
    return outcome


def test_tcp_stop_from_a_loop_callback_stops_the_server_in_a_fiber() -> None:
    """Before, it closed the listener, then failed (a CancelScope outside a fiber): the server
    half-stopped, its handlers neither waited for nor cancelled."""
    handler_ended = unknot.Event()

    def handler(conn: us.socket, addr: Any) -> None:
        try:
            conn.recv(10)  # never answered: cancelled by the stop
        finally:
            handler_ended.set()

    def main() -> list[str]:
        server = unknot.TCPServer(handler, "127.0.0.1", 0)
        server.start()
        client = us.create_connection(server.address)
        unknot.sleep(0.05)
        outcome = _stop_from_a_loop_callback(server)
        with unknot.fail_after(5):
            handler_ended.wait()
            while server._serving is not None and not server._stopped.is_set():
                unknot.sleep(0.01)
        client.close()
        return outcome

    assert unknot.run(main) == ["returned"]


def test_udp_stop_from_a_loop_callback_stops_the_server_in_a_fiber() -> None:
    def main() -> tuple[list[str], bool]:
        server = unknot.UDPServer(exits, "127.0.0.1", 0)
        server.start()
        unknot.sleep(0.05)
        outcome = _stop_from_a_loop_callback(server)
        with unknot.fail_after(5):
            while server._sock.fileno() != -1:
                unknot.sleep(0.01)
        return outcome, server._stopping

    assert unknot.run(main) == (["returned"], True)


@pytest.mark.parametrize("make", ["tcp", "udp"])
def test_stop_with_a_nan_grace_is_a_value_error(make: str) -> None:
    def main() -> None:
        if make == "tcp":
            server: Any = unknot.TCPServer(lambda conn, addr: None, "127.0.0.1", 0)
        else:
            server = unknot.UDPServer(exits, "127.0.0.1", 0)
        with pytest.raises(ValueError, match="NaN"):
            server.stop(grace=math.nan)
        with pytest.raises(TypeError):
            server.stop(grace="10")
        server.stop(grace=-1)  # (without limit: nothing runs, so at once)

    unknot.run(main)


def test_http_stop_from_a_loop_callback_lets_the_request_under_way_finish() -> None:
    from unknot import http

    def app(request: Any) -> Any:
        unknot.sleep(0.2)
        return 200, [], b"slow"

    def main() -> tuple[list[str], int]:
        server = http.HTTPServer(app, "127.0.0.1", 0)
        server.start()
        answer = unknot.spawn(lambda: http.get(f"http://127.0.0.1:{server.port}/").status_code)
        unknot.sleep(0.05)
        outcome: list[str] = []

        def callback() -> None:
            server.stop(grace=5)
            outcome.append("returned")

        import asyncio

        asyncio.get_running_loop().call_soon(callback)
        with unknot.fail_after(5):
            status = answer.join()
        with pytest.raises(ValueError, match="NaN"):
            server.stop(grace=math.nan)
        return outcome, status

    assert unknot.run(main) == (["returned"], 200)
