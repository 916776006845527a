"""The blocking detector: a monitor thread that names the line holding a hub's loop."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import unknot
from unknot._core import _monitor


def _line_of(fn: object, text: str) -> int:
    code = fn.__code__  # type: ignore[attr-defined]
    import inspect

    lines, first = inspect.getsourcelines(code)
    return first + next(i for i, ln in enumerate(lines) if text in ln)


def _blocks_with_time_sleep() -> None:
    time.sleep(0.5)  # the unpatched sleep: holds the whole loop


@pytest.mark.usefixtures("restore_monitor")
def test_raw_time_sleep_in_a_fiber_is_reported_with_its_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.1, reports.append)

    def main() -> None:
        unknot.spawn(_blocks_with_time_sleep, name="sleepy").join()

    with caplog.at_level(logging.WARNING, logger="unknot.monitor"):
        unknot.run(main)
    assert len(reports) == 1, reports
    r = reports[0]
    assert r.filename == __file__
    assert r.lineno == _line_of(_blocks_with_time_sleep, "time.sleep(0.5)")
    assert r.function == "_blocks_with_time_sleep"
    assert r.line == "time.sleep(0.5)  # the unpatched sleep: holds the whole loop"
    assert r.fiber == "sleepy"
    assert r.thread == "MainThread"
    assert 0.1 <= r.blocked_for < 0.5
    assert r.stack[-1].name == "_blocks_with_time_sleep"
    logged = [rec for rec in caplog.records if rec.name == "unknot.monitor"]
    assert len(logged) == 1
    msg = logged[0].getMessage()
    assert f"{__file__}:{r.lineno} in _blocks_with_time_sleep" in msg
    assert "by fiber 'sleepy'" in msg


@pytest.mark.usefixtures("restore_monitor")
def test_an_idle_hub_is_not_reported() -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.05, reports.append)

    def main() -> None:
        unknot.sleep(0.4)  # the hub waits in its poll: idle, not blocked
        unknot.to_thread(time.sleep, 0.2)

    unknot.run(main)
    assert reports == []


@pytest.mark.usefixtures("restore_monitor")
def test_each_hub_is_monitored() -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.1, reports.append)
    threads = [
        threading.Thread(target=unknot.run, args=(_blocks_with_time_sleep,), name=f"hub-{i}")
        for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(r.thread for r in reports) == ["hub-0", "hub-1"]
    assert all(r.function == "_blocks_with_time_sleep" for r in reports)


@pytest.mark.usefixtures("restore_monitor")
def test_blocking_asyncio_callback_is_reported_without_a_fiber() -> None:
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.1, reports.append)

    def main() -> None:
        loop = unknot.lowlevel.current_hub().loop  # type: ignore[union-attr]
        loop.call_soon(_blocks_with_time_sleep)  # type: ignore[union-attr]
        unknot.sleep(0.01)

    unknot.run(main)
    assert len(reports) == 1
    assert reports[0].fiber is None
    assert reports[0].function == "_blocks_with_time_sleep"


@pytest.mark.usefixtures("restore_monitor")
def test_a_failing_callback_is_logged_and_the_monitor_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad(_r: unknot.BlockingReport) -> None:
        raise RuntimeError("callback bug")

    unknot.start_monitor(0.1, bad)
    with caplog.at_level(logging.WARNING, logger="unknot.monitor"):
        unknot.run(_blocks_with_time_sleep)
        unknot.run(_blocks_with_time_sleep)
    assert sum("callback bug" in (r.exc_text or str(r.exc_info)) for r in caplog.records) == 2


def test_bad_settings_are_refused() -> None:
    assert _monitor.parse_setting("0") is None
    assert _monitor.parse_setting("off") is None
    assert _monitor.parse_setting("1") == _monitor.DEFAULT_THRESHOLD
    assert _monitor.parse_setting("0.25") == 0.25
    assert _monitor.parse_setting("250ms") == pytest.approx(0.25)
    for bad in ("fast", "-1", "0ms"):
        with pytest.raises(ValueError, match="UNKNOT_MONITOR"):
            _monitor.parse_setting(bad)
    with pytest.raises(ValueError, match="threshold"):
        unknot.start_monitor(0)


SCRIPT = textwrap.dedent(
    """
    import logging, sys, time, unknot
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s: %(message)s")
    def main():
        time.sleep(0.4)
    unknot.run(main)
    print("done")
    """
)


def _run_script(path: Path, env: dict[str, str], *flags: str) -> str:
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("UNKNOT_MONITOR", "UNKNOT_DEBUG", "PYTHONASYNCIODEBUG")
    }
    full.update(env)
    out = subprocess.run(
        [sys.executable, *flags, str(path)],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("done"), out.stdout  # the daemon thread let it exit
    return out.stdout


@pytest.mark.parametrize(
    ("env", "flags", "reported"),
    [
        ({}, (), False),  # off by default outside tests and debug mode
        ({"UNKNOT_MONITOR": "1"}, (), True),
        ({"UNKNOT_MONITOR": "200ms"}, (), True),
        ({"UNKNOT_MONITOR": "2"}, (), False),  # 2 s threshold: 0.4 s is fine
        ({"UNKNOT_DEBUG": "1"}, (), True),
        ({"PYTHONASYNCIODEBUG": "1"}, (), True),
        ({}, ("-X", "dev"), True),
        ({"PYTHONASYNCIODEBUG": "1", "UNKNOT_MONITOR": "0"}, (), False),
    ],
)
def test_configured_by_environment(
    tmp_path: Path, env: dict[str, str], flags: tuple[str, ...], reported: bool
) -> None:
    script = tmp_path / "blocker.py"
    script.write_text(SCRIPT)
    out = _run_script(script, env, *flags)
    assert ("unknot.monitor: the event loop" in out) is reported, out
    if reported:
        assert f"{script}:5 in main: time.sleep(0.4)" in out, out


def test_on_by_default_under_the_pytest_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import logging, time, unknot

        def test_blocks(caplog):
            with caplog.at_level(logging.WARNING, logger="unknot.monitor"):
                unknot.run(time.sleep, 0.4)
            assert [r for r in caplog.records if r.name == "unknot.monitor"]
        """
    )
    env_saved = os.environ.pop("UNKNOT_MONITOR", None)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    finally:
        if env_saved is not None:
            os.environ["UNKNOT_MONITOR"] = env_saved
    result.assert_outcomes(passed=1)


@pytest.mark.usefixtures("restore_monitor")
def test_a_sample_taken_while_stop_runs_leaves_no_epoch_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The detector's thread reads the clock for a sample, and stop() comes in before it stores
    # the sample in EPOCH. Once stop() has returned, EPOCH must stay None: a stale EPOCH makes
    # every park store its time (`Fiber._since`) with nobody to read it, and a later start
    # would not mark its first sample (`_monitor.BEGAN`).
    unknot.stop_monitor()
    in_sample = threading.Event()
    go_on = threading.Event()
    clock = time.monotonic

    def slow_clock() -> float:
        if threading.current_thread().name == "unknot-monitor" and not in_sample.is_set():
            in_sample.set()
            assert go_on.wait(10)
        return clock()

    monkeypatch.setattr(_monitor, "_monotonic", slow_clock)
    unknot.start_monitor(10)
    worker = _monitor._monitor.thread
    assert worker is not None
    assert in_sample.wait(10)
    stopper = threading.Thread(target=unknot.stop_monitor)
    stopper.start()
    stopper.join(0.2)  # returns at once when stop() does not wait for the sample
    go_on.set()
    stopper.join(10)
    worker.join(10)
    assert not stopper.is_alive() and not worker.is_alive()
    assert _monitor.EPOCH[0] is None


def _short_busy_call() -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < 0.001:  # never blocks for long: 1 ms
        pass


@pytest.mark.usefixtures("restore_monitor")
def test_a_long_run_of_short_fibers_is_told_apart_from_one_fiber_holding_the_loop() -> None:
    # 200 ready fibers of 1 ms each run in one pass: the loop does not come back for 200 ms, a
    # real stall, but the report named whichever innocent fiber happened to run at that moment
    # as if it held the loop. It now says how many fibers were seen running in the stall.
    reports: list[unknot.BlockingReport] = []
    unknot.start_monitor(0.05, reports.append)

    def main() -> None:
        with unknot.TaskGroup() as tg:
            for _ in range(200):
                tg.spawn(_short_busy_call)

    unknot.run(main)
    # (This run's reports, wherever their sample found the running fiber: in the busy call, or
    # in the fiber's entry around it.)
    many = list(reports)
    unknot.run(lambda: unknot.spawn(_blocks_with_time_sleep, name="sleepy").join())
    single = [r for r in reports if r.fiber == "sleepy"]
    assert many and all(r.fibers_seen > 1 for r in many), reports
    assert "fibers were seen running during this stall" in many[0].format()
    assert len(single) == 1 and single[0].fibers_seen == 1, single
    assert "seen running" not in single[0].format()


@pytest.mark.usefixtures("restore_monitor")
def test_a_run_stopped_in_the_middle_of_a_sample_leaves_the_next_run_alone() -> None:
    # stop_monitor() comes while the detector's thread is in the middle of a sample (here from
    # its report callback, in that thread, between two hubs). The thread must leave the rest of
    # that sample alone: it used to go on with the next hub in the very dict that stop() had
    # cleared, which is the one the next start_monitor() run would use.
    unknot.stop_monitor()
    blocked_started = threading.Event()
    release = threading.Event()
    reported = threading.Event()
    stopped_from: list[threading.Thread] = []

    def blocked() -> None:
        blocked_started.set()
        assert release.wait(30)  # a real wait: holds this hub's loop until the test is done

    def on_report(report: unknot.BlockingReport) -> None:
        if report.thread == "blocked-hub" and not reported.is_set():
            unknot.stop_monitor()
            stopped_from.append(threading.current_thread())
            reported.set()

    # The blocked hub starts first, so each sample looks at it before the test's own hub.
    blocked_hub = threading.Thread(target=unknot.run, args=(blocked,), name="blocked-hub")
    blocked_hub.start()
    try:
        assert blocked_started.wait(10)

        def main() -> tuple[bool, bool, dict[Any, Any]]:
            unknot.start_monitor(0.05, on_report)
            got_report = unknot.to_thread(reported.wait, 10)
            old = stopped_from[0]
            unknot.to_thread(old.join, 10)  # (it ends at its next wake-up)
            return got_report, old.is_alive(), dict(_monitor._monitor.watches)

        got_report, old_alive, watches = unknot.run(main)
    finally:
        release.set()
        blocked_hub.join(10)
    assert got_report and not old_alive
    # Nothing of the stopped run is left where the next run keeps its watches.
    assert watches == {}
