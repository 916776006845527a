"""Fixes in the debugging tools: the blocking detector, deadlock detection, the
backdoor, `stats`, and `sleep` after a spurious wake-up."""

from __future__ import annotations

import asyncio
import errno
import gc
import io
import itertools
import logging
import os
import selectors
import signal
import socket as stdsocket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from fiber_helpers import BACKDOOR_PROMPT, BackdoorClient, run_script

import unknot
from unknot import backdoor, lowlevel
from unknot._core import _monitor
from unknot.testing import MockClock

# -- the blocking detector: a fiber (or callback) blocked in the stdlib selectors -------------


def _select_for(seconds: float) -> None:
    with selectors.DefaultSelector() as sel:
        sel.select(seconds)  # the stdlib selector, unpatched: holds the whole loop


@pytest.mark.usefixtures("restore_monitor")
def test_a_fiber_blocked_in_a_stdlib_selector_is_reported(backend: str) -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.1, reports.append)

    def main() -> None:
        unknot.spawn(_select_for, 0.4, name="selecting").join()

    unknot.run(main)
    assert len(reports) == 1, reports
    assert reports[0].fiber == "selecting"
    assert "_select_for" in [fs.name for fs in reports[0].stack]


@pytest.mark.usefixtures("restore_monitor")
def test_an_asyncio_callback_blocked_in_a_stdlib_selector_is_reported(backend: str) -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.1, reports.append)

    def main() -> None:
        asyncio.get_event_loop().call_soon(_select_for, 0.4)
        unknot.sleep(0.5)

    unknot.run(main)
    assert len(reports) == 1, reports
    assert reports[0].fiber is None
    assert "_select_for" in [fs.name for fs in reports[0].stack]


@pytest.mark.usefixtures("restore_monitor")
def test_an_unpatched_subprocess_run_in_a_fiber_is_reported() -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.1, reports.append)
    child = [sys.executable, "-c", "import time; time.sleep(0.5)"]

    def main() -> None:
        # communicate() waits in selectors' select, holding the loop
        unknot.spawn(subprocess.run, child, capture_output=True, name="runs-child").join()

    unknot.run(main)
    assert [r.fiber for r in reports] == ["runs-child"]


@pytest.mark.usefixtures("restore_monitor")
def test_an_idle_hub_is_not_reported_on_any_backend(backend: str) -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.05, reports.append)

    def main() -> None:
        unknot.sleep(0.3)  # the hub waits in its own poll (the stdlib selector's, for poll)
        a, b = unknot.socket.socketpair()
        with a, b:
            unknot.spawn(lambda: (unknot.sleep(0.2), b.send(b"x")))
            a.recv(1)

    unknot.run(main)
    assert reports == []


# -- start_monitor with a bad threshold changes nothing ------------------------------------


def _monitor_left_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> _monitor.Monitor:
    """Stop the blocking detector and leave it to ``UNKNOT_MONITOR``, set to ``value`` (unset if
    None); the detector."""
    m = _monitor._monitor
    m.stop()
    m.explicit = False
    if value is None:
        monkeypatch.delenv("UNKNOT_MONITOR", raising=False)
    else:
        monkeypatch.setenv("UNKNOT_MONITOR", value)
    return m


@pytest.mark.usefixtures("restore_monitor")
def test_a_refused_start_monitor_leaves_the_environment_in_charge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    m = _monitor_left_to_the_environment(monkeypatch, "1")
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            unknot.start_monitor(bad)
    assert not m.explicit
    assert unknot.run(lambda: unknot.stats().monitor_threshold) == _monitor.DEFAULT_THRESHOLD


# -- a malformed UNKNOT_MONITOR leaves no hub behind ----------------------------------------


def _wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


@pytest.mark.usefixtures("restore_monitor")
def test_a_malformed_unknot_monitor_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _monitor_left_to_the_environment(monkeypatch, "fast")
    wakeup = _wakeup_fd()
    ran: list[bool] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="UNKNOT_MONITOR='fast'"):
            unknot.run(ran.append, True)
        with pytest.raises(ValueError, match="UNKNOT_MONITOR='fast'"):
            unknot.new_event_loop()  # at construction
        gc.collect()
    assert ran == []
    assert lowlevel.running_hubs() == []
    assert _monitor._hubs == {}
    out = io.StringIO()
    unknot.dump(out)
    assert out.getvalue() == "=== unknot: no hub is running ===\n"
    assert _wakeup_fd() == wakeup
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


@pytest.mark.usefixtures("restore_monitor")
def test_a_loop_whose_unknot_monitor_turned_malformed_is_not_left_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _monitor_left_to_the_environment(monkeypatch, None)
    wakeup = _wakeup_fd()
    loop = unknot.new_event_loop()
    try:
        monkeypatch.setenv("UNKNOT_MONITOR", "fast")
        with pytest.raises(ValueError, match="UNKNOT_MONITOR"):
            loop.run_forever()
        assert lowlevel.running_hubs() == []
        assert _monitor._hubs == {}
        assert _wakeup_fd() == wakeup
        monkeypatch.setenv("UNKNOT_MONITOR", "0")
        assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"  # usable again
    finally:
        loop.close()


def test_a_nested_run_forever_leaves_the_running_hub_registered() -> None:
    seen: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        hub = loop.hub  # type: ignore[attr-defined]
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_forever()
        seen.append(hub in lowlevel.running_hubs())

    with asyncio.Runner(loop_factory=unknot.new_event_loop) as r:
        r.run(main())
    assert seen == [True]


# -- deadlock detection -----------------------------------------------------------------------


def test_a_deadlock_after_a_default_executor_job_is_reported() -> None:
    # The executor's idle worker must not count as a possible waker; faulthandler's C timer
    # (not a thread, not a signal handler: both would be wakers) ends a hung child.
    script = textwrap.dedent(
        """
        import asyncio, faulthandler, os, time, unknot
        faulthandler.dump_traceback_later(5, exit=True, file=open(os.devnull, "w"))

        def main():
            async def job():
                return await asyncio.to_thread(time.sleep, 0.01)
            unknot.await_(job())
            loop = asyncio.get_event_loop()
            unknot.await_(loop.run_in_executor(None, time.sleep, 0.01))
            unknot.Event().wait()

        t0 = time.monotonic()
        try:
            unknot.run(main)
        except unknot.DeadlockError:
            print(f"deadlock|{time.monotonic() - t0:.2f}")
        """
    )
    out = run_script(script, env={"UNKNOT_MONITOR": "0"})
    assert out[0] == "deadlock"
    assert float(out[1]) < 2


def test_a_running_default_executor_job_is_still_a_waker() -> None:
    def main() -> str:
        ev = unknot.Event()
        loop = asyncio.get_event_loop()

        async def later() -> None:
            await loop.run_in_executor(None, time.sleep, 0.3)
            ev.set()

        unknot.spawn(unknot.await_, later())
        ev.wait()  # only the executor's job can wake it
        return "woken"

    assert unknot.run(main) == "woken"


def _pool_fetch(ready: unknot.Event) -> list[Any]:
    with unknot.Pool(2) as pool:
        return pool.map(lambda _url: ready.wait(), ["a", "b"])  # <- where it is stuck


@pytest.mark.usefixtures("no_foreign_threads")
def test_the_deadlock_report_shows_the_users_line_not_only_unknots() -> None:
    def main() -> None:
        unknot.spawn(_pool_fetch, unknot.Event(), name="fetch_all")
        unknot.Event().wait()

    with pytest.raises(unknot.DeadlockError) as info:
        unknot.run(main)
    report = str(info.value)
    section = report.split("  fetch_all:")[1].split("\n  unknot.Pool worker")[0]
    assert "in _pool_fetch" in section, report
    assert "pool.map(lambda _url: ready.wait()" in section, report
    core = os.path.join("unknot", "_core", "")
    assert core not in section, report  # the wait machinery is left out
    root = report.split("  root (root):")[1].split("\n  ")[0:4]
    assert "in main" in "\n".join(root), report


# -- stats ------------------------------------------------------------------------------------


def test_stats_timers_leave_out_cancelled_asyncio_timers() -> None:
    def main() -> list[int]:
        loop = asyncio.get_event_loop()
        base = unknot.stats().timers
        keep = loop.call_later(30, print, "keep")  # due first: asyncio keeps the others queued
        handles = [loop.call_later(60, print, i) for i in range(50)]
        counts = [unknot.stats().timers - base]
        for h in handles[:20]:
            h.cancel()
        counts.append(unknot.stats().timers - base)
        for h in handles[20:]:
            h.cancel()
        counts.append(unknot.stats().timers - base)
        unknot.sleep(0.02)  # a few loop iterations (asyncio may sweep the cancelled ones)
        counts.append(unknot.stats().timers - base)
        keep.cancel()
        counts.append(unknot.stats().timers - base)
        return counts

    assert unknot.run(main) == [51, 31, 1, 1, 0]


# -- sleep after a spurious wake-up -----------------------------------------------------------


def test_sleep_woken_spuriously_sleeps_only_what_is_left(autojump_clock: MockClock) -> None:
    def main() -> float:
        t0 = unknot.current_time()
        f = unknot.spawn(unknot.sleep, 5)
        unknot.sleep(3)
        lowlevel.wake(f)  # spurious
        unknot.sleep(1)
        lowlevel.wake(f)  # again
        f.join()
        return unknot.current_time() - t0

    assert unknot.run(main, clock=autojump_clock) == pytest.approx(5)


def test_sleep_woken_spuriously_in_real_time() -> None:
    def main() -> float:
        t0 = time.monotonic()
        f = unknot.spawn(unknot.sleep, 0.3)
        unknot.sleep(0.2)
        lowlevel.wake(f)
        f.join()
        return time.monotonic() - t0

    assert unknot.run(main) < 0.45  # (it used to restart: 0.5 s)


# -- the backdoor -----------------------------------------------------------------------------


def _session(srv: backdoor.BackdoorServer, script: bytes, eof: bool) -> str:
    c = unknot.to_thread(BackdoorClient, srv.address)
    try:
        unknot.to_thread(c.until, BACKDOOR_PROMPT)
        unknot.to_thread(c.sock.sendall, script)
        if eof:
            c.sock.shutdown(stdsocket.SHUT_WR)
            return unknot.to_thread(c.rest)
        return unknot.to_thread(c.until, b"END")
    finally:
        c.sock.close()


def test_input_in_a_session_reads_from_the_client() -> None:
    # input() used to read the program's stdin (pytest's, here: it refuses), holding the loop.
    ticks: list[float] = []
    before = sys.stdin

    def ticker() -> None:
        while True:
            unknot.sleep(0.02)
            ticks.append(time.monotonic())

    def main() -> tuple[str, float]:
        unknot.spawn(ticker)
        with backdoor.serve() as srv:
            t0 = time.monotonic()
            out = _session(
                srv,
                b"answer = input('name? ')\nbob\n"
                b"line = __import__('sys').stdin.readline()\nsecond line\n"
                b"print('ANSWER=' + answer, repr(line))\nprint('END')\n",
                eof=False,
            )
        times = [t0, *(t for t in ticks if t > t0), time.monotonic()]
        return out, max(b - a for a, b in itertools.pairwise(times))

    out, longest_gap = unknot.run(main)
    assert "name? " in out, out
    assert "ANSWER=bob 'second line\\n'" in out, out
    assert longest_gap < 0.5
    assert sys.stdin is before


def test_input_at_the_clients_end_of_input_raises_eoferror() -> None:
    def main() -> str:
        with backdoor.serve() as srv:
            return _session(srv, b"print('got', repr(input()))", eof=True)

    out = unknot.run(main)
    assert "EOFError" in out, out


def test_the_session_streams_have_an_encoding() -> None:
    def main() -> str:
        with backdoor.serve() as srv:
            return _session(
                srv,
                b"import sys\n"
                b"print(sys.stdout.encoding, sys.stderr.errors, sys.stdin.encoding)\n"
                b"print('END')\n",
                eof=False,
            )

    assert "utf-8 replace utf-8" in unknot.run(main)


def test_a_last_command_without_a_newline_runs_before_the_end_of_input() -> None:
    def main() -> str:
        with backdoor.serve(locals={"answer": 21}) as srv:
            return _session(srv, b"print('FIRST', answer)\nprint('LAST', answer * 2)", eof=True)

    out = unknot.run(main)
    assert "FIRST 21" in out and "LAST 42" in out, out


def test_an_unfinished_block_at_the_end_of_input_runs() -> None:
    def main() -> str:
        with backdoor.serve() as srv:
            return _session(srv, b"for i in range(2):\n    print('ITEM', i)\n", eof=True)

    out = unknot.run(main)
    assert "ITEM 0" in out and "ITEM 1" in out, out


def test_serve_refuses_a_path_where_a_live_backdoor_listens(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")

    def main() -> str:
        with backdoor.serve(path, banner="FIRST"):
            with pytest.raises(OSError) as info:
                backdoor.serve(path, banner="SECOND")
            assert info.value.errno == errno.EADDRINUSE
            assert path in str(info.value)
            c = unknot.to_thread(BackdoorClient, path)  # the first one still answers
            try:
                return unknot.to_thread(c.until, b"FIRST")
            finally:
                c.sock.close()

    assert unknot.run(main).endswith("FIRST")
    assert not os.path.exists(path)


def test_serve_refuses_a_path_where_another_process_listens(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    other = stdsocket.socket(stdsocket.AF_UNIX)
    with other:
        other.bind(path)
        other.listen(1)

        def main() -> None:
            with pytest.raises(OSError, match="listens"):
                backdoor.serve(path)

        unknot.run(main)
        assert os.path.exists(path)


def test_serve_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    stale = stdsocket.socket(stdsocket.AF_UNIX)
    stale.bind(path)
    stale.close()  # its file stays: nobody listens there

    def main() -> str:
        with backdoor.serve(path, banner="NEW"):
            c = unknot.to_thread(BackdoorClient, path)
            try:
                return unknot.to_thread(c.until, b"NEW")
            finally:
                c.sock.close()

    assert unknot.run(main).endswith("NEW")


def test_stop_leaves_a_socket_file_that_is_no_longer_its_own(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    other = stdsocket.socket(stdsocket.AF_UNIX)

    def main() -> None:
        srv = backdoor.serve(path)
        os.unlink(path)
        other.bind(path)  # someone else's socket now
        other.listen(1)
        srv.stop()

    with other:
        unknot.run(main)
        assert os.path.exists(path)


def test_instruments_doc_example_logs_the_spawn_after_the_join(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # docs/debugging.md, "Export to logging": the order its text gives.
    log = logging.getLogger("myapp.fibers.s28")

    class LogInstrument(lowlevel.Instrument):
        def fiber_spawned(self, fiber: unknot.Fiber) -> None:
            log.debug("spawned %s", fiber.name)

        def fiber_blocked(self, fiber: unknot.Fiber, waiting_on: str) -> None:
            log.debug("%s waits on %s", fiber.name, waiting_on.split(" (")[0])

        def fiber_done(self, fiber: unknot.Fiber) -> None:
            log.debug("%s done", fiber.name)

    def main() -> None:
        lowlevel.add_instrument(LogInstrument())
        unknot.spawn(unknot.sleep, 0.01, name="nap").join()

    with caplog.at_level(logging.DEBUG, logger="myapp.fibers.s28"):
        unknot.run(main)
    got = [r.getMessage() for r in caplog.records if r.name == "myapp.fibers.s28"]
    assert got == [
        "root waits on Fiber.join",
        "spawned nap",
        "nap waits on sleep",
        "nap done",
        "root done",
    ]
    text = Path(__file__).parents[2].joinpath("docs", "debugging.md").read_text()
    assert "logs `root waits on Fiber.join (nap)`, `spawned nap`, `nap waits on sleep" in text, (
        "docs/debugging.md lists the events in another order"
    )
