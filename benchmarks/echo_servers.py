"""The echo servers that ``benchmarks/echo.py`` measures, one peer per KIND.

Usage: ``python benchmarks/echo_servers.py KIND PORT [--host HOST]``; the server runs until it
is killed. ``echo.py`` starts each one pinned to a CPU with ``taskset``.

Every server echoes whatever it reads, listens with SO_REUSEADDR and a backlog of at least
2048, sets TCP_NODELAY on accepted sockets and raises RLIMIT_NOFILE to its hard limit. The
blocking peers (``unknot``, ``gevent``, ``threads``) run the very same blocking loop,
``_echo_blocking``; only the runtime underneath differs.

``c-epoll+NNNns`` (for example ``c-epoll+500ns``) is the native server spending NNN ns of user
time on every chunk it reads before echoing it (``loadgen/echoserver.c``'s SPIN_NS): the same
syscalls as ``c-epoll``, plus a stand-in for a server's own work per message.

Exit status 3 means the peer is unavailable here (its package is not installed, or unknot does
not provide ``serve_tcp`` yet); the harness then skips the peer instead of inventing numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import resource
import socket
import sys
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

BACKLOG = 2048
CHUNK = 65536
UNAVAILABLE = 3


class Unavailable(Exception):
    """The peer cannot run in this environment."""


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"cannot import {module}: {exc}") from exc


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _nodelay(sock: Any) -> None:
    """Turn off Nagle on an accepted socket (or socket-like object) if it lets us."""
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is not None:
        setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _listener(host: str, port: int) -> socket.socket:
    """A blocking listening socket with SO_REUSEADDR and the shared backlog."""
    return socket.create_server((host, port), backlog=BACKLOG, reuse_port=False)


def _echo_blocking(conn: Any) -> None:
    """The blocking echo handler: read whatever arrived, write it all back, until EOF."""
    try:
        while True:
            data = conn.recv(CHUNK)
            if not data:
                break
            conn.sendall(data)
    except ConnectionError:
        pass  # the load generator closes with replies in flight: a reset is normal


# ---- native calibration server -----------------------------------------------------------


def serve_c_epoll(host: str, port: int, spin_ns: int = 0) -> None:
    """Replace this process with the native epoll echo server (built on demand), spending
    ``spin_ns`` of user time per chunk read when it is not 0."""
    from benchlib import native

    binary = str(native.build("echoserver"))
    os.execv(binary, [binary, str(port), host, str(spin_ns)])


SPIN_PREFIX, SPIN_SUFFIX = "c-epoll+", "ns"
SPIN_MAX_NS = 1_000_000


def spin_ns(kind: str) -> int | None:
    """The nanoseconds of a ``c-epoll+NNNns`` peer name, None for any other name.

    Raises ValueError for a malformed one (``c-epoll+`` not followed by digits and ``ns``, or
    more than a millisecond).
    """
    if not kind.startswith(SPIN_PREFIX):
        return None
    digits = kind[len(SPIN_PREFIX) :].removesuffix(SPIN_SUFFIX)
    if not kind.endswith(SPIN_SUFFIX) or not digits.isdigit() or int(digits) > SPIN_MAX_NS:
        raise ValueError(
            f"{kind!r}: a spinning native peer is named {SPIN_PREFIX}NNN{SPIN_SUFFIX}, "
            f"NNN from 0 to {SPIN_MAX_NS:,} nanoseconds"
        )
    return int(digits)


def is_server(kind: str) -> bool:
    """Whether ``kind`` names a server: one of SERVERS or a well-formed spinning native peer."""
    try:
        return kind in SERVERS or spin_ns(kind) is not None
    except ValueError:
        return False


def server(kind: str) -> Callable[[str, int], None]:
    """The function that runs peer ``kind`` (KeyError or ValueError for an unknown name)."""
    ns = spin_ns(kind)
    if ns is not None:
        return partial(serve_c_epoll, spin_ns=ns)
    return SERVERS[kind]


# ---- blocking style ----------------------------------------------------------------------


def serve_unknot(host: str, port: int) -> None:
    """unknot: one fiber per connection running the plain blocking handler.

    serve_tcp sets TCP_NODELAY on accepted sockets itself.
    """
    try:
        unknot = importlib.import_module("unknot")
    except ImportError as exc:
        raise Unavailable(f"unknot is not importable: {exc}") from exc
    from benchlib import ab

    # The tree echo.py meant (this checkout, or --ab REF's), and the build (--unknot-python).
    ab.assert_unknot_source(unknot)

    def handler(conn: Any, addr: Any) -> None:
        _echo_blocking(conn)

    unknot.serve_tcp(handler, host, port, backlog=BACKLOG)


def serve_gevent(host: str, port: int) -> None:
    """gevent.server.StreamServer: a greenlet per connection, the same blocking handler."""
    server_mod = _require("gevent.server")

    def handler(conn: Any, addr: Any) -> None:
        _nodelay(conn)
        _echo_blocking(conn)

    # StreamServer binds with SO_REUSEADDR on POSIX (its reuse_addr default).
    server_mod.StreamServer((host, port), handler, backlog=BACKLOG).serve_forever()


def serve_threads(host: str, port: int) -> None:
    """One OS thread per connection, the same blocking handler."""

    def handler(conn: socket.socket) -> None:
        with conn:
            _nodelay(conn)
            _echo_blocking(conn)

    with _listener(host, port) as listener:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()


def serve_greenlet_floor(host: str, port: int) -> None:
    """The same blocking handler on the least a greenlet server can do (greenlet_floor.py),
    compiled with mypyc as unknot's hot path is: what greenlet and the interpreter cost alone."""
    from benchlib import native

    try:
        importlib.import_module("unknot._nbio")
    except ImportError as exc:
        raise Unavailable(
            f"greenlet-floor needs unknot's compiled build (--unknot-python): {exc}"
        ) from exc
    try:
        floor = native.build_mypyc("greenlet_floor")
    except native.BuildError as exc:
        raise Unavailable(str(exc)) from exc
    floor.serve(host, port, _echo_blocking, BACKLOG)


# ---- asyncio and uvloop ------------------------------------------------------------------


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _nodelay(writer.get_extra_info("socket"))
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class _EchoProtocol(asyncio.Protocol):
    """Callback style: write every chunk back from ``data_received``."""

    transport: Any  # uvloop's transports do not subclass asyncio.Transport

    def connection_made(self, transport: Any) -> None:
        _nodelay(transport.get_extra_info("socket"))
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _streams_main(host: str, port: int) -> None:
    server = await asyncio.start_server(
        _echo_stream, host, port, backlog=BACKLOG, reuse_address=True
    )
    async with server:
        await server.serve_forever()


async def _protocol_main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        _EchoProtocol, host, port, backlog=BACKLOG, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    return _require("uvloop").new_event_loop


def serve_asyncio_streams(host: str, port: int) -> None:
    asyncio.run(_streams_main(host, port))


def serve_asyncio_protocol(host: str, port: int) -> None:
    asyncio.run(_protocol_main(host, port))


def serve_uvloop_streams(host: str, port: int) -> None:
    with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
        runner.run(_streams_main(host, port))


def serve_uvloop_protocol(host: str, port: int) -> None:
    with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
        runner.run(_protocol_main(host, port))


# ---- trio --------------------------------------------------------------------------------


def serve_trio(host: str, port: int) -> None:
    """trio.serve_tcp with a receive_some/send_all loop."""
    trio = _require("trio")

    async def handler(stream: Any) -> None:
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                data = await stream.receive_some(CHUNK)
                if not data:
                    break
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # a reset must not take the whole server down (trio propagates it)

    trio.run(partial(trio.serve_tcp, handler, port, host=host, backlog=BACKLOG))


SERVERS: dict[str, Callable[[str, int], None]] = {
    "c-epoll": serve_c_epoll,
    "unknot": serve_unknot,
    "gevent": serve_gevent,
    "greenlet-floor": serve_greenlet_floor,
    "asyncio-streams": serve_asyncio_streams,
    "asyncio-protocol": serve_asyncio_protocol,
    "uvloop-streams": serve_uvloop_streams,
    "uvloop-protocol": serve_uvloop_protocol,
    "trio": serve_trio,
    "threads": serve_threads,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "kind", help=f"one of {', '.join(sorted(SERVERS))}, or {SPIN_PREFIX}NNN{SPIN_SUFFIX}"
    )
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        run = server(args.kind)
    except (KeyError, ValueError) as exc:
        parser.error(f"unknown server {args.kind!r}: {exc}")
    _raise_fd_limit()
    try:
        run(args.host, args.port)
    except Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return UNAVAILABLE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
