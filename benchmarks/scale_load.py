"""The load generator of ``benchmarks/scale.py``: many mostly idle connections from one process.

Usage: ``python benchmarks/scale_load.py HOST PORT --conns N --source 127.0.0.X --mode echo``.
The harness drives it through stdin and stdout, one line each way:

1. It opens ``--conns`` connections from ``--source`` (a few hundred connects in flight at
   once), makes one exchange on each (so every server handler has reached its steady state:
   parked in a read), then prints ``ready N`` (or ``error TEXT`` and exits 1).
2. ``echo SECONDS INTERVAL`` on stdin: for SECONDS, each connection sends one message every
   INTERVAL seconds, the connections' send times spread evenly over the interval; each round
   trip (send to the whole reply) is timed. It then prints ``{"samples_us": [...], "errors": n}``
   (JSON, on one line).
3. ``quit`` (or EOF): closes everything and exits.

``--mode echo`` sends 16 bytes and waits for the same 16 back; ``--mode http`` sends a
keep-alive ``GET /`` and reads one response (its head, then ``Content-Length`` bytes).
One thread, ``select.epoll``, non-blocking sockets: it only has to keep up with a few thousand
messages per second.
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import select
import socket
import sys
import time

ECHO_MESSAGE = b"scale-echo-0123\n"
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: scale\r\n\r\n"
CONNECTS_IN_FLIGHT = 256
CONNECT_TIMEOUT = 60.0


class Conn:
    """One connection: its socket, the unread bytes and when its message in flight was sent."""

    __slots__ = ("sock", "buf", "sent_at")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.sent_at = 0.0


def reply_length(mode: str, buf: bytearray) -> int:
    """How many bytes of ``buf`` make one whole reply, or 0 if it is not all there yet."""
    if mode == "echo":
        return len(ECHO_MESSAGE) if len(buf) >= len(ECHO_MESSAGE) else 0
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0
    length = 0
    for line in bytes(buf[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = end + 4 + length
    return total if len(buf) >= total else 0


class Generator:
    """The connections and the epoll loop that serves them."""

    def __init__(self, host: str, port: int, source: str, mode: str) -> None:
        self.address = (host, port)
        self.source = source
        self.mode = mode
        self.message = ECHO_MESSAGE if mode == "echo" else HTTP_REQUEST
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.samples: list[int] = []
        self.errors = 0

    def _new_socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "IP_BIND_ADDRESS_NO_PORT"):  # the port is picked at connect
            s.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((self.source, 0))
        s.setblocking(False)
        err = s.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            raise OSError(err, f"connect to {self.address}: {errno.errorcode.get(err, err)}")
        return s

    def connect_all(self, count: int) -> None:
        """Open ``count`` connections and make one exchange on each."""
        started, exchanged = 0, 0
        connecting: dict[int, Conn] = {}
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while exchanged < count:
            while started < count and len(connecting) < CONNECTS_IN_FLIGHT:
                conn = Conn(self._new_socket())
                fd = conn.sock.fileno()
                connecting[fd] = conn
                self.ep.register(fd, select.EPOLLOUT)
                started += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{exchanged} of {count} connections after {CONNECT_TIMEOUT} s")
            for fd, _events in self.ep.poll(1.0):
                if fd in connecting:
                    conn = connecting[fd]
                    err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
                    self.ep.modify(fd, select.EPOLLIN)
                    conn.sock.send(self.message)
                    conn.sent_at = 1.0
                    self.conns[fd] = conn
                    del connecting[fd]
                elif self._readable(fd, timed=False):
                    exchanged += 1

    def _readable(self, fd: int, timed: bool) -> bool:
        """Read what arrived on ``fd``; True when it completed the reply in flight."""
        conn = self.conns[fd]
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            raise ConnectionError(f"the server closed connection {fd}")
        conn.buf += data
        n = reply_length(self.mode, conn.buf)
        if not n:
            return False
        del conn.buf[:n]
        if timed and conn.sent_at:
            self.samples.append(int((time.perf_counter() - conn.sent_at) * 1e6))
        conn.sent_at = 0.0
        return True

    def echo(self, seconds: float, interval: float) -> None:
        """Each connection sends a message every ``interval`` s for ``seconds``; time them."""
        conns = list(self.conns.values())
        step = interval / len(conns)
        start = time.perf_counter()
        end = start + seconds
        k = 0  # sends so far; send k goes to conns[k % n] at start + k * step
        while True:
            now = time.perf_counter()
            due = start + k * step
            while due <= now and due < end:
                conn = conns[k % len(conns)]
                if conn.sent_at:
                    self.errors += 1  # the previous message has no reply yet: skip this one
                else:
                    conn.sent_at = time.perf_counter()
                    conn.sock.send(self.message)
                k += 1
                due = start + k * step
            in_flight = any(c.sent_at for c in conns) if due >= end else True
            if due >= end and not in_flight:
                break
            if now > end + 10.0:
                self.errors += sum(1 for c in conns if c.sent_at)
                break
            timeout = max(0.0, min(due, end + 10.0) - time.perf_counter())
            for fd, _ in self.ep.poll(timeout if due < end else 0.05):
                self._readable(fd, timed=True)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.sock.close()
        self.ep.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--conns", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1", help="local address to connect from")
    parser.add_argument("--mode", choices=("echo", "http"), default="echo")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gen = Generator(args.host, args.port, args.source, args.mode)
    try:
        gen.connect_all(args.conns)
    except (OSError, TimeoutError) as exc:
        print(f"error {exc}", flush=True)
        return 1
    print(f"ready {len(gen.conns)}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "echo":
            gen.samples.clear()
            gen.errors = 0
            try:
                gen.echo(float(words[1]), float(words[2]))
            except OSError as exc:
                print(json.dumps({"samples_us": [], "errors": -1, "error": str(exc)}), flush=True)
                return 1
            print(json.dumps({"samples_us": gen.samples, "errors": gen.errors}), flush=True)
        elif words and words[0] == "quit":
            break
    gen.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
