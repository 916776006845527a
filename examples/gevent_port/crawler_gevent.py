"""A crawler with a pool of 20, written for gevent (compare crawler_unknot.py).

It starts a small HTTP server of its own on 127.0.0.1 (in a thread, which gevent's patching
turns into a greenlet), fetches 60 pages through `gevent.pool.Pool(20)` with plain
`urllib.request`, and prints what it got. Each page takes the server 0.1 s, so one at a time
would take 6 s; 20 at a time take about 0.3 s.
"""

from gevent import monkey

monkey.patch_all()

import http.server  # noqa: E402  (patch first)
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

from gevent.pool import Pool  # noqa: E402

PAGES = 60
POOL_SIZE = 20
DELAY = 0.25  # long enough for all 20 connections to be open at once, even on a loaded machine


class PageServer(http.server.ThreadingHTTPServer):
    """The stdlib's threading HTTP server, with room in the listen queue for the whole pool."""

    request_queue_size = 64
    daemon_threads = True


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves /page/<n> after DELAY seconds, counting the requests in flight."""

    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        cls = PageHandler
        with cls.lock:
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        try:
            time.sleep(DELAY)
        finally:
            # Counted out before the reply: once the client has it, its next request may
            # start before this thread would get past the write.
            with cls.lock:
                cls.in_flight -= 1
        body = f"page {self.path.rsplit('/', 1)[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the output to the results


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def main() -> None:
    server = PageServer(("127.0.0.1", 0), PageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    urls = [f"http://127.0.0.1:{server.server_port}/page/{i}" for i in range(PAGES)]

    start = time.monotonic()
    pages = Pool(POOL_SIZE).map(fetch, urls)
    elapsed = time.monotonic() - start
    server.shutdown()
    server.server_close()

    print(f"fetched {len(pages)} pages, {sum(map(len, pages))} bytes")
    print(f"first: {pages[0].decode()}, last: {pages[-1].decode()}")
    print(f"most requests at once: {PageHandler.most_in_flight}")
    print(f"faster than one at a time: {elapsed < PAGES * DELAY / 4}")


if __name__ == "__main__":
    main()
