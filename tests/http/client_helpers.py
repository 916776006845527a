"""Servers for the HTTP client's tests: the stdlib's ``http.server`` in a thread, on loopback.

`Server` runs a ``ThreadingHTTPServer`` (optionally over TLS) with `Handler`, whose paths
answer what the tests need: an echo of the request (chunked bodies decoded), redirects, gzip and
deflate bodies, large and slow bodies, and connections closed at awkward moments. It counts
the connections it accepted (``accepts``) and closes every one of them on `close`, so no thread
or socket outlives a test.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import unknot

#: What the compressed paths decode to.
PLAIN = b"unknot fibers " * 200


#: One period of `pattern`.
BLOCK = bytes(range(256)) * 256


def pattern(size: int) -> bytes:
    """``size`` bytes of a known pattern (`BLOCK` repeated)."""
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


class Handler(BaseHTTPRequestHandler):
    """The test paths (see the module docstring); ``server`` is a `_HTTPServer`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the head and the body leave in separate writes
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.served = 0  # requests answered on this connection

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------------------

    def read_body(self) -> bytes:
        """The request body, Content-Length or chunked."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """A response with Content-Length (none for HEAD's body)."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.served += 1

    def query(self) -> dict[str, str]:
        """The query's parameters (first values)."""
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    # -- dispatch --------------------------------------------------------------------------------

    def handle_any(self) -> None:
        self.server.requests.append((self.command, self.path))
        path = urlsplit(self.path).path
        name = path.rstrip("/").rsplit("/", 1)[-1]  # the last segment: /any/prefix/echo works
        route = getattr(self, "route_" + name.replace("-", "_"), None)
        if route is None:
            self.reply(404, b"not found")
            return
        route()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

    # -- paths -----------------------------------------------------------------------------------

    def route_echo(self) -> None:
        body = self.read_body()
        answer = {
            "method": self.command,
            "path": self.path,
            "headers": [[name.lower(), value] for name, value in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        self.reply(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    def route_text(self) -> None:
        q = self.query()
        body = q.get("body", "").encode(q.get("charset", "utf-8"))
        content_type = q.get("type", "text/plain; charset=" + q.get("charset", "utf-8"))
        self.reply(200, body, {"Content-Type": content_type})

    def route_status(self) -> None:
        self.reply(int(self.query()["code"]), b"status")

    def route_redirect(self) -> None:
        q = self.query()
        self.read_body()
        self.reply(int(q.get("code", "302")), b"moved", {"Location": q["to"]})

    def route_loop(self) -> None:
        self.reply(302, b"", {"Location": "/loop"})

    def route_gzip(self) -> None:
        self.reply(200, gzip.compress(PLAIN), {"Content-Encoding": "gzip"})

    def route_deflate(self) -> None:
        self.reply(200, zlib.compress(PLAIN), {"Content-Encoding": "deflate"})

    def route_raw_deflate(self) -> None:
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        self.reply(200, z.compress(PLAIN) + z.flush(), {"Content-Encoding": "deflate"})

    def route_bad_gzip(self) -> None:
        self.reply(200, b"this is not gzip at all", {"Content-Encoding": "gzip"})

    def route_big(self) -> None:
        """``size`` bytes of `pattern`, chunked if ``chunked=1``, else with Content-Length."""
        q = self.query()
        size = int(q["size"])
        chunked = q.get("chunked") == "1"
        self.send_response(200)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        self.served += 1
        if self.command == "HEAD":
            return
        try:
            for i in range(0, size, len(BLOCK)):  # no copy of the whole body in memory
                piece = BLOCK[: size - i]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def route_lines(self) -> None:
        self.reply(200, b"one\ntwo\r\nthree\rfour\n\nlast", {"Content-Type": "text/plain"})

    def route_sleep(self) -> None:
        time.sleep(float(self.query()["s"]))
        self.reply(200, b"late")

    def route_trickle(self) -> None:
        """``n`` bytes, one every ``delay`` seconds."""
        q = self.query()
        n, delay = int(q["n"]), float(q["delay"])
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        try:
            for _ in range(n):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(delay)
        except OSError:
            pass
        self.close_connection = True

    def route_close_after(self) -> None:
        """Answer keep-alive, then close the connection anyway (a server's idle timeout)."""
        self.reply(200, b"closing")
        self.close_connection = True

    def route_drop_second(self) -> None:
        """The first request of a connection is answered; a later one gets the connection
        closed without an answer (the server timed the connection out as the request came)."""
        self.read_body()
        if self.served:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.reply(200, b"first")

    def route_no_length(self) -> None:
        """A body without Content-Length or chunked: it ends when the connection closes."""
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"until the end")
        self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the connection threads
    request_queue_size = 256  # 100 clients connecting at once are not dropped

    def __init__(self, address: tuple[str, int], family: int, tls: ssl.SSLContext | None):
        self.address_family = family
        self.accepts = 0
        self.requests: list[tuple[str, str]] = []
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.tls = tls
        super().__init__(address, Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        with self.lock:
            self.accepts += 1
            self.open.add(sock)
        if self.tls is not None:
            sock.settimeout(5)
            raw = sock
            try:
                sock = self.tls.wrap_socket(raw, server_side=True)
            except OSError:
                with self.lock:
                    self.open.discard(raw)
                raw.close()
                raise
            with self.lock:
                self.open.discard(raw)
            with self.lock:
                self.open.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away


class Server:
    """A running `_HTTPServer` (see the module docstring)."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.httpd = _HTTPServer((host, 0), family, tls)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def origin(self) -> str:
        """``scheme://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server."""
        return self.origin + path

    @property
    def accepts(self) -> int:
        """Connections accepted so far."""
        return self.httpd.accepts

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of each request received, in order."""
        return self.httpd.requests

    def close(self) -> None:
        """Stop serving and close every connection."""
        self.httpd.shutdown()
        with self.httpd.lock:
            for sock in list(self.httpd.open):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.httpd.server_close()
        self.thread.join(5)


@contextmanager
def serving(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    """A `Server` for the duration of the block."""
    server = Server(host, tls)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def full_backlog() -> Iterator[tuple[str, int]]:
    """A loopback address whose listen queue is full: a connect there gets no answer (the
    kernel drops the SYN) until its timeout."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(address)
            except BlockingIOError:
                pass
            fillers.append(filler)
        time.sleep(0.05)
        yield address
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@contextmanager
def silent_server() -> Iterator[tuple[str, int]]:
    """A loopback address that accepts connections and never answers (nor closes)."""
    listener = socket.socket()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except (TimeoutError, OSError):
                continue

    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(5)
        for sock in accepted:
            sock.close()
        listener.close()


def raw_server(answers: list[bytes]) -> unknot.TCPServer:
    """A TCP server answering each request it reads (one recv) with the next of ``answers``."""
    accepted = []

    def handler(conn: Any, addr: Any) -> None:
        accepted.append(addr)
        while answers and conn.recv(65536):
            conn.sendall(answers.pop(0))

    tcp = unknot.TCPServer(handler, "127.0.0.1", 0)
    tcp.accepted = accepted  # type: ignore[attr-defined]
    unknot.spawn(tcp.serve_forever)
    return tcp


def url_of(tcp: unknot.TCPServer, path: str = "/") -> str:
    """The URL of ``path`` on a loopback `unknot.TCPServer` (`raw_server`'s, say)."""
    return f"http://127.0.0.1:{tcp.address[1]}{path}"
