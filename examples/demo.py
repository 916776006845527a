"""The unknot demo (``make demo``): the seeds' examples, running concurrently on one OS thread.

    python examples/demo.py           # about four seconds
    python examples/demo.py 0.25      # everything four times faster (the tests use this)

1. The sleeper ("Missing coroutines in Common Lisp"): ``my_app`` blocks in ``sleeper()`` while a
   worker fiber keeps working.
2. The seed's ``run-server`` with a handler that calls ``http-get`` ("untangle" for Chez
   Scheme): `unknot.http`'s server, one fiber per connection, whose handler returns (status,
   headers, body) and itself fetches from an upstream with `unknot.http.get`; clients fetch from
   it concurrently in a `TaskGroup`, each under a ``move_on_after`` timeout.
   (``examples/http_server.py`` is the seed's server over HTTPS, with a load run.)
3. A `Channel`/`select` producer-consumer pipeline.
4. asyncio and fibers on one loop: a coroutine called with ``unknot.await_``, which in turn
   awaits a fiber; cancellation crossing the bridge.
5. The Tcl wiki's blocking-style echo server (``for line in f: f.write(line)``) serving 1,000
   clients at once.

Everything listens on 127.0.0.1 only and stops by itself.
"""

import asyncio
import json
import resource
import sys
import threading
import time

import unknot
from unknot import socket  # the stdlib socket API; blocking calls suspend only the fiber

# -----------------------------------------------------------------------------------------------
# 1. The sleeper
# -----------------------------------------------------------------------------------------------


def sleeper(seconds: float) -> None:
    unknot.sleep(seconds)  # suspends this fiber only


def my_app(seconds: float) -> None:
    print(f"my_app: Now sleeping for {seconds:g}s.")
    sleeper(seconds)  # this now blocks...
    print("my_app: Done sleeping!")  # ...and execution resumes on the same stack


def worker(interval: float) -> None:
    job = 0
    while True:
        unknot.sleep(interval)
        job += 1
        print(f"  worker: finished job {job} while my_app sleeps")


def demo_sleeper(scale: float) -> None:
    with unknot.TaskGroup() as tg:
        tg.spawn(worker, 0.6 * scale, name="worker")
        my_app(2 * scale)
        tg.cancel()  # stop the worker; the block waits for it to unwind


# -----------------------------------------------------------------------------------------------
# 2. run_server, a handler that calls http_get, and concurrent fetches with timeouts
# -----------------------------------------------------------------------------------------------


def http_get(url: str) -> tuple[int, bytes]:
    """GET ``url`` and return (status, body): reads like synchronous code."""
    response = unknot.http.get(url)
    return response.status_code, response.content


async def httpbin_ip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The upstream, standing in for httpbin's /ip: a plain asyncio server on the same loop."""
    await reader.readuntil(b"\r\n\r\n")
    body = json.dumps({"origin": writer.get_extra_info("peername")[0]}).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    writer.close()


def demo_http(scale: float) -> None:
    # Starting an asyncio server from a fiber: await_ runs the coroutine on the hub's loop.
    upstream = unknot.await_(asyncio.start_server(httpbin_ip, "127.0.0.1", 0))
    upstream_url = f"http://127.0.0.1:{upstream.sockets[0].getsockname()[1]}/ip"

    def handler(request: unknot.http.Request) -> tuple[int, dict[str, str] | None, bytes]:
        if request.path == "/ip":  # the seed's handler: its answer comes from another server
            status, body = http_get(upstream_url)
            return (200 if status == 200 else 502), {"Content-Type": "application/json"}, body
        if request.path == "/slow":
            unknot.sleep(10 * scale)  # a slow backend: only this connection's fiber waits
            return 200, None, b"finally"
        return 404, None, b"no such page"

    server = unknot.http.HTTPServer(handler, "127.0.0.1", 0)  # the seed's run-server
    base = f"http://127.0.0.1:{server.port}"
    print(f"  HTTP server running at {base}")

    def fetch(path: str, timeout: float) -> None:
        start = unknot.current_time()
        with unknot.move_on_after(timeout) as scope:
            status, body = http_get(base + path)
        took = unknot.current_time() - start
        if scope.cancelled_caught:
            print(f"  GET {path:<8} gave up after {took:.2f}s (move_on_after({timeout:g}))")
        else:
            print(f"  GET {path:<8} -> {status} {body.decode()}  ({took * 1000:.0f} ms)")

    server.start()
    start = time.monotonic()
    with unknot.TaskGroup() as clients:  # the block ends when every fetch has finished
        for path in ["/ip", "/ip", "/missing", "/slow", "/ip"]:
            clients.spawn(fetch, path, 0.5 * scale)
    print(f"  5 requests, concurrently, in {time.monotonic() - start:.2f}s")
    server.stop(grace=0)  # stops accepting and cancels the still-sleeping /slow handler
    upstream.close()
    unknot.await_(upstream.wait_closed())


# -----------------------------------------------------------------------------------------------
# 3. Channels and select: a producer-consumer pipeline
# -----------------------------------------------------------------------------------------------


def producer(channel: unknot.Channel, items: list[str], interval: float) -> None:
    for item in items:
        unknot.sleep(interval)
        channel.send(item)  # returns once a consumer has taken it: a send is a delivery
    channel.close()


def consumer(channels: list[unknot.Channel], patience: float) -> None:
    open_channels = list(channels)
    while open_channels:
        try:
            op, item = unknot.select(*(ch.recv_op() for ch in open_channels), timeout=patience)
        except TimeoutError:
            print(f"  consumer: nothing for {patience:g}s, still waiting")
            continue
        except unknot.ChannelClosed:
            # one of them closed: keep the channels that are still open
            open_channels = [ch for ch in open_channels if not ch.closed]
            continue
        source = "orders" if op.channel is channels[0] else "alerts"
        print(f"  consumer: {source:<6} -> {item}")


def demo_channels(scale: float) -> None:
    orders, alerts = unknot.Channel(), unknot.Channel()
    with unknot.TaskGroup() as tg:
        tg.spawn(producer, orders, ["2 apples", "1 pear", "6 plums"], 0.1 * scale)
        tg.spawn(producer, alerts, ["stock low: pears"], 0.25 * scale)
        tg.spawn(consumer, [orders, alerts], 0.4 * scale)


# -----------------------------------------------------------------------------------------------
# 4. asyncio and fibers on the same loop
# -----------------------------------------------------------------------------------------------


def blocking_multiply(a: int, b: int) -> int:
    unknot.sleep(0.05)  # pretend this is a blocking driver call
    return a * b


async def asyncio_side(scale: float) -> str:
    await asyncio.sleep(0.1 * scale)  # any asyncio library could be awaited here
    answer = await unknot.spawn(blocking_multiply, 6, 7)  # asyncio code awaits a fiber
    return f"the answer is {answer}"


def demo_asyncio(scale: float) -> None:
    loop = asyncio.get_running_loop()
    print(f"  the loop is a {type(loop).__name__}, a real asyncio event loop")
    print(f"  await_(asyncio_side()) -> {unknot.await_(asyncio_side(scale))!r}")
    start = unknot.current_time()
    with unknot.move_on_after(0.2 * scale) as scope:
        unknot.await_(asyncio.sleep(3600))  # cancelling the fiber cancels the asyncio task
    took = unknot.current_time() - start
    print(f"  await_(asyncio.sleep(3600)) cancelled after {took:.2f}s: {scope.cancelled_caught}")


# -----------------------------------------------------------------------------------------------
# 5. The Tcl wiki's echo server
# -----------------------------------------------------------------------------------------------


def echo(conn: socket.socket, addr: tuple) -> None:
    """The seed's handler, exactly as blocking code: read a line, write it back."""
    f = conn.makefile("rwb")
    for line in f:
        f.write(line)
        f.flush()


def echo_client(address: tuple, n: int, lines: int) -> int:
    with socket.create_connection(address) as conn, conn.makefile("rwb") as f:
        for i in range(lines):
            f.write(b"client %d line %d\n" % (n, i))
            f.flush()
            assert f.readline() == b"client %d line %d\n" % (n, i)
    return lines


def demo_echo(scale: float) -> None:
    clients = 1000
    # 1,000 clients and their 1,000 server-side sockets in one process: raise the soft fd limit
    # (often 1024) as far as the hard limit allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * clients + 100
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        clients = min(clients, (min(want, hard) - 100) // 2)
    with unknot.TCPServer(echo, "127.0.0.1", 0) as server:
        unknot.spawn(server.serve_forever)
        start = unknot.current_time()
        with unknot.TaskGroup() as tg:
            fibers = [tg.spawn(echo_client, server.address, n, 3) for n in range(clients)]
        took = unknot.current_time() - start
        print(f"  {clients} concurrent clients, {sum(f.result() for f in fibers)} lines")
        print(f"  echoed in {took:.2f}s by one server on {threading.active_count()} OS thread(s)")
        server.stop(grace=1)


SECTIONS = [
    ("1. The sleeper: blocking style, the loop stays free", demo_sleeper),
    ("2. run_server + a handler calling http_get; a TaskGroup of fetches", demo_http),
    ("3. Channels and select: producer-consumer", demo_channels),
    ("4. asyncio and fibers on one loop", demo_asyncio),
    ("5. The Tcl wiki's echo server: 1,000 clients, one thread", demo_echo),
]


def main(scale: float) -> None:
    start = time.monotonic()
    for title, section in SECTIONS:
        print(f"\n== {title}")
        section(scale)
    print(
        f"\nAll done in {time.monotonic() - start:.1f}s, "
        f"on {threading.active_count()} OS thread(s)."
    )


if __name__ == "__main__":
    unknot.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
