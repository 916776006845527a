"""Import order does not matter to `unknot.patch()`, and ``python -m unknot`` runs plain scripts.

Each test runs a fresh interpreter (patching is process-wide): the servers are the driver tests'
(Redis on 127.0.0.1:6379, ``tests/drivers/servers/slow_http.py``), and a missing one skips the
test, or fails it under CI=true (``drivers_support.unavailable``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import drivers_support as support
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slow_http() -> Iterator[support.Server]:
    support.require_module("requests")
    support.require_module("urllib3")
    server = support.start_script("slow_http.py")
    try:
        yield server
    finally:
        support.stop(server.proc)


@pytest.fixture(scope="module")
def redis_port() -> int:
    support.require_module("redis")
    support.require_tcp("127.0.0.1", 6379, "Redis")
    return 6379


# Imports the drivers (and ``from socket import socket``) first, patches afterwards, then runs
# 50 fibers per library; prints one JSON object with what each run measured.
IMPORTED_FIRST = """
import json, sys, threading, time
from socket import AF_INET, SOCK_STREAM, socket     # a module global holding the original class
import redis, requests, urllib3                     # drivers imported before the patch

ORIGINAL = [socket]  # in a list: patch rebinds module globals holding the original, not this
import unknot
unknot.patch()

HTTP, REDIS_PORT = sys.argv[1], int(sys.argv[2])
report = {"rebound": socket is unknot.socket.socket and socket is not ORIGINAL[0]}


def raw_socket(i):
    s = socket(AF_INET, SOCK_STREAM)
    s.connect(("127.0.0.1", int(HTTP.rsplit(":", 1)[1])))
    s.sendall(f"GET /item/{i}?delay=0.2 HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n".encode())
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    return json.loads(data.split(b"\\r\\n\\r\\n", 1)[1])["item"]


def with_requests(i):
    return requests.get(f"{HTTP}/item/{i}?delay=0.2", timeout=10).json()["item"]


pool = urllib3.PoolManager(maxsize=50)


def with_urllib3(i):
    return pool.request("GET", f"{HTTP}/item/{i}?delay=0.2").json()["item"]


client = redis.Redis(host="127.0.0.1", port=REDIS_PORT)


def with_redis(i):
    assert client.blpop([f"unknot:import-order:{i}"], timeout=0.2) is None
    return i


def measure(work):
    idents = set()

    def one(i):
        idents.add(threading.get_ident())
        return work(i)

    threads = threading.active_count()
    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(one, i) for i in range(50)]
    return {
        "elapsed": time.monotonic() - t0,
        "correct": [f.result() for f in fibers] == list(range(50)),
        "main_thread_only": idents == {threading.main_thread().ident},
        "threads_grew": threading.active_count() > threads,
    }


def main():
    for work in (raw_socket, with_requests, with_urllib3, with_redis):
        report[work.__name__] = measure(work)


unknot.run(main)
print(json.dumps(report))
"""


def run_python(args: list[str], cwd: Path | None = None, timeout: float = 60) -> str:
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_drivers_imported_before_patch_are_cooperative(
    tmp_path: Path, slow_http: support.Server, redis_port: int
) -> None:
    script = tmp_path / "imported_first.py"
    script.write_text(IMPORTED_FIRST)
    report = json.loads(run_python([str(script), slow_http.url, str(redis_port)]))
    assert report.pop("rebound") is True
    assert set(report) == {"raw_socket", "with_requests", "with_urllib3", "with_redis"}
    for name, run in report.items():
        assert run["correct"], name
        assert run["main_thread_only"], name
        assert not run["threads_grew"], name
        assert 0.2 <= run["elapsed"] < support.LIMIT, (name, run["elapsed"])


# An ordinary script: nothing in it knows about unknot. Its last lines report, when it runs
# under unknot (and only then), how it ran; run plainly it is still a working program.
PLAIN_SCRIPT = """
import json, os, socket, sys, threading, time
from socket import socket as socket_class

import redis
import requests

LOCK = threading.Lock()                      # created while the module is imported
HTTP, REDIS_PORT = sys.argv[1], int(sys.argv[2])

KEY = f"unknot:plain-script:{os.getpid()}"
client = redis.Redis(host="127.0.0.1", port=REDIS_PORT, decode_responses=True)
client.delete(KEY)
t0 = time.monotonic()
items = []
for i in range(3):
    with LOCK:
        items.append(requests.get(f"{HTTP}/item/{i}?delay=0.1", timeout=10).json()["item"])
    client.rpush(KEY, i)
    time.sleep(0.05)
popped = [client.blpop([KEY], timeout=1)[1] for _ in range(3)]
empty = client.blpop([KEY], timeout=0.1)
report = {
    "items": items,
    "popped": popped,
    "empty": empty,
    "elapsed": time.monotonic() - t0,
    "threads": threading.active_count(),
}
if "unknot" in sys.modules:                  # the check, inert when run without unknot
    unknot = sys.modules["unknot"]
    fiber = unknot.current()
    report["fiber"] = fiber.name if fiber is not None else None
    report["socket_patched"] = socket.socket is unknot.socket.socket
    report["imported_name_patched"] = socket_class is unknot.socket.socket
    report["lock_type"] = type(LOCK).__module__ + "." + type(LOCK).__name__
    report["sleep_patched"] = time.sleep is getattr(sys.modules.get("unknot.time"), "sleep", 0)
    report["hub_thread"] = threading.get_ident() == threading.main_thread().ident
print(json.dumps(report))
"""


def test_python_m_unknot_runs_an_unmodified_script(
    tmp_path: Path, slow_http: support.Server, redis_port: int
) -> None:
    """The same plain script, with and without ``python -m unknot``: same results; under
    unknot its main code is the root fiber, patched before it imported anything."""
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(PLAIN_SCRIPT))
    args = [str(script), slow_http.url, str(redis_port)]
    plain: dict[str, Any] = json.loads(run_python(args, cwd=tmp_path))
    patched: dict[str, Any] = json.loads(run_python(["-m", "unknot", *args], cwd=ROOT))
    for key in ("items", "popped", "empty"):
        assert plain[key] == patched[key], key
    assert patched["items"] == [0, 1, 2] and patched["popped"] == ["0", "1", "2"]
    assert patched["empty"] is None
    assert "fiber" not in plain
    assert patched["fiber"] == "root"
    assert patched["socket_patched"] and patched["imported_name_patched"]
    assert patched["lock_type"] == "unknot._patch._hybrid.Lock"
    assert patched["sleep_patched"] and patched["hub_thread"]
    assert patched["threads"] == 1
