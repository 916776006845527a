"""The HTTP server's watchdog cuts timed-out connections in batches (`WATCHDOG_BATCH`), serving
the others in between, and looks at each connection's deadline again before cutting it.

Hundreds of connections trickle a request head past the head timeout, all due at the same
watchdog tick (a handler holds the loop until they are). When the first of them is cut, a
keep-alive client sends a request and the last slow connection finishes its head. The
keep-alive request must be answered before the last batch is cut (one pass cutting them all
would answer it only after), every slow connection but the last gets its 408, and the last,
whose deadline moved on when its head ended, is answered and left open.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import pytest
from server_helpers import ServerThread, read_response

import unknot
import unknot.lowlevel
from unknot.http import Timeouts, _server

pytestmark = pytest.mark.timeout(60)

SLOW = 5 * _server.WATCHDOG_BATCH - 10  # five batches
HEAD_TIMEOUT = 0.5
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_watchdog_cuts_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    cuts: list[unknot.Fiber] = []
    answered_after: list[int] = []  # how many cuts had been made when "/" was answered
    at_first_cut: list[Any] = []  # what to do once the watchdog begins cutting

    def handler(request: Any) -> tuple[int, None, bytes]:
        if request.path == "/hold":
            # Holds the loop (unpatched time.sleep) until every slow head is past its deadline,
            # so that the watchdog finds them all due at one tick.
            time.sleep(HEAD_TIMEOUT * 1.5)
            return 200, None, b"held"
        answered_after.append(len(cuts))
        return 200, None, b"hello"

    real_throw = unknot.lowlevel.throw

    def throw(fiber: unknot.Fiber, exc: BaseException) -> bool:
        cuts.append(fiber)
        if len(cuts) == 1:
            for action in at_first_cut:
                action()
        return real_throw(fiber, exc)

    monkeypatch.setattr(unknot.lowlevel, "throw", throw)  # (the watchdog reads it as it starts)
    timeouts = Timeouts(head=HEAD_TIMEOUT, keep_alive=30)
    with ServerThread(handler, timeouts=timeouts) as srv, contextlib.ExitStack() as closing:
        keep = closing.enter_context(socket.create_connection(("127.0.0.1", srv.port), 10))
        keep.sendall(GET)
        keep_file = closing.enter_context(keep.makefile("rb"))
        assert read_response(keep_file).status == 200
        slow = []
        for _ in range(SLOW):
            s = closing.enter_context(socket.create_connection(("127.0.0.1", srv.port), 10))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)
        srv.wait_for_connections(SLOW + 1)
        for s in slow:  # a second piece: each head's deadline now runs from this recv
            s.sendall(b"s")
        time.sleep(0.2)  # (the server reads them: a sleep only makes the hold below surer)
        at_first_cut.append(lambda: keep.sendall(GET))
        at_first_cut.append(lambda: slow[-1].sendall(b"\r\n\r\n"))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as hold:
            hold.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(hold.makefile("rb")).status == 200

        assert read_response(keep_file).status == 200  # served...
        for s in slow[:-1]:
            with s.makefile("rb") as f:
                assert read_response(f).status == 408
                assert f.read() == b""  # closed
            s.close()
        rescued = closing.enter_context(slow[-1].makefile("rb"))
        assert read_response(rescued).status == 200
        slow[-1].sendall(GET)  # still open
        assert read_response(rescued).status == 200
        # ...between two batches: cuts were made after it was answered.
        assert answered_after[1] < len(cuts), (answered_after, len(cuts))
        assert len(cuts) == SLOW - 1, len(cuts)  # the rescued one was looked at again
        srv.wait_for_connections(2)
