"""`unknot.stats`: a hub's counters and gauges."""

from __future__ import annotations

import threading
import time

import pytest

import unknot
from unknot import socket


@pytest.fixture
def monitor_on(restore_monitor: None) -> None:
    unknot.start_monitor(0.1, lambda _r: None)


def test_counts_fibers_fds_timers_and_threads(backend: str) -> None:
    got: dict[str, unknot.LoopStats] = {}

    def main() -> None:
        got["start"] = unknot.stats()
        release = threading.Event()
        a, b = socket.socketpair()
        with a, b, unknot.TaskGroup() as tg:
            for _ in range(3):
                tg.spawn(unknot.sleep, 10)
            tg.spawn(a.recv, 1)
            tg.spawn(unknot.to_thread, release.wait, 10)
            unknot.sleep(0.05)
            got["busy"] = unknot.stats()
            release.set()
            tg.cancel()
        for _ in range(500):  # the worker thread finishes its (cancelled) call
            unknot.sleep(0.01)
            if unknot.stats().threads_in_flight == 0:
                break
        got["end"] = unknot.stats()

    unknot.run(main)
    start, busy, end = got["start"], got["busy"], got["end"]
    assert start.fibers == 1 and start.thread == "MainThread"
    assert busy.fibers == 6  # root + 3 sleepers + reader + to_thread caller
    assert busy.timers >= 3
    assert busy.fd_waiters == 1 and busy.fds >= 1
    assert busy.threads_in_flight == 1
    assert end.fibers == 1 and end.timers == 0 and end.threads_in_flight == 0


def test_pool_queue_depth() -> None:
    got: list[unknot.LoopStats] = []
    release = threading.Event()

    def main() -> None:
        from unknot._core._thread_pool import _max_threads

        n = _max_threads() + 3
        with unknot.TaskGroup() as tg:
            for _ in range(n):
                tg.spawn(unknot.to_thread, release.wait, 10)
            deadline = time.monotonic() + 5
            while True:
                unknot.sleep(0.02)
                s = unknot.stats()
                if s.pool_queue >= 3 or time.monotonic() > deadline:
                    break
            got.append(s)
            release.set()

    unknot.run(main)
    assert got[0].pool_queue == 3
    assert got[0].threads_in_flight == _pool_size() + 3


def _pool_size() -> int:
    from unknot._core._thread_pool import _max_threads

    return _max_threads()


@pytest.mark.usefixtures("monitor_on")
def test_loop_lag_percentiles_come_from_the_monitor() -> None:
    got: list[unknot.LoopStats] = []

    def main() -> None:
        unknot.sleep(0.6)
        time.sleep(0.5)  # holds the loop: a lag probe (one per 0.25 s) is posted meanwhile
        unknot.sleep(0.6)
        got.append(unknot.stats())

    unknot.run(main)
    s = got[0]
    assert s.lag_samples >= 3
    assert s.lag_p50 is not None and s.lag_p50 < 0.1
    assert s.lag_max is not None and s.lag_max >= 0.1
    assert s.lag_p50 <= (s.lag_p90 or 0) <= (s.lag_p99 or 0) <= s.lag_max
    assert s.monitor_threshold == 0.1
    text = str(s)
    assert "loop lag p50" in text and "fibers" in text and "ms" in text


@pytest.mark.usefixtures("restore_monitor")
def test_without_the_monitor_lag_is_unknown() -> None:
    unknot.stop_monitor()
    got: list[unknot.LoopStats] = []
    unknot.run(lambda: got.append(unknot.stats()))
    assert got[0].lag_p50 is None and got[0].monitor_threshold is None
    assert "p50 -" in str(got[0])


def test_outside_a_hub_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="needs a hub"):
        unknot.stats()
