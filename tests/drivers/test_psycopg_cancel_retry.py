"""psycopg 3: the cancel request of a cancelled fiber's clean-up is sent again if dropped.

PostgreSQL ignores a cancel request that reaches the backend while it is idle or still reading
the command: a fiber cancelled just after its query went out (a pool handing it a connection a
moment before its deadline, say) would then wait for the whole query, or for the clean-up's
5 s bound. unknot's clean-up asks again while the connection stays silent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from drivers_support import require_module

import unknot


@pytest.fixture
def psycopg(postgres_dsn: str) -> Any:
    return require_module("psycopg")


@pytest.fixture
def conn(psycopg: Any, postgres_dsn: str) -> Iterator[Any]:
    """An autocommit connection."""
    with psycopg.connect(postgres_dsn, autocommit=True) as c:
        yield c


@pytest.mark.unknot
def test_dropped_cancel_request_is_sent_again(
    psycopg: Any, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server drops the first cancel request (simulated: the real race is rare with one
    connection; test_sqlalchemy.py's test_many_fibers_cancelled_around_checkout meets it)."""
    real = psycopg.Connection.cancel_safe
    calls: list[float] = []

    def first_dropped(self: Any, **kw: Any) -> None:
        calls.append(time.monotonic())
        if len(calls) > 1:
            real(self, **kw)

    monkeypatch.setattr(psycopg.Connection, "cancel_safe", first_dropped)
    t0 = time.monotonic()
    with unknot.move_on_after(0.1) as scope:
        conn.execute("SELECT pg_sleep(2)")
    assert scope.cancelled_caught
    assert time.monotonic() - t0 < 1
    assert len(calls) >= 2
    assert not conn.closed
    assert conn.execute("SELECT 42").fetchone() == (42,)
