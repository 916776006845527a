"""UDPServer and serve_udp: a handler per datagram (in its own fiber, or in the receive loop)."""

from __future__ import annotations

import logging
import socket as std
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import unknot
import unknot.socket as us

pytestmark = pytest.mark.timeout(30)


def upper(data: bytes, addr: Any) -> bytes:
    return data.upper()


@contextmanager
def client(family: int = us.AF_INET) -> Iterator[us.socket]:
    with us.socket(family, us.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        yield sock


def ask(address: Any, data: bytes) -> bytes:
    with client(std.AF_INET6 if len(address) == 4 else std.AF_INET) as c:
        c.sendto(data, address)
        reply, sender = c.recvfrom(1000)
        assert sender[:2] == address[:2]
        return reply


def port_is_free(address: Any) -> bool:
    """Whether the server's socket was closed (its address can be bound again)."""
    with std.socket(std.AF_INET, std.SOCK_DGRAM) as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


@pytest.mark.unknot
def test_a_returned_value_is_sent_back() -> None:
    with unknot.UDPServer(upper) as server:
        assert server.port == server.address[1] > 0
        server.start()
        assert ask(server.address, b"hello") == b"HELLO"
        assert ask(server.address, b"again") == b"AGAIN"
    assert port_is_free(server.address)


@pytest.mark.unknot
def test_each_datagram_is_handled_in_a_fiber_of_its_own() -> None:
    release = unknot.Event()
    fibers: list[Any] = []

    def handler(data: bytes, addr: Any) -> bytes:
        fibers.append(unknot.current())
        release.wait()
        return data

    with unknot.UDPServer(handler) as server:
        server.start()
        with client() as c:
            for i in range(3):
                c.sendto(b"%d" % i, server.address)
            with unknot.fail_after(5):
                while server.in_flight < 3:
                    unknot.sleep(0.005)
            assert len(set(fibers)) == 3  # all three waiting at once
            release.set()
            assert sorted(c.recvfrom(10)[0] for _ in range(3)) == [b"0", b"1", b"2"]


@pytest.mark.unknot
def test_loop_mode_handles_datagrams_one_after_the_other_in_the_receiving_fiber() -> None:
    seen: list[tuple[Any, bytes]] = []
    most = [0]

    def handler(data: bytes, addr: Any) -> bytes:
        most[0] = max(most[0], server.in_flight)
        seen.append((unknot.current(), data))
        unknot.sleep(0.005)  # blocking holds up the next datagram, not the hub
        return data + b"!"

    server = unknot.UDPServer(handler, mode="loop")
    with server:
        server.start()
        with client() as c:
            for i in range(4):
                c.sendto(b"%d" % i, server.address)
            replies = [c.recvfrom(10)[0] for _ in range(4)]
    assert replies == [b"0!", b"1!", b"2!", b"3!"]  # in order
    assert [d for _, d in seen] == [b"0", b"1", b"2", b"3"]
    assert len({f for f, _ in seen}) == 1 and most[0] == 1


@pytest.mark.unknot
def test_handler_replies_with_sendto_and_returns_none() -> None:
    def handler(data: bytes, addr: Any) -> None:
        for part in data.split(b","):
            server.sendto(part, addr)

    with unknot.UDPServer(handler) as server:
        server.start()
        with client() as c:
            c.sendto(b"a,b,c", server.address)
            assert [c.recvfrom(10)[0] for _ in range(3)] == [b"a", b"b", b"c"]


@pytest.mark.unknot
def test_many_handlers_sending_at_once() -> None:
    # Ten handler fibers interleave their sendto calls (each yields between sends); every
    # datagram arrives. (They take turns on the send lock, so that two fibers never wait on the
    # socket's writability at once, which an unknot socket refuses.)
    def handler(data: bytes, addr: Any) -> None:
        for i in range(20):
            server.sendto(data + b":%d" % i, addr)
            unknot.sleep(0)

    with unknot.UDPServer(handler) as server:
        server.start()
        with client() as c:
            c.setsockopt(us.SOL_SOCKET, us.SO_RCVBUF, 1 << 20)
            for n in range(10):
                c.sendto(b"%d" % n, server.address)
            got = {c.recvfrom(100)[0] for _ in range(200)}
    assert got == {b"%d:%d" % (n, i) for n in range(10) for i in range(20)}


@pytest.mark.unknot
def test_handler_errors_are_logged_and_the_server_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def handler(data: bytes, addr: Any) -> bytes:
        if data == b"bad":
            raise ValueError("bad datagram")
        return data

    with caplog.at_level(logging.ERROR, logger="unknot.server"):
        with unknot.UDPServer(handler) as server:
            server.start()
            with client() as c:
                c.sendto(b"bad", server.address)
                c.sendto(b"good", server.address)
                assert c.recvfrom(10)[0] == b"good"
    records = [r for r in caplog.records if "handler for a datagram" in r.getMessage()]
    assert len(records) == 1 and "bad datagram" in str(records[0].exc_info)


@pytest.mark.unknot
def test_max_concurrent_bounds_the_handlers_running() -> None:
    release = unknot.Event()
    most = [0]

    def handler(data: bytes, addr: Any) -> bytes:
        most[0] = max(most[0], server.in_flight)
        release.wait()
        return data

    with unknot.UDPServer(handler, max_concurrent=2) as server:
        server.start()
        with client() as c:
            for i in range(5):
                c.sendto(b"%d" % i, server.address)
            unknot.sleep(0.05)
            assert server.in_flight == 2  # the others wait in the socket's buffer
            release.set()
            assert sorted(c.recvfrom(10)[0] for _ in range(5)) == [b"%d" % i for i in range(5)]
    assert most[0] == 2


@pytest.mark.unknot
def test_long_datagrams_are_truncated_to_max_datagram() -> None:
    with unknot.UDPServer(lambda data, addr: data, max_datagram=4) as server:
        server.start()
        assert ask(server.address, b"abcdefgh") == b"abcd"


@pytest.mark.unknot
def test_ipv6() -> None:
    if not std.has_ipv6:
        pytest.skip("no IPv6")
    with unknot.UDPServer(upper, "::1") as server:
        assert len(server.address) == 4
        server.start()
        assert ask(server.address, b"six") == b"SIX"


# -- stopping -------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_stop_waits_for_handlers_within_grace_and_their_replies_go_out() -> None:
    def slow(data: bytes, addr: Any) -> bytes:
        unknot.sleep(0.05)
        return b"late " + data

    server = unknot.UDPServer(slow)
    server.start()
    with client() as c:
        c.sendto(b"reply", server.address)
        with unknot.fail_after(5):
            while not server.in_flight:
                unknot.sleep(0.005)
        server.stop(grace=5)
        assert server.in_flight == 0
        assert c.recvfrom(20)[0] == b"late reply"
    assert port_is_free(server.address)


@pytest.mark.unknot
@pytest.mark.parametrize("mode", ["fiber-per-datagram", "loop"])
def test_stop_cancels_handlers_after_grace(mode: Any) -> None:
    cancelled: list[bool] = []

    def stuck(data: bytes, addr: Any) -> bytes:
        try:
            unknot.sleep(60)
        except unknot.Cancelled:
            cancelled.append(True)
            raise
        return data

    server = unknot.UDPServer(stuck, mode=mode)
    server.start()
    with client() as c:
        c.sendto(b"x", server.address)
        with unknot.fail_after(5):
            while not server.in_flight:
                unknot.sleep(0.005)
    with unknot.fail_after(5):
        server.stop(grace=0.02)
    assert cancelled == [True] and server.in_flight == 0
    assert port_is_free(server.address)


@pytest.mark.unknot
def test_stop_ends_serve_forever_waiting_for_a_datagram() -> None:
    server = unknot.UDPServer(upper)
    serving = unknot.spawn(server.serve_forever)
    unknot.sleep(0.01)
    with unknot.fail_after(2):
        server.stop()
    assert serving.join(timeout=1) is None  # returned normally
    assert port_is_free(server.address)


@pytest.mark.unknot
def test_stop_from_a_handler() -> None:
    def handler(data: bytes, addr: Any) -> bytes:
        server.stop()  # returns at once; the stop goes on in another fiber
        return b"stopping"

    server = unknot.UDPServer(handler)
    serving = unknot.spawn(server.serve_forever)
    assert ask(server.address, b"stop") == b"stopping"
    serving.join(timeout=5)
    with unknot.fail_after(5):
        while not port_is_free(server.address):
            unknot.sleep(0.01)


@pytest.mark.unknot
def test_cancelling_serve_forever_cancels_handlers_and_closes_the_socket() -> None:
    unwound: list[str] = []

    def stuck(data: bytes, addr: Any) -> None:
        try:
            unknot.sleep(60)
        finally:
            unwound.append("handler")

    server = unknot.UDPServer(stuck)
    with unknot.TaskGroup() as tg:
        tg.spawn(server.serve_forever)
        with client() as c:
            c.sendto(b"x", server.address)
            with unknot.fail_after(5):
                while not server.in_flight:
                    unknot.sleep(0.005)
        tg.cancel()
    assert unwound == ["handler"]
    assert port_is_free(server.address)


@pytest.mark.unknot
def test_serve_udp_in_a_task_group() -> None:
    with std.socket(std.AF_INET, std.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        address = s.getsockname()
    with unknot.TaskGroup() as tg:
        tg.spawn(unknot.serve_udp, upper, "127.0.0.1", address[1], mode="loop")
        unknot.sleep(0)
        assert ask(address, b"udp") == b"UDP"
        tg.cancel()
    assert port_is_free(address)


def test_a_started_server_left_running_is_cancelled_when_run_ends() -> None:
    events: list[str] = []
    address: list[Any] = []

    def stuck(data: bytes, addr: Any) -> None:
        try:
            unknot.sleep(60)
        finally:
            events.append("handler unwound")

    def main() -> None:
        server = unknot.UDPServer(stuck)
        server.start()
        address.append(server.address)
        with client() as c:
            c.sendto(b"x", server.address)
            while not server.in_flight:
                unknot.sleep(0.005)
        events.append("main returns")

    unknot.run(main)
    assert events == ["main returns", "handler unwound"]
    assert port_is_free(address[0])


@pytest.mark.unknot
def test_start_twice_or_after_stop_is_refused() -> None:
    server = unknot.UDPServer(upper)
    server.start()
    with pytest.raises(RuntimeError, match="already serving"):
        server.start()
    with pytest.raises(RuntimeError, match="already running"):
        server.serve_forever()
    server.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        server.start()


# -- sock= and arguments --------------------------------------------------------------------------


@pytest.mark.unknot
def test_serves_on_an_existing_bound_socket_and_takes_it_over() -> None:
    sock = std.socket(std.AF_INET, std.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    with unknot.UDPServer(upper, sock=sock) as server:
        assert sock.fileno() == -1 and server.address == address
        server.start()
        assert ask(address, b"adopted") == b"ADOPTED"
    assert port_is_free(address)
    mine = us.socket(us.AF_INET, us.SOCK_DGRAM)
    mine.bind(("127.0.0.1", 0))
    with unknot.UDPServer(upper, sock=mine, mode="loop") as server:
        server.start()
        assert ask(server.address, b"unknot") == b"UNKNOT"
    assert mine.fileno() == -1


@pytest.mark.unknot
def test_bad_sockets_and_arguments_are_refused() -> None:
    with std.socket(std.AF_INET, std.SOCK_DGRAM) as unbound:
        with pytest.raises(ValueError, match="bound socket"):
            unknot.UDPServer(upper, sock=unbound)
        assert unbound.fileno() != -1
    with std.socket() as tcp:
        with pytest.raises(ValueError, match="SOCK_DGRAM"):
            unknot.UDPServer(upper, sock=tcp)
    with std.socket(std.AF_INET, std.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="sock or port"):
            unknot.UDPServer(upper, port=bound.getsockname()[1], sock=bound)
    for kwargs, words in [
        ({"mode": "threads"}, "mode must be one of"),
        ({"mode": "loop", "max_concurrent": 4}, "max_concurrent is for"),
        ({"max_concurrent": 0}, "at least 1"),
        ({"max_datagram": 0}, "at least 1"),
    ]:
        with pytest.raises(ValueError, match=words):
            unknot.UDPServer(upper, **kwargs)
