"""SQLAlchemy's sync engine, unmodified, over psycopg 3 and over PyMySQL, on real servers.

Many fibers share one engine whose `QueuePool` (``pool_size=5, max_overflow=0``) hands out five
connections: the pool's queue waits on ``threading`` locks and conditions, which `unknot.patch`
makes hybrid, so a fiber waiting for a connection suspends only itself, and ``pool_timeout``
holds. SQLAlchemy treats an interruption that is not an ``Exception`` (here `unknot.Cancelled`,
as ``KeyboardInterrupt`` or asyncio's ``CancelledError``) as a disconnect: the connection of a
fiber cancelled in the middle of a query is invalidated and closed, and its pool slot given back;
the next user gets a fresh connection. (With psycopg, unknot first cancels the query on the
server, see test_psycopg_cancel.py.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from drivers_support import require_module

import unknot

POOL = 5


@pytest.fixture(params=["psycopg", "pymysql"])
def backend(request: pytest.FixtureRequest) -> tuple[Any, str, dict[str, Any]]:
    """``(url, sleep_sql, connect_args)``: an SQLAlchemy URL, a query that sleeps ``:s``
    seconds, and the driver's connect arguments."""
    sa = require_module("sqlalchemy")
    if request.param == "psycopg":
        dsn = request.getfixturevalue("postgres_dsn")
        info = require_module("psycopg.conninfo").conninfo_to_dict(dsn)
        url = sa.engine.URL.create(
            "postgresql+psycopg",
            username=info["user"],
            host=info["host"],
            port=int(info["port"]),
            database=info["dbname"],
        )
        return url, "SELECT pg_sleep(:s)", {}
    params = request.getfixturevalue("mysql_params")
    url = sa.engine.URL.create(
        "mysql+pymysql",
        username=params["user"],
        password=params["password"],
        host=params["host"],
        port=params["port"],
        database=params["database"],
    )
    return url, "SELECT SLEEP(:s)", {"ssl_disabled": params["ssl_disabled"]}


@pytest.fixture
def engine(backend: tuple[Any, str, dict[str, Any]]) -> Iterator[Any]:
    eng = create_engine(backend, pool_size=POOL, pool_timeout=10)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def sleep_sql(backend: tuple[Any, str, dict[str, Any]]) -> Any:
    import sqlalchemy as sa

    return sa.text(backend[1])


def create_engine(backend: tuple[Any, str, dict[str, Any]], **pool: Any) -> Any:
    """An engine for ``backend`` with no overflow beyond the ``pool_size`` in ``pool``."""
    import sqlalchemy as sa

    return sa.create_engine(backend[0], max_overflow=0, connect_args=backend[2], **pool)


def select(engine: Any, i: int) -> Any:
    import sqlalchemy as sa

    with engine.connect() as c:
        return c.execute(sa.text("SELECT :i"), {"i": i}).scalar()


def assert_pool_usable(engine: Any) -> None:
    """Nothing checked out, and ten fibers at once get correct answers from the pool."""
    assert engine.pool.checkedout() == 0, engine.pool.status()
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(select, engine, i) for i in range(10)]
    assert [f.result() for f in fibers] == list(range(10))


def test_queries_run_concurrently_through_the_pool(
    engine: Any, sleep_sql: Any, concurrently: Any
) -> None:
    """20 fibers each sleep 0.2 s in the server: four rounds of five (about 0.8 s), not 4 s
    one after the other, nor 0.2 s (the pool really limits them to five)."""
    import sqlalchemy as sa

    def work(i: int) -> Any:
        with engine.connect() as c:
            c.execute(sleep_sql, {"s": 0.2})
            return c.execute(sa.text("SELECT :i * 2"), {"i": i}).scalar()

    outcome = concurrently(work, 20, limit=0.2 * math.ceil(20 / POOL) * 2)
    assert outcome.results == [i * 2 for i in range(20)]
    assert outcome.elapsed >= 0.2 * math.ceil(20 / POOL) * 0.9, outcome.elapsed


@pytest.mark.unknot
def test_200_fibers_share_five_connections(engine: Any, sleep_sql: Any) -> None:
    """Each holds a connection for a 0.02 s query: 40 rounds (0.8 s), serially 4 s. Never more
    than five at once, every fiber served (none starved into pool_timeout)."""
    busy = [0, 0]  # now, most

    def work(i: int) -> Any:
        with engine.connect() as c:
            busy[0] += 1
            busy[1] = max(busy)
            try:
                c.execute(sleep_sql, {"s": 0.02})
            finally:
                busy[0] -= 1
        return select(engine, i)

    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(work, i) for i in range(200)]
    elapsed = time.monotonic() - t0
    assert [f.result() for f in fibers] == list(range(200))
    assert busy[1] == POOL
    assert 0.02 * 40 * 0.9 <= elapsed < 2.5, elapsed
    assert engine.pool.checkedout() == 0


@pytest.mark.unknot
def test_cancelled_mid_query_gives_its_connection_back(engine: Any, sleep_sql: Any) -> None:
    raw: list[Any] = []
    t0 = time.monotonic()
    with unknot.move_on_after(0.1) as scope, engine.connect() as c:
        raw.append(c.connection.dbapi_connection)
        c.execute(sleep_sql, {"s": 5})
    assert scope.cancelled_caught
    assert time.monotonic() - t0 < 1.5
    # SQLAlchemy's way with an interruption: that connection closed, a fresh one next time.
    assert getattr(raw[0], "closed", None) is True or getattr(raw[0], "open", None) is False
    assert_pool_usable(engine)


@pytest.mark.unknot
def test_cancelled_in_a_transaction_outside_a_query(engine: Any) -> None:
    """Cancelled while holding a connection in ``engine.begin()`` but not in a query: the
    rollback on the way out is a blocking call in a cancelled fiber, so it raises `Cancelled`
    too, SQLAlchemy invalidates the connection (logging it for PyMySQL, whose close writes),
    and the slot goes back to the pool all the same."""
    import sqlalchemy as sa

    def holder() -> None:
        with unknot.move_on_after(0.05), engine.begin() as c:
            c.execute(sa.text("SELECT 1"))
            unknot.sleep(5)

    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        for _ in range(POOL * 2):
            tg.spawn(holder)
    assert time.monotonic() - t0 < 1.5
    assert_pool_usable(engine)


@pytest.mark.unknot
def test_many_fibers_cancelled_around_checkout(engine: Any, sleep_sql: Any) -> None:
    """20 fibers cancelled 50-90 ms in, some in a query, some waiting for the pool, some just
    after they got a connection (a query sent a moment before its cancellation: PostgreSQL
    drops a cancel request that comes while it still reads the command, and unknot asks
    again). All are done in a fraction of the 3 s queries, the pool intact."""

    def work(i: int) -> None:
        with unknot.move_on_after(0.05 + 0.01 * (i % 5)), engine.connect() as c:
            c.execute(sleep_sql, {"s": 3})

    with unknot.TaskGroup() as tg:  # five connections open, so checkouts are quick
        for i in range(POOL):
            tg.spawn(select, engine, i)
    durations = []
    for _ in range(3):
        t0 = time.monotonic()
        with unknot.TaskGroup() as tg:
            for i in range(20):
                tg.spawn(work, i)
        durations.append(time.monotonic() - t0)
    assert max(durations) < 1.5, durations
    assert_pool_usable(engine)


@pytest.mark.unknot
def test_pool_timeout(backend: tuple[Any, str, dict[str, Any]], sleep_sql: Any) -> None:
    """Two fibers hold both connections for 0.6 s; a third gives up after pool_timeout (0.2 s)
    with SQLAlchemy's TimeoutError, while the holders go on."""
    import sqlalchemy as sa

    eng = create_engine(backend, pool_size=2, pool_timeout=0.2)
    seen: list[Any] = []

    def hold() -> None:
        with eng.connect() as c:
            c.execute(sleep_sql, {"s": 0.6})
            seen.append("held")

    def wait() -> None:
        unknot.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(sa.exc.TimeoutError):
            eng.connect()
        seen.append(time.monotonic() - t0)

    try:
        with unknot.TaskGroup() as tg:
            tg.spawn(hold)
            tg.spawn(hold)
            tg.spawn(wait)
        waited = seen[0]
        assert 0.18 <= waited < 0.5, seen
        assert seen[1:] == ["held", "held"]
        assert eng.pool.checkedout() == 0
    finally:
        eng.dispose()


@pytest.mark.unknot
def test_cancelled_while_waiting_for_the_pool(engine: Any, sleep_sql: Any) -> None:
    out: list[bool] = []

    def hold() -> None:
        with engine.connect() as c:
            c.execute(sleep_sql, {"s": 0.4})

    def wait() -> None:
        unknot.sleep(0.05)
        with unknot.move_on_after(0.1) as scope:
            engine.connect()
        out.append(scope.cancelled_caught)

    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        for _ in range(POOL):
            tg.spawn(hold)
        tg.spawn(wait)
    assert out == [True]
    assert time.monotonic() - t0 < 1.5
    assert_pool_usable(engine)


@pytest.mark.unknot
def test_dispose(engine: Any) -> None:
    """dispose() closes the pooled connections; the engine opens new ones afterwards."""
    with unknot.TaskGroup() as tg:
        for i in range(POOL):
            tg.spawn(select, engine, i)
    assert engine.pool.checkedin() == POOL
    engine.dispose()
    assert engine.pool.checkedin() == 0
    assert_pool_usable(engine)
