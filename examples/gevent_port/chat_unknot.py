"""A line-protocol chat server, ported from chat_gevent.py to unknot.

`unknot.TCPServer(handler)` replaces `StreamServer(address, handler)` (same handler signature);
`unknot.socket` replaces `gevent.socket`; the clients run in a `TaskGroup` under
`unknot.fail_after` instead of greenlets under `gevent.Timeout`. Leaving the server's
with-block stops it, waiting for the handlers (gevent's `stop()` waits only for those of a
`spawn=Pool(...)`).
"""

import unknot
from unknot import socket

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


def client(address: tuple[str, int], name: str, everyone_in: unknot.Event) -> list[str]:
    """Connect, wait for the others, say SAYINGS, and return what the others said."""
    with socket.create_connection(address) as sock:
        everyone_in.wait()
        for saying in SAYINGS:
            sock.sendall(f"{name}: {saying}\n".encode())
        expected = (len(NAMES) - 1) * len(SAYINGS)
        reader = sock.makefile("rb")
        return sorted(reader.readline().decode().rstrip("\n") for _ in range(expected))


def main() -> None:
    everyone_in = unknot.Event()
    with unknot.TCPServer(handle, max_connections=MAX_CLIENTS) as server:
        server.start()
        with unknot.fail_after(DEADLINE), unknot.TaskGroup() as tg:
            clients = [tg.spawn(client, server.address, n, everyone_in) for n in NAMES]
            while len(members) < len(NAMES):  # every client connected: none misses a line
                unknot.sleep(0.01)
            everyone_in.set()
        heard = [c.result() for c in clients]

    for name, lines in zip(NAMES, heard, strict=True):
        print(f"{name} heard: {', '.join(lines)}")
    print(f"members left after stop: {len(members)}")


if __name__ == "__main__":
    unknot.run(main)
