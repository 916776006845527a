"""Helpers for the driver tests (imported by conftest.py and the test modules).

`unavailable` is the one place that decides between skipping (a developer's machine without
the service or package) and failing (``CI=true``). `run_concurrently` runs 50 fibers on one
hub and checks the claims every driver test makes.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest

import unknot

N_FIBERS = 50
SERVER_DELAY = 0.2
LIMIT = 3.0  # seconds for all 50 (serially they would take 50 x 0.2 = 10 s)
SERVERS = Path(__file__).parent / "servers"

# The originals, captured before any test patches: fixtures use them outside fibers.
_select = select.select
_create_connection = socket.create_connection


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for fixture servers: killed if pytest dies without tearing them down."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason`` (a missing service or package); under CI=true, fail it."""
    if in_ci():
        pytest.fail(f"CI=true, so this must not be skipped: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str) -> ModuleType:
    """Import ``name`` or make the test unavailable (install with ``pip install -e .[drivers]``)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        unavailable(f"{name} is not installed ({exc}); pip install -e '.[drivers]'")


def require_tcp(host: str, port: int, what: str) -> None:
    """Make the test unavailable unless something accepts TCP connections at host:port."""
    try:
        _create_connection((host, port), timeout=2).close()
    except OSError as exc:
        unavailable(f"{what} is not running on {host}:{port} ({exc})")


class Budget:
    """One deadline shared by all the fibers of a test, so that a test whose calls do block the
    thread (the failure it looks for) fails in seconds, not in 50 x its per-call timeout."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self, floor: float = 0.0) -> float:
        """Seconds until the deadline, at least ``floor``."""
        return max(floor, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_tcp(host: str, port: int, proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_script(script: str, *args: str, timeout: float = 30) -> Server:
    """Run ``servers/<script>`` with this interpreter; it prints its port when it listens.

    Its stderr (request logs, tracebacks) goes to an unnamed temporary file, never to a pipe
    that could fill up and stall the server.
    """
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(SERVERS / script), *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            preexec_fn=die_with_parent,
        )
        assert proc.stdout is not None
        ready, _, _ = _select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            stop(proc)
            stderr.seek(0)
            raise RuntimeError(f"{script} did not start (stdout {line!r}):\n{stderr.read()}")
    server = Server(proc, int(line))
    wait_for_tcp("127.0.0.1", server.port, proc)
    return server


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a server started by a fixture, and close our ends of its pipes."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


# -- running 50 fibers and checking what they did ------------------------------------------------


@dataclass
class Outcome:
    results: list[Any]  # what each fiber's call returned, in spawn order
    elapsed: float  # seconds for all of them
    durations: list[float]  # seconds each fiber's call took


def run_concurrently(
    work: Callable[[int], Any],
    n: int = N_FIBERS,
    *,
    setup: Callable[[], Any] | None = None,
    background: Callable[[], Any] | None = None,
    teardown: Callable[[], Any] | None = None,
    limit: float = LIMIT,
    min_duration: float = SERVER_DELAY * 0.9,
) -> Outcome:
    """Run ``work(i)`` for i in range(n) in n fibers of one hub, as the root fiber's children.

    ``setup()`` runs first in the root fiber (not timed), ``teardown()`` last; ``background()``
    runs in one more fiber beside the workers (a feeder). Asserts that everything ran on the
    main thread, that no thread was started, that the whole took less than ``limit`` seconds,
    and that each call took at least ``min_duration`` (the server really made it wait).
    """
    main_ident = threading.get_ident()

    def root() -> tuple[Outcome, set[int], list[threading.Thread], list[threading.Thread]]:
        if setup is not None:
            setup()
        idents: set[int] = set()
        durations = [0.0] * n
        threads_before = threading.enumerate()

        def one(i: int) -> Any:
            idents.add(threading.get_ident())
            t0 = time.monotonic()
            try:
                return work(i)
            finally:
                durations[i] = time.monotonic() - t0

        def feeder() -> None:
            idents.add(threading.get_ident())
            assert background is not None
            background()

        t0 = time.monotonic()
        with unknot.TaskGroup() as tg:
            fibers = [tg.spawn(one, i, name=f"worker-{i}") for i in range(n)]
            if background is not None:
                tg.spawn(feeder, name="feeder")
        elapsed = time.monotonic() - t0
        outcome = Outcome([f.result() for f in fibers], elapsed, durations)
        threads_after = threading.enumerate()
        if teardown is not None:
            teardown()
        return outcome, idents, threads_before, threads_after

    outcome, idents, before, after = unknot.run(root)
    assert idents == {main_ident}, "a fiber ran outside the main thread"
    started = [t for t in after if t not in before]
    assert not started and len(after) <= len(before), f"threads were started: {started}"
    assert outcome.elapsed < limit, (
        f"{n} calls took {outcome.elapsed:.2f} s: not concurrent (limit {limit} s)"
    )
    slowest, fastest = max(outcome.durations), min(outcome.durations)
    assert fastest >= min_duration, f"a call took only {fastest:.3f} s: the server did not wait"
    print(
        f"\n{n} fibers, 1 thread: {outcome.elapsed:.3f} s in all; "
        f"each call {fastest:.3f}..{slowest:.3f} s"
    )
    return outcome
