"""Micro benchmark of the sans-I/O HTTP layer: parse one request, frame one response.

A script, not a test (see "Benchmark method" in the design brief): it reports microseconds per
request/response cycle for unknot.http's ServerConnection against the floor (bare httptools
callbacks and a prebuilt response: the least any httptools-based server can do) and against
h11, when installed. Run it with the server pinned to one CPU for steadier numbers::

    taskset -c 0 python benchmarks/http_protocol.py [--number 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import httptools  # noqa: E402

from unknot.http import NEED_DATA, ServerConnection  # noqa: E402

# What wrk sends, and a hello-world answer.
REQUEST = (
    b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
)
HEADERS = [(b"content-type", b"text/plain")]
BODY = b"Hello, world!"


def unknot_cycle() -> Callable[[], bytes]:
    conn = ServerConnection()

    def cycle() -> bytes:
        conn.receive_data(REQUEST)
        events = conn.next_events()
        assert events is not NEED_DATA
        return conn.send_response(200, HEADERS, BODY)

    return cycle


class _Floor:
    """The least an httptools server does: keep the target and headers, a prebuilt answer."""

    __slots__ = ("parser", "target", "headers", "done")

    RESPONSE = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n"
        b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nHello, world!"
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.target = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers = []

    def on_message_complete(self) -> None:
        self.done = True

    def cycle(self) -> bytes:
        self.parser.feed_data(REQUEST)
        return self.RESPONSE


def h11_cycle() -> Callable[[], bytes] | None:
    try:
        import h11
    except ImportError:
        return None
    conn = h11.Connection(h11.SERVER)

    def cycle() -> bytes:
        conn.receive_data(REQUEST)
        conn.next_event()  # Request
        conn.next_event()  # EndOfMessage
        out = conn.send(
            h11.Response(
                status_code=200, headers=[("content-type", "text/plain"), ("content-length", "13")]
            )
        )
        out += conn.send(h11.Data(data=BODY))
        out += conn.send(h11.EndOfMessage())
        conn.start_next_cycle()
        return out

    return cycle


def best_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000, help="cycles per timing")
    parser.add_argument("--repeat", type=int, default=7, help="timings; the best is kept")
    args = parser.parse_args()

    cases: list[tuple[str, Callable[[], object] | None]] = [
        ("floor: bare httptools + prebuilt response", _Floor().cycle),
        ("unknot.http ServerConnection", unknot_cycle()),
        ("h11", h11_cycle()),
    ]
    print(
        f"python {sys.version.split()[0]}, httptools {httptools.__version__}; "
        f"best of {args.repeat} x {args.number} cycles (parse 1 request + frame 1 response)"
    )
    floor = None
    for name, fn in cases:
        if fn is None:
            print(f"  {name:45s} unavailable")
            continue
        us = best_us(fn, args.number, args.repeat)
        floor = floor or us
        print(f"  {name:45s} {us:6.2f} us/request  ({us / floor:4.2f}x the floor)")


if __name__ == "__main__":
    main()
