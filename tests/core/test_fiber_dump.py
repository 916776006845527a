"""Fiber dumps: `unknot.fibers`, `unknot.dump`, `unknot.lowlevel.fiber_info`, `dump_on_signal`,
and the spawn stacks of debug mode."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest

import unknot
from unknot import lowlevel, socket


def _by_name(infos: list[unknot.FiberInfo]) -> dict[str, unknot.FiberInfo]:
    return {i.name: i for i in infos}


def test_states_and_what_each_fiber_waits_on(backend: str) -> None:
    seen: dict[str, unknot.FiberInfo] = {}
    text = io.StringIO()

    def main() -> None:
        lock, q, ev = unknot.Lock(), unknot.Queue(), unknot.Event()
        lock.acquire()
        a, b = socket.socketpair()
        with a, b, unknot.TaskGroup() as tg:
            sleeper = tg.spawn(unknot.sleep, 30, name="sleeper")
            tg.spawn(lock.acquire, name="locker")
            tg.spawn(q.get, name="getter")
            tg.spawn(ev.wait, name="waiter")
            tg.spawn(a.recv, 10, name="reader")
            unknot.spawn(sleeper.join, name="joiner")
            unknot.sleep(0.05)
            tg.spawn(unknot.sleep, 1, name="not-started")
            seen.update(_by_name(unknot.fibers()))
            unknot.dump(text)
            tg.cancel()
            ev.set()

    unknot.run(main)
    root = seen["root"]
    assert root.state == "running" and root.is_root and root.group is None
    assert root.stack[-1].name == "main"  # its own frame, where it called fibers()
    assert seen["not-started"].state == "pending"
    waits = {
        name: seen[name].waiting_on
        for name in ("sleeper", "locker", "getter", "waiter", "reader", "joiner")
    }
    assert waits["sleeper"] is not None and waits["sleeper"].startswith("sleep (")
    assert waits["locker"] == "Lock.acquire"
    assert waits["getter"] == "Queue.get"
    assert waits["waiter"] == "Event.wait"
    assert waits["reader"] is not None and waits["reader"].startswith("fd ")
    assert waits["reader"].endswith("(read)")
    assert waits["joiner"] == "Fiber.join (sleeper)"
    for name in waits:
        info = seen[name]
        assert info.state == "waiting", info
    # A timed wait knows when it began, whether or not the blocking detector runs.
    sleeper_for = seen["sleeper"].waiting_for
    assert sleeper_for is not None and 0.04 <= sleeper_for < 5
    assert seen["locker"].group is not None and seen["locker"].group.endswith("of root")
    assert seen["joiner"].group is None
    assert seen["locker"].spawned_at[2] == "main"
    assert seen["locker"].wait_object is not None
    out = text.getvalue()
    assert "=== unknot: hub in thread 'MainThread'" in out
    assert "--- no task group (2 fibers) ---" in out  # root and joiner
    assert "of root (6 fibers) ---" in out
    assert "fiber locker: waiting on Lock.acquire" in out
    assert "fiber root (root): running" in out


def test_waiting_for_comes_from_the_monitor_for_untimed_waits() -> None:
    unknot.start_monitor(0.05)
    try:
        got: list[unknot.FiberInfo] = []

        def main() -> None:
            ev = unknot.Event()
            f = unknot.spawn(ev.wait, name="w")
            unknot.sleep(0.3)
            got.append(lowlevel.fiber_info(f))
            ev.set()

        unknot.run(main)
    finally:
        unknot.stop_monitor()
    waited = got[0].waiting_for
    assert waited is not None and 0.1 < waited < 5, got[0]


def test_waiting_for_of_an_untimed_wait_is_known_only_if_the_monitor_ran_since_it_began() -> None:
    # A parking fiber stores the detector's sample only while the detector runs: a wait begun
    # while it was off is not timed from a sample left by an earlier run.
    got: list[float | None] = []
    unknot.start_monitor(0.05)
    try:

        def main() -> None:
            a, b = socket.socketpair()
            with a, b:

                def reader() -> None:
                    assert a.recv(10) == b"1"  # parks while the detector runs
                    assert a.recv(10) == b"2"  # parks while it is off

                f = unknot.spawn(reader, name="reader")
                unknot.sleep(0.3)
                got.append(lowlevel.fiber_info(f).waiting_for)
                unknot.stop_monitor()
                got.append(lowlevel.fiber_info(f).waiting_for)
                b.send(b"1")
                unknot.sleep(0.05)
                assert lowlevel.fiber_info(f).state == "waiting"
                unknot.start_monitor(0.05)
                unknot.sleep(0.3)  # (the detector samples again)
                got.append(lowlevel.fiber_info(f).waiting_for)
                b.send(b"2")
                f.join()

        unknot.run(main)
    finally:
        unknot.stop_monitor()
    first = got[0]
    assert first is not None and 0.1 < first < 5, got
    assert got[1:] == [None, None], got


def test_debug_mode_records_where_fibers_were_spawned_from() -> None:
    def spawner() -> unknot.Fiber:
        return unknot.spawn(unknot.sleep, 1, name="child")

    infos: list[unknot.FiberInfo] = []

    def main() -> None:
        unknot.set_debug(True)
        try:
            f = spawner()
            unknot.sleep(0)
            infos.append(lowlevel.fiber_info(f))
        finally:
            unknot.set_debug(False)
        g = unknot.spawn(unknot.sleep, 1)
        infos.append(lowlevel.fiber_info(g))
        f.cancel()
        g.cancel()

    unknot.run(main)
    stack = infos[0].spawn_stack
    assert stack is not None
    assert [fs.name for fs in stack][-2:] == ["main", "spawner"]
    assert "spawned from" in infos[0].format()
    assert infos[1].spawn_stack is None


def test_fibers_lists_every_running_hub() -> None:
    started, release = threading.Event(), threading.Event()

    def other_main() -> None:
        unknot.spawn(unknot.sleep, 10, name="in-other-thread")
        unknot.sleep(0)
        started.set()
        unknot.to_thread(release.wait)

    t = threading.Thread(target=unknot.run, args=(other_main,), name="other-hub")
    t.start()
    seen: list[unknot.FiberInfo] = []

    def main() -> None:
        unknot.to_thread(started.wait, 10)
        seen.extend(unknot.fibers())

    try:
        unknot.run(main)
    finally:
        release.set()
        t.join(10)
    by = _by_name(seen)
    assert by["in-other-thread"].thread == "other-hub"
    assert by["in-other-thread"].waiting_on is not None
    roots = sorted(i.thread for i in seen if i.is_root)
    assert roots == ["MainThread", "other-hub"]
    assert seen[0].is_root and seen[0].thread == "MainThread"  # the caller's hub comes first


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_dump_on_signal_dumps_in_the_hub_thread() -> None:
    writers: list[str] = []

    class Out(io.StringIO):
        def write(self, s: str) -> int:
            writers.append(threading.current_thread().name)
            return super().write(s)

    out = Out()

    def main() -> None:
        restore = unknot.dump_on_signal(signal.SIGUSR1, file=out)
        try:
            unknot.spawn(unknot.sleep, 5, name="napper")
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(100):
                if out.getvalue():
                    break
                unknot.sleep(0.01)
        finally:
            restore()
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL

    unknot.run(main)
    assert "fiber napper: waiting on sleep" in out.getvalue()
    assert set(writers) == {"MainThread"}


def test_the_header_says_when_the_root_has_finished_and_an_interrupt_is_pending() -> None:
    # What a dump of a program that will not stop needs to tell: the root fiber is done (the
    # loop should have stopped) and a Ctrl-C that has not reached anyone yet.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread (Ctrl-C)")
    headers: list[str] = []

    def header() -> str:
        out = io.StringIO()
        unknot.dump(out, lowlevel.current_hub())
        return out.getvalue().splitlines()[0]

    def presser() -> None:
        headers.append(header())
        os.kill(os.getpid(), signal.SIGINT)  # handled in this fiber: pending for the root
        (lambda: None)()
        headers.append(header())

    def main() -> str:
        root = unknot.current()
        root.add_done_callback(lambda _f: headers.append(header()))
        unknot.spawn(presser)
        try:
            unknot.sleep(10)
        except KeyboardInterrupt:
            return "interrupted"
        return "slept"

    assert unknot.run(main) == "interrupted"
    before, pending, finished = headers
    assert ": 2 live fibers" in before
    assert "pending" not in before and "finished" not in before
    assert pending.endswith("; an interrupt is pending ===")
    assert ": 0 live fibers" in finished
    assert finished.endswith("; the root fiber has finished ===")


def test_a_dump_handler_does_not_hide_a_deadlock() -> None:
    # Python signal handlers count as something that may wake a fiber; the dump's does not.
    restore = unknot.dump_on_signal(signal.SIGUSR1, file=io.StringIO())
    try:
        with pytest.raises(unknot.DeadlockError):
            unknot.run(lambda: unknot.Event().wait())
    finally:
        restore()


def test_waits_behind_private_helpers_are_named_by_the_public_call() -> None:
    # A channel wait used to read "_perform" (the helper send, recv and select share), a map
    # "_Run.wait_all", an imap consumer "_Run.next", unknot.wait "_Completions.wait".
    seen: dict[str, unknot.FiberInfo] = {}

    def main() -> None:
        incoming: unknot.Channel[int] = unknot.Channel()
        outgoing: unknot.Channel[int] = unknot.Channel()
        pool = unknot.Pool(1)
        never: unknot.Future[int] = unknot.Future()
        with unknot.TaskGroup() as tg:
            tg.spawn(incoming.recv, name="receiver")
            tg.spawn(outgoing.send, 1, name="sender")
            tg.spawn(unknot.select, unknot.Channel().recv_op(), name="selector")
            tg.spawn(pool.map, unknot.sleep, [30], name="mapper")
            tg.spawn(unknot.wait, [never], name="waiter")
            tg.spawn(lowlevel.park, name="bare")
            unknot.sleep(0.01)
            seen.update(_by_name(unknot.fibers()))
            tg.cancel()

    unknot.run(main)
    assert seen["receiver"].waiting_on == "Channel.recv"
    assert isinstance(seen["receiver"].wait_object, unknot.Channel)
    assert seen["sender"].waiting_on == "Channel.send"
    assert seen["selector"].waiting_on == "select"
    assert seen["mapper"].waiting_on == "Pool.map"
    assert isinstance(seen["mapper"].wait_object, unknot.Pool)
    assert seen["waiter"].waiting_on == "wait"
    assert seen["bare"].waiting_on is not None and seen["bare"].waiting_on.startswith("park")
