"""Cancellation soak: an HTTP server under load whose handlers are cancelled at random points.

    python fuzz/soak.py --seconds 600        # make soak (SOAK_SECONDS=60 in CI)

One process, one hub. Each request carries a unique item number; its handler puts the item in
``inbox`` (an `unknot.Queue` of 16), and relay fibers move items from ``inbox`` to ``outbox``
(16 too), from which a collector records them. Cancellations come from everywhere, at random:

- the handler's put runs under `move_on_after` or `fail_after` with a deadline of 0 to 3 ms
  (the queues are often full, so many run out), answered 503 or 504;
- a canceller fiber cancels the `CancelScope` of a random running handler (503), or cancels a
  random connection's fiber outright (the connection closes without an answer);
- the relays' ``get`` and ``put`` run under deadlines too (a relay keeps the item it holds and
  tries again);
- client fibers give up on one request in five after a random 0 to 20 ms (closing their
  connection, so the server sees resets at every stage).

Checked at the end: every item whose put returned reached the collector exactly once, and no
other item did (none lost, none duplicated, none from a cancelled put); every item a client
was told was accepted ("200 put") is among them; the process's descriptors are back to their
count; nothing was logged at ERROR or above and no fiber died of an unexpected exception.
Exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections import Counter
from typing import Any

import unknot
from unknot.http import HTTPServer, Request, Timeouts

QUEUE_SIZE = 16
RELAYS = 4
CLIENTS = 64


class ErrorCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(self.format(record))


class Soak:
    def __init__(self, seconds: float, seed: int) -> None:
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.inbox: unknot.Queue[int] = unknot.Queue(QUEUE_SIZE)
        self.outbox: unknot.Queue[int] = unknot.Queue(QUEUE_SIZE)
        self.accepted: set[int] = set()  # items whose put returned
        self.collected: Counter[int] = Counter()
        self.confirmed: set[int] = set()  # items a client was told were accepted
        self.refused_puts: set[int] = set()  # items whose put was cancelled
        self.running: dict[int, tuple[unknot.CancelScope, Any]] = {}  # item -> (scope, fiber)
        self.held = 0  # items a relay holds between its get and its put
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        self.next_item = 0

    # -- the server side -----------------------------------------------------------------------

    def handler(self, request: Request) -> Any:
        item = int(request.query_string)
        scope = unknot.CancelScope()
        self.running[item] = (scope, unknot.current())
        try:
            with scope:
                deadline = self.rng.uniform(0, 0.003)
                timed = unknot.fail_after if self.rng.random() < 0.5 else unknot.move_on_after
                try:
                    with timed(deadline):
                        if self.rng.random() < 0.3:
                            unknot.sleep(self.rng.uniform(0, 0.002))  # cancelled here too
                        try:
                            self.inbox.put(item)
                        except BaseException:
                            self.refused_puts.add(item)
                            raise
                        self.accepted.add(item)
                        return 200, None, b"put"
                except TimeoutError:
                    self.counts["fail_after"] += 1
                    return 504, None, b"timed out"
            self.counts["put_cancelled"] += 1
            return 503, None, b"cancelled"
        finally:
            del self.running[item]

    def relay(self) -> None:
        holding: int | None = None
        while True:
            if holding is None:
                with unknot.move_on_after(self.rng.uniform(0, 0.005)):
                    holding = self.inbox.get()
                    self.held += 1
            if holding is not None:
                with unknot.move_on_after(self.rng.uniform(0, 0.005)):
                    self.outbox.put(holding)
                    holding = None
                    self.held -= 1
            unknot.checkpoint()

    def collector(self) -> None:
        while True:
            with unknot.move_on_after(self.rng.uniform(0, 0.01)):
                self.collected[self.outbox.get()] += 1
            if self.rng.random() < 0.01:
                unknot.sleep(0.005)  # let the queues fill up now and then

    def canceller(self) -> None:
        while True:
            unknot.sleep(self.rng.uniform(0, 0.004))
            if not self.running:
                continue
            item = self.rng.choice(list(self.running))
            scope, fiber = self.running[item]
            if self.rng.random() < 0.8:
                scope.cancel()
                self.counts["scope_cancels"] += 1
            else:
                fiber.cancel()  # the whole connection
                self.counts["connection_cancels"] += 1

    # -- the clients ---------------------------------------------------------------------------

    def client(self, port: int, stop_at: float) -> None:
        sock = None
        buffer = b""
        while time.monotonic() < stop_at:
            item = self.next_item
            self.next_item += 1
            try:
                patience = self.rng.uniform(0, 0.02) if self.rng.random() < 0.2 else 5.0
                with unknot.move_on_after(patience) as scope:
                    if sock is None:
                        sock = unknot.socket.create_connection(("127.0.0.1", port))
                        buffer = b""
                    sock.sendall(b"GET /?%d HTTP/1.1\r\nHost: soak\r\n\r\n" % item)
                    while b"\r\n\r\n" not in buffer or len(buffer) < self._length(buffer):
                        data = sock.recv(65536)
                        if not data:
                            raise ConnectionError("closed by the server")
                        buffer += data
                    end = self._length(buffer)
                    response, buffer = buffer[:end], buffer[end:]
                    self.counts[response[9:12].decode()] += 1
                    if response.startswith(b"HTTP/1.1 200") and response.endswith(b"put"):
                        self.confirmed.add(item)
                if scope.cancelled_caught:
                    self.counts["client_gave_up"] += 1
                    if sock is not None:
                        sock.close()  # (the response may still come: start over)
                    sock = None
            except ConnectionError:
                self.counts["connection_dropped"] += 1
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    @staticmethod
    def _length(buffer: bytes) -> int:
        """The length of the response at the start of ``buffer`` (its head must be there)."""
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return 1 << 30
        head = buffer[:head_end].lower()
        start = head.index(b"content-length: ") + 16
        return head_end + 4 + int(head[start : head.index(b"\r\n", start)])

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        fds = len(os.listdir("/proc/self/fd"))
        server = HTTPServer(self.handler, "127.0.0.1", 0, timeouts=Timeouts(head=2, body=2))
        server.start()
        helpers = [unknot.spawn(self.relay) for _ in range(RELAYS)]
        helpers += [unknot.spawn(self.collector), unknot.spawn(self.canceller)]
        start = time.monotonic()
        stop_at = start + self.seconds
        clients = [unknot.spawn(self.client, server.port, stop_at) for _ in range(CLIENTS)]
        next_report = start + 10
        while any(not c.done() for c in clients):
            unknot.sleep(0.2)
            if time.monotonic() >= next_report:
                next_report += 10
                self.report(time.monotonic() - start, final=False)
        for c in clients:
            if c.exception() is not None:
                self.problems.append(f"a client died: {c.exception()!r}")
        server.stop(grace=5)
        helpers[-1].cancel()  # the canceller; then let the relays and collector drain
        deadline = time.monotonic() + 10
        while self.inbox.qsize() or self.outbox.qsize() or self.held:
            if time.monotonic() > deadline:
                self.problems.append("the queues did not drain")
                break
            unknot.sleep(0.05)
        for helper in helpers:
            helper.cancel()
        unknot.sleep(0.1)
        for helper in helpers:
            if helper.done() and not helper.cancelled() and helper.exception() is not None:
                self.problems.append(f"a helper died: {helper.exception()!r}")
        self.check()
        left = len(os.listdir("/proc/self/fd")) - fds
        if left:
            self.problems.append(f"{left} descriptors leaked")
        self.report(time.monotonic() - start, final=True)

    def check(self) -> None:
        duplicated = [item for item, n in self.collected.items() if n > 1]
        lost = self.accepted - set(self.collected)
        phantom = set(self.collected) - self.accepted
        unconfirmed = self.confirmed - self.accepted
        cancelled_but_arrived = self.refused_puts & set(self.collected)
        for name, items in [
            ("duplicated", duplicated),
            ("lost", lost),
            ("collected without an accepted put", phantom),
            ("confirmed to a client but not accepted", unconfirmed),
            ("arrived though their put was cancelled", cancelled_but_arrived),
        ]:
            if items:
                self.problems.append(f"{len(items)} items {name}: {sorted(items)[:10]}")

    def report(self, elapsed: float, final: bool) -> None:
        counts = ", ".join(f"{k} {v:,}" for k, v in sorted(self.counts.items()))
        print(
            f"{elapsed:5.0f} s: {self.next_item:,} requests, {len(self.accepted):,} items "
            f"accepted, {sum(self.collected.values()):,} collected; {counts}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", "600"))
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    errors = ErrorCount()
    logging.getLogger().addHandler(errors)
    soak = Soak(args.seconds, seed)
    unknot.run(soak.run)
    problems = soak.problems + [f"logged: {m}" for m in errors.messages[:10]]
    if problems:
        print(f"soak FAILED (seed {seed}):", *problems, sep="\n  ")
        return 1
    print(f"soak passed (seed {seed}): no fd leak, no item lost or duplicated, no error logged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
