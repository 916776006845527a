"""unknot.ssl as a demanding user calls it: cases a review found wrong (each test fails on the
code before its fix). Loopback only; certificates from `trustme`."""

from __future__ import annotations

import os
import socket as std
import ssl as stdlib_ssl
import threading
import time
from typing import Any

import pytest
from fiber_helpers import Ticker

import unknot
from unknot import socket as usocket
from unknot import ssl

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.mark.parametrize("context_module", ["stdlib", "unknot"])
def test_accept_on_a_wrapped_listener_is_cooperative(ca: Any, context_module: str) -> None:
    # ssl.wrap(listener, context) takes a context of either module; the stdlib's accept wraps
    # the new connection with context.wrap_socket, which for a stdlib context returned a stdlib
    # socket, and its eager handshake blocked the hub (a client fiber on the same hub: for ever).
    module: Any = stdlib_ssl if context_module == "stdlib" else ssl
    server_ctx = module.create_default_context(module.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = stdlib_ssl.create_default_context()
    ca.configure_trust(client_ctx)
    hello_sent = threading.Event()

    def client(address: Any) -> bytes:
        # A thread, so that a hub blocked in the handshake cannot keep it from finishing.
        with std.create_connection(address, timeout=10) as raw:
            time.sleep(0.2)  # (the server's handshake waits meanwhile)
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                hello_sent.set()
                return tls.recv(10)

    def main() -> None:
        ticker = Ticker()
        listener = ssl.wrap(usocket.create_server(("127.0.0.1", 0)), server_ctx, server_side=True)
        with listener:
            result: list[bytes] = []
            th = threading.Thread(
                target=lambda: result.append(client(listener.getsockname())), daemon=True
            )
            th.start()
            unknot.sleep(0)
            before = ticker.count
            conn, _ = listener.accept()  # accepts, then handshakes (eagerly)
            assert ticker.count - before >= 5  # the hub ran during the 0.2 s handshake
            with conn:
                assert isinstance(conn, ssl.SSLSocket) and conn.version() is not None
                conn.sendall(b"hi")
            unknot.to_thread(th.join, 10)
            assert result == [b"hi"] and hello_sent.is_set()
        ticker.stop()

    unknot.run(main)


def test_a_blocking_socket_wrapped_in_tls_keeps_its_fd_non_blocking(ca: Any) -> None:
    # The stdlib's SSLSocket._create adopts the socket's fd, then detaches the socket; unknot's
    # detach makes a blocking socket's fd blocking (for its next owner, as the stdlib's does:
    # multiprocessing.Pipe needs it), which left the TLS socket's own fd blocking: its
    # handshake and reads then held the hub (a server fiber on the same hub: for ever).
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    def main() -> tuple[bool, bytes]:
        with usocket.create_server(("127.0.0.1", 0)) as listener:

            def serve() -> None:
                raw, _ = listener.accept()
                with server_ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.sendall(b"hello")

            server = unknot.spawn(serve)
            raw = usocket.create_connection(listener.getsockname())
            assert raw.gettimeout() is None
            with unknot.fail_after(10), raw:
                with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    blocking = os.get_blocking(tls.fileno())
                    data = tls.recv(10)
            server.join()
            return blocking, data

    assert unknot.run(main) == (False, b"hello")
