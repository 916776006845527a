"""`unknot.open_signal_receiver` when user code installs a handler for one of its signals
while a block is open (``loop.add_signal_handler`` or ``signal.signal``).

The handler installed last stays in force after the last block exits (the one from before the
first block is not put back over it); nothing received is lost or delivered twice to it.
Before, the exit removed the later handler silently and put the earlier one back. (trio's
receiver puts its original handlers back unconditionally, and so loses the later one too.)
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import unknot

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1"),
]

SIG = signal.SIGUSR1 if hasattr(signal, "SIGUSR1") else 0


def until(cond: Callable[[], object], timeout: float = 2.0) -> bool:
    """In a fiber: wait (bounded) until ``cond()`` is true; whether it became so."""
    for _ in range(int(timeout / 0.001)):
        if cond():
            return True
        unknot.sleep(0.001)
    return bool(cond())


def take(received: Any, timeout: float = 2.0) -> int | None:
    """The next signal of ``received``, or None if none came within ``timeout``."""
    with unknot.move_on_after(timeout):
        return int(next(received))
    return None


def queued(received: Any) -> bool:
    """Whether ``received`` holds a signal not taken yet."""
    return "pending=0" not in repr(received)


@pytest.fixture
def before() -> Iterator[list[int]]:
    """A Python handler for the signal, in place before the blocks: the signals it got."""
    got: list[int] = []
    previous = signal.signal(SIG, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:  # (the loop's handlers went with the loop, closed by now)
        signal.signal(SIG, previous)


def install(kind: str, got: list[int]) -> Any:
    """Install a handler for the signal recording in ``got``: the loop's or a Python one."""
    if kind == "loop":
        asyncio.get_running_loop().add_signal_handler(SIG, got.append, SIG)
        return None
    handler = lambda signum, frame: got.append(signum)  # noqa: E731
    signal.signal(SIG, handler)
    return handler


def assert_in_force(kind: str, handler: Any, got: list[int], before: list[int]) -> None:
    """The handler ``install`` returned gets the next signal, the earlier one does not."""
    loop = asyncio.get_running_loop()
    if kind == "loop":
        assert SIG in loop._signal_handlers  # type: ignore[attr-defined]
    else:
        assert signal.getsignal(SIG) is handler
        assert SIG not in loop._signal_handlers  # type: ignore[attr-defined]
    n = len(got)
    os.kill(os.getpid(), SIG)
    assert until(lambda: len(got) > n), (got, before)
    assert got[n:] == [SIG] and before == []


@pytest.mark.unknot
def test_a_loop_handler_installed_during_a_block_stays_in_force(before: list[int]) -> None:
    got: list[int] = []
    with unknot.open_signal_receiver(SIG) as received:
        install("loop", got)
        os.kill(os.getpid(), SIG)
        assert until(lambda: got)  # it took the signal over from the receiver
        assert not queued(received)
    assert got == [SIG]  # (not raised again: the receiver never got it)
    assert_in_force("loop", None, got, before)


@pytest.mark.unknot
def test_a_python_handler_installed_during_a_block_stays_in_force(before: list[int]) -> None:
    got: list[int] = []
    with unknot.open_signal_receiver(SIG) as received:
        handler = install("python", got)
        os.kill(os.getpid(), SIG)
        assert take(received) == SIG  # the receiver still gets it (the loop is woken)...
        assert got == [SIG]  # ... and so does the new handler
    assert_in_force("python", handler, got, before)


@pytest.mark.unknot
def test_a_signal_the_new_python_handler_got_is_not_raised_again(before: list[int]) -> None:
    got: list[int] = []
    with unknot.open_signal_receiver(SIG) as received:
        handler = install("python", got)
        os.kill(os.getpid(), SIG)
        assert until(lambda: queued(received))  # received, never taken
    unknot.sleep(0.02)  # (a signal raised again would have run its handler by now)
    assert got == [SIG] and before == []
    assert_in_force("python", handler, got, before)


@pytest.mark.unknot
def test_an_untaken_signal_from_before_a_loop_handler_reaches_it(before: list[int]) -> None:
    got: list[int] = []
    with unknot.open_signal_receiver(SIG) as received:
        os.kill(os.getpid(), SIG)
        assert until(lambda: queued(received))  # received, never taken
        install("loop", got)
    assert until(lambda: got)  # raised again at the exit: to the handler now in force
    assert got == [SIG] and before == []
    assert_in_force("loop", None, got, before)


@pytest.mark.unknot
@pytest.mark.parametrize("kind", ["loop", "python"])
def test_a_block_opened_after_a_new_handler_puts_that_one_back(
    before: list[int], kind: str
) -> None:
    got: list[int] = []
    with unknot.open_signal_receiver(SIG) as outer:
        handler = install(kind, got)
        with unknot.open_signal_receiver(SIG) as inner:
            got.clear()
            os.kill(os.getpid(), SIG)
            assert take(inner) == SIG  # the new block takes the signal back...
            assert take(outer) == SIG  # ... for every open block
            assert got == []
        os.kill(os.getpid(), SIG)
        assert take(outer) == SIG  # still the receivers' while one is open
    assert got == [] and before == []
    assert_in_force(kind, handler, got, before)
