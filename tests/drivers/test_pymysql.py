"""PyMySQL, unmodified, on a real MariaDB: 50 fibers each run ``SELECT SLEEP(0.2)``."""

from __future__ import annotations

from typing import Any

from drivers_support import require_module


def test_sleep_concurrently(mysql_params: dict[str, Any], concurrently: Any) -> None:
    pymysql = require_module("pymysql")

    def work(i: int) -> Any:
        conn = pymysql.connect(**mysql_params)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT SLEEP(0.2), %s + 1", (i,))
                return cur.fetchone()[1]
        finally:
            conn.close()

    assert concurrently(work).results == [i + 1 for i in range(50)]
