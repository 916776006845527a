"""HTTPS: verified by default, against a CA file or a context; ``verify=False``; the seed's
example (a handler fetching from a local HTTPS upstream with a self-signed certificate)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_helpers import Server, serving

import unknot
import unknot.http._client as client_module
from unknot import socket as usocket
from unknot.http._client import Client, get
from unknot.http._client_errors import ConnectError, SSLError

trustme = pytest.importorskip("trustme")

pytestmark = [pytest.mark.timeout(30), pytest.mark.unknot]


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_path(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: Any, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def server(ca: Any) -> Iterator[Server]:
    with serving(tls=server_context(ca, "127.0.0.1", "localhost")) as running:
        yield running


def test_verified_with_the_ca_file(server: Server, ca_path: str) -> None:
    r = get(server.url("/text?body=secure"), verify=ca_path)
    assert r.text == "secure"
    assert r.url.scheme == "https"


def test_verified_with_an_ssl_context(server: Server, ca: Any) -> None:
    context = ssl.create_default_context()  # the stdlib's own: wrapped cooperatively
    ca.configure_trust(context)
    assert get(server.url("/text?body=ctx"), verify=context).text == "ctx"


def test_default_verification_refuses_a_self_signed_certificate(server: Server) -> None:
    with pytest.raises(SSLError) as info:
        get(server.url("/text?body=x"))
    assert isinstance(info.value, ConnectError)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(info.value)


def test_verify_false_accepts_it(server: Server) -> None:
    assert get(server.url("/text?body=insecure"), verify=False).text == "insecure"


def test_the_host_name_is_checked(ca: Any, ca_path: str) -> None:
    with serving(tls=server_context(ca, "other.example")) as wrong:
        with pytest.raises(SSLError, match="match|mismatch"):
            get(wrong.url("/text?body=x"), verify=ca_path)
        assert get(wrong.url("/text?body=x"), verify=False).text == "x"


def test_https_connections_are_pooled(server: Server, ca_path: str) -> None:
    accepts = server.accepts
    with Client(verify=ca_path) as client:
        for i in range(5):
            assert client.get(server.url(f"/text?body={i}")).text == str(i)
        with client.stream("GET", server.url("/big?size=500000")) as r:
            assert sum(len(c) for c in r.iter_bytes()) == 500_000
        assert client.get(server.url("/text?body=after")).text == "after"
    assert server.accepts == accepts + 1


def test_contexts_are_made_once_per_setting(ca_path: str) -> None:
    assert client_module.ssl_context(True) is client_module.ssl_context(True)
    assert client_module.ssl_context(ca_path) is client_module.ssl_context(Path(ca_path))
    assert client_module.ssl_context(False).verify_mode == ssl.CERT_NONE
    with pytest.raises(ValueError):
        client_module.ssl_context("/no/such/ca.pem")


def test_the_seed_example_a_handler_fetches_from_an_https_upstream(
    server: Server, ca_path: str
) -> None:
    upstream = server.url("/text?body=from-upstream")

    def handler(conn: usocket.socket, addr: Any) -> None:
        # Plain blocking code in the connection's fiber: no patching, no await.
        text = unknot.http._client.get(upstream, verify=ca_path).text
        conn.sendall(text.encode())
        conn.close()

    with unknot.TCPServer(handler, "127.0.0.1", 0) as front:
        unknot.spawn(front.serve_forever)
        clients = [usocket.create_connection(front.address, timeout=10) for _ in range(5)]
        answers = []
        for sock in clients:
            with sock:
                answers.append(b"".join(iter(lambda s=sock: s.recv(100), b"")))
    assert answers == [b"from-upstream"] * 5


def test_the_seed_snippet(server: Server, ca_path: str) -> None:
    port = server.port
    assert (
        unknot.http._client.get(f"https://127.0.0.1:{port}/text?body=seed", verify=ca_path).text
        == "seed"
    )
