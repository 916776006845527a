"""An HTTP server set up for production: explicit limits and timeouts, errors and an access log
through `logging`, and a graceful stop on SIGTERM or Ctrl-C (see docs/production.md).

    python examples/production_server.py [--host 127.0.0.1] [--port 8000] [--grace 10]

On the first SIGTERM or SIGINT the server stops accepting, closes its idle keep-alive
connections, and gives the requests under way ``--grace`` seconds (their answers say
``Connection: close``); then it cancels what is left and exits. A second Ctrl-C during the grace
period interrupts it (KeyboardInterrupt), a second SIGTERM kills the process (Python's default).
"""

from __future__ import annotations

import argparse
import logging
import signal

import unknot
from unknot.http import App, HTTPServer, Limits, Timeouts

app = App()


@app.get("/")
def index(request):
    return 200, {"content-type": "text/plain"}, b"hello\n"


@app.get("/slow")
def slow(request):
    unknot.sleep(float(request.query.get("seconds", "1")))
    return 200, {"content-type": "text/plain"}, b"done\n"


@app.get("/healthz")
def health(request):
    return 200, {"content-type": "text/plain"}, b"ok\n"


def main(host: str, port: int, grace: float) -> None:
    server = HTTPServer(
        app,
        host,
        port,
        limits=Limits(max_body_size=10 * 1024 * 1024),  # uploads up to 10 MiB; else defaults
        timeouts=Timeouts(head=10, keep_alive=5, body=30, write=60),  # the defaults, spelled out
        handshake_timeout=10,  # TLS only (ssl=...)
        max_connections=10_000,  # accepting pauses at this many open connections
        access_log=True,  # one "combined" line per response to the unknot.http.access logger
    )
    server.start()
    print(f"listening on {host}:{server.port}", flush=True)
    with unknot.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        for signum in signals:
            name = signal.Signals(signum).name
            print(
                f"{name}: stopping, {server.connections} connection(s) open, {grace} s to finish",
                flush=True,
            )
            break
    server.stop(grace)
    print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="0: a free port (default: 8000)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds (default: 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    unknot.run(main, args.host, args.port, args.grace)
