"""The untangle seed's server, in Python: a handler returns (status, headers, body), and the body
comes from an HTTPS GET that reads like synchronous code.

The seed (Chez Scheme)::

    (define (handler request port)
      (values 200 #f (http-get "https://httpbin.davecheney.com/ip")))
    (untangle (lambda () (run-server "127.0.0.1" 8888)))

Here the upstream is a local HTTPS server that the example starts itself, with a self-signed
certificate (made by trustme) that the example trusts; everything stays on 127.0.0.1.

    python examples/http_server.py                    # a 2 s load run, then stop; prints req/s
    python examples/http_server.py --concurrency 2000 --requests 2000   # 2,000 at once
    python examples/http_server.py --serve            # serve on 127.0.0.1:8888 until Ctrl-C

Every request the load run makes goes through the handler, which makes its own HTTPS request
upstream: all of it, both servers and every client, runs in fibers on one OS thread.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import trustme

import unknot
from unknot import http, ssl

UPSTREAM_URL = ""  # set once the upstream listens
CA_FILE = ""  # the certificate authority the example trusts


def handler(request: http.Request) -> tuple[int, None, bytes]:
    # The seed's handler: status, no headers, and a body fetched over HTTPS.
    if request.path == "/pooled":  # the same through one Client: keep-alive TLS connections
        return 200, None, upstream_client().get(UPSTREAM_URL).content
    return 200, None, http.get(UPSTREAM_URL, verify=CA_FILE).content


_client: list[http.Client] = []


def upstream_client() -> http.Client:
    """One pooled client for the upstream, made on first use (closed by main)."""
    if not _client:
        _client.append(http.Client(verify=CA_FILE, max_connections=1000))
    return _client[0]


def ip_handler(request: http.Request) -> tuple[int, dict[str, str], str]:
    """The upstream, standing in for httpbin's /ip."""
    return 200, {"content-type": "application/json"}, json.dumps({"origin": request.client[0]})


def load(url: str, concurrency: int, requests: int | None, seconds: float) -> tuple[int, float]:
    """``concurrency`` fibers make keep-alive GETs to ``url`` (``requests`` in all, or for
    ``seconds``); every answer is checked. Returns (requests made, seconds taken)."""
    done = [0]
    stop_at = time.monotonic() + seconds
    quota = [requests if requests is not None else -1]

    def client() -> None:
        with http.Client() as c:
            while quota[0] != 0 and (requests is not None or time.monotonic() < stop_at):
                quota[0] -= 1
                r = c.get(url)
                assert r.status_code == 200, r.status_code
                assert r.json() == {"origin": "127.0.0.1"}, r.text
                done[0] += 1

    start = time.monotonic()
    with unknot.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.spawn(client)
    return done[0], time.monotonic() - start


def main(args: argparse.Namespace) -> None:
    global UPSTREAM_URL, CA_FILE
    ca = trustme.CA()
    upstream_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(upstream_ctx)
    with tempfile.TemporaryDirectory() as tmp:
        CA_FILE = str(Path(tmp) / "ca.pem")
        ca.cert_pem.write_to_path(CA_FILE)
        upstream = http.HTTPServer(ip_handler, "127.0.0.1", 0, ssl=upstream_ctx)
        upstream.start()
        UPSTREAM_URL = f"https://127.0.0.1:{upstream.port}/ip"
        server = http.HTTPServer(handler, "127.0.0.1", 8888 if args.serve else 0)
        server.start()
        url = f"http://127.0.0.1:{server.port}"
        print(f"HTTP server running at {url}/ (its handler GETs {UPSTREAM_URL})")
        try:
            if args.serve:
                unknot.sleep(float("inf"))  # until Ctrl-C
            for path, what in (
                ("/", "http.get: a new TLS connection upstream per request"),
                ("/pooled", "one http.Client: pooled keep-alive TLS connections upstream"),
            ):
                n, took = load(url + path, args.concurrency, args.requests, args.seconds)
                print(
                    f"GET {path:<8} {n} requests in {took:.2f} s: {n / took:,.0f} requests/s "
                    f"with {args.concurrency} concurrent clients, on one OS thread ({what})"
                )
        finally:
            if _client:
                _client[0].close()
            server.stop(grace=1)
            upstream.stop(grace=1)


def _raise_fd_limit() -> None:
    """Thousands of connections at once need more than the usual 1,024 file descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50, help="client fibers")
    parser.add_argument("--requests", type=int, help="requests in all (default: for --seconds)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the load run")
    parser.add_argument("--serve", action="store_true", help="serve on port 8888 until Ctrl-C")
    _raise_fd_limit()
    try:
        unknot.run(main, parser.parse_args())
    except KeyboardInterrupt:
        pass
