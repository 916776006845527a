"""unknot.ssl: cooperative TLS sockets, a drop-in mirror of the stdlib ssl module.

Loopback only; certificates come from `trustme`, made once per test session.
"""

from __future__ import annotations

import builtins
import dis
import logging
import ssl as stdlib_ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import unknot
from unknot import socket as usocket
from unknot import ssl

trustme = pytest.importorskip("trustme")

HOST = "127.0.0.1"

# A broken cooperative path tends to hang (a blocked hub): fail fast instead.
pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert(ca: Any) -> Any:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def server_ctx(cert: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def tls_pair(
    server_ctx: Any, client_ctx: Any, **client_kw: Any
) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """A connected (server, client) pair of TLS sockets, handshaken; call from a fiber."""
    with usocket.create_server((HOST, 0)) as listener:
        addr = listener.getsockname()

        def serve() -> ssl.SSLSocket:
            conn, _ = listener.accept()
            return server_ctx.wrap_socket(conn, server_side=True)

        f = unknot.spawn(serve)
        client_kw.setdefault("server_hostname", "localhost")
        try:
            client = client_ctx.wrap_socket(usocket.create_connection(addr), **client_kw)
        except BaseException:
            try:  # the server's handshake fails too (or succeeds, in TLS 1.3): clean it up
                f.join().close()
            except ssl.SSLError:
                pass
            raise
        return f.join(), client


def recv_exactly(sock: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


# -- the module mirrors the stdlib ------------------------------------------------------------


def test_every_stdlib_name_is_here() -> None:
    missing = [n for n in dir(stdlib_ssl) if not n.startswith("__") and not hasattr(ssl, n)]
    assert missing == []
    assert ssl.SSLError is stdlib_ssl.SSLError
    assert ssl.CERT_REQUIRED is stdlib_ssl.CERT_REQUIRED
    assert issubclass(ssl.SSLSocket, stdlib_ssl.SSLSocket)
    assert issubclass(ssl.SSLSocket, usocket.socket)
    assert issubclass(ssl.SSLContext, stdlib_ssl.SSLContext)
    assert ssl.socket is usocket.socket
    assert ssl.create_connection is usocket.create_connection


def test_rebound_helpers_find_all_their_globals() -> None:
    fns = [ssl.create_default_context, ssl._create_unverified_context, ssl.get_server_certificate]
    for fn in fns:
        assert fn.__module__ == "unknot.ssl" and fn.__globals__ is vars(ssl)
        loaded = {i.argval for i in dis.get_instructions(fn) if i.opname == "LOAD_GLOBAL"}
        assert loaded and not {n for n in loaded if not hasattr(ssl, n) and n not in vars(builtins)}
    assert type(ssl.create_default_context()) is ssl.SSLContext
    assert type(ssl._create_unverified_context()) is ssl.SSLContext
    assert type(ssl._create_default_https_context()) is ssl.SSLContext
    assert type(ssl._create_stdlib_context()) is ssl.SSLContext


def test_public_constructor_is_refused_as_in_stdlib() -> None:
    with pytest.raises(TypeError):
        ssl.SSLSocket()


# -- data exchange -----------------------------------------------------------------------------


@pytest.mark.unknot
def test_exchange_between_fibers(server_ctx: Any, client_ctx: Any, backend: str) -> None:
    server, client = tls_pair(server_ctx, client_ctx)
    assert isinstance(client, ssl.SSLSocket) and isinstance(server, ssl.SSLSocket)
    assert client.version() == server.version() is not None
    assert client.getpeercert()["subjectAltName"][0] == ("DNS", "localhost")
    payload = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold

    def echo() -> None:
        while data := server.recv(65536):
            server.sendall(data)
        server.close()

    with unknot.TaskGroup() as tg:
        tg.spawn(echo)
        tg.spawn(client.sendall, payload)
        assert recv_exactly(client, len(payload)) == payload
        # recv_into, read, write, pending
        client.write(b"hello")
        buf = bytearray(10)
        assert client.recv_into(buf, 3) == 3 and buf[:3] == b"hel"
        assert client.read(2) == b"lo"
        assert client.pending() == 0
        client.close()


@pytest.mark.unknot
def test_makefile_lines(server_ctx: Any, client_ctx: Any) -> None:
    server, client = tls_pair(server_ctx, client_ctx)

    def echo_lines() -> None:
        f = server.makefile("rwb")
        for line in f:
            f.write(line.upper())
            f.flush()
        f.close()
        server.close()

    fiber = unknot.spawn(echo_lines)
    f = client.makefile("rwb")
    for i in range(50):
        f.write(b"line %d\n" % i)
        f.flush()
        assert f.readline() == b"LINE %d\n" % i
    f.close()
    client.close()
    fiber.join()


@pytest.mark.unknot
def test_sendfile_over_tls(server_ctx: Any, client_ctx: Any, tmp_path: Any) -> None:
    data = bytes(range(251)) * 2000  # ~500 KB
    path = tmp_path / "blob"
    path.write_bytes(data)
    server, client = tls_pair(server_ctx, client_ctx)
    reader = unknot.spawn(recv_exactly, server, len(data) - 1000)
    with open(path, "rb") as fh:
        assert client.sendfile(fh, offset=1000) == len(data) - 1000
        assert fh.tell() == len(data)
    assert reader.join() == data[1000:]
    client.close()
    server.close()


# -- TCPServer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ctx_module", [ssl, stdlib_ssl], ids=["unknot-ctx", "stdlib-ctx"])
@pytest.mark.unknot
def test_tcpserver_200_concurrent_tls_connections(
    cert: Any, client_ctx: Any, ctx_module: Any, backend: str
) -> None:
    n = 200
    sctx = ctx_module.create_default_context(ctx_module.Purpose.CLIENT_AUTH)
    cert.configure_cert(sctx)
    all_in = unknot.Event()

    def handler(conn: Any, addr: Any) -> None:
        assert isinstance(conn, ssl.SSLSocket)  # cooperative whatever context was given
        f = conn.makefile("rwb")
        for line in f:
            f.write(line[::-1][1:] + b"\n")
            f.flush()

    def client(i: int, server: unknot.TCPServer) -> bytes:
        sock = usocket.create_connection(server.address)
        with client_ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            if server.connections >= n:
                all_in.set()
            all_in.wait()  # all 200 handshaken and open at once
            tls.sendall(b"hello %d\n" % i)
            f = tls.makefile("rb")
            line = f.readline()
            f.close()
            return line

    with unknot.TCPServer(handler, ssl=sctx, backlog=n) as server:
        srv = unknot.spawn(server.serve_forever)
        with unknot.TaskGroup() as tg:
            clients = [tg.spawn(client, i, server) for i in range(n)]
        for i, c in enumerate(clients):
            assert c.join() == (b"hello %d" % i)[::-1] + b"\n"
        server.stop()
        srv.join()


@pytest.mark.unknot
def test_tcpserver_survives_failed_handshake(
    server_ctx: Any,
    client_ctx: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def handler(conn: Any, addr: Any) -> None:
        conn.sendall(b"welcome")

    spawned: list[unknot.Fiber] = []  # the server's connection fibers

    def spawn_named(*args: Any) -> unknot.Fiber:
        spawned.append(unknot.lowlevel.spawn_named(*args))
        return spawned[-1]

    monkeypatch.setattr(unknot._tcp, "spawn_named", spawn_named)

    untrusting = ssl.create_default_context()  # does not trust our CA
    with unknot.TCPServer(handler, ssl=server_ctx) as server:
        srv = unknot.spawn(server.serve_forever)
        with caplog.at_level(logging.INFO, logger="unknot.server"):
            sock = usocket.create_connection(server.address)
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                untrusting.wrap_socket(sock, server_hostname="localhost")
            assert info.value.verify_code == 20  # unable to get local issuer certificate
            assert sock.fileno() == -1  # detached into the SSLSocket, which was closed
            with unknot.fail_after(5):
                while not any("handshake" in r.getMessage() for r in caplog.records):
                    unknot.sleep(0.01)
            [conn_fiber] = spawned
            assert conn_fiber.join() is None  # the connection's fiber ended cleanly
        # ...and it keeps serving.
        sock = usocket.create_connection(server.address)
        with client_ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            assert recv_exactly(tls, 7) == b"welcome"
        server.stop()
        srv.join()


# -- verification --------------------------------------------------------------------------------


@pytest.mark.unknot
def test_untrusted_ca_raises_cert_verification_error(server_ctx: Any) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        tls_pair(server_ctx, ssl.create_default_context())
    assert "certificate verify failed" in str(info.value)
    assert isinstance(info.value, ssl.SSLError) and isinstance(info.value, ValueError)


@pytest.mark.unknot
def test_wrong_hostname(server_ctx: Any, client_ctx: Any) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        tls_pair(server_ctx, client_ctx, server_hostname="example.com")
    assert "Hostname mismatch" in info.value.verify_message
    # The IP address is in the certificate: it matches.
    server, client = tls_pair(server_ctx, client_ctx, server_hostname="127.0.0.1")
    server.close()
    client.close()
    with usocket.socket() as sock:
        with pytest.raises(ValueError, match="check_hostname requires server_hostname"):
            client_ctx.wrap_socket(sock)


@pytest.mark.unknot
def test_client_certificate_required(ca: Any, cert: Any, server_ctx: Any, client_ctx: Any) -> None:
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_ctx)
    # Without a client certificate the server refuses the handshake (in TLS 1.3 the client
    # learns it at its first read).
    with usocket.create_server((HOST, 0)) as listener:

        def serve() -> BaseException | None:
            conn, _ = listener.accept()
            try:
                server_ctx.wrap_socket(conn, server_side=True)
            except ssl.SSLError as e:
                return e
            return None

        f = unknot.spawn(serve)
        client = client_ctx.wrap_socket(
            usocket.create_connection(listener.getsockname()), server_hostname="localhost"
        )
        with pytest.raises(ssl.SSLError):
            client.recv(1)
        assert isinstance(f.join(), ssl.SSLError)
        client.close()
    ca.issue_cert("client@example.com").configure_cert(client_ctx)
    server, client = tls_pair(server_ctx, client_ctx)
    assert server.getpeercert()["subjectAltName"] == (("email", "client@example.com"),)
    server.close()
    client.close()


# -- handshake variants ------------------------------------------------------------------------


@pytest.mark.unknot
def test_handshake_on_first_io(server_ctx: Any, client_ctx: Any) -> None:
    with usocket.create_server((HOST, 0)) as listener:

        def serve() -> bytes:
            conn, _ = listener.accept()
            tls = server_ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            assert tls.version() is None
            data = tls.recv(100)  # handshakes first
            tls.sendall(data * 2)
            tls.close()
            return data

        f = unknot.spawn(serve)
        sock = usocket.create_connection(listener.getsockname())
        client = client_ctx.wrap_socket(
            sock, server_hostname="localhost", do_handshake_on_connect=False
        )
        assert client.version() is None
        client.sendall(b"ping")
        assert client.version() is not None
        assert recv_exactly(client, 8) == b"pingping"
        assert f.join() == b"ping"
        client.close()


@pytest.mark.unknot
def test_wrap_unconnected_then_connect_handshakes_eagerly(server_ctx: Any, client_ctx: Any) -> None:
    with usocket.create_server((HOST, 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(10))

        f = unknot.spawn(serve)
        client = client_ctx.wrap_socket(usocket.socket(), server_hostname="localhost")
        assert client.version() is None
        client.connect(listener.getsockname())
        assert client.version() is not None  # the handshake ran inside connect()
        client.sendall(b"abc")
        assert recv_exactly(client, 3) == b"abc"
        f.join()
        client.close()


@pytest.mark.unknot
def test_sni_callback_sees_the_name(server_ctx: Any, client_ctx: Any) -> None:
    seen: list[Any] = []

    def sni(sock: Any, name: str | None, ctx: Any) -> None:
        seen.append((type(sock), name))

    server_ctx.sni_callback = sni
    server, client = tls_pair(server_ctx, client_ctx)
    assert seen == [(ssl.SSLSocket, "localhost")]
    assert client.server_hostname == "localhost"
    server.close()
    client.close()


@pytest.mark.unknot
def test_ssl_listening_socket_accept(server_ctx: Any, client_ctx: Any) -> None:
    listener = server_ctx.wrap_socket(usocket.create_server((HOST, 0)), server_side=True)

    def serve() -> None:
        conn, _ = listener.accept()  # accepts and handshakes
        assert isinstance(conn, ssl.SSLSocket) and conn.version() is not None
        conn.sendall(b"hi")
        conn.close()

    f = unknot.spawn(serve)
    client = client_ctx.wrap_socket(
        usocket.create_connection(listener.getsockname()), server_hostname="localhost"
    )
    assert recv_exactly(client, 2) == b"hi"
    assert client.recv(10) == b""  # close_notify or ragged EOF: both end the stream
    f.join()
    client.close()
    listener.close()


@pytest.mark.unknot
def test_unwrap_then_plaintext(server_ctx: Any, client_ctx: Any) -> None:
    server, client = tls_pair(server_ctx, client_ctx)

    def serve() -> bytes:
        assert server.recv(100) == b"secret"
        plain = server.unwrap()
        assert plain is server and server.version() is None
        plain.sendall(b"in the clear")
        return plain.recv(100)

    f = unknot.spawn(serve)
    client.sendall(b"secret")
    plain = client.unwrap()
    assert plain is client
    assert recv_exactly(plain, 12) == b"in the clear"
    plain.sendall(b"bye")
    assert f.join() == b"bye"
    server.close()
    client.close()


# -- timeouts, non-blocking mode, cancellation, close ------------------------------------------


@pytest.mark.unknot
def test_recv_timeout(server_ctx: Any, client_ctx: Any) -> None:
    server, client = tls_pair(server_ctx, client_ctx)
    client.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="^The read operation timed out$"):
        client.recv(10)
    assert 0.15 < time.monotonic() - t0 < 2
    # Still usable afterwards.
    server.sendall(b"late")
    assert client.recv(10) == b"late"
    server.close()
    client.close()


@pytest.mark.unknot
def test_write_and_handshake_timeouts(server_ctx: Any, client_ctx: Any) -> None:
    server, client = tls_pair(server_ctx, client_ctx)  # the server never reads
    client.settimeout(0.2)
    with pytest.raises(TimeoutError, match="^The write operation timed out$"):
        while True:
            client.send(b"x" * 65536)
    server.close()
    client.close()
    with usocket.create_server((HOST, 0)) as listener:  # accepted by the kernel, never served
        sock = usocket.create_connection(listener.getsockname(), timeout=0.2)
        with pytest.raises(TimeoutError, match="The handshake operation timed out"):
            client_ctx.wrap_socket(sock, server_hostname="localhost")


@pytest.mark.unknot
def test_non_blocking_mode(server_ctx: Any, client_ctx: Any) -> None:
    server, client = tls_pair(server_ctx, client_ctx)
    client.setblocking(False)
    assert client.gettimeout() == 0.0
    with pytest.raises(ssl.SSLWantReadError):
        client.recv(10)
    with pytest.raises(ssl.SSLWantWriteError):
        while True:
            client.send(b"x" * 65536)
    a, b = usocket.socketpair()
    b.setblocking(False)
    with pytest.raises(ValueError, match="non-blocking"):
        client_ctx.wrap_socket(b, server_hostname="localhost")
    assert b.fileno() == -1  # detached into the SSLSocket, which was closed (as in the stdlib)
    a.close()
    server.close()
    client.close()


@pytest.mark.unknot
def test_non_blocking_handshake(server_ctx: Any, client_ctx: Any) -> None:
    with usocket.create_server((HOST, 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

        f = unknot.spawn(serve)
        sock = usocket.create_connection(listener.getsockname())
        sock.setblocking(False)
        tls = client_ctx.wrap_socket(
            sock, server_hostname="localhost", do_handshake_on_connect=False
        )
        wants = 0
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                wants += 1
                unknot.wait_readable(tls)
            except ssl.SSLWantWriteError:
                wants += 1
                unknot.wait_writable(tls)
        assert wants > 0
        tls.do_handshake(block=True)  # already done: returns at once
        tls.setblocking(True)
        assert recv_exactly(tls, 2) == b"ok"
        f.join()
        tls.close()


@pytest.mark.unknot
def test_cancelled_read_leaves_connection_usable(server_ctx: Any, client_ctx: Any) -> None:
    server, client = tls_pair(server_ctx, client_ctx)
    with unknot.move_on_after(0.05) as scope:
        client.recv(10)
    assert scope.cancelled_caught
    server.sendall(b"after")
    assert recv_exactly(client, 5) == b"after"
    client.sendall(b"still fine")
    assert recv_exactly(server, 10) == b"still fine"
    server.close()
    client.close()


@pytest.mark.unknot
def test_read_cancelled_mid_record(server_ctx: Any, client_ctx: Any) -> None:
    """Cancelled while OpenSSL holds half a TLS record: the next read gets the whole record."""
    split = unknot.Event()
    with usocket.create_server((HOST, 0)) as real, usocket.create_server((HOST, 0)) as front:

        def pump(src: Any, dst: Any, slow: bool) -> None:
            while data := src.recv(65536):
                if slow and split.is_set() and len(data) > 1:
                    dst.sendall(data[: len(data) // 2])
                    unknot.sleep(0.2)
                    data = data[len(data) // 2 :]
                dst.sendall(data)
            dst.shutdown(usocket.SHUT_WR)

        def relay() -> None:
            a, _ = front.accept()
            b = usocket.create_connection(real.getsockname())
            with a, b, unknot.TaskGroup() as tg:
                tg.spawn(pump, a, b, False)
                tg.spawn(pump, b, a, True)

        def serve() -> ssl.SSLSocket:
            conn, _ = real.accept()
            return server_ctx.wrap_socket(conn, server_side=True)

        r = unknot.spawn(relay)
        f = unknot.spawn(serve)
        sock = usocket.create_connection(front.getsockname())
        client = client_ctx.wrap_socket(sock, server_hostname="localhost")
        server = f.join()
        client.sendall(b"sync")  # a round trip: TLS 1.3 session tickets are through the relay
        assert recv_exactly(server, 4) == b"sync"
        server.sendall(b"ack")
        assert recv_exactly(client, 3) == b"ack"
        split.set()
        server.sendall(b"one whole record")
        with unknot.move_on_after(0.1) as scope:
            client.recv(100)  # gets half the record, then waits for the rest
        assert scope.cancelled_caught
        assert client.recv(100) == b"one whole record"
        client.sendall(b"reply")
        assert recv_exactly(server, 5) == b"reply"
        server.close()
        client.close()
        r.join()


@pytest.mark.unknot
def test_close_from_another_fiber_wakes_reader(server_ctx: Any, client_ctx: Any) -> None:
    server, client = tls_pair(server_ctx, client_ctx)
    reader = unknot.spawn(client.recv, 10)
    unknot.sleep(0.05)
    client.close()
    with pytest.raises(OSError):
        reader.join()
    server.close()


@pytest.mark.unknot
def test_two_readers_both_get_data(server_ctx: Any, client_ctx: Any) -> None:
    # The second reader queues behind the first (it was a RuntimeError).
    server, client = tls_pair(server_ctx, client_ctx)
    first = unknot.spawn(client.recv, 10)
    unknot.sleep(0.02)
    unknot.spawn(lambda: (server.sendall(b"x"), first.join(), server.sendall(b"y")))
    assert client.recv(10) == b"y"
    assert first.join() == b"x"
    server.close()
    client.close()


# -- outside fibers ----------------------------------------------------------------------------


def run_hub_in_thread(main: Callable[[unknot.Event], Any]) -> tuple[threading.Thread, unknot.Event]:
    """Run ``main(stop)`` as the root fiber of a hub in a new thread."""
    stop = unknot.Event()
    t = threading.Thread(target=unknot.run, args=(main, stop), daemon=True)
    t.start()
    return t, stop


def test_blocking_client_outside_fibers(server_ctx: Any, client_ctx: Any, ca: Any) -> None:
    ready = threading.Event()
    address: list[Any] = []

    def handler(conn: Any, addr: Any) -> None:
        while data := conn.recv(65536):
            conn.sendall(data)

    def main(stop: unknot.Event) -> None:
        with unknot.TCPServer(handler, ssl=server_ctx) as server:
            address.append(server.address)
            srv = unknot.spawn(server.serve_forever)
            ready.set()
            unknot.to_thread(stop_requested.wait)
            server.stop()
            srv.join()

    stop_requested = threading.Event()
    t, _ = run_hub_in_thread(main)
    try:
        assert ready.wait(5)
        sock = usocket.create_connection(address[0], timeout=5)
        with client_ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            assert unknot.current() is None
            payload = b"z" * 300_000
            tls.sendall(payload)
            assert recv_exactly(tls, len(payload)) == payload
            tls.settimeout(0.2)
            with pytest.raises(TimeoutError, match="^The read operation timed out$"):
                tls.recv(10)
        # The module helper, outside fibers too.
        pem = ssl.get_server_certificate(address[0], ca_certs=None)
        assert pem.startswith("-----BEGIN CERTIFICATE-----")
    finally:
        stop_requested.set()
        t.join(10)
    assert not t.is_alive()


@pytest.mark.unknot
def test_get_server_certificate_in_a_fiber(server_ctx: Any, cert: Any) -> None:
    with usocket.create_server((HOST, 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        f = unknot.spawn(serve)
        ticks = unknot.spawn(lambda: [unknot.sleep(0) for _ in range(10)])
        pem = ssl.get_server_certificate(listener.getsockname())
        assert ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(
            cert.cert_chain_pems[0].bytes().decode()
        )
        f.join()
        ticks.join()


def test_stdlib_context_wrapped_cooperatively(cert: Any, ca: Any) -> None:
    """`ssl.wrap` gives a cooperative socket for a context made by the stdlib module."""
    sctx = stdlib_ssl.create_default_context(stdlib_ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(sctx)
    cctx = stdlib_ssl.create_default_context()
    ca.configure_trust(cctx)

    def main() -> bytes:
        with usocket.create_server((HOST, 0)) as listener:

            def serve() -> None:
                conn, _ = listener.accept()
                with ssl.wrap(conn, sctx, server_side=True) as tls:
                    tls.sendall(b"coop")

            f = unknot.spawn(serve)
            sock = usocket.create_connection(listener.getsockname())
            with ssl.wrap(sock, cctx, server_hostname="localhost") as tls:
                assert type(tls) is ssl.SSLSocket
                data = recv_exactly(tls, 4)
            f.join()
            return data

    assert unknot.run(main) == b"coop"


# Under unknot.patch(), in a fresh interpreter: the stdlib's own SSLContext.wrap_socket (its
# SSLSocket._create refers to the module global ``SSLSocket``) must still work, in a fiber and
# in a thread, and give unknot's SSLSocket.
PATCHED_WRAP = """
import sys, threading
import unknot
unknot.patch()
import socket, ssl

certfile, cafile = sys.argv[1:3]
sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
sctx.load_cert_chain(certfile)
cctx = ssl.create_default_context(cafile=cafile)
listener = socket.create_server(("127.0.0.1", 0))
seen = []

def serve():
    conn, _ = listener.accept()
    with sctx.wrap_socket(conn, server_side=True) as tls:
        seen.append(type(tls).__module__)
        tls.sendall(tls.recv(4))

def main():
    with socket.create_connection(listener.getsockname()) as sock:
        with cctx.wrap_socket(sock, server_hostname="localhost") as tls:
            seen.append(type(tls).__module__)
            tls.sendall(b"ping")
            return tls.recv(4).decode()

server = threading.Thread(target=serve)
server.start()
print(unknot.run(main), *sorted(seen), ssl.SSLSocket.__module__)
server.join()
"""


def test_patched_stdlib_wrap_socket(cert: Any, ca: Any, tmp_path: Any) -> None:
    import subprocess
    import sys

    certfile, cafile = tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    ca.cert_pem.write_to_path(str(cafile))
    out = subprocess.run(
        [sys.executable, "-c", PATCHED_WRAP, str(certfile), str(cafile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    # both ends are unknot's sockets; ssl.SSLSocket itself stays the stdlib's class
    assert out.stdout.split() == ["ping", "unknot.ssl", "unknot.ssl", "ssl"]
