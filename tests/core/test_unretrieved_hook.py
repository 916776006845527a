"""`lowlevel.add_unretrieved_hook`: the core tells a hook of each fiber error nobody retrieved,
with the fiber and the exception, whatever the logging configuration says (the pytest plugin
relies on it instead of the log's wording)."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import unknot
from unknot import lowlevel


def explode(what: str = "boom") -> None:
    unknot.sleep(0)
    raise ValueError(what)


@pytest.fixture
def calls() -> Iterator[list[tuple[Any, BaseException, int]]]:
    """A hook, installed for the test: the ``(fiber, error, thread id)`` of each call."""
    seen: list[tuple[Any, BaseException, int]] = []

    def hook(fiber: Any, error: BaseException) -> None:
        seen.append((fiber, error, threading.get_ident()))

    lowlevel.add_unretrieved_hook(hook)
    try:
        yield seen
    finally:
        lowlevel.remove_unretrieved_hook(hook)


def test_called_once_per_unretrieved_error(calls: list[tuple[Any, BaseException, int]]) -> None:
    def main() -> list[Any]:
        fibers = [unknot.spawn(explode, str(i)) for i in range(2)]
        unknot.sleep(0.01)  # both fail, nobody waiting: reported when they end
        called_back = unknot.spawn(explode, "called-back")
        called_back.add_done_callback(lambda f: None)  # waited for, its error never retrieved
        unknot.sleep(0.01)
        assert len(calls) == 2  # (not yet: someone waited for it)
        del called_back
        gc.collect()  # reported at collection
        return fibers

    fibers = unknot.run(main)
    assert [(f, str(e)) for f, e, _ in calls[:2]] == [(f, str(i)) for i, f in enumerate(fibers)]
    assert [f.exception() for f in fibers] == [e for _, e, _ in calls[:2]]
    assert len(calls) == 3
    fiber, error, _ = calls[2]
    assert isinstance(fiber, lowlevel.Fiber) and str(error) == "called-back"
    assert lowlevel.unretrieved_error(fiber) is error


def test_not_called_again_at_collection() -> None:
    # Reported when it ended (nobody waiting), then collected: one call, not two.
    seen: list[str] = []

    def hook(fiber: Any, error: BaseException) -> None:
        seen.append(str(error))  # (keeping the fiber would keep it from being collected)

    def main() -> weakref.ref[Any]:
        f = unknot.spawn(explode, "once")
        unknot.sleep(0.01)
        return weakref.ref(f)

    lowlevel.add_unretrieved_hook(hook)
    # (Not logged: a captured record would keep the fiber, through the traceback's frames.)
    logging.disable(logging.CRITICAL)
    try:
        ref = unknot.run(main)
        gc.collect()
    finally:
        logging.disable(logging.NOTSET)
        lowlevel.remove_unretrieved_hook(hook)
    assert ref() is None  # collected
    assert seen == ["once"]


def test_not_called_for_retrieved_errors(calls: list[tuple[Any, BaseException, int]]) -> None:
    def main() -> None:
        with pytest.raises(ValueError):
            unknot.spawn(explode).join()
        with pytest.raises(ExceptionGroup):
            with unknot.TaskGroup() as tg:
                tg.spawn(explode)
        seen: list[BaseException | None] = []
        f = unknot.spawn(explode)
        f.add_done_callback(lambda fiber: seen.append(fiber.exception()))
        unknot.sleep(0.01)
        del f
        gc.collect()
        assert isinstance(seen[0], ValueError)

    unknot.run(main)
    assert calls == []


def test_called_whatever_the_logging_configuration(
    calls: list[tuple[Any, BaseException, int]], caplog: pytest.LogCaptureFixture
) -> None:
    def main() -> None:
        unknot.spawn(explode, "unlogged")
        unknot.sleep(0.01)

    logging.disable(logging.CRITICAL)
    try:
        unknot.run(main)
    finally:
        logging.disable(logging.NOTSET)
    assert "unlogged" not in caplog.text
    assert [str(e) for _, e, _ in calls] == ["unlogged"]


def test_removed_hook_is_not_called() -> None:
    seen: list[BaseException] = []

    def hook(fiber: Any, error: BaseException) -> None:
        seen.append(error)

    def main() -> None:
        unknot.spawn(explode)
        unknot.sleep(0.01)

    lowlevel.add_unretrieved_hook(hook)
    lowlevel.add_unretrieved_hook(hook)  # once only
    try:
        unknot.run(main)
    finally:
        lowlevel.remove_unretrieved_hook(hook)
    assert len(seen) == 1
    with pytest.raises(ValueError):
        lowlevel.remove_unretrieved_hook(hook)
    unknot.run(main)
    assert len(seen) == 1


def test_failing_hook_is_logged_and_the_hub_goes_on(
    calls: list[tuple[Any, BaseException, int]], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(fiber: Any, error: BaseException) -> None:
        raise RuntimeError("hook-broke")

    def main() -> str:
        unknot.spawn(explode, "first")
        unknot.sleep(0.01)
        unknot.spawn(explode, "second")
        unknot.sleep(0.01)
        return "finished"

    lowlevel.add_unretrieved_hook(broken)  # (after the fixture's hook: it goes on being called)
    try:
        assert unknot.run(main) == "finished"
    finally:
        lowlevel.remove_unretrieved_hook(broken)
    assert [str(e) for _, e, _ in calls] == ["first", "second"]
    failures = [r for r in caplog.records if "unretrieved-error hook" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and str(r.exc_info[1]) == "hook-broke" for r in failures)
    assert "Unhandled exception in fiber" in caplog.text  # the error itself is still logged


def test_called_on_the_thread_of_each_hub(calls: list[tuple[Any, BaseException, int]]) -> None:
    def in_thread(name: str) -> Callable[[], None]:
        def run() -> None:
            def main() -> None:
                unknot.spawn(explode, name)
                unknot.sleep(0.01)

            unknot.run(main)

        return run

    threads = [threading.Thread(target=in_thread(f"t{i}")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 2
    assert {str(e): thread for _, e, thread in calls} == {
        "t0": threads[0].ident,
        "t1": threads[1].ident,
    }
