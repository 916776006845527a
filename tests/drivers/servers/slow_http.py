"""A loopback HTTP server that waits before answering: ``python slow_http.py``.

``GET /item/<n>?delay=<seconds>`` sleeps ``delay`` seconds (default 0.2), then answers
``{"item": n, "delay": delay}`` as JSON over keep-alive HTTP/1.1. A plain `ThreadingHTTPServer`
(a thread per connection), so the server is never what serialises the clients under test.
Prints the port it listens on, then serves until killed.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        delay = float(query.get("delay", ["0.2"])[0])
        parts = url.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "item":
            self.send_error(404)
            return
        time.sleep(delay)
        body = json.dumps({"item": int(parts[1]), "delay": delay}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


def main() -> None:
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
