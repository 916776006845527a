"""Socket calls that can block are cancellation points even when data is ready (trio's rule),
and a fiber whose I/O never has to wait still lets the others run (`Hub.IO_STREAK_MAX`)."""

from __future__ import annotations

import socket as std
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trustme

import unknot
import unknot.socket as us
import unknot.ssl as ussl


def cancelled_at_once(call: Callable[[], Any]) -> None:
    ran: list[str] = []
    unknot.spawn(ran.append, "other")
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(unknot.Cancelled):
            call()
        assert ran == []  # raised without switching
        raise unknot.Cancelled()
    assert scope.cancelled_caught


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


def _lateness_while_streaming(streak_max: int | None, monkeypatch: pytest.MonkeyPatch) -> float:
    """The ticker's worst lateness (s) while another fiber reads a peer that always has data."""
    if streak_max is not None:
        monkeypatch.setattr(us, "_IO_STREAK_MAX", streak_max)
    a, b = std.socketpair()
    stop = threading.Event()

    def flood() -> None:  # keeps the reader's buffer full
        chunk = b"x" * 65536
        b.settimeout(0.05)
        while not stop.is_set():
            try:
                b.sendall(chunk)
            except (TimeoutError, OSError):
                pass

    t = threading.Thread(target=flood)
    t.start()

    def main() -> float:
        reader = us.socket(fileno=a.detach())
        lateness = [0.0]
        ticks = [0]

        def ticker() -> None:
            while True:
                t0 = time.monotonic()
                unknot.sleep(0.001)
                lateness[0] = max(lateness[0], time.monotonic() - t0 - 0.001)
                ticks[0] += 1

        with unknot.TaskGroup() as tg:
            tg.spawn(ticker)
            unknot.sleep(0.01)  # the buffer fills
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < 0.3 and n < 2_000_000:  # bounded
                reader.recv(256)
                n += 1
            tg.cancel()
        reader.close()
        assert ticks[0] > 0
        return lateness[0]

    try:
        return unknot.run(main)
    finally:
        stop.set()
        t.join()
        b.close()


def test_a_fiber_whose_reads_never_wait_lets_the_others_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bound: the reader yields after IO_STREAK_MAX calls that did not wait (64 recv calls
    # here, well under a millisecond); the ticker is late by about one pass.
    assert _lateness_while_streaming(None, monkeypatch) < 0.1


def test_without_the_fairness_rule_the_ticker_starves(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same program with the rule switched off: the reader never waits, so nothing else runs
    # until it stops after 0.3 s (shows the test above really depends on the rule).
    assert _lateness_while_streaming(10**12, monkeypatch) > 0.2
