"""Shared fixtures for the core runtime tests."""

from __future__ import annotations

import threading
import time

import pytest

from unknot._selectors import BACKENDS

pytest_plugins = ["pytester"]

BACKEND_NAMES = sorted(BACKENDS)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on each selector backend (the env var is read when the loop is created)."""
    monkeypatch.setenv("UNKNOT_SELECTOR", request.param)
    return request.param


@pytest.fixture
def no_foreign_threads() -> None:
    """Deadlock detection treats any live foreign thread as a possible waker: wait for strays.

    Fails fast (instead of hanging in a test that expects a DeadlockError) if a thread started
    by another test is still running.
    """
    from unknot._threads import pool_thread_idents

    deadline = time.monotonic() + 10
    while True:
        known = pool_thread_idents()
        others = [
            t
            for t in threading.enumerate()
            if t is not threading.current_thread() and t.ident not in known
        ]
        if not others:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"stray threads alive, deadlock detection cannot work: {others}")
        others[0].join(0.1)
