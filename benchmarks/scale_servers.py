"""The servers that ``benchmarks/scale.py`` holds connections on, one peer per KIND.

Usage: ``python benchmarks/scale_servers.py KIND PORT``; runs until killed. The echo kinds are
``echo_servers.py``'s (the same servers ``echo.py`` measures). The HTTP kinds answer
``GET /`` with ``Hello, world!`` and keep idle keep-alive connections open for 10 minutes:
the servers' default idle timeouts (5 s for unknot.http and uvicorn) would otherwise close the
very connections the benchmark holds.

Exit status 3: the peer is unavailable here (its package is missing).
"""

from __future__ import annotations

import os
import sys

# This directory holds ``http.py``, which must not hide the standard library's ``http``.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import argparse  # noqa: E402
import socket  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import echo_servers  # noqa: E402

IDLE_TIMEOUT = 600.0
HELLO = b"Hello, world!"


def serve_http_unknot(host: str, port: int) -> None:
    """unknot.http's server with a plain handler."""
    try:
        from unknot import http
    except ImportError as exc:
        raise echo_servers.Unavailable(f"unknot.http is not importable: {exc}") from exc
    from benchlib import ab

    ab.assert_unknot_source(sys.modules["unknot"])
    headers = {"content-type": "text/plain"}

    def handler(request: Any) -> tuple[int, dict[str, str], bytes]:
        return 200, headers, HELLO

    timeouts = http.Timeouts(keep_alive=IDLE_TIMEOUT)
    http.serve(handler, host, port, backlog=echo_servers.BACKLOG, timeouts=timeouts)


def _wsgi_hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def serve_http_gevent(host: str, port: int) -> None:
    """gevent.pywsgi.WSGIServer with TCP_NODELAY and no access log (no idle timeout)."""
    pywsgi = echo_servers._require("gevent.pywsgi")

    class NoDelayHandler(pywsgi.WSGIHandler):  # type: ignore[name-defined]
        def handle(self) -> Any:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return super().handle()

    pywsgi.WSGIServer(
        (host, port),
        _wsgi_hello,
        backlog=echo_servers.BACKLOG,
        log=None,
        handler_class=NoDelayHandler,
    ).serve_forever()


async def _asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": HELLO})


def serve_http_uvicorn(host: str, port: int) -> None:
    """uvicorn (httptools, uvloop when installed), no access log, a 10-minute idle timeout."""
    uvicorn = echo_servers._require("uvicorn")
    uvicorn.run(
        _asgi_hello,
        host=host,
        port=port,
        backlog=echo_servers.BACKLOG,
        access_log=False,
        log_level="warning",
        timeout_keep_alive=int(IDLE_TIMEOUT),
        lifespan="off",
    )


SERVERS: dict[str, Callable[[str, int], None]] = {
    **echo_servers.SERVERS,
    "http-unknot": serve_http_unknot,
    "http-gevent": serve_http_gevent,
    "http-uvicorn": serve_http_uvicorn,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    echo_servers._raise_fd_limit()
    try:
        SERVERS[args.kind](args.host, args.port)
    except echo_servers.Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return echo_servers.UNAVAILABLE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
