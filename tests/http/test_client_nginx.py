"""The client against a real nginx, started here with a generated configuration on a free
loopback port. Skipped when nginx is not installed, except under ``CI=true``, where that fails.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import Server, pattern, serving

import unknot
from unknot.http._client import Client

pytestmark = [pytest.mark.timeout(60)]

TEXT = "The quick brown fox jumps over the lazy dog.\n" * 500
BIG = 5 * 1024 * 1024


def find_nginx() -> str:
    """nginx's path; skip (fail under CI=true) when it is missing."""
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (apt-get install nginx-light)")
        pytest.skip("nginx is not installed")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(root: Path, port: int, upstream: int) -> str:
    temp = "\n".join(
        f"    {kind}_temp_path {root / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
master_process off;
pid {root / "nginx.pid"};
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000;
    default_type application/octet-stream;
    types {{ text/plain txt; }}
{temp}
    server {{
        listen 127.0.0.1:{port};
        location = /hello {{ default_type text/plain; return 200 "Hello, world!"; }}
        location = /conn {{ default_type text/plain;
                            return 200 "$connection $connection_requests"; }}
        location = /json {{ default_type application/json; return 200 '{{"answer": 42}}'; }}
        location = /moved {{ return 301 /hello; }}
        location = /missing {{ return 404; }}
        location /files/ {{
            alias {root / "files"}/;
            gzip on;
            gzip_types text/plain;
            gzip_min_length 100;
        }}
        location /echo {{
            client_max_body_size 10m;
            proxy_http_version 1.1;
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Server]:
    with serving() as running:
        yield running


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, upstream: Server) -> Iterator[str]:
    """The base URL of a running nginx."""
    binary = find_nginx()
    root = tmp_path_factory.mktemp("nginx")
    (root / "files").mkdir()
    (root / "files" / "text.txt").write_text(TEXT)
    (root / "files" / "big.bin").write_bytes(pattern(BIG))
    port = free_port()
    (root / "nginx.conf").write_text(config(root, port, upstream.port))
    process = subprocess.Popen(
        [binary, "-p", str(root), "-c", str(root / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    assert process.stderr is not None
                    pytest.fail(f"nginx did not start: {process.stderr.read().decode()}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


@pytest.mark.unknot
def test_get_and_keep_alive(nginx: str) -> None:
    with Client(base_url=nginx) as client:
        r = client.get("/hello")
        assert (r.status_code, r.text, r.headers["server"].split("/")[0]) == (
            200,
            "Hello, world!",
            "nginx",
        )
        seen = [client.get("/conn").text.split() for _ in range(10)]
    assert len({connection for connection, _ in seen}) == 1  # one connection...
    assert [int(n) for _, n in seen] == list(range(2, 12))  # ...carrying every request


@pytest.mark.unknot
def test_json_head_redirect_and_status(nginx: str) -> None:
    with Client(base_url=nginx) as client:
        assert client.get("/json").json() == {"answer": 42}
        r = client.head("/files/big.bin")
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", str(BIG))
        r = client.get("/moved")
        assert r.text == "Hello, world!" and r.history[0].status_code == 301
        r = client.get("/missing")
        assert r.status_code == 404 and not r.ok
        assert client.get("/conn").text.endswith(" 6")  # all on one connection


@pytest.mark.unknot
def test_gzip_from_nginx(nginx: str) -> None:
    r = unknot.http._client.get(nginx + "/files/text.txt")
    assert r.headers["content-encoding"] == "gzip"
    assert r.text == TEXT
    with Client() as client, client.stream("GET", nginx + "/files/text.txt") as streamed:
        raw = b"".join(streamed.iter_raw())
    assert gzip.decompress(raw).decode() == TEXT


@pytest.mark.unknot
def test_streaming_a_large_file_from_nginx(nginx: str) -> None:
    received = bytearray()
    with Client() as client, client.stream("GET", nginx + "/files/big.bin") as r:
        for chunk in r.iter_bytes():
            assert len(chunk) <= 65536
            received += chunk
    assert bytes(received) == pattern(BIG)


@pytest.mark.unknot
def test_chunked_upload_through_nginx(nginx: str) -> None:
    pieces = [bytes([i % 256]) * 4000 for i in range(300)]
    with Client() as client:
        r = client.post(nginx + "/echo", content=iter(pieces))
        seen = r.json()
    # nginx accepted the chunked body and passed it on whole (with a Content-Length).
    assert seen["body"].encode("latin-1") == b"".join(pieces)
    assert dict(seen["headers"])["content-length"] == str(sum(map(len, pieces)))


@pytest.mark.unknot
def test_100_fibers_against_nginx(nginx: str) -> None:
    connections: set[str] = set()
    bodies: list[str] = []

    def worker(client: Client) -> None:
        for _ in range(10):
            connections.add(client.get("/conn").text.split()[0])
            bodies.append(client.get("/hello").text)

    with Client(base_url=nginx) as client:
        with unknot.TaskGroup() as tg:
            for _ in range(100):
                tg.spawn(worker, client)
    assert bodies == ["Hello, world!"] * 1000
    assert len(connections) <= 100


def test_plain_blocking_call_outside_fibers(nginx: str) -> None:
    assert unknot.http._client.get(nginx + "/hello").text == "Hello, world!"
