"""psycopg 3, unmodified, on a real PostgreSQL: 50 fibers each run ``SELECT pg_sleep(0.2)``.

psycopg waits for its socket in C (``psycopg.waiting.wait_c``), out of reach of the patched
socket module; `unknot.patch()` fills psycopg's own hook instead (`unknot._patch`'s driver
integrations), whether psycopg was imported before or after the patch.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from drivers_support import require_module


def test_pg_sleep_concurrently(postgres_dsn: str, concurrently: Any) -> None:
    psycopg = require_module("psycopg")

    def work(i: int) -> Any:
        with psycopg.connect(postgres_dsn) as conn:
            row = conn.execute("SELECT pg_sleep(0.2), %s::int * 2", (i,)).fetchone()
            return row[1]

    assert concurrently(work).results == [i * 2 for i in range(50)]


def test_shared_connections_transactions_and_cursors(postgres_dsn: str, concurrently: Any) -> None:
    """Connections opened before the fibers start, used with transactions and server cursors."""
    psycopg = require_module("psycopg")
    conns: list[Any] = []

    def setup() -> None:
        conns.extend(psycopg.connect(postgres_dsn) for _ in range(50))

    def work(i: int) -> Any:
        conn = conns[i]
        with conn.transaction(), conn.cursor(name=f"c{i}") as cur:
            cur.execute("SELECT g FROM pg_sleep(0.2), generate_series(1, %s) g", (i + 1,))
            return sum(g for (g,) in cur.fetchall())

    def teardown() -> None:
        for conn in conns:
            conn.close()

    outcome = concurrently(work, setup=setup, teardown=teardown)
    assert outcome.results == [(i + 1) * (i + 2) // 2 for i in range(50)]


def test_outside_fibers_psycopg_waits_as_usual(postgres_dsn: str) -> None:
    """Patched, but called from no fiber: the hook hands over to psycopg's own wait function."""
    psycopg = require_module("psycopg")
    assert psycopg.waiting.wait.__unknot_original__ is psycopg.waiting.wait_c
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


# Five fibers each run pg_sleep(0.2); prints the seconds taken. argv: "before" or "after" (import
# psycopg before or after unknot.patch), "on" or "off" (patch's drivers keyword).
IMPORT_ORDER_SCRIPT = """
import sys, time
when, drivers = sys.argv[1], sys.argv[2] == "on"
if when == "before":
    import psycopg
import unknot
unknot.patch(drivers=drivers)
import psycopg

def work():
    with psycopg.connect(DSN) as conn:
        conn.execute("SELECT pg_sleep(0.2)")

def main():
    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        for _ in range(5):
            tg.spawn(work)
    return time.monotonic() - t0

elapsed = unknot.run(main)
unknot.unpatch()
assert psycopg.waiting.wait is psycopg.waiting.wait_c, "unpatch restores psycopg's own wait"
print(round(elapsed, 3))
"""


def test_hook_applies_whatever_the_import_order(postgres_dsn: str) -> None:
    """psycopg imported before or after ``patch()``: cooperative either way. Control: with
    ``patch(drivers=False)`` psycopg's C wait blocks the thread, and 5 x 0.2 s add up."""
    require_module("psycopg")
    script = f"DSN = {postgres_dsn!r}\n" + IMPORT_ORDER_SCRIPT
    times = {}
    for when, drivers in (("before", "on"), ("after", "on"), ("before", "off")):
        out = subprocess.run(
            [sys.executable, "-c", script, when, drivers],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        times[when, drivers] = float(out.stdout)
    assert times["before", "off"] >= 5 * 0.2, times  # serialised: the wait blocked the thread
    assert times["before", "on"] < 0.2 * 3, times  # concurrent
    assert times["after", "on"] < 0.2 * 3, times
