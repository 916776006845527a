"""Clients nobody here wrote get correct answers from the server: curl, wrk, requests, httpx,
urllib3, http.client and aiohttp, over HTTP and (curl, requests, httpx) HTTPS."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import ServerThread

from unknot.http import App, Limits, Request, Response

pytestmark = pytest.mark.timeout(60)

CURL = shutil.which("curl")
WRK = shutil.which("wrk")
STREAM_CHUNKS = [b"chunk %03d\n" % i for i in range(100)]
FILE_SIZE = 200_000


def make_app(file_path: Path) -> App:
    app = App()

    @app.get("/")
    def hello(request: Request) -> Any:
        return 200, {"content-type": "text/plain"}, b"Hello, world!"

    @app.post("/echo")
    def echo(request: Request) -> Any:
        digest = hashlib.sha256()
        size = 0
        for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return Response.json({"size": size, "sha256": digest.hexdigest()})

    @app.get("/stream")
    def stream(request: Request) -> Any:
        return 200, {"content-type": "text/plain"}, iter(STREAM_CHUNKS)

    @app.get("/file")
    def file(request: Request) -> Response:
        return Response.file(file_path)

    @app.get("/client")
    def client(request: Request) -> Any:
        return Response.json({"port": request.client[1], "scheme": request.scheme})

    return app


@pytest.fixture(scope="module")
def file_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interop") / "data.bin"
    path.write_bytes(bytes(range(256)) * (FILE_SIZE // 256) + b"x" * (FILE_SIZE % 256))
    return path


@pytest.fixture(scope="module")
def server(file_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_app(file_path), limits=Limits(max_body_size=64 * 1024 * 1024)) as srv:
        yield srv


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return context, str(ca_path)


@pytest.fixture(scope="module")
def tls_server(file_path: Path, tls: tuple[ssl.SSLContext, str]) -> Iterator[ServerThread]:
    with ServerThread(make_app(file_path), ssl=tls[0]) as srv:
        yield srv


def upload(size: int) -> tuple[bytes, dict[str, Any]]:
    data = bytes(i % 251 for i in range(size))
    return data, {"size": size, "sha256": hashlib.sha256(data).hexdigest()}


# -- http.client -----------------------------------------------------------------------------


def test_http_client(server: ServerThread, file_path: Path) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"Hello, world!")
        sock = conn.sock
        conn.request("HEAD", "/file")
        response = conn.getresponse()
        assert response.getheader("content-length") == str(FILE_SIZE)
        assert response.read() == b""
        conn.request("GET", "/stream")
        response = conn.getresponse()
        assert response.getheader("transfer-encoding") == "chunked"
        assert response.read() == b"".join(STREAM_CHUNKS)
        data, expected = upload(100_000)
        conn.request(
            "POST", "/echo", body=iter([data[:50_000], data[50_000:]]), encode_chunked=True
        )
        response = conn.getresponse()
        assert response.status == 200
        import json

        assert json.loads(response.read()) == expected
        conn.request("GET", "/file")
        assert conn.getresponse().read() == file_path.read_bytes()
        assert conn.sock is sock  # all on one kept-alive connection
    finally:
        conn.close()


# -- requests --------------------------------------------------------------------------------


def test_requests(server: ServerThread, file_path: Path) -> None:
    requests = pytest.importorskip("requests")
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(server.url + "/", timeout=10)
        assert (response.status_code, response.text) == (200, "Hello, world!")
        first = session.get(server.url + "/client", timeout=10).json()["port"]
        assert session.get(server.url + "/client", timeout=10).json()["port"] == first
        data, expected = upload(3_000_000)
        assert session.post(server.url + "/echo", data=data, timeout=10).json() == expected
        chunked = session.post(
            server.url + "/echo", data=iter([data[:1000], data[1000:]]), timeout=10
        )
        assert chunked.json() == expected
        with session.get(server.url + "/stream", stream=True, timeout=10) as streamed:
            assert b"".join(streamed.iter_content(7)) == b"".join(STREAM_CHUNKS)
        assert session.get(server.url + "/file", timeout=10).content == file_path.read_bytes()
        assert session.head(server.url + "/file", timeout=10).headers["content-length"] == str(
            FILE_SIZE
        )
        assert session.get(server.url + "/missing", timeout=10).status_code == 404


def test_requests_https(
    tls_server: ServerThread, tls: tuple[ssl.SSLContext, str], file_path: Path
) -> None:
    requests = pytest.importorskip("requests")
    with requests.Session() as session:
        session.trust_env = False
        session.verify = tls[1]
        assert tls_server.url.startswith("https://")
        assert session.get(tls_server.url + "/", timeout=10).text == "Hello, world!"
        assert session.get(tls_server.url + "/client", timeout=10).json()["scheme"] == "https"
        data, expected = upload(500_000)
        assert session.post(tls_server.url + "/echo", data=data, timeout=10).json() == expected
        # No sendfile through TLS: the file is read and written.
        assert session.get(tls_server.url + "/file", timeout=10).content == file_path.read_bytes()
        streamed = session.get(tls_server.url + "/stream", timeout=10)
        assert streamed.content == b"".join(STREAM_CHUNKS)


# -- httpx -----------------------------------------------------------------------------------


def test_httpx(server: ServerThread, file_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as client:
        assert client.get("/").text == "Hello, world!"
        data, expected = upload(1_000_000)
        assert client.post("/echo", content=data).json() == expected
        assert client.post("/echo", content=iter([data[:10], data[10:]])).json() == expected
        with client.stream("GET", "/stream") as response:
            assert b"".join(response.iter_bytes()) == b"".join(STREAM_CHUNKS)
        assert client.get("/file").content == file_path.read_bytes()
        assert client.head("/").headers["content-length"] == "13"


def test_httpx_https(tls_server: ServerThread, tls: tuple[ssl.SSLContext, str]) -> None:
    httpx = pytest.importorskip("httpx")
    verify = ssl.create_default_context(cafile=tls[1])
    with httpx.Client(
        base_url=tls_server.url, trust_env=False, verify=verify, timeout=10
    ) as client:
        assert client.get("/").text == "Hello, world!"
        assert client.get("/stream").content == b"".join(STREAM_CHUNKS)


# -- urllib3 ---------------------------------------------------------------------------------


def test_urllib3(server: ServerThread, file_path: Path) -> None:
    urllib3 = pytest.importorskip("urllib3")
    with urllib3.PoolManager() as pool:
        response = pool.request("GET", server.url + "/", timeout=10)
        assert (response.status, response.data) == (200, b"Hello, world!")
        data, expected = upload(200_000)
        assert pool.request("POST", server.url + "/echo", body=data, timeout=10).json() == expected
        streamed = pool.request("GET", server.url + "/stream", preload_content=False, timeout=10)
        assert b"".join(streamed.stream(10)) == b"".join(STREAM_CHUNKS)
        streamed.release_conn()
        assert pool.request("GET", server.url + "/file", timeout=10).data == file_path.read_bytes()


# -- aiohttp ---------------------------------------------------------------------------------


def test_aiohttp_client(server: ServerThread, file_path: Path) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    data, expected = upload(2_000_000)

    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(base_url=server.url, timeout=timeout) as session:
            async with session.get("/") as response:
                assert (response.status, await response.text()) == (200, "Hello, world!")
            async with session.post("/echo", data=data) as response:
                assert await response.json() == expected
            async with session.get("/stream") as response:
                pieces = [piece async for piece in response.content.iter_chunked(5)]
                assert b"".join(pieces) == b"".join(STREAM_CHUNKS)
            async with session.get("/file") as response:
                assert await response.read() == file_path.read_bytes()
            async with session.head("/") as response:
                assert response.headers["content-length"] == "13"

    asyncio.run(main())


# -- curl ------------------------------------------------------------------------------------


def curl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "--silent", "--show-error", "--noproxy", "*", "--max-time", "10", *args],
        input=data,
        capture_output=True,
        timeout=20,
        check=True,
    )


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl(server: ServerThread, file_path: Path, tmp_path: Path) -> None:
    out = curl("--include", server.url + "/").stdout
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"\r\n\r\nHello, world!")
    assert curl("--http1.0", server.url + "/stream").stdout == b"".join(STREAM_CHUNKS)
    assert curl(server.url + "/file").stdout == file_path.read_bytes()
    head = curl("--head", server.url + "/file").stdout
    assert re.search(rb"content-length: %d\r\n" % FILE_SIZE, head, re.IGNORECASE)
    # A 2 MB upload: curl asks with Expect: 100-continue first.
    data, expected = upload(2_000_000)
    body = tmp_path / "upload.bin"
    body.write_bytes(data)
    verbose = curl("--verbose", "--data-binary", f"@{body}", server.url + "/echo")
    assert b"Expect: 100-continue" in verbose.stderr
    assert b"HTTP/1.1 100 Continue" in verbose.stderr
    import json

    assert json.loads(verbose.stdout) == expected
    # A chunked upload from stdin.
    chunked = curl("--upload-file", "-", "--request", "POST", server.url + "/echo", data=data)
    assert json.loads(chunked.stdout) == expected
    # Several URLs: one kept-alive connection.
    many = curl("--verbose", server.url + "/", server.url + "/", server.url + "/")
    assert many.stdout == b"Hello, world!" * 3
    assert many.stderr.count(b"Re-using existing connection") == 2


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_https(
    tls_server: ServerThread, tls: tuple[ssl.SSLContext, str], file_path: Path
) -> None:
    assert curl("--cacert", tls[1], tls_server.url + "/").stdout == b"Hello, world!"
    assert curl("--cacert", tls[1], tls_server.url + "/file").stdout == file_path.read_bytes()
    failed = subprocess.run(
        [CURL, "--silent", "--noproxy", "*", "--max-time", "10", tls_server.url + "/"],
        capture_output=True,
        timeout=20,
    )
    assert failed.returncode != 0  # an unknown CA is refused: this is really TLS


# -- wrk -------------------------------------------------------------------------------------


@pytest.mark.skipif(WRK is None, reason="wrk is not installed")
def test_wrk_gets_only_2xx_and_no_socket_errors(server: ServerThread) -> None:
    assert WRK is not None
    out = subprocess.run(
        [WRK, "-t1", "-c10", "-d1s", server.url + "/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    assert requests_done > 100, out
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out


def test_curl_and_wrk_are_there_under_ci() -> None:
    """The curl and wrk tests skip on a machine without them, but CI must run them
    (``make services`` installs both)."""
    import os

    if os.environ.get("CI") != "true":
        pytest.skip("only checked under CI=true")
    assert CURL is not None, "curl is not installed (make services installs it)"
    assert WRK is not None, "wrk is not installed (make services installs it)"
