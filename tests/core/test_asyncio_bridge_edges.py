"""The asyncio bridge and loop, cases a review found wrong (each test fails on the code
before its fix): a task's cancellation lost by ``await fiber``, await cycles through
``asyncio.gather``, and asyncio's debug mode saying nothing about a fiber blocking the loop."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fiber_helpers import await_cycle_errors, run_on_hub_loop

import unknot

# -- a task cancelled just after the fiber it awaits finished --------------------------------------


@pytest.mark.parametrize("outcome", ["value", "error"])
def test_a_cancel_arriving_after_the_fiber_finished_is_not_swallowed(outcome: str) -> None:
    # The fiber finishes and the task's wake-up is scheduled; then, before it runs, the task is
    # cancelled. Nothing was cancelled in the fiber (it had finished), so the task sees its
    # CancelledError, as a task awaiting a finished task does. `await fiber` used to return the
    # fiber's outcome and the task ran on, its cancellation lost.
    async def main() -> tuple[bool, list[str], int]:
        loop = asyncio.get_running_loop()
        log: list[str] = []

        async def worker() -> None:
            me = asyncio.current_task()
            assert me is not None

            def job() -> str:
                loop.call_soon(me.cancel)  # (runs once this fiber has finished)
                if outcome == "error":
                    raise KeyError("the fiber's error")
                return "result"

            fiber = unknot.spawn(job)
            try:
                await fiber
            finally:
                log.append(f"fiber {'done' if fiber.done() else 'running'}")
                if outcome == "error":
                    with pytest.raises(KeyError):
                        fiber.result()  # (retrieved here: not logged as never retrieved)
            log.append("ran on")

        task = loop.create_task(worker())
        done, _ = await asyncio.wait([task], timeout=5)
        assert done
        return task.cancelled(), log, task.cancelling()

    cancelled, log, cancelling = run_on_hub_loop(main)
    assert cancelled, log
    assert log == ["fiber done"]
    assert cancelling == 1


def test_a_fiber_catching_the_tasks_cancellation_still_gives_its_value() -> None:
    # The rule the fix keeps: the fiber was still running when the task was cancelled, caught
    # its Cancelled and returned: `await fiber` returns that value.
    async def main() -> Any:
        started = asyncio.get_running_loop().create_future()

        def stubborn() -> str:
            started.set_result(None)
            try:
                unknot.sleep(10)
            except unknot.Cancelled:
                return "caught, returned"
            return "slept"

        fiber = unknot.spawn(stubborn)

        async def awaits() -> Any:
            return await fiber

        task = asyncio.ensure_future(awaits())
        await started
        await asyncio.sleep(0)
        task.cancel()
        return await asyncio.wait_for(task, 5)

    assert run_on_hub_loop(main) == "caught, returned"


# -- await cycles through asyncio.gather -----------------------------------------------------------


def test_a_fiber_awaiting_a_gather_of_itself_is_refused() -> None:
    # fiber -> await_(gather) -> gather's child task -> await the fiber: nothing could end it (a
    # cancellation would wait for itself). It used to hang until the deadlock report.
    def main() -> str:
        with pytest.raises(RuntimeError, match="neither could ever finish"):
            unknot.await_(asyncio.gather(unknot.current()))
        return "refused"

    assert unknot.run(main) == "refused"


def test_a_task_awaiting_a_gather_of_a_fiber_that_waits_for_it_is_refused() -> None:
    # The fiber waits (await_) for the task first; the task then awaits gather(fiber): the
    # gather's child that would await the fiber closes the cycle and is refused.
    task_msg, fiber_msg = await_cycle_errors(lambda fiber: asyncio.gather(fiber), timeout=5)
    assert "neither could ever finish" in task_msg
    assert fiber_msg == task_msg


def test_a_gather_without_a_cycle_is_not_refused() -> None:
    def main() -> Any:
        a = unknot.spawn(lambda: (unknot.sleep(0.01), "a")[1])
        b = unknot.spawn(lambda: unknot.await_(asyncio.gather(a)))  # another fiber waits for a
        return unknot.await_(asyncio.gather(a, b, asyncio.sleep(0.001, result="c")))

    assert unknot.run(main) == ["a", ["a"], "c"]


# -- asyncio's debug mode reports a fiber blocking the loop ----------------------------------------

DEBUG_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys, time
    import unknot

    logging.basicConfig(format="%(name)s: %(message)s", stream=sys.stdout)

    def spin(s):
        t = time.perf_counter()
        while time.perf_counter() - t < s:
            pass

    def blocking_fiber():
        unknot.sleep(0.01)
        spin(0.3)

    async def main():
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.15
        {setup}
        await unknot.spawn(blocking_fiber)
        await asyncio.sleep(0.05)

    {before}
    with asyncio.Runner(loop_factory=unknot.new_event_loop, debug={debug}) as r:
        r.run(main())
    print("done")
    """
)


def _run_debug_script(
    tmp_path: Path, *, debug: bool, setup: str = "pass", before: str = "", env: Any = None
) -> str:
    script = tmp_path / "debug_blocker.py"
    script.write_text(DEBUG_SCRIPT.format(debug=debug, setup=setup, before=before))
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("UNKNOT_MONITOR", "UNKNOT_DEBUG", "PYTHONASYNCIODEBUG")
    }
    full.update(env or {})
    out = subprocess.run(
        [sys.executable, str(script)], env=full, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("done"), out.stdout
    return out.stdout


@pytest.mark.parametrize("how", ["Runner(debug=True)", "loop.set_debug(True)"])
def test_asyncio_debug_mode_reports_a_fiber_blocking_the_loop(tmp_path: Path, how: str) -> None:
    # asyncio's slow-callback check cannot see a fiber (fibers run inside the selector's
    # select()): the loop's debug flag turns unknot's blocking detector on for it, whether set
    # before the loop runs or while it runs.
    if how == "Runner(debug=True)":
        out = _run_debug_script(tmp_path, debug=True)
    else:
        out = _run_debug_script(tmp_path, debug=False, setup="loop.set_debug(True)")
    assert "unknot.monitor: the event loop" in out, out
    assert "in blocking_fiber\n    spin(0.3)" in out, out
    # (After slow_callback_duration, 0.15 s here, not the detector's default 0.1 s.)
    blocked_for = float(re.search(r"has been blocked for ([0-9.]+) s", out).group(1))  # type: ignore[union-attr]
    assert 0.15 <= blocked_for < 0.3, out


def test_no_report_without_debug_mode(tmp_path: Path) -> None:
    assert "unknot.monitor" not in _run_debug_script(tmp_path, debug=False)


def test_the_threshold_is_the_loops_slow_callback_duration(tmp_path: Path) -> None:
    # 0.3 s of blocking stays under a slow_callback_duration of 1 s: not reported.
    out = _run_debug_script(tmp_path, debug=True, setup="loop.slow_callback_duration = 1.0")
    assert "unknot.monitor" not in out, out


@pytest.mark.parametrize(
    ("before", "env"),
    [
        ("unknot.stop_monitor()", None),
        ("unknot.start_monitor(1.0)", None),
        ("", {"UNKNOT_MONITOR": "0"}),
        ("", {"UNKNOT_MONITOR": "1s"}),
    ],
    ids=["stop_monitor", "start_monitor", "UNKNOT_MONITOR=0", "UNKNOT_MONITOR=1s"],
)
def test_the_users_own_monitor_settings_win(tmp_path: Path, before: str, env: Any) -> None:
    out = _run_debug_script(tmp_path, debug=True, before=before, env=env)
    assert "unknot.monitor" not in out, out


def test_set_debug_false_undoes_what_set_debug_true_did(tmp_path: Path) -> None:
    out = _run_debug_script(tmp_path, debug=True, setup="loop.set_debug(False)")
    assert "unknot.monitor" not in out, out


@pytest.mark.usefixtures("restore_monitor")
def test_a_closed_loop_is_no_longer_watched_for_its_debug_mode() -> None:
    from unknot._core import _monitor

    m = _monitor._monitor
    m.explicit = False
    os_env = os.environ.pop("UNKNOT_MONITOR", None)
    try:
        loop = unknot.new_event_loop()
        loop.set_debug(True)
        assert loop.hub in m.debug_hubs
        loop.set_debug(False)
        assert loop.hub not in m.debug_hubs
        loop.set_debug(True)
        loop.close()
        assert loop.hub not in m.debug_hubs
    finally:
        if os_env is not None:
            os.environ["UNKNOT_MONITOR"] = os_env
