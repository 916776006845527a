"""Pipe reads and writes (`unknot.os`, `unknot.subprocess`'s pipe files) and `select`/``poll``/
``epoll`` calls that never have to wait still let the other fibers run and the timers fire
(`Hub.IO_STREAK_MAX`, as a socket's blocking calls), and are cancellation points."""

from __future__ import annotations

import os
import select as std_select
import time
from collections.abc import Callable
from typing import Any

import pytest
from fiber_helpers import cancelled_at_once

import unknot
import unknot.os as uos
import unknot.select as usel
import unknot.subprocess as usp

# A call that never waits yields at the latest at its 65th in a row: 2,000 calls leave room for
# many turns of the ticker; the old code gave it none.
CALLS = 2000
# Then up to this many more until the timer fired: fewer than a 64 KiB pipe's bytes (reading or
# writing one at a time, no call may wait).
MORE = 50_000


def _turns_during(call: Callable[[], Any], calls: int = CALLS) -> tuple[int, bool]:
    """Make ``calls`` calls of ``call`` (none of which waits) in this fiber: how many turns a
    ready fiber had meanwhile, and whether a 1 ms timer of another fiber fired by the end (the
    loop goes on past ``calls`` until it fires, bounded by `MORE` calls or 0.5 s)."""
    ticks = [0]
    fired = unknot.Event()

    def ticker() -> None:
        while True:
            ticks[0] += 1
            unknot.sleep(0)

    def timer() -> None:
        unknot.sleep(0.001)
        fired.set()

    with unknot.TaskGroup() as tg:
        tg.spawn(ticker)
        tg.spawn(timer)
        unknot.sleep(0)  # both started (the timer armed)
        before = ticks[0]
        for _ in range(calls):
            call()
        turns = ticks[0] - before
        t0 = time.monotonic()
        for _ in range(MORE):
            if fired.is_set() or time.monotonic() - t0 > 0.5:
                break
            call()
        is_set = fired.is_set()
        tg.cancel()
    return turns, is_set


def _filled_pipe() -> tuple[int, int]:
    """A pipe holding 64 KiB (blocking fds): more than the tests read one byte at a time."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    return r, w


def _lets_the_others_run(call: Callable[[], Any]) -> None:
    """``call`` (which never waits), made `CALLS` times in a row, let a ready fiber run at least
    once per 65 calls and a 1 ms timer fire (`_turns_during`)."""
    turns, fired = _turns_during(call)
    assert turns >= CALLS // 65
    assert fired


@pytest.mark.unknot
def test_os_read_of_a_pipe_always_full() -> None:
    r, w = _filled_pipe()
    try:
        _lets_the_others_run(lambda: uos.read(r, 1))
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.unknot
def test_os_write_to_a_pipe_with_room() -> None:
    r, w = os.pipe()
    try:
        _lets_the_others_run(lambda: uos.write(w, b"x"))  # (64 KiB of room: no wait)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.unknot
def test_subprocess_pipe_file_always_full() -> None:
    # A Popen pipe's raw file (unknot.subprocess.PipeIO) reads like os.read.
    r, w = _filled_pipe()
    f = usp._open_pipe(r, "rb", 0)  # the raw file, as Popen(stdout=PIPE, bufsize=0) has
    try:
        _lets_the_others_run(lambda: f.read(1))
    finally:
        f.close()
        os.close(w)


def _polls(kind: str, fd: int) -> tuple[Callable[[], Any], Callable[[], None]]:
    """A call of the cooperative ``kind`` waiting for ``fd`` readable (without a timeout), and
    the clean-up."""
    if kind == "select":
        return (lambda: usel.select([fd], [], [])), (lambda: None)
    if kind == "poll":
        p = usel.poll()
        p.register(fd, std_select.POLLIN)
        return p.poll, (lambda: None)
    e = usel.epoll()
    e.register(fd, std_select.EPOLLIN)
    return e.poll, e.close


@pytest.mark.unknot
@pytest.mark.parametrize("kind", ["select", "poll", "epoll"])
def test_polling_an_fd_always_ready(kind: str) -> None:
    r, w = os.pipe()
    os.write(w, b"!")  # never read: r stays readable
    call, cleanup = _polls(kind, r)
    try:
        _lets_the_others_run(lambda: call())
    finally:
        cleanup()
        os.close(r)
        os.close(w)


@pytest.mark.unknot
def test_ready_calls_are_cancellation_points() -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"data")
        cancelled_at_once(lambda: uos.read(r, 2))
        cancelled_at_once(lambda: uos.write(w, b"x"))
        for kind in ("select", "poll", "epoll"):
            call, cleanup = _polls(kind, r)
            try:
                cancelled_at_once(call)
            finally:
                cleanup()
        assert os.read(r, 100) == b"data"  # nothing was consumed, nothing written
        # A zero timeout never waits: not a cancellation point.
        with unknot.CancelScope() as scope:
            scope.cancel()
            assert usel.select([r], [], [], 0) == ([], [], [])
            for kind in ("poll", "epoll"):
                call, cleanup = _polls(kind, r)
                try:
                    assert call(0) == []
                finally:
                    cleanup()
    finally:
        os.close(r)
        os.close(w)


def test_outside_fibers_nothing_changes() -> None:
    r, w = os.pipe()
    try:
        assert uos.write(w, b"ab") == 2
        assert usel.select([r], [], [])[0] == [r]
        assert uos.read(r, 2) == b"ab"
    finally:
        os.close(r)
        os.close(w)
