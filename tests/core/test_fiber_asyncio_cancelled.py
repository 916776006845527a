"""A fiber that ends with `asyncio.CancelledError` (the task it awaited in `await_` was
cancelled) is not reported as an unhandled error, as asyncio reports no task that ends so:
in particular the fibers left waiting in `await_` when `asyncio.Runner` shuts its loop down
(its runner cancels every task before the loop's `shutdown_asyncgens` cancels the fibers).
Its outcome is unchanged for whoever asks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fiber_helpers import unretrieved_hook_calls

import unknot


@pytest.fixture
def reported() -> Iterator[list[tuple[Any, BaseException]]]:
    """What the unretrieved-error hook is told (the log and the pytest plugin use the same)."""
    with unretrieved_hook_calls() as seen:
        yield seen


def _unhandled(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Unhandled exception" in r.getMessage()]


def test_runner_shutdown_leaves_no_report(
    caplog: pytest.LogCaptureFixture, reported: list[tuple[Any, BaseException]]
) -> None:
    finished: list[str] = []

    def waits() -> None:
        try:
            unknot.await_(asyncio.Event().wait())
        finally:
            finished.append("unwound")

    async def main() -> None:
        unknot.spawn(waits)
        await asyncio.sleep(0.01)

    caplog.set_level(logging.ERROR, logger="unknot")
    with asyncio.Runner(loop_factory=unknot.new_event_loop) as runner:
        runner.run(main())
    assert finished == ["unwound"]
    assert _unhandled(caplog) == []
    assert reported == []


def test_awaited_task_cancelled_by_another(
    caplog: pytest.LogCaptureFixture, reported: list[tuple[Any, BaseException]]
) -> None:
    """While the loop runs on: the outcome is still the CancelledError, and not reported."""

    def main() -> None:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        f = unknot.spawn(unknot.await_, task)
        unknot.sleep(0.01)
        task.cancel()
        unknot.sleep(0.01)
        assert f.done() and not f.cancelled()
        assert isinstance(f.exception(), asyncio.CancelledError)
        with pytest.raises(asyncio.CancelledError):
            f.join()

    caplog.set_level(logging.ERROR, logger="unknot")
    unknot.run(main)
    assert _unhandled(caplog) == []
    assert reported == []


def test_other_errors_still_reported(
    caplog: pytest.LogCaptureFixture, reported: list[tuple[Any, BaseException]]
) -> None:
    """The exception is for CancelledError only: a task's ordinary error, passed on by
    `await_`, is reported as before."""

    async def fails() -> None:
        raise LookupError("from the task")

    def main() -> None:
        unknot.spawn(unknot.await_, fails())
        unknot.sleep(0.01)

    caplog.set_level(logging.ERROR, logger="unknot")
    unknot.run(main)
    assert len(_unhandled(caplog)) == 1
    assert [type(e) for _, e in reported] == [LookupError]
