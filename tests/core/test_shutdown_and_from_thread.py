"""Core fixes: a fiber's error raised while `unknot.run`'s shutdown unwinds it is
reported then (not at garbage collection); `from_thread` in a child forked inside a worker, with
something not callable, and from a fiber of another hub (only that fiber waits); a fiber's name
given to spawn is a str."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fiber_helpers import OtherHub, Ticker, run_script, unretrieved_hook_calls

import unknot
from unknot import lowlevel
from unknot._core import _fiber
from unknot._core._lookup import get_hub

# -- bug 1: an error raised while the shutdown unwinds a leftover fiber ------------------------


@pytest.fixture
def calls() -> Iterator[list[tuple[Any, BaseException]]]:
    """An unretrieved-error hook, installed for the test: the ``(fiber, error)`` of each call."""
    with unretrieved_hook_calls() as seen:
        yield seen


def raise_when_unwound(what: str) -> None:
    try:
        unknot.sleep(30)
    finally:
        raise ValueError(what)


def sleep_forever() -> None:
    unknot.sleep(30)


class TestShutdownUnwindingErrors:
    def test_reported_when_run_returns_not_at_collection(
        self, calls: list[tuple[Any, BaseException]], caplog: pytest.LogCaptureFixture
    ) -> None:
        def main() -> None:
            unknot.spawn(raise_when_unwound, "unwound")
            unknot.sleep(0)

        gc.disable()
        try:
            unknot.run(main)
            seen = [str(e) for _, e in calls]
            logged = "Unhandled exception" in caplog.text and "unwound" in caplog.text
        finally:
            gc.enable()
        assert seen == ["unwound"]
        assert logged
        calls.clear()
        gc.collect()
        assert calls == []  # (not reported a second time when collected)

    def test_on_a_foreign_loop_reported_when_asyncio_run_returns(
        self, calls: list[tuple[Any, BaseException]]
    ) -> None:
        async def main() -> None:
            unknot.spawn(raise_when_unwound, "foreign")
            await asyncio.sleep(0.01)

        gc.disable()
        try:
            asyncio.run(main())
            seen = [str(e) for _, e in calls]
        finally:
            gc.enable()
        assert seen == ["foreign"]

    def test_cancelled_leftover_fibers_stay_silent(
        self, calls: list[tuple[Any, BaseException]], caplog: pytest.LogCaptureFixture
    ) -> None:
        def main() -> None:
            unknot.spawn(sleep_forever)
            unknot.sleep(0)

        unknot.run(main)
        gc.collect()
        assert calls == []
        assert "Unhandled exception" not in caplog.text

    def test_an_error_someone_else_waits_for_is_not_reported(
        self, calls: list[tuple[Any, BaseException]]
    ) -> None:
        seen: list[BaseException | None] = []

        def main() -> None:
            f = unknot.spawn(raise_when_unwound, "retrieved")
            f.add_done_callback(lambda fiber: seen.append(fiber.exception()))
            unknot.sleep(0)

        unknot.run(main)
        gc.collect()
        assert [str(e) for e in seen] == ["retrieved"]
        assert calls == []

    def test_the_pytest_plugin_blames_the_test_that_left_the_fiber(self, tmp_path: Any) -> None:
        (tmp_path / "test_leak.py").write_text(
            "import gc, pytest, unknot\n"
            "@pytest.mark.unknot\n"
            "def test_x_leaves_a_failing_fiber():\n"
            "    def bad():\n"
            "        try:\n"
            "            unknot.sleep(10)\n"
            "        finally:\n"
            "            raise ValueError('left by test_x')\n"
            "    unknot.spawn(bad)\n"
            "    unknot.sleep(0)\n"
            "@pytest.mark.unknot\n"
            "def test_y_innocent():\n"
            "    gc.collect()\n"
        )
        out = (
            __import__("subprocess")
            .run(
                [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
                + ["-q", "-rA", "test_leak.py"],
                capture_output=True,
                text=True,
                timeout=50,
                cwd=tmp_path,
            )
            .stdout
        )
        lines = [line for line in out.splitlines() if line.startswith(("PASSED", "FAILED"))]
        assert any(line.startswith("FAILED") and "test_x" in line for line in lines), out
        assert any(line.startswith("PASSED") and "test_y" in line for line in lines), out


# -- bug 2: from_thread in a child forked inside a to_thread worker ----------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_from_thread_in_a_child_forked_in_a_worker_is_an_error() -> None:
    script = """
import os, signal, sys
import unknot

def in_child():
    signal.signal(signal.SIGALRM, lambda *a: os._exit(3))  # (hung)
    signal.alarm(5)
    try:
        unknot.from_thread(print, "ran in a fiber")
        os._exit(4)
    except RuntimeError as e:
        os._exit(0 if "no unknot hub is running" in str(e) else 5)
    except BaseException:
        os._exit(2)

def forking_worker():
    pid = os.fork()
    if pid == 0:
        in_child()
    return pid

def main():
    pid = unknot.to_thread(forking_worker)
    # (the worker still knows its hub after the fork, in the parent)
    same = unknot.to_thread(unknot.from_thread, lambda: "parent ok")
    status = unknot.to_thread(os.waitpid, pid, 0)[1]
    return f"{os.waitstatus_to_exitcode(status)}|{same}"

print(unknot.run(main))
"""
    assert run_script(script) == ["0", "parent ok"]


# -- bug 3: from_thread with something not callable --------------------------------------------


class TestFromThreadNotCallable:
    @pytest.mark.unknot
    def test_type_error_at_once_in_a_thread(self) -> None:
        loop = asyncio.get_running_loop()
        out: list[Any] = []

        def thread_main() -> None:
            t0 = time.monotonic()
            try:
                unknot.from_thread(42, loop=loop)  # type: ignore[arg-type]
            except BaseException as e:
                out.append(e)
            out.append(time.monotonic() - t0)

        t = threading.Thread(target=thread_main, daemon=True)
        t.start()
        with unknot.move_on_after(5):
            unknot.to_thread(t.join, 5)
        assert not t.is_alive()
        assert isinstance(out[0], TypeError) and "42" in str(out[0])
        assert out[1] < 1

    @pytest.mark.unknot
    def test_type_error_in_a_worker(self) -> None:
        with pytest.raises(TypeError, match="callable"):
            unknot.to_thread(unknot.from_thread, None)

    @pytest.mark.unknot
    @pytest.mark.skipif(unknot.compiled, reason="patches a method of the (compiled) hub")
    def test_an_error_of_spawning_reaches_the_caller(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hub = get_hub()

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("cannot spawn now")

        monkeypatch.setattr(type(hub), "spawn", refuse)
        with unknot.move_on_after(5):
            with pytest.raises(RuntimeError, match="cannot spawn now"):
                unknot.to_thread(unknot.from_thread, lambda: None)
            return
        pytest.fail("from_thread still waits")


# -- bug 4: from_thread from a fiber of another hub --------------------------------------------


@pytest.fixture
def other() -> Iterator[OtherHub]:
    with OtherHub() as hub:
        yield hub


@pytest.fixture
def slow_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting fiber looks whether the other hub was closed only every 60 s: it must be woken."""
    monkeypatch.setattr(_fiber, "_CLOSED_POLL", 60.0)


@pytest.mark.usefixtures("slow_poll")
class TestFromThreadInAFiberOfAnotherHub:
    @pytest.mark.unknot
    def test_only_the_calling_fiber_waits(self, other: OtherHub) -> None:
        ticker = Ticker()
        unknot.sleep(0.02)
        before = ticker.count
        t0 = time.monotonic()
        on = unknot.from_thread(
            lambda: (unknot.sleep(0.2), threading.current_thread())[1], loop=other.loop
        )
        assert on is other.thread
        assert 0.15 < time.monotonic() - t0 < 2
        assert ticker.stop() - before >= 5  # this hub ran its other fibers meanwhile

    @pytest.mark.unknot
    def test_gets_the_error(self, other: OtherHub) -> None:
        def fail() -> None:
            unknot.sleep(0.01)
            raise KeyError("in the other hub")

        with pytest.raises(KeyError, match="in the other hub"):
            unknot.from_thread(fail, loop=other.loop)

    @pytest.mark.unknot
    def test_two_hubs_calling_into_each_other_do_not_deadlock(self, other: OtherHub) -> None:
        mine = asyncio.get_running_loop()

        def back_into_mine() -> str:
            return unknot.from_thread(lambda: f"in {threading.current_thread().name}", loop=mine)

        with unknot.fail_after(5):
            got = unknot.from_thread(back_into_mine, loop=other.loop)
        assert got == f"in {threading.current_thread().name}"

    @pytest.mark.unknot
    def test_cancelling_the_caller_cancels_the_call_at_once(self, other: OtherHub) -> None:
        unwound = threading.Event()

        def long_call() -> None:
            try:
                unknot.sleep(30)
            finally:
                unwound.set()

        t0 = time.monotonic()
        with unknot.move_on_after(0.1) as scope:
            unknot.from_thread(long_call, loop=other.loop)
        assert scope.cancelled_caught
        assert time.monotonic() - t0 < 2
        assert unknot.to_thread(unwound.wait, 5)  # the other hub's fiber was cancelled

    @pytest.mark.unknot
    def test_a_caller_cancelled_before_the_call_starts_starts_nothing(
        self, other: OtherHub
    ) -> None:
        ran: list[int] = []
        with unknot.CancelScope() as scope:
            scope.cancel()
            unknot.from_thread(ran.append, 1, loop=other.loop)
        unknot.from_thread(lambda: None, loop=other.loop)  # (whatever was sent has run)
        assert ran == []

    @pytest.mark.unknot
    def test_an_error_of_a_cancelled_call_is_not_lost(
        self, other: OtherHub, calls: list[tuple[Any, BaseException]]
    ) -> None:
        with unknot.move_on_after(0.05):
            unknot.from_thread(raise_when_unwound, "unwinding the call", loop=other.loop)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            unknot.sleep(0.01)
        assert [str(e) for _, e in calls] == ["unwinding the call"]

    @pytest.mark.unknot
    def test_from_one_of_its_own_fibers_is_still_an_error(self) -> None:
        with pytest.raises(RuntimeError, match="hub's own thread"):
            unknot.from_thread(lambda: None, loop=asyncio.get_running_loop())

    @pytest.mark.unknot
    def test_the_other_hub_closing_first_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A loop of another thread that never runs the call, closed while the fiber waits.
        monkeypatch.setattr(_fiber, "_CLOSED_POLL", 0.05)
        made: list[asyncio.AbstractEventLoop] = []
        maker = threading.Thread(target=lambda: made.append(unknot.new_event_loop()))
        maker.start()
        maker.join(5)
        loop = made[0]
        ticker = Ticker()

        def close_later() -> None:
            unknot.sleep(0.1)
            loop.close()

        unknot.spawn(close_later)
        with unknot.fail_after(5):
            with pytest.raises(RuntimeError, match="shut down before the call finished"):
                unknot.from_thread(lambda: None, loop=loop)
        assert ticker.stop() >= 3  # (only this fiber waited)


# -- bug 5: a fiber's name is a str ------------------------------------------------------------


class TestFiberNameIsAStr:
    @pytest.mark.unknot
    def test_spawn_converts_the_name(self) -> None:
        f = unknot.spawn(unknot.sleep, 0, name=123)  # type: ignore[arg-type]
        with unknot.TaskGroup() as tg:
            g = tg.spawn(unknot.sleep, 0, name=("a", 1))  # type: ignore[arg-type]
        h = unknot.spawn_later(0, lambda: None, name=7)  # type: ignore[arg-type]
        f.join(), h.join()
        assert (f.name, g.name, h.name) == ("123", "('a', 1)", "7")

    @pytest.mark.unknot
    def test_no_name_and_templates_stay_as_they_were(self) -> None:
        f = unknot.spawn(unknot.sleep, 0)
        assert f._name is None and f.name.startswith("Fiber-")
        g = lowlevel.spawn_named(unknot.sleep, (0,), "conn-{}", ("127.0.0.1", 80))
        assert g._name == "conn-{}"  # (still a template: made when first read)
        assert g.name == "conn-('127.0.0.1', 80)"
        f.join(), g.join()


# -- loop.stop() called by a fiber under unknot.run ----------------------------------------------


def test_loop_stop_from_a_fiber_is_a_runtime_error_naming_it() -> None:
    """Before: ``FiberCancelled: root was cancelled``, which did not say why."""

    def main() -> str:
        asyncio.get_running_loop().stop()
        unknot.sleep(1)
        return "not reached"

    with pytest.raises(RuntimeError, match=r"event loop was stopped \(loop.stop\(\)\) before"):
        unknot.run(main)


def test_a_root_that_catches_its_cancellation_after_loop_stop_returns_its_value() -> None:
    def main() -> str:
        asyncio.get_running_loop().stop()
        try:
            unknot.sleep(1)
        except unknot.Cancelled:
            return "cleaned up"
        return "not reached"

    assert unknot.run(main) == "cleaned up"
