"""Instruments (after trio's): callbacks on a hub's scheduling events, free when none is installed.

Nothing on the hub's switch paths tests for instruments, and the hub's class is left alone (a
compiled hub cannot change class nor take new attributes). While a hub has an instrument:

* a greenlet trace function (`greenlet.settrace`, per thread: one hub per thread) sees every
  switch on the hub's thread: a fiber switched away from has blocked (or yielded, or ended),
  one switched to is resumed (or starts);
* a hook in `unknot._core._hub.PASS_HOOKS`, called by `Hub._run_ready`, reports the passes, and
  at each pass start the fibers found ready that were blocked (woken meanwhile) as scheduled.

Removing the last instrument of a hub puts the thread's previous trace function back (None,
usually), and so does the end of the hub's loop (`loop_stopped`; `loop_started` sets it again).
A fiber woken is reported as scheduled late (at the next pass start, or when it resumes, which
comes first), not at the moment `wake` was called: the wake paths carry no hook.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import greenlet

from ._fiber import Fiber
from ._hub import PASS_HOOKS
from ._introspect import _describe_wait
from ._lookup import get_hub
from ._stacks import frames_of

if TYPE_CHECKING:
    from ._hub import Hub

log = logging.getLogger("unknot")


class Instrument:
    """Subclass and override the events you want; install with `add_instrument`.

    The methods run on the hub's thread, in the middle of scheduling: they must be quick, must not
    block or switch, and what they raise is logged and dropped. A blocked fiber's ``waiting_on``
    is described as in `unknot.dump` (``"fd 7 (read)"``, ``"Lock.acquire"``...), or ``"yield"``
    for a fiber that let the others run (``sleep(0)``) and is still ready.
    """

    def fiber_spawned(self, fiber: Fiber) -> None:
        """``fiber`` was created (it is scheduled next)."""

    def fiber_scheduled(self, fiber: Fiber) -> None:
        """``fiber`` was put on the ready queue (spawned, or woken)."""

    def fiber_blocked(self, fiber: Fiber, waiting_on: str) -> None:
        """``fiber`` parked in a blocking call, waiting on ``waiting_on``."""

    def fiber_resumed(self, fiber: Fiber) -> None:
        """``fiber`` is running again."""

    def fiber_done(self, fiber: Fiber) -> None:
        """``fiber`` finished (returned, raised or was cancelled)."""

    def pass_started(self) -> None:
        """The hub begins running the ready fibers."""

    def pass_ended(self) -> None:
        """The hub is done running the ready fibers for this loop iteration."""


class _HubState:
    """A hub's instruments and what they were told about its fibers."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.instruments: list[Instrument] = []
        self.known: set[Fiber] = set(hub.fibers)  # reported spawned (or there before)
        self.blocked: set[Fiber] = set()  # reported blocked, not yet scheduled
        self.waiting: set[Fiber] = set()  # reported blocked, not yet resumed
        self.previous: Any = None  # the thread's trace function before ours
        self.tracing = False
        self.in_pass = False  # a pass started since the first instrument came

    def emit(self, event: str, *args: Any) -> None:
        for inst in list(self.instruments):
            try:
                getattr(inst, event)(*args)
            except BaseException:  # (SystemExit too: out of the trace function, it would
                # come out of the switch, in the hub or in a fiber)
                log.exception("instrument %r raised in %s; ignored", inst, event)

    def meet(self, f: Fiber) -> None:
        """Report ``f`` spawned (and scheduled) if this is the first time it is seen."""
        if f not in self.known:
            self.known.add(f)
            self.emit("fiber_spawned", f)
            self.emit("fiber_scheduled", f)

    def scheduled(self, f: Fiber) -> None:
        if f in self.blocked:
            self.blocked.discard(f)
            self.emit("fiber_scheduled", f)

    def left(self, f: Fiber) -> None:
        """``f`` was switched away from."""
        if f.dead:
            self.known.discard(f)
            self.blocked.discard(f)
            self.waiting.discard(f)
            self.emit("fiber_done", f)
            return
        self.meet(f)
        if f._parked:
            what = _describe_wait(self.hub, f, frames_of(f.gr_frame))[0]
        else:
            what = "yield"  # sleep(0), cede: still ready
        self.blocked.add(f)
        self.waiting.add(f)
        self.emit("fiber_blocked", f, what)

    def entered(self, f: Fiber) -> None:
        """``f`` was switched to."""
        self.meet(f)
        self.scheduled(f)  # woken by a path with no hook, after the latest pass start
        if f in self.waiting:
            self.waiting.discard(f)
            self.emit("fiber_resumed", f)

    def start_tracing(self) -> None:
        if not self.tracing:
            self.previous = greenlet.settrace(self.trace)
            self.tracing = True

    def stop_tracing(self) -> None:
        if self.tracing:
            greenlet.settrace(self.previous)
            self.previous = None
            self.tracing = False

    def trace(self, event: str, args: Any) -> None:
        previous = self.previous
        if previous is not None:
            previous(event, args)
        if event not in ("switch", "throw"):
            return
        origin, target = args
        try:
            if type(origin) is Fiber and origin.hub is self.hub:
                self.left(origin)
            if type(target) is Fiber and target.hub is self.hub:
                self.entered(target)
        except BaseException:  # (an error here would come out of the switch: greenlet raises
            # what its trace function raised, and drops the trace function)
            log.exception("unknot's instrument tracing failed on a %s; ignored", event)


#: The instrumented hubs (each on its own thread).
_states: dict[Any, _HubState] = {}


def _pass_hook(hub: Hub, started: bool) -> None:
    state = _states.get(hub)
    if state is None:
        return
    if started:
        state.in_pass = True
        state.emit("pass_started")
        for f in list(hub.ready):  # spawned, or woken (by fd events, straight from the poll)
            state.meet(f)
            state.scheduled(f)
    elif state.in_pass:  # (not the end of the pass during which the first one came)
        state.in_pass = False
        state.emit("pass_ended")


def _the_hub(hub: Hub | None) -> Hub:
    if hub is None:
        hub = get_hub()
        if hub is None:
            raise RuntimeError("no current hub: call from a fiber, or pass hub=")
    return hub


def add_instrument(instrument: Instrument, hub: Hub | None = None) -> None:
    """Install ``instrument`` on ``hub`` (default: the current hub). Call on the hub's thread.

    While a hub has an instrument its thread runs a greenlet trace function; with none it runs
    as if instruments did not exist.
    """
    hub = _the_hub(hub)
    state = _states.get(hub)
    if state is None:
        state = _states[hub] = _HubState(hub)
        if _pass_hook not in PASS_HOOKS:
            PASS_HOOKS.append(_pass_hook)
        state.start_tracing()
    if instrument not in state.instruments:
        state.instruments.append(instrument)


def remove_instrument(instrument: Instrument, hub: Hub | None = None) -> None:
    """Uninstall ``instrument`` from ``hub`` (default: the current hub). `ValueError` if it is
    not installed there. Removing the last one puts the hub back on its uninstrumented path."""
    hub = _the_hub(hub)
    state = _states.get(hub)
    if state is None or instrument not in state.instruments:
        raise ValueError(f"{instrument!r} is not installed on this hub")
    state.instruments.remove(instrument)
    if not state.instruments:
        _drop(hub)


def _drop(hub: Hub) -> None:
    state = _states.pop(hub, None)
    if state is not None:
        state.stop_tracing()
    if not _states and _pass_hook in PASS_HOOKS:
        PASS_HOOKS.remove(_pass_hook)


def loop_started(hub: Hub) -> None:
    """The hub's loop runs (again) on this thread: trace its switches if it is instrumented."""
    state = _states.get(hub)
    if state is not None:
        state.start_tracing()


def loop_stopped(hub: Hub) -> None:
    """The hub's loop stopped: leave the thread without our trace function."""
    state = _states.get(hub)
    if state is not None:
        state.stop_tracing()


def loop_closed(hub: Hub) -> None:
    """The hub's loop is closed: its instruments are dropped."""
    _drop(hub)
