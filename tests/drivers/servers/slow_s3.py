"""A loopback S3 server: moto's S3 implementation behind a delay, ``python slow_s3.py [delay]``.

moto's own server (``moto_server``, `ThreadedMotoServer`) answers at once, so nothing would show
whether clients wait concurrently. This runs the same WSGI application (moto's
``DomainDispatcherApplication``) in a threaded werkzeug server, and sleeps ``delay`` seconds
(default 0.2) in the server before handling each GET: object reads are slow, set-up (PUT) is
not. Prints the port it listens on, then serves until killed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)

    def slow_app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "GET":
            time.sleep(DELAY)
        return app(environ, start_response)

    server = make_server(
        "127.0.0.1", 0, slow_app, threaded=True, request_handler=MotoRequestHandler
    )
    server.socket.listen(256)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
