"""An echo server that stops gracefully on SIGTERM or Ctrl-C.

    python examples/graceful_server.py [--host 127.0.0.1] [--port 1234] [--grace 5]

Each connection is echoed line by line until the client sends ``quit`` or closes. On SIGTERM or
SIGINT (Ctrl-C) the server stops accepting, gives the open connections ``--grace`` seconds to
finish, then cancels the ones still open: their handlers get `unknot.Cancelled` at the blocking
call they are in, and their ``finally`` blocks run. A second signal cancels them at once.
``--port 0`` picks a free port; the address is printed either way.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import unknot


def handle(conn, addr):
    peer = "{}:{}".format(*addr[:2])
    outcome = "closed by the client"
    try:
        with conn.makefile("rwb") as f:
            for line in f:
                if line.strip() == b"quit":
                    outcome = "quit"
                    break
                f.write(line)
                f.flush()
    except unknot.Cancelled:
        outcome = "cancelled at shutdown"
        raise
    finally:
        print(f"connection from {peer}: {outcome}", flush=True)


def main(host: str, port: int, grace: float) -> None:
    with unknot.TCPServer(handle, host, port) as server:
        print("listening on {}:{}".format(*server.address[:2]), flush=True)
        signals = 0

        def on_signal(signum: int) -> None:  # runs on the loop, outside any fiber
            nonlocal signals
            signals += 1
            if signals == 1:
                print(
                    f"{signal.Signals(signum).name}: stopping, {server.connections} "
                    f"connection(s) open, {grace} s to finish",
                    flush=True,
                )
                unknot.spawn(server.stop, grace)
            else:
                print("second signal: cancelling now", flush=True)
                unknot.spawn(server.stop, 0)

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        server.serve_forever()  # returns once stop() has closed the listening socket
        print(f"not accepting; {server.connections} connection(s) still open", flush=True)
    print("stopped", flush=True)  # leaving the block waited for every handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    parser.add_argument("--port", type=int, default=1234, help="0: a free port (default: 1234)")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds (default: 5)")
    args = parser.parse_args()
    unknot.run(main, args.host, args.port, args.grace)
