"""The HTTP clients that ``benchmarks/http.py`` measures, one per KIND, each in its own process.

Usage: ``python benchmarks/http_clients.py KIND URL [--workers 100] [--warmup S] [--duration S]
[--watch-pgid PGID]``. The client runs ``--workers`` concurrent workers, each looping keep-alive
``GET URL`` requests (which must answer 200 with ``Hello, world!``), lets them run ``--warmup``
seconds, counts the good responses completed in the next ``--duration`` seconds, stops the
workers, and prints one JSON line::

    {"kind": ..., "requests": N, "seconds": S, "rps": R, "errors": E, "first_error": "...",
     "client_cpu": share of one CPU, "server_cpu": share of one CPU or -1}

``server_cpu`` is the CPU time of the processes in group ``--watch-pgid`` (the nginx under
test) during the counted window, divided by its length: near 1.0 would mean the server, not
the client, limited the run.

The clients:

* ``unknot``: ``--workers`` fibers sharing one ``unknot.http.Client`` (pooled keep-alive);
  ``http.py --unknot-python PY`` also runs it as ``unknot-compiled`` and ``unknot-pure``.
* ``aiohttp``: one ``ClientSession`` and ``--workers`` tasks on stock asyncio (no uvloop).
* ``httpx``: one ``httpx.AsyncClient`` and ``--workers`` tasks on stock asyncio.
* ``requests-gevent``: ``gevent.monkey.patch_all()``, ``--workers`` greenlets, one
  ``requests.Session`` each.

Exit status 3 means the client is unavailable here (its package is missing, or
``unknot.http`` has no ``Client`` yet).
"""

from __future__ import annotations

import os
import sys

# This directory holds ``http.py``, which must not hide the standard library's ``http``
# package (requests, aiohttp and httpx all import it): keep the directory last on the path.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

UNAVAILABLE = 3
HELLO = b"Hello, world!"
REQUEST_TIMEOUT = 10.0  # seconds, where the client takes one


class Unavailable(Exception):
    """The client cannot run in this environment."""


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"cannot import {module}: {exc}") from exc


def group_cpu_seconds(pgid: int) -> float:
    """User plus system CPU seconds used so far by the live processes of group ``pgid`` (all
    their threads), read from ``/proc``; -1.0 if ``/proc`` cannot be read."""
    ticks = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return -1.0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # the process has gone
        # Fields after the command name (which may hold spaces) start with the state.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5, pgrp
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15, utime and stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Tally:
    """What the workers did: good responses per worker, and the errors."""

    def __init__(self, workers: int) -> None:
        self.good = [0] * workers
        self.errors = 0
        self.first_error = ""
        self.stop = False

    def check(self, i: int, status: int, body: bytes) -> None:
        """Count one response of worker ``i``: good only if it is the expected one."""
        if status == 200 and body == HELLO:
            self.good[i] += 1
        else:
            self.failed(f"unexpected response: status {status}, body {body[:40]!r}")

    def failed(self, what: object) -> None:
        """Count one failed request (an exception or a wrong response)."""
        self.errors += 1
        if not self.first_error:
            self.first_error = str(what) or type(what).__name__


class Window:
    """The counted window: good responses, wall time and CPU time between ``start`` and
    ``end``, and the watched server group's CPU time."""

    def __init__(self, tally: Tally, pgid: int | None) -> None:
        self.tally, self.pgid = tally, pgid

    def _server(self) -> float:
        return group_cpu_seconds(self.pgid) if self.pgid else -1.0

    def start(self) -> None:
        """Open the window: note the counts and clocks."""
        self.good0, self.errors0 = sum(self.tally.good), self.tally.errors
        self.t0, self.cpu0, self.server0 = time.perf_counter(), time.process_time(), self._server()

    def end(self) -> None:
        """Close the window: what happened since ``start``."""
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        server1 = self._server()
        self.server_cpu = (
            (server1 - self.server0) / self.seconds if server1 >= 0 and self.server0 >= 0 else -1.0
        )
        self.requests = sum(self.tally.good) - self.good0
        self.errors = self.tally.errors - self.errors0

    def report(self, kind: str) -> dict[str, Any]:
        """The JSON record ``http.py`` reads."""
        return {
            "kind": kind,
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.requests / self.seconds,
            "errors": self.errors,
            "first_error": self.tally.first_error,
            "client_cpu": self.cpu / self.seconds,
            "server_cpu": self.server_cpu,
        }


# ---- blocking style: unknot fibers, gevent greenlets ---------------------------------------


def _measure_blocking(
    window: Window, sleep: Callable[[float], object], warmup: float, duration: float
) -> None:
    """From the spawning fiber/greenlet: let the workers warm up, then count."""
    sleep(warmup)
    window.start()
    sleep(duration)
    window.end()
    window.tally.stop = True


def _content(response: Any) -> bytes:
    """The body of an ``unknot.http`` response: ``.content`` if it has it, else ``.read()``."""
    content = getattr(response, "content", None)
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    return bytes(response.read())


def run_unknot(url: str, workers: int, warmup: float, duration: float, pgid: int | None) -> Window:
    """``workers`` fibers sharing one ``unknot.http.Client``."""
    unknot = _require("unknot")
    try:
        http = importlib.import_module("unknot.http")
    except ImportError as exc:
        raise Unavailable(f"unknot.http is not importable: {exc}") from exc
    if not hasattr(http, "Client"):
        raise Unavailable("unknot.http has no Client yet")
    from benchlib import ab

    ab.assert_unknot_source(unknot)  # the build http.py meant (--unknot-python)
    tally = Tally(workers)
    window = Window(tally, pgid)

    def worker(client: Any, i: int) -> None:
        get = client.get
        while not tally.stop:
            try:
                response = get(url)
                tally.check(i, response.status_code, _content(response))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                tally.failed(exc)

    def main() -> None:
        client = http.Client()
        try:
            with unknot.TaskGroup() as tg:
                for i in range(workers):
                    tg.spawn(worker, client, i)
                _measure_blocking(window, unknot.sleep, warmup, duration)
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()

    unknot.run(main)
    return window


def run_requests_gevent(
    url: str, workers: int, warmup: float, duration: float, pgid: int | None
) -> Window:
    """``workers`` greenlets after ``gevent.monkey.patch_all()``, one ``requests.Session`` each."""
    monkey = _require("gevent.monkey")
    monkey.patch_all()
    gevent = _require("gevent")
    requests = _require("requests")
    tally = Tally(workers)
    window = Window(tally, pgid)

    def worker(i: int) -> None:
        with requests.Session() as session:
            while not tally.stop:
                try:
                    response = session.get(url, timeout=REQUEST_TIMEOUT)
                    tally.check(i, response.status_code, response.content)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    tally.failed(exc)

    greenlets = [gevent.spawn(worker, i) for i in range(workers)]
    _measure_blocking(window, gevent.sleep, warmup, duration)
    gevent.joinall(greenlets, timeout=REQUEST_TIMEOUT + 5)
    return window


# ---- asyncio: aiohttp, httpx ---------------------------------------------------------------


async def _measure_async(
    window: Window, workers: int, worker: Any, warmup: float, duration: float
) -> None:
    """Start the worker tasks, let them warm up, count, then stop them."""
    import asyncio

    tasks = [asyncio.create_task(worker(i)) for i in range(workers)]
    await asyncio.sleep(warmup)
    window.start()
    await asyncio.sleep(duration)
    window.end()
    window.tally.stop = True
    await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)


def run_aiohttp(url: str, workers: int, warmup: float, duration: float, pgid: int | None) -> Window:
    """``workers`` tasks sharing one ``aiohttp.ClientSession`` on stock asyncio."""
    import asyncio

    aiohttp = _require("aiohttp")
    tally = Tally(workers)
    window = Window(tally, pgid)

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=workers)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker(i: int) -> None:
                while not tally.stop:
                    try:
                        async with session.get(url) as response:
                            tally.check(i, response.status, await response.read())
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        tally.failed(exc)

            await _measure_async(window, workers, worker, warmup, duration)

    asyncio.run(main())
    return window


def run_httpx(url: str, workers: int, warmup: float, duration: float, pgid: int | None) -> Window:
    """``workers`` tasks sharing one ``httpx.AsyncClient`` on stock asyncio."""
    import asyncio

    httpx = _require("httpx")
    tally = Tally(workers)
    window = Window(tally, pgid)

    async def main() -> None:
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT) as client:

            async def worker(i: int) -> None:
                while not tally.stop:
                    try:
                        response = await client.get(url)
                        tally.check(i, response.status_code, response.content)
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        tally.failed(exc)

            await _measure_async(window, workers, worker, warmup, duration)

    asyncio.run(main())
    return window


CLIENTS: dict[str, Callable[[str, int, float, float, int | None], Window]] = {
    "unknot": run_unknot,
    "aiohttp": run_aiohttp,
    "httpx": run_httpx,
    "requests-gevent": run_requests_gevent,
}


def main(argv: list[str] | None = None) -> int:
    """Run one client and print its JSON line; exit status 3 if it is unavailable here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(CLIENTS))
    parser.add_argument("url")
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--watch-pgid", type=int, help="report this process group's CPU share")
    args = parser.parse_args(argv)
    try:
        window = CLIENTS[args.kind](
            args.url, args.workers, args.warmup, args.duration, args.watch_pgid
        )
    except Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return UNAVAILABLE
    print(json.dumps(window.report(args.kind)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
