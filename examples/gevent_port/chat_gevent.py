"""A line-protocol chat server, written for gevent (compare chat_unknot.py).

Clients connect and send lines; the server sends every line to all the other clients. The
program starts the server on 127.0.0.1, connects three clients that each say two things, lets
each client read what the others said, and stops the server.
"""

import gevent
from gevent import socket
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer

NAMES = ["ann", "bob", "cat"]
SAYINGS = ["hello", "bye"]
DEADLINE = 5.0
MAX_CLIENTS = 100

members: dict[socket.socket, str] = {}  # connection -> peer, for every client connected


def handle(conn: socket.socket, address: tuple[str, int]) -> None:
    """One client: forward each of its lines to every other member until it disconnects."""
    members[conn] = f"{address[0]}:{address[1]}"
    try:
        for line in conn.makefile("rb"):
            for other in list(members):
                if other is not conn:
                    other.sendall(line)
    finally:
        del members[conn]


def client(address: tuple[str, int], name: str, everyone_in: Event) -> list[str]:
    """Connect, wait for the others, say SAYINGS, and return what the others said."""
    with socket.create_connection(address) as sock:
        everyone_in.wait()
        for saying in SAYINGS:
            sock.sendall(f"{name}: {saying}\n".encode())
        expected = (len(NAMES) - 1) * len(SAYINGS)
        reader = sock.makefile("rb")
        return sorted(reader.readline().decode().rstrip("\n") for _ in range(expected))


def main() -> None:
    server = StreamServer(("127.0.0.1", 0), handle, spawn=Pool(MAX_CLIENTS))  # stop() waits
    server.start()
    everyone_in = Event()
    with gevent.Timeout(DEADLINE):
        clients = [gevent.spawn(client, server.address, n, everyone_in) for n in NAMES]
        while len(members) < len(NAMES):  # every client connected: none misses a line
            gevent.sleep(0.01)
        everyone_in.set()
        heard = [c.get() for c in clients]
    server.stop()

    for name, lines in zip(NAMES, heard, strict=True):
        print(f"{name} heard: {', '.join(lines)}")
    print(f"members left after stop: {len(members)}")


if __name__ == "__main__":
    main()
