"""The Tcl wiki's coroutine echo server, written exactly as the blocking version.

    python examples/echo_server.py [--host 127.0.0.1] [--port 1234]

``handle`` is the naive one-client-at-a-time server from the seed: read a line, write it back,
until EOF. ``unknot.serve_tcp`` runs it in a fiber per connection, so one thread serves every
client at once (try ``nc 127.0.0.1 1234`` in several terminals). ``--port 0`` picks a free port;
the address actually bound is printed either way. Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse

import unknot


def handle(conn, addr):
    f = conn.makefile("rwb")
    for line in f:
        f.write(line)
        f.flush()


def serve_on_free_port(host: str) -> None:
    # serve_tcp cannot tell us which port the OS chose; a TCPServer can, before serving.
    with unknot.TCPServer(handle, host, 0) as server:
        print("echo server listening on {}:{}".format(*server.address[:2]), flush=True)
        server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    parser.add_argument("--port", type=int, default=1234, help="0: a free port (default: 1234)")
    args = parser.parse_args()
    try:
        if args.port == 0:
            unknot.run(serve_on_free_port, args.host)
        else:
            print(f"echo server listening on {args.host}:{args.port}", flush=True)
            unknot.serve_tcp(handle, args.host, args.port)
    except KeyboardInterrupt:
        print("bye", flush=True)


if __name__ == "__main__":
    main()
