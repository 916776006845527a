"""unknot's one process-wide, bounded thread pool, used by `to_thread`.

A `concurrent.futures.ThreadPoolExecutor` (size from ``$UNKNOT_MAX_THREADS``, default
``min(32, cpus + 4)`` like asyncio's), the approach gevent's default resolver takes and the
fastest of its resolvers in our measurements. Created on first use; forgotten in a forked child.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _max_threads() -> int:
    value = os.environ.get("UNKNOT_MAX_THREADS", "")
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(
                f"UNKNOT_MAX_THREADS must be a whole number, at least 1, not {value!r}"
            )
        return n
    return min(32, (os.cpu_count() or 1) + 4)


def get_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(
                    _max_threads(), thread_name_prefix="unknot-worker"
                )
    return _pool


def _reset_after_fork() -> None:
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def pool_thread_idents() -> set[int | None]:
    """Idents of the worker threads of unknot's pool (used by deadlock detection)."""
    pool = _pool
    if pool is None:
        return set()
    return {t.ident for t in list(pool._threads)}
