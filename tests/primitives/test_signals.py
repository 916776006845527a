"""unknot.open_signal_receiver: signals delivered to a fiber, handlers restored, main thread
only."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
from pool_helpers import loop_signal_handler

import unknot

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1/SIGUSR2"),
]


def send_later(signum: int, delay: float = 0.01) -> None:
    def send() -> None:
        unknot.sleep(delay)
        os.kill(os.getpid(), signum)

    unknot.spawn(send)


@pytest.mark.unknot
def test_signals_reach_the_fiber_and_the_handlers_come_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    got = []
    with unknot.fail_after(5):
        with unknot.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as received:
            assert signal.getsignal(signal.SIGUSR1) != before[signal.SIGUSR1]
            send_later(signal.SIGUSR1)
            send_later(signal.SIGUSR2, 0.03)
            for signum in received:
                got.append(signum)
                if len(got) == 2:
                    break
    assert got == [signal.SIGUSR1, signal.SIGUSR2]
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.unknot
def test_ctrl_c_routing_is_restored_after_receiving_sigint() -> None:
    unknot_handler = signal.getsignal(signal.SIGINT)
    with unknot.fail_after(5):
        with unknot.open_signal_receiver(signal.SIGINT) as received:
            send_later(signal.SIGINT)
            assert next(received) == signal.SIGINT  # not a KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is unknot_handler
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C goes to the root fiber again
        signal.raise_signal(signal.SIGINT)


@pytest.mark.unknot
def test_fail_after_around_waiting_for_a_signal() -> None:
    with pytest.raises(TimeoutError):
        with unknot.open_signal_receiver(signal.SIGUSR1) as received:
            with unknot.fail_after(0.02):
                next(received)


@pytest.mark.unknot
def test_signals_never_taken_are_redelivered_on_exit() -> None:
    handled: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: handled.append(signum))
    try:
        with unknot.open_signal_receiver(signal.SIGUSR2):
            os.kill(os.getpid(), signal.SIGUSR2)
            unknot.sleep(0.02)  # received by the loop, queued, never taken
            assert handled == []
        assert handled == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


@pytest.mark.unknot
def test_a_loop_handler_installed_before_is_put_back() -> None:
    with loop_signal_handler(signal.SIGUSR1) as loop_got:
        with unknot.fail_after(5):
            with unknot.open_signal_receiver(signal.SIGUSR1) as received:
                send_later(signal.SIGUSR1)
                assert next(received) == signal.SIGUSR1
            assert loop_got == []
            os.kill(os.getpid(), signal.SIGUSR1)
            while not loop_got:
                unknot.sleep(0.001)
        assert loop_got == [signal.SIGUSR1]


@pytest.mark.unknot
def test_the_iterator_ends_with_the_block_and_another_fiber_may_wait() -> None:
    results: list[Any] = []

    def consume(received: Any) -> None:
        results.extend(received)  # waits in another fiber; ends when the block exits

    with unknot.open_signal_receiver(signal.SIGUSR1) as received:
        f = unknot.spawn(consume, received)
        os.kill(os.getpid(), signal.SIGUSR1)
        unknot.sleep(0.02)
        assert results == [signal.SIGUSR1]
        assert "SIGUSR1" in repr(received)
    f.join(timeout=5)
    assert results == [signal.SIGUSR1]


def test_only_in_the_main_thread() -> None:
    errors: list[BaseException] = []

    def main() -> None:
        with unknot.open_signal_receiver(signal.SIGUSR1):
            pass

    def thread() -> None:
        try:
            unknot.run(main)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=thread)
    t.start()
    t.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])


@pytest.mark.unknot
def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        with unknot.open_signal_receiver():
            pass
    with pytest.raises(ValueError):
        with unknot.open_signal_receiver(10_000):
            pass
