"""Instruments: callbacks on a hub's scheduling events, and the plain path when there are none."""

from __future__ import annotations

import logging
from typing import Any

import greenlet
import pytest

import unknot
from unknot import lowlevel, socket
from unknot._core import _hub as hub_mod


class Recorder(lowlevel.Instrument):
    def __init__(self, only: str | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.only = only

    def _keep(self, fiber: unknot.Fiber) -> bool:
        return self.only is None or fiber.name == self.only

    def fiber_spawned(self, fiber: unknot.Fiber) -> None:
        if self._keep(fiber):
            self.events.append(("spawned",))

    def fiber_scheduled(self, fiber: unknot.Fiber) -> None:
        if self._keep(fiber):
            self.events.append(("scheduled",))

    def fiber_blocked(self, fiber: unknot.Fiber, waiting_on: str) -> None:
        if self._keep(fiber):
            self.events.append(("blocked", waiting_on.split(" ")[0]))

    def fiber_resumed(self, fiber: unknot.Fiber) -> None:
        if self._keep(fiber):
            self.events.append(("resumed",))

    def fiber_done(self, fiber: unknot.Fiber) -> None:
        if self._keep(fiber):
            self.events.append(("done",))

    def pass_started(self) -> None:
        self.events.append(("pass_started",))

    def pass_ended(self) -> None:
        self.events.append(("pass_ended",))


def _fiber_events(rec: Recorder) -> list[tuple[Any, ...]]:
    return [e for e in rec.events if not e[0].startswith("pass_")]


def test_a_fiber_life_is_reported(backend: str) -> None:
    rec = Recorder(only="worker")

    def worker(ev: unknot.Event, sock: socket.socket) -> None:
        unknot.sleep(0.01)
        ev.wait()
        sock.recv(1)

    def main() -> None:
        hub = lowlevel.current_hub()
        plain = type(hub)
        lowlevel.add_instrument(rec)
        assert type(hub) is plain  # (a compiled hub cannot change class)
        assert greenlet.gettrace() is not None
        ev = unknot.Event()
        a, b = socket.socketpair()
        with a, b:
            f = unknot.spawn(worker, ev, a, name="worker")
            unknot.sleep(0.05)
            ev.set()
            unknot.sleep(0.02)
            b.send(b"x")
            f.join()
        lowlevel.remove_instrument(rec)
        assert greenlet.gettrace() is None  # no trace function left behind
        assert hub_mod.PASS_HOOKS == []

    unknot.run(main)
    assert _fiber_events(rec) == [
        ("spawned",),
        ("scheduled",),
        ("blocked", "sleep"),
        ("scheduled",),
        ("resumed",),
        ("blocked", "Event.wait"),
        ("scheduled",),
        ("resumed",),
        ("blocked", "fd"),
        ("scheduled",),
        ("resumed",),
        ("done",),
    ]
    starts = rec.events.count(("pass_started",))
    # (removed during a pass: that pass's end is not reported)
    assert starts >= 4 and starts == rec.events.count(("pass_ended",)) + 1


def test_nothing_is_reported_after_removal_and_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(lowlevel.Instrument):
        def fiber_spawned(self, fiber: unknot.Fiber) -> None:
            raise RuntimeError("instrument bug")

    rec = Recorder()
    broken = Broken()

    def main() -> None:
        lowlevel.add_instrument(broken)
        lowlevel.add_instrument(rec)
        unknot.spawn(unknot.sleep, 0).join()  # the broken one raises: logged, ignored
        lowlevel.remove_instrument(broken)
        lowlevel.remove_instrument(rec)
        n = len(rec.events)
        unknot.spawn(unknot.sleep, 0).join()
        assert len(rec.events) == n
        with pytest.raises(ValueError, match="not installed"):
            lowlevel.remove_instrument(rec)

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
    assert any("instrument bug" in (r.exc_text or "") for r in caplog.records) or any(
        r.exc_info and "instrument bug" in str(r.exc_info[1]) for r in caplog.records
    )
    assert ("spawned",) in rec.events


def test_outside_a_hub_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no current hub"):
        lowlevel.add_instrument(Recorder())


def test_the_run_end_leaves_no_trace_function() -> None:
    rec = Recorder()

    def main() -> None:
        lowlevel.add_instrument(rec)  # never removed: the loop's end and close take it away
        unknot.spawn(unknot.sleep, 0).join()
        assert greenlet.gettrace() is not None

    unknot.run(main)
    assert greenlet.gettrace() is None
    assert hub_mod.PASS_HOOKS == []
    assert ("spawned",) in rec.events and ("done",) in rec.events


def test_a_fiber_that_yields_is_reported_blocked_on_yield() -> None:
    rec = Recorder(only="yielder")

    def yielder() -> None:
        unknot.sleep(0)

    def main() -> None:
        lowlevel.add_instrument(rec)
        unknot.spawn(yielder, name="yielder").join()
        lowlevel.remove_instrument(rec)

    unknot.run(main)
    assert _fiber_events(rec) == [
        ("spawned",),
        ("scheduled",),
        ("blocked", "yield"),
        ("scheduled",),
        ("resumed",),
        ("done",),
    ]


def test_an_instrument_raising_a_base_exception_is_logged_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # "What they raise is logged and ignored": an instrument's SystemExit or KeyboardInterrupt
    # used to come out of the hub's pass (or out of a switch, raised by the greenlet trace
    # function), ending the run with the hub half-way through scheduling.
    class Exits(lowlevel.Instrument):
        def pass_started(self) -> None:
            raise SystemExit("from pass_started")

        def fiber_blocked(self, fiber: unknot.Fiber, waiting_on: str) -> None:
            raise KeyboardInterrupt

    rec = Recorder(only="worker")

    def main() -> int:
        exits = Exits()
        lowlevel.add_instrument(exits)
        lowlevel.add_instrument(rec)
        result: int = unknot.spawn(lambda: (unknot.sleep(0.001), 7)[1], name="worker").join()
        lowlevel.remove_instrument(exits)
        lowlevel.remove_instrument(rec)
        return result

    with caplog.at_level(logging.ERROR, logger="unknot"):
        assert unknot.run(main) == 7
    raised = {type(r.exc_info[1]) for r in caplog.records if r.exc_info}
    assert {SystemExit, KeyboardInterrupt} <= raised
    assert ("blocked", "sleep") in rec.events and ("done",) in rec.events


def test_a_failure_inside_the_tracing_is_logged_not_raised_from_the_switch(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The greenlet trace function raising makes the switch raise it (in the hub, or in the
    # fiber switched to) and drops the trace function: a failure to describe a wait must stay
    # a logged error.
    from unknot._core import _instruments

    def broken(*args: Any) -> Any:
        raise RuntimeError("cannot describe")

    monkeypatch.setattr(_instruments, "_describe_wait", broken)

    def main() -> int:
        rec = Recorder()
        lowlevel.add_instrument(rec)
        result: int = unknot.spawn(lambda: (unknot.sleep(0.001), 7)[1]).join()
        assert greenlet.gettrace() is not None  # still tracing
        lowlevel.remove_instrument(rec)
        return result

    with caplog.at_level(logging.ERROR, logger="unknot"):
        assert unknot.run(main) == 7
    assert any(r.exc_info and "cannot describe" in str(r.exc_info[1]) for r in caplog.records)
