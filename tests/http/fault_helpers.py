"""Helpers for the fault tests (test_faults_*.py): fd counting, resets, a sanity request.

Every fault test records the process's open descriptors before the fault (`open_fds`), and
after it checks with `settled` that the server closed its side (no connection left, the
count back where it was) and that it still answers a normal request.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

from server_helpers import ServerThread, connect, get, read_response


def open_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER on, 0 s) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def answers(port: int) -> bool:
    """The server answers a normal GET / with 200 on a new connection."""
    with connect(port) as sock:
        sock.sendall(get("/"))
        return read_response(sock.makefile("rb")).status == 200


def settled(srv: ServerThread, fds_before: int, timeout: float = 10.0) -> None:
    """Wait until the server has no connection left and the fd count is back to
    ``fds_before``; then check that it still answers a normal request (and leaks no fd)."""
    deadline = time.monotonic() + timeout
    while srv.connections or open_fds() > fds_before:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{srv.connections} connections still open, {open_fds() - fds_before} fds leaked"
            )
        time.sleep(0.01)
    assert answers(srv.port), "the server no longer answers"
    srv.wait_for_connections(0)
    deadline = time.monotonic() + timeout
    while open_fds() > fds_before:
        assert time.monotonic() < deadline, f"{open_fds() - fds_before} fds leaked"
        time.sleep(0.01)


class ErrorRecords(logging.Handler):
    """Collects the records of level ERROR and above logged anywhere."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@contextmanager
def no_logged_errors() -> Iterator[ErrorRecords]:
    """Fail the block if anything logged an error (the server's handler failures included)."""
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    assert not handler.records, f"errors were logged: {handler.messages()}"
