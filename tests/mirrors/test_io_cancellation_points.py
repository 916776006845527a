"""Socket calls that can block are cancellation points even when data is ready (trio's rule),
and a fiber whose I/O never has to wait still lets the others run (`Hub.IO_STREAK_MAX`)."""

from __future__ import annotations

import itertools
import socket as std
import time

import pytest
import trustme
from fiber_helpers import cancelled_at_once

import unknot
import unknot.socket as us
import unknot.ssl as ussl
from unknot import lowlevel


@pytest.mark.unknot
def test_recv_family_with_data_ready() -> None:
    a, b = us.socketpair()
    with a, b:
        b.sendall(b"0123456789")
        cancelled_at_once(lambda: a.recv(4))
        cancelled_at_once(lambda: a.recv_into(bytearray(4)))
        cancelled_at_once(lambda: a.recv(4, std.MSG_PEEK))  # the general path
        assert a.recv(100) == b"0123456789"  # nothing was consumed
        a.settimeout(5)  # a timed socket is blocking too
        b.sendall(b"x")
        cancelled_at_once(lambda: a.recv(4))
        a.setblocking(False)  # non-blocking calls never wait: not cancellation points
        with unknot.CancelScope() as scope:
            scope.cancel()
            assert a.recv(4) == b"x"


@pytest.mark.unknot
def test_send_family_with_room() -> None:
    a, b = us.socketpair()
    with a, b:
        cancelled_at_once(lambda: a.sendall(b"never"))
        cancelled_at_once(lambda: a.send(b"never"))
        cancelled_at_once(lambda: a.sendall(bytearray(b"never")))
        a.sendall(b"ok")
        b.settimeout(1)
        assert b.recv(100) == b"ok"


@pytest.mark.unknot
def test_datagrams_and_accept_with_something_ready() -> None:
    u1 = us.socket(std.AF_INET, std.SOCK_DGRAM)
    u2 = us.socket(std.AF_INET, std.SOCK_DGRAM)
    srv = us.create_server(("127.0.0.1", 0))
    with u1, u2, srv:
        u1.bind(("127.0.0.1", 0))
        u2.sendto(b"dgram", u1.getsockname())
        cancelled_at_once(lambda: u1.recvfrom(100))
        cancelled_at_once(lambda: u2.sendto(b"x", u1.getsockname()))
        assert u1.recvfrom(100)[0] == b"dgram"  # the datagram stayed queued
        c = std.create_connection(srv.getsockname())
        cancelled_at_once(srv.accept)
        conn, _ = srv.accept()  # the connection stayed in the backlog
        conn.close()
        c.close()


@pytest.mark.unknot
def test_tls_read_with_data_ready() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ussl.SSLContext(ussl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    client_ctx = ussl.create_default_context()
    ca.configure_trust(client_ctx)
    a, b = us.socketpair()
    done = unknot.Event()

    def server() -> None:
        s = ussl.wrap(b, server_ctx, server_side=True)
        s.sendall(b"hello over tls")
        done.wait()
        s.close()

    f = unknot.spawn(server)
    c = client_ctx.wrap_socket(a, server_hostname="localhost")
    unknot.sleep(0.05)  # the data is there, decrypted or not
    cancelled_at_once(lambda: c.recv(5))
    assert c.recv(100) == b"hello over tls"
    done.set()
    f.join()
    c.close()


def _set_streak_max(streak_max: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set `Hub.IO_STREAK_MAX` for this test, also in this thread's hub if it exists already."""
    if streak_max is None:
        return
    monkeypatch.setattr(lowlevel.Hub, "IO_STREAK_MAX", streak_max)


def _ticks_during_reads(streak_max: int | None, monkeypatch: pytest.MonkeyPatch) -> int:
    """How often another ready fiber ran while one fiber made 1,000 reads that never waited."""
    _set_streak_max(streak_max, monkeypatch)

    def main() -> int:
        a, b = us.socketpair()
        ticks = [0]

        def ticker() -> None:
            while True:
                ticks[0] += 1
                unknot.sleep(0)

        with a, b:
            waiter = unknot.spawn(a.recv, 1)  # a waits once: its hot path is set up
            unknot.sleep(0)
            b.sendall(b"!")
            waiter.join()
            b.sendall(b"x" * 1000)  # all there before the first read: no read waits
            with unknot.TaskGroup() as tg:
                tg.spawn(ticker)
                unknot.sleep(0)
                before = ticks[0]
                for _ in range(1000):
                    assert a.recv(1) == b"x"
                during = ticks[0] - before
                tg.cancel()
        return during

    return unknot.run(main)


def _lateness_while_peeking(streak_max: int | None, monkeypatch: pytest.MonkeyPatch) -> float:
    """The worst lateness (s) of a 1 ms ticker while another fiber peeks at a socket that always
    has data ready for 0.2 s (MSG_PEEK: the data stays, so no read ever waits)."""
    _set_streak_max(streak_max, monkeypatch)

    def main() -> float:
        a, b = us.socketpair()
        ticks: list[float] = []

        def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                unknot.sleep(0.001)

        with a, b:
            b.sendall(b"data")
            with unknot.TaskGroup() as tg:
                tg.spawn(ticker)
                unknot.sleep(0.005)
                t0 = time.monotonic()
                while time.monotonic() - t0 < 0.2:  # bounded
                    assert a.recv(4, std.MSG_PEEK) == b"data"
                ticks.append(time.monotonic())  # (the gap since the ticker's last tick counts)
                tg.cancel()
        # The ticker's worst lateness: its longest gap between ticks, less its 1 ms sleep.
        return max(later - earlier for earlier, later in itertools.pairwise(ticks)) - 0.001

    return unknot.run(main)


def test_a_fiber_whose_reads_never_wait_lets_the_others_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bound: the reader yields before its 65th call in a row that did not wait.
    assert _ticks_during_reads(None, monkeypatch) >= 1000 // 65
    assert _lateness_while_peeking(None, monkeypatch) < 0.05


def test_without_the_fairness_rule_the_others_starve(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same programs with the rule switched off: nothing else runs while the reader reads
    # (shows that the test above depends on the rule).
    assert _ticks_during_reads(10**12, monkeypatch) == 0
    assert _lateness_while_peeking(10**12, monkeypatch) > 0.15
