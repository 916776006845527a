"""A blocking send on a client socket first lets the fibers already ready run (`Hub.cede`).

What must hold: with other fibers ready, ``sendall``/``send`` on a blocking or timed socket that
this process connected (and a TLS client's ``write``) run them before sending; with none ready
they do not switch at all; a non-blocking call (timeout 0, MSG_DONTWAIT) never switches, nor
does a send on a server's socket (from ``accept``, the server side of TLS) or on a
``socketpair``; ceding is not a checkpoint (no `Cancelled`, even in a cancelled scope); the
bytes of one socket still leave in the order of the calls; and the requests of many fibers
leave as one batch.
"""

from __future__ import annotations

import socket as std
import struct
from collections.abc import Callable
from typing import Any

import greenlet
import pytest

import unknot
import unknot.socket as us
from unknot._core._backends import BACKENDS

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=sorted(BACKENDS), autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UNKNOT_SELECTOR", request.param)
    return str(request.param)


def _pair() -> tuple[us.socket, us.socket]:
    """(client, server): a loopback TCP connection; the client end made by ``connect``."""
    with us.create_server(("127.0.0.1", 0)) as listener:
        client = us.socket()
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def _sender_and_bystander(send: Callable[[us.socket], Any], which: str = "client") -> list[str]:
    """Fiber S logs, calls ``send(sock)``, logs; fiber B (spawned right after, so ready when S
    sends) logs once. ``sock`` is the client end of a TCP connection (``which="client"``), the
    server end (``"server"``), or one end of a ``socketpair``. Returns the log."""
    log: list[str] = []

    def main() -> None:
        if which == "socketpair":
            a, b = us.socketpair()
        else:
            a, b = _pair()
            if which == "server":
                a, b = b, a
        with a, b:

            def sender() -> None:
                log.append("send-start")
                send(a)
                log.append("send-done")

            def bystander() -> None:
                log.append("bystander")

            fibers = [unknot.spawn(sender), unknot.spawn(bystander)]
            for f in fibers:
                f.join()
            b.settimeout(5)
            log.append(f"peer-got:{b.recv(100)!r}")

    unknot.run(main)
    return log


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda s: s.sendall(b"req"), id="sendall"),
        pytest.param(lambda s: s.send(b"req"), id="send"),
        pytest.param(lambda s: s.sendall(bytearray(b"req")), id="sendall-bytearray"),
        pytest.param(lambda s: (s.settimeout(5.0), s.sendall(b"req")), id="sendall-timed"),
        pytest.param(lambda s: (s.settimeout(5.0), s.send(b"req")), id="send-timed"),
    ],
)
def test_blocking_send_lets_ready_fibers_run_first(send: Callable[[us.socket], Any]) -> None:
    log = _sender_and_bystander(send)
    assert log == ["send-start", "bystander", "send-done", "peer-got:b'req'"]


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda s: (s.setblocking(False), s.sendall(b"req")), id="sendall-nonblocking"),
        pytest.param(lambda s: (s.setblocking(False), s.send(b"req")), id="send-nonblocking"),
        pytest.param(lambda s: s.send(b"req", std.MSG_DONTWAIT), id="send-dontwait"),
        pytest.param(lambda s: s.sendall(b"req", std.MSG_DONTWAIT), id="sendall-dontwait"),
    ],
)
def test_non_blocking_send_never_switches(send: Callable[[us.socket], Any]) -> None:
    log = _sender_and_bystander(send)
    assert log == ["send-start", "send-done", "bystander", "peer-got:b'req'"]


@pytest.mark.parametrize("which", ["server", "socketpair"])
@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda s: s.sendall(b"req"), id="sendall"),
        pytest.param(lambda s: s.send(b"req"), id="send"),
    ],
)
def test_send_on_a_socket_not_connected_here_never_switches(
    send: Callable[[us.socket], Any], which: str
) -> None:
    """A server's replies (accepted sockets) are not delayed: they go to many peers, so
    holding them back batches nothing and only adds latency."""
    log = _sender_and_bystander(send, which)
    assert log == ["send-start", "send-done", "bystander", "peer-got:b'req'"]


def test_no_switch_when_no_other_fiber_is_ready() -> None:
    switches: list[Any] = []

    def main() -> int:
        a, b = _pair()
        with a, b:
            old = greenlet.settrace(lambda event, args: switches.append(event))
            try:
                a.sendall(b"x" * 100)
                a.send(b"y")
            finally:
                greenlet.settrace(old)
            return len(b.recv(1000))

    assert unknot.run(main) == 101
    assert switches == []


def test_cede_is_not_a_checkpoint() -> None:
    """A cancellation that arrives while a send lets the others run does not interrupt it: the
    send completes, and the cancellation is raised by the next blocking call."""
    log: list[str] = []

    def main() -> None:
        a, b = _pair()
        with a, b:
            with unknot.CancelScope() as scope:

                def bystander() -> None:
                    log.append("bystander")
                    scope.cancel()  # while the sender is stepping aside

                unknot.spawn(bystander)
                a.sendall(b"sent anyway")
                log.append("sendall returned")
                unknot.sleep(0)
                log.append("not reached")
            assert scope.cancelled_caught
            log.append(b.recv(100).decode())

    unknot.run(main)
    assert log == ["bystander", "sendall returned", "sent anyway"]


def test_a_send_in_a_cancelled_scope_raises_at_once_and_sends_nothing() -> None:
    """Every call that can block is a cancellation point, even when it would not wait."""
    log: list[str] = []

    def main() -> None:
        a, b = _pair()
        with a, b:
            with unknot.CancelScope() as scope:
                scope.cancel()
                unknot.spawn(log.append, "bystander")
                try:
                    a.sendall(b"never sent")
                except unknot.Cancelled:
                    log.append("Cancelled")
                    raise
            assert scope.cancelled_caught
            a.sendall(b"after")
            log.append(b.recv(100).decode())

    unknot.run(main)
    assert log == ["Cancelled", "bystander", "after"]


def test_bytes_of_one_socket_keep_the_order_of_the_calls() -> None:
    """Fibers writing whole messages to one socket, each taking turns: every cede goes to the
    back of the queue, so messages arrive in the order the sendall calls were made."""
    n = 30

    def main() -> list[bytes]:
        a, b = _pair()
        with a, b:
            order: list[bytes] = []

            def writer(i: int) -> None:
                for round_ in range(3):
                    msg = b"%02d.%d;" % (i, round_)
                    order.append(msg)  # the order in which sendall is called
                    a.sendall(msg)
                    unknot.sleep(0)

            fibers = [unknot.spawn(writer, i) for i in range(n)]
            for f in fibers:
                f.join()
            a.shutdown(std.SHUT_WR)
            got = b"".join(iter(lambda: b.recv(65536), b""))
            assert got == b"".join(order)
            return order

    assert len(unknot.run(main)) == 3 * n


def test_requests_of_ready_fibers_leave_together() -> None:
    """Each of 20 fibers computes, then sends one request. With ceding, every fiber has done
    its work before the first request is written: the peer finds all requests at once."""
    n = 20

    def main() -> tuple[list[str], bytes]:
        a, b = _pair()
        with a, b:
            events: list[str] = []

            def client(i: int) -> None:
                events.append(f"work{i}")
                a.sendall(b"%02d" % i)
                events.append(f"sent{i}")

            fibers = [unknot.spawn(client, i) for i in range(n)]
            for f in fibers:
                f.join()
            want, got = 2 * n, b""
            while len(got) < want:  # (TCP may deliver the bytes in several pieces)
                got += b.recv(want - len(got))
            return events, got

    events, data = unknot.run(main)
    # All the work first; then the sends, in the order the fibers asked to send.
    assert events[:n] == [f"work{i}" for i in range(n)]
    assert sorted(events[n:]) == sorted(f"sent{i}" for i in range(n))
    assert data == b"".join(b"%02d" % i for i in range(n))


def test_tls_write_lets_ready_fibers_run_first(tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    import unknot.ssl as ussl

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ussl.SSLContext(ussl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    client_ctx = ussl.SSLContext(ussl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client_ctx)
    log: list[str] = []

    def main() -> None:
        a, b = _pair()
        server = unknot.spawn(lambda: server_ctx.wrap_socket(b, server_side=True))
        client = client_ctx.wrap_socket(a, server_hostname="localhost")
        tls_b = server.join()
        with client, tls_b:
            for name, sock, peer in (("client", client, tls_b), ("server", tls_b, client)):

                def sender(sock: Any = sock, name: str = name) -> None:
                    log.append(f"{name} send-start")
                    sock.sendall(b"over tls")
                    log.append(f"{name} send-done")

                fibers = [unknot.spawn(sender), unknot.spawn(log.append, "bystander")]
                for f in fibers:
                    f.join()
                log.append(peer.recv(100).decode())

    unknot.run(main)
    assert log == [
        *("client send-start", "bystander", "client send-done", "over tls"),
        *("server send-start", "server send-done", "bystander", "over tls"),
    ]


# -- batched sends: the hub makes the ready fibers' sends back to back ---------------------------


def test_batched_sends_all_leave_before_any_sender_goes_on() -> None:
    """The hub makes the batched sends one after the other: when the first sender resumes,
    every request is already with the peer (so the server finds them all at once)."""
    n = 10

    def main() -> list[int]:
        a, b = _pair()
        a.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)  # each send leaves at once
        seen: list[int] = []
        with a, b:

            def client(i: int) -> None:
                a.sendall(b"%02d" % i)
                seen.append(len(b.recv(1000, std.MSG_PEEK | std.MSG_DONTWAIT)))

            fibers = [unknot.spawn(client, i) for i in range(n)]
            for f in fibers:
                f.join()
        return seen

    assert unknot.run(main) == [2 * n] * n


def test_error_of_a_batched_send_is_raised_in_the_sender() -> None:
    def main() -> None:
        a, b = _pair()
        b.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()  # with linger 0: a reset
        unknot.sleep(0.05)
        with a:
            unknot.spawn(lambda: None)  # ready: the send below is batched
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                a.sendall(b"x" * 100)
                a.sendall(b"x" * 100)  # (in case the first one was still accepted)

    unknot.run(main)


def test_batched_sendall_larger_than_the_buffer_sends_everything() -> None:
    data = bytes(range(256)) * 32768  # 8 MiB: far more than one send takes

    def main() -> bytes:
        a, b = _pair()
        with a, b:

            def reader() -> bytes:
                chunks = []
                while chunk := b.recv(1 << 20):
                    chunks.append(chunk)
                return b"".join(chunks)

            r = unknot.spawn(reader)
            unknot.spawn(lambda: None)
            a.sendall(data)
            a.shutdown(std.SHUT_WR)
            return r.join()

    assert unknot.run(main) == data


def test_cede_goes_after_sends_already_batched() -> None:
    """bytes are batched, a bytearray cedes: the bytearray, sent second, still leaves
    second, though no fiber is ready any more when its turn comes."""

    def main() -> bytes:
        a, b = _pair()
        with a, b:
            first = unknot.spawn(a.sendall, b"first;")
            second = unknot.spawn(a.sendall, bytearray(b"second;"))
            first.join()
            second.join()
            b.settimeout(5)
            got = b""
            while len(got) < 13:
                got += b.recv(100)
            return got

    assert unknot.run(main) == b"first;second;"


def test_a_batched_call_is_dropped_when_its_fiber_is_woken_otherwise() -> None:
    made: list[str] = []

    def main() -> None:
        me = unknot.current()
        hub = me.hub  # type: ignore[union-attr]

        def intruder() -> None:
            hub.throw(me, RuntimeError("woken by someone else"))

        unknot.spawn(intruder)
        with pytest.raises(RuntimeError, match="someone else"):
            hub.call_batched(me, made.append, "the dropped call")
        # Batched again before the batch is made: only this call may run.
        unknot.spawn(lambda: None)
        hub.call_batched(me, made.append, "the second call")

    unknot.run(main)
    assert made == ["the second call"]
