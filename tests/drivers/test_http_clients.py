"""requests, urllib3 and httpx's sync client, unmodified, against a server that waits 0.2 s.

The server (servers/slow_http.py) is a ThreadingHTTPServer in its own process; each of the 50
fibers asks for its own item and must get that item back.
"""

from __future__ import annotations

from typing import Any

from drivers_support import SERVER_DELAY, require_module


def _path(i: int) -> str:
    return f"/item/{i}?delay={SERVER_DELAY}"


def test_requests(slow_http: Any, concurrently: Any) -> None:
    requests = require_module("requests")

    def work(i: int) -> Any:
        response = requests.get(slow_http.url + _path(i), timeout=10)
        response.raise_for_status()
        return response.json()["item"]

    assert concurrently(work).results == list(range(50))


def test_requests_shared_session(slow_http: Any, concurrently: Any) -> None:
    """One Session (one urllib3 pool, its locks shared by all fibers)."""
    requests = require_module("requests")
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=50)
    session = requests.Session()
    session.mount("http://", adapter)

    def work(i: int) -> Any:
        return session.get(slow_http.url + _path(i), timeout=10).json()["item"]

    assert concurrently(work).results == list(range(50))
    session.close()


def test_urllib3(slow_http: Any, concurrently: Any) -> None:
    urllib3 = require_module("urllib3")
    http = urllib3.PoolManager(maxsize=50)

    def work(i: int) -> Any:
        response = http.request("GET", slow_http.url + _path(i), timeout=10.0)
        assert response.status == 200
        return response.json()["item"]

    assert concurrently(work).results == list(range(50))
    http.clear()


def test_httpx_sync_client(slow_http: Any, concurrently: Any) -> None:
    httpx = require_module("httpx")
    client = httpx.Client(limits=httpx.Limits(max_connections=100), timeout=10.0)

    def work(i: int) -> Any:
        response = client.get(slow_http.url + _path(i))
        response.raise_for_status()
        return response.json()["item"]

    assert concurrently(work).results == list(range(50))
    client.close()
