"""Instruments (after trio's): callbacks on a hub's scheduling events, free when none is installed.

Nothing on the hub's paths tests for instruments. Installing the first one on a hub swaps the
hub's class for a subclass (`_instrumented_class`) whose methods report the events around the
originals; removing the last one swaps the plain class back. The subclass routes every wait
through the generic `Hub._switch_out` (the only place a fiber leaves), so the inlined fast paths
need no hooks.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from greenlet import getcurrent

from ._fiber import Fiber
from ._lookup import get_hub

if TYPE_CHECKING:
    from ._hub import Hub

log = logging.getLogger("unknot")


class Instrument:
    """Subclass and override the events you want; install with `add_instrument`.

    The methods run on the hub's thread, in the middle of scheduling: they must be quick, must not
    block or switch, and what they raise is logged and dropped. A blocked fiber's ``waiting_on``
    is described as in `unknot.dump` (``"fd 7 (read)"``, ``"Lock.acquire"``...).
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


def _emit(hub: Any, event: str, *args: Any) -> None:
    # (read from the instance dict: code suspended in an instrumented method may finish after
    # the last instrument was removed and the hub's plain class put back)
    for inst in list(hub.__dict__.get("instruments", ())):
        try:
            getattr(inst, event)(*args)
        except Exception:
            log.exception("instrument %r raised in %s; ignored", inst, event)


def _scheduled(hub: Any, f: Fiber) -> None:
    blocked = hub.__dict__.get("_instr_blocked")
    if blocked is not None and f in blocked:
        blocked.discard(f)
        _emit(hub, "fiber_scheduled", f)


class _InstrumentedHub:
    """The methods that report events (mixed in front of the hub's own class)."""

    instruments: list[Instrument]
    _instr_blocked: set[Fiber]
    ready: Any

    def spawn(
        self, fn: Any, args: Any = (), kwargs: Any = None, name: Any = None, parent: Any = None
    ) -> Fiber:
        f: Fiber = super().spawn(fn, args, kwargs, name, parent)  # type: ignore[misc]
        _emit(self, "fiber_spawned", f)
        _emit(self, "fiber_scheduled", f)
        return f

    def wake(self, f: Fiber, value: Any = None) -> bool:
        woken: bool = super().wake(f, value)  # type: ignore[misc]
        if woken:
            _scheduled(self, f)
        return woken

    def throw(self, f: Fiber, exc: BaseException) -> bool:
        woken: bool = super().throw(f, exc)  # type: ignore[misc]
        if woken:
            _scheduled(self, f)
        return woken

    def _switch_out(self) -> Any:
        me = getcurrent()
        if type(me) is not Fiber:
            return super()._switch_out()  # type: ignore[misc]
        from ._introspect import _describe_wait, _frames

        what = _describe_wait(self, _frames(sys._getframe(1)))[0]  # type: ignore[arg-type]
        self._instr_blocked.add(me)
        _emit(self, "fiber_blocked", me, what)
        try:
            return super()._switch_out()  # type: ignore[misc]
        finally:
            _scheduled(self, me)  # woken by a path with no hook (an fd event, a batched call)
            _emit(self, "fiber_resumed", me)

    def _after_poll(self, had_events: bool) -> None:
        for f in list(self.ready):  # woken by fd events, straight from the poll
            _scheduled(self, f)
        super()._after_poll(had_events)  # type: ignore[misc]

    def _run_ready(self) -> None:
        _emit(self, "pass_started")
        try:
            super()._run_ready()  # type: ignore[misc]
        finally:
            _emit(self, "pass_ended")

    def _fiber_finished(self, f: Fiber) -> None:
        super()._fiber_finished(f)  # type: ignore[misc]
        self._instr_blocked.discard(f)
        _emit(self, "fiber_done", f)


_classes: dict[type, type] = {}


def _instrumented_class(cls: type) -> type:
    sub = _classes.get(cls)
    if sub is None:
        sub = _classes[cls] = type(f"Instrumented{cls.__name__}", (_InstrumentedHub, cls), {})
        sub._plain_class = cls  # type: ignore[attr-defined]
    return sub


def _the_hub(hub: Hub | None) -> Hub:
    if hub is None:
        hub = get_hub()
        if hub is None:
            raise RuntimeError("no current hub: call from a fiber, or pass hub=")
    return hub


def add_instrument(instrument: Instrument, hub: Hub | None = None) -> None:
    """Install ``instrument`` on ``hub`` (default: the current hub). Call on the hub's thread.

    While a hub has an instrument it runs a slower, instrumented path; with none it runs as if
    instruments did not exist.
    """
    hub = _the_hub(hub)
    current: list[Instrument] | None = hub.__dict__.get("instruments")
    if current is None:
        hub.instruments = []  # type: ignore[attr-defined]
        hub._instr_blocked = set()  # type: ignore[attr-defined]
        hub.__class__ = _instrumented_class(type(hub))
        current = hub.instruments  # type: ignore[attr-defined]
    if instrument not in current:
        current.append(instrument)


def remove_instrument(instrument: Instrument, hub: Hub | None = None) -> None:
    """Uninstall ``instrument`` from ``hub`` (default: the current hub). `ValueError` if it is
    not installed there. Removing the last one puts the hub back on its uninstrumented path."""
    hub = _the_hub(hub)
    current: list[Instrument] | None = hub.__dict__.get("instruments")
    if current is None or instrument not in current:
        raise ValueError(f"{instrument!r} is not installed on this hub")
    current.remove(instrument)
    if not current:
        del hub.instruments  # type: ignore[attr-defined]
        del hub._instr_blocked  # type: ignore[attr-defined]
        hub.__class__ = hub.__class__._plain_class  # type: ignore[attr-defined]
