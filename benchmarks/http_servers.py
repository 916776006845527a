"""The HTTP servers that ``benchmarks/http.py`` measures, one peer per KIND.

Usage: ``python benchmarks/http_servers.py KIND PORT --root DIR``; the server runs until it is
killed (``http.py`` starts each one pinned to a CPU). ``DIR`` holds the files ``make_fixtures``
writes. nginx is not started from here: ``nginx_config`` writes its configuration and
``http.py`` runs the binary.

Every peer answers the same requests with the same bytes:

=====================  ==============================================================
``GET /``              ``Hello, world!`` (13 bytes, ``text/plain``)
``GET /bytes/64k``     a fixed 65,536-byte body (``BODY_64K``)
``GET /items/{id}``    ``{"id": id, "name": "item <id>"}`` (``application/json``)
``GET /static/NAME``   the file ``DIR/static/NAME`` (64 KiB and 1 MiB of random bytes)
=====================  ==============================================================

The Python peers without a framework (uvicorn, granian, gevent) dispatch on the path by hand,
as the fairest thing to do for them; ``unknot`` uses its router (``unknot.http.App``) and its
static files, and ``unknot-bare`` a plain handler that dispatches by hand like the others.
granian serves ``/static`` from its Rust static mount, in front of whichever interface.

Exit status 3 means the peer is unavailable here (a package is missing, or ``unknot.http``
lacks a name the peer needs); the harness then reports it instead of inventing numbers.
"""

from __future__ import annotations

import os
import sys

# This directory holds ``http.py``, which must not hide the standard library's ``http``
# package: keep the directory on the path, but behind everything else.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import argparse  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

UNAVAILABLE = 3
BACKLOG = 2048
CHUNK = 65536

HELLO = b"Hello, world!"
BODY_64K = bytes(range(256)) * 256
ITEM_ID = 42
STATIC_FILES = {"64k.bin": 64 * 1024, "1m.bin": 1024 * 1024}
STATIC_SEED = 20260101  # the static files' bytes are random but the same in every run

TEXT = "text/plain"
JSON = "application/json"
BINARY = "application/octet-stream"

#: The request paths of the cases (``http.py`` names its cases after these keys).
PATHS = {
    "hello": "/",
    "bytes64k": "/bytes/64k",
    "routed": f"/items/{ITEM_ID}",
    "static64k": "/static/64k.bin",
    "static1m": "/static/1m.bin",
}


class Unavailable(Exception):
    """The peer cannot run in this environment."""


def item_json(item_id: int) -> bytes:
    """The routed case's body for ``item_id``."""
    return json.dumps({"id": item_id, "name": f"item {item_id}"}).encode()


def static_bytes(name: str) -> bytes:
    """The content of static file ``name``: seeded random bytes of its size."""
    return random.Random(f"{STATIC_SEED}:{name}").randbytes(STATIC_FILES[name])


def make_fixtures(root: Path) -> None:
    """Write the files the servers serve under ``root``: ``static/*`` and ``body64k.bin``
    (nginx's 64 KiB body). Everything is world-readable: nginx's workers may run as nobody."""
    (root / "static").mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        (root / "static" / name).write_bytes(static_bytes(name))
    (root / "body64k.bin").write_bytes(BODY_64K)
    for path in [root, root / "static", *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


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


def _item_id(path: str) -> int | None:
    """The id of ``/items/<digits>``, or None for any other path (the hand-written router)."""
    if path.startswith("/items/"):
        rest = path[7:]
        if rest.isdigit():
            return int(rest)
    return None


def _static_path(root: Path, path: str) -> Path | None:
    """The file a ``/static/NAME`` request names, only for the known file names."""
    if path.startswith("/static/") and path[8:] in STATIC_FILES:
        return root / "static" / path[8:]
    return None


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


# ---- unknot --------------------------------------------------------------------------------


def _unknot_http(*names: str) -> Any:
    """``unknot.http``, or Unavailable if it cannot be imported or lacks one of ``names``."""
    try:
        http = importlib.import_module("unknot.http")
    except ImportError as exc:
        raise Unavailable(f"unknot.http is not importable: {exc}") from exc
    missing = [name for name in names if not hasattr(http, name)]
    if missing:
        raise Unavailable(f"unknot.http has no {', '.join(missing)} yet")
    from benchlib import ab

    ab.assert_unknot_source(sys.modules["unknot"])  # the build http.py meant (--unknot-python)
    return http


def _unknot_serve(http: Any, handler: Any, host: str, port: int) -> None:
    """``unknot.http.serve(handler, host, port)``, with the shared backlog if it takes one."""
    serve = http.serve
    try:
        takes_backlog = "backlog" in inspect.signature(serve).parameters
    except (TypeError, ValueError):
        takes_backlog = False
    if takes_backlog:
        serve(handler, host, port, backlog=BACKLOG)
    else:
        serve(handler, host, port)


def serve_unknot(host: str, port: int, root: Path) -> None:
    """unknot's server with its router and static files: what a user of ``App`` writes."""
    http = _unknot_http("serve", "App")
    app = http.App()
    text, binary, json_ = {"content-type": TEXT}, {"content-type": BINARY}, {"content-type": JSON}

    @app.get(PATHS["hello"])
    def hello(request: Any) -> tuple[int, dict[str, str], bytes]:
        return 200, text, HELLO

    @app.get(PATHS["bytes64k"])
    def bytes64k(request: Any) -> tuple[int, dict[str, str], bytes]:
        return 200, binary, BODY_64K

    @app.get("/items/{id:int}")
    def item(request: Any, id: int) -> tuple[int, dict[str, str], bytes]:
        return 200, json_, item_json(id)

    if hasattr(app, "static"):
        app.static("/static", str(root / "static"))
    else:  # the other cases can still be measured; the static ones fail their answer check
        print("unknot.http.App has no static() yet: /static is not served", file=sys.stderr)
    _unknot_serve(http, app, host, port)


def serve_unknot_bare(host: str, port: int, root: Path) -> None:
    """unknot's server with a plain handler that dispatches by hand (no router), the way the
    frameworkless peers do; static files are not served (404)."""
    http = _unknot_http("serve")
    text, binary, json_ = {"content-type": TEXT}, {"content-type": BINARY}, {"content-type": JSON}
    hello_path, bytes_path = PATHS["hello"], PATHS["bytes64k"]

    def handler(request: Any) -> tuple[int, dict[str, str] | None, bytes]:
        path = request.path
        if path == hello_path:
            return 200, text, HELLO
        if path == bytes_path:
            return 200, binary, BODY_64K
        item_id = _item_id(path)
        if item_id is not None:
            return 200, json_, item_json(item_id)
        return 404, None, b""

    _unknot_serve(http, handler, host, port)


# ---- ASGI (uvicorn, granian-asgi) ----------------------------------------------------------

STATIC_ROOT = Path(".")  # set by main() from --root before serving


def _asgi_headers(content_type: str, length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type.encode()), (b"content-length", str(length).encode())]


_ASGI_HELLO = _asgi_headers(TEXT, len(HELLO))
_ASGI_64K = _asgi_headers(BINARY, len(BODY_64K))
_ASGI_404 = [(b"content-length", b"0")]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The raw ASGI application (no framework): hand-written dispatch on the path."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/":
        status, headers, body = 200, _ASGI_HELLO, HELLO
    elif path == "/bytes/64k":
        status, headers, body = 200, _ASGI_64K, BODY_64K
    elif (item_id := _item_id(path)) is not None:
        body = item_json(item_id)
        status, headers = 200, _asgi_headers(JSON, len(body))
    elif (file := _static_path(STATIC_ROOT, path)) is not None:
        # Read in chunks on the loop (the file is in the page cache), streamed out.
        size = file.stat().st_size
        headers = _asgi_headers(BINARY, size)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in _read_chunks(file):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    else:
        status, headers, body = 404, _ASGI_404, b""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_uvicorn(host: str, port: int, root: Path) -> None:
    """uvicorn on uvloop with the httptools parser, access log off, the raw ASGI app."""
    uvicorn = _require("uvicorn")
    _require("uvloop")
    _require("httptools")
    uvicorn.run(
        asgi_app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=BACKLOG,
        lifespan="on",
    )


# ---- RSGI (granian-rsgi) -------------------------------------------------------------------

_RSGI_HELLO = [("content-type", TEXT)]
_RSGI_64K = [("content-type", BINARY)]
_RSGI_JSON = [("content-type", JSON)]


async def rsgi_app(scope: Any, proto: Any) -> None:
    """The raw RSGI application: hand-written dispatch; granian adds Content-Length."""
    path = scope.path
    if path == "/":
        proto.response_bytes(200, _RSGI_HELLO, HELLO)
    elif path == "/bytes/64k":
        proto.response_bytes(200, _RSGI_64K, BODY_64K)
    elif (item_id := _item_id(path)) is not None:
        proto.response_bytes(200, _RSGI_JSON, item_json(item_id))
    else:
        proto.response_empty(404, [])


# ---- WSGI (gevent, granian-wsgi) -----------------------------------------------------------

_WSGI_HELLO = [("Content-Type", TEXT), ("Content-Length", str(len(HELLO)))]
_WSGI_64K = [("Content-Type", BINARY), ("Content-Length", str(len(BODY_64K)))]


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    """The raw WSGI application: hand-written dispatch on PATH_INFO."""
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", _WSGI_HELLO)
        return [HELLO]
    if path == "/bytes/64k":
        start_response("200 OK", _WSGI_64K)
        return [BODY_64K]
    if (item_id := _item_id(path)) is not None:
        body = item_json(item_id)
        start_response("200 OK", [("Content-Type", JSON), ("Content-Length", str(len(body)))])
        return [body]
    if (file := _static_path(STATIC_ROOT, path)) is not None:
        size = str(file.stat().st_size)
        start_response("200 OK", [("Content-Type", BINARY), ("Content-Length", size)])
        return _read_chunks(file)
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]


def serve_gevent(host: str, port: int, root: Path) -> None:
    """gevent.pywsgi.WSGIServer, TCP_NODELAY set on every accepted socket, no access log."""
    pywsgi = _require("gevent.pywsgi")

    class NoDelayHandler(pywsgi.WSGIHandler):  # type: ignore[name-defined]
        """pywsgi's handler, with Nagle's algorithm off (as shipped it costs 40 ms per
        keep-alive request: Nagle plus the client's delayed ACK)."""

        def handle(self) -> Any:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return super().handle()

    server = pywsgi.WSGIServer(
        (host, port), wsgi_app, backlog=BACKLOG, log=None, handler_class=NoDelayHandler
    )
    server.serve_forever()


# ---- granian -------------------------------------------------------------------------------

GRANIAN_APPS = {"rsgi": "rsgi_app", "asgi": "asgi_app", "wsgi": "wsgi_app"}


def _granian_target(target: str) -> Any:
    """granian's target loader: ``http_servers:NAME`` is this module's ``NAME``. (granian's
    own loader would put this directory first on the path, where ``http.py`` lives.)"""
    return globals()[target.rpartition(":")[2]]


def serve_granian(interface: str, host: str, port: int, root: Path) -> None:
    """granian, one worker, the raw app of ``interface``, uvloop where granian runs a loop,
    ``/static`` served by its static mount."""
    granian = _require("granian")
    constants = _require("granian.constants")
    _require("uvloop")
    server = granian.Granian(
        f"http_servers:{GRANIAN_APPS[interface]}",
        address=host,
        port=port,
        interface=constants.Interfaces(interface),
        workers=1,
        loop=constants.Loops("uvloop"),
        backlog=BACKLOG,
        log_enabled=False,
        static_path_route=["/static"],
        static_path_mount=[root / "static"],
    )
    server.serve(target_loader=_granian_target)


SERVERS: dict[str, Callable[[str, int, Path], None]] = {
    "unknot": serve_unknot,
    "unknot-bare": serve_unknot_bare,
    "uvicorn": serve_uvicorn,
    "granian-rsgi": lambda host, port, root: serve_granian("rsgi", host, port, root),
    "granian-asgi": lambda host, port, root: serve_granian("asgi", host, port, root),
    "granian-wsgi": lambda host, port, root: serve_granian("wsgi", host, port, root),
    "gevent": serve_gevent,
}


# ---- nginx (the ceiling) -------------------------------------------------------------------


def _nginx_user() -> str:
    """A ``user`` directive for nginx started as root (its workers then drop to nobody, whose
    group differs between distributions); nothing otherwise."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
        return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    except KeyError:
        return "user root root;"


def nginx_config(host: str, port: int, root: Path, workdir: Path) -> str:
    """An nginx configuration serving every case on ``host:port``: one worker process, no
    access log, keep-alive for the whole run, ``sendfile`` for files. Its temporary paths
    live in ``workdir`` (run nginx with ``-p workdir -e stderr``)."""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
{_nginx_user()}
daemon off;
master_process on;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log stderr warn;
events {{
    worker_connections 16384;
    use epoll;
}}
http {{
    access_log off;
    log_not_found off;
    server_tokens off;
    default_type {BINARY};
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
{temp_paths}
    server {{
        listen {host}:{port} backlog={BACKLOG};
        location = / {{
            default_type {TEXT};
            return 200 "{HELLO.decode()}";
        }}
        location = /bytes/64k {{
            alias {root / "body64k.bin"};
        }}
        location ~ "^/items/([0-9]+)$" {{
            default_type {JSON};
            return 200 '{{"id": $1, "name": "item $1"}}';
        }}
        location /static/ {{
            alias {root / "static"}/;
        }}
    }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    """Serve one peer until killed; exit status 3 if it is unavailable here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--root", type=Path, required=True, help="the fixtures' directory")
    args = parser.parse_args(argv)
    _raise_fd_limit()
    global STATIC_ROOT
    STATIC_ROOT = args.root
    try:
        SERVERS[args.kind](args.host, args.port, args.root)
    except Unavailable as exc:
        print(f"unavailable: {exc}", file=sys.stderr)
        return UNAVAILABLE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
