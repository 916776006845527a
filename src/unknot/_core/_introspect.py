"""Fiber dumps: what every live fiber is doing, derived when asked, never recorded as it happens.

Parking costs the hot path one store while the blocking detector runs (``Fiber._since =
_monitor.EPOCH``; a timed park one more, ``Fiber._wait_began``); everything else is read at dump
time from what already exists: the hub's tables say what a parked fiber waits on (an fd record names
its reader and writer, a batched call its fiber, the timer heap a timed park's fiber and deadline),
and otherwise its own Python frames outside the core (`ParkingLot.park` is called by the lock,
queue, event or join that owns the lot; `sleep` calls `Hub.park`). The core's frames are never
needed: the compiled build has none. The ready queue says who is ready, the blocking detector's
latest sample when a wait began.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from greenlet import getcurrent, greenlet

from . import _fiber
from . import _monitor as _monitor_mod
from ._fiber import Fiber
from ._lookup import get_hub, running_hubs
from ._monitor import _monitor, debug_mode, enable_by_default, hub_threshold
from ._stacks import CORE_DIR, PACKAGE_PREFIX, frames_of, user_stack

if TYPE_CHECKING:
    from ._hub import Hub

_CORE_DIR = CORE_DIR
_PACKAGE_DIR = PACKAGE_PREFIX
_HUB_FILE = os.path.join(_CORE_DIR, "_hub.py")
_PARKING_FILE = os.path.join(_CORE_DIR, "_parking.py")
_CALLS_FILE = os.path.join(_CORE_DIR, "_calls.py")

#: The stacks live fibers were spawned from, recorded in debug mode (see `set_debug`).
_spawn_stacks: weakref.WeakKeyDictionary[Fiber, traceback.StackSummary] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class FiberInfo:
    """A snapshot of one live fiber, as `unknot.fibers` and `unknot.dump` see it."""

    #: The fiber's name.
    name: str
    #: ``"running"`` (executing now), ``"ready"`` (queued to run), ``"waiting"`` (parked in a
    #: blocking call) or ``"pending"`` (spawned, not started yet).
    state: str
    #: For a waiting fiber, what it waits on, e.g. ``"fd 7 (read)"``, ``"sleep (0.8 s left)"``,
    #: ``"Lock.acquire"``, ``"Queue.get"``, ``"Fiber.join (worker-1)"``; None otherwise.
    waiting_on: str | None
    #: Seconds it has been waiting (None if not waiting, or not known: without the blocking
    #: detector running, only timed waits know when they began).
    waiting_for: float | None
    #: Its stack, outermost call first (unknot's own innermost frames left out).
    stack: traceback.StackSummary
    #: (filename, line, function) of the code that spawned it.
    spawned_at: tuple[str, int, str]
    #: The whole stack it was spawned from, recorded only in debug mode (`unknot.set_debug`).
    spawn_stack: traceback.StackSummary | None
    #: Its task group, described (``"TaskGroup of root"``), or None.
    group: str | None
    #: True for the root fiber of `unknot.run`.
    is_root: bool
    #: The name of the OS thread running its hub.
    thread: str
    #: The fiber itself.
    fiber: Fiber = field(repr=False, compare=False)
    #: The object it waits on (the lock, queue, event, fd record, joined fiber...), if known.
    wait_object: Any = field(default=None, repr=False, compare=False)

    def format(self) -> str:
        """This fiber as `unknot.dump` prints it."""
        head = f"fiber {self.name}{' (root)' if self.is_root else ''}: {self.state}"
        if self.waiting_on is not None:
            head += f" on {self.waiting_on}"
        if self.waiting_for is not None:
            head += f" for {self.waiting_for:.3f} s"
        filename, lineno, func = self.spawned_at
        lines = [head, f"  spawned at {filename}:{lineno} in {func}"]
        if self.spawn_stack is not None:
            lines.append("  spawned from (most recent call last):")
            lines.extend(_indent(self.spawn_stack.format(), "  "))
        if self.stack:
            lines.append("  stack (most recent call last):")
            lines.extend(_indent(self.stack.format(), "  "))
        return "\n".join(lines)


def _indent(entries: list[str], prefix: str) -> Iterator[str]:
    for entry in entries:
        for ln in entry.rstrip("\n").splitlines():
            yield prefix + ln


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owner_label(frames: list[Any], start: int) -> tuple[str | None, Any]:
    """What the unknot frames outside the core's wait machinery, from ``start`` outwards, say
    the fiber waits in: ``("Lock.acquire", the lock)``, ``("Channel.recv", the channel)``,
    ``("select", None)``. The first public API met (a method of a public class, or a public
    function) names it; the outermost of that owner's methods, rather (Lock.acquire, not the
    Lock._wait it calls), and then the outermost of the unknot objects delegating to it by a
    method of the same name (RLock.acquire, not the Lock.acquire it calls). A private helper
    (``_perform``, ``_Run.next``) names it only if no public API is found before the frames
    leave unknot; but a private function named after a public one of its module, which it
    implements, names that one (``_as_completed``, the generator `as_completed` returns)."""
    first: tuple[str | None, Any] = (None, None)
    n = len(frames)
    for i in range(start, n):
        fr = frames[i]
        code = fr.f_code
        filename = code.co_filename
        if filename in (_PARKING_FILE, _HUB_FILE):
            continue
        if not filename.startswith(_PACKAGE_DIR):
            break
        owner = fr.f_locals.get("self")
        if owner is None:
            name = code.co_name
            if not _is_private(name):
                return name, None
            if not _is_private(name[1:]) and callable(fr.f_globals.get(name[1:])):
                return name[1:], None
            if first[0] is None:
                first = (name, None)
            continue
        method = code.co_name
        k = i + 1
        while k < n and frames[k].f_locals.get("self") is owner:
            method = frames[k].f_code.co_name
            k += 1
        if not (_is_private(type(owner).__name__) or _is_private(method)):
            # A public wrapper's method of the same name calling this one names the wait: the
            # user called the wrapper (RLock.acquire calls its Lock's, Condition.acquire its
            # lock's).
            while k < n and frames[k].f_code.co_filename.startswith(_PACKAGE_DIR):
                wrapper = frames[k].f_locals.get("self")
                if (
                    wrapper is None
                    or frames[k].f_code.co_name != method
                    or _is_private(type(wrapper).__name__)
                ):
                    break
                owner = wrapper
                k += 1
                while k < n and frames[k].f_locals.get("self") is owner:
                    k += 1
        label = f"{type(owner).__name__}.{method}"
        if isinstance(owner, Fiber):
            label += f" ({owner.name})"
        if not (_is_private(type(owner).__name__) or _is_private(method)):
            return label, owner
        if first[0] is None:
            first = (label, owner)
    return first


class _HubWaits:
    """Who waits on what in one hub, read from its tables once per dump (not once per fiber,
    which made a dump quadratic in fibers x (timers + fds)): per fiber, its first timed park's
    timer entry, the fd records it waits on (queued behind their waiter first, as waiter next)
    and its first batched call."""

    __slots__ = ("calls", "reads", "timers", "writes")

    def __init__(self, hub: Hub) -> None:
        from ._hub import _QUEUED  # (lazily: `_hub` imports the core's modules)

        timeout_cb = hub._timeout_cb
        self.timers: dict[Fiber, Any] = {}
        for entry in list(hub.timers):
            if entry[2] is timeout_cb and entry[3] not in self.timers:
                self.timers[entry[3]] = entry
        self.reads: dict[Fiber, list[Any]] = {}
        self.writes: dict[Fiber, list[Any]] = {}
        if _QUEUED:  # (one C call: other hubs' threads add keys)
            for rec, q in list(_QUEUED.items()):
                if rec.hub is hub:
                    for g in dict.fromkeys(q.readers):  # (once per record)
                        self.reads.setdefault(g, []).append(rec)
                    for g in dict.fromkeys(q.writers):
                        self.writes.setdefault(g, []).append(rec)
        for rec in list(hub.fds.values()):
            if rec.reader is not None:
                self.reads.setdefault(rec.reader, []).append(rec)
            if rec.writer is not None:
                self.writes.setdefault(rec.writer, []).append(rec)
        self.calls: dict[Fiber, Any] = {}
        for call in list(hub.calls):
            if call[0] not in self.calls:
                self.calls[call[0]] = call[1]


def _describe_wait(
    hub: Hub, f: Fiber, frames: list[Any], waits: _HubWaits | None = None
) -> tuple[str, Any, float | None]:
    """(what parked fiber ``f`` waits on, the object, when the wait began if known).

    Read from the hub's tables (the fd records name their waiters, the batched calls their
    fibers, the timer heap a timed park's fiber), as gathered in ``waits`` (made here if not
    given: a dump makes it once for all its fibers), and from the fiber's Python frames outside
    the core's wait machinery: the compiled build's core functions have no Python frames, so
    nothing here depends on seeing `Hub.park` or `Hub.wait_fd` on the stack.
    """
    if waits is None:
        waits = _HubWaits(hub)
    began, left = _timer_times(hub, f, waits)
    what: str | None = None
    obj: Any = None
    reads = waits.reads.get(f, [])
    writes = waits.writes.get(f, [])
    if len(reads) + len(writes) == 1:
        obj = (reads or writes)[0]
        what = f"fd {obj.fd} ({'write' if writes else 'read'})"
    elif reads or writes:
        what = f"fds read {[r.fd for r in reads]} write {[r.fd for r in writes]}"
    elif f in waits.calls:
        obj = waits.calls[f]
        what = f"a batched call ({getattr(obj, '__qualname__', obj)})"
    if what is not None:
        if left is not None:
            what += f" (timeout in {left:.3g} s)"
        return what, obj, began
    i = 0  # the innermost frame outside the wait machinery (the pure build's core frames)
    while i < len(frames) and frames[i].f_code.co_filename in (_HUB_FILE, _PARKING_FILE):
        i += 1
    outer = frames[i] if i < len(frames) else None
    if outer is not None and outer.f_code.co_filename == _CALLS_FILE:
        if outer.f_code.co_name == "sleep":
            if left is None:
                return "sleep (forever)", None, None
            return f"sleep ({max(left, 0.0):.3g} s left)", None, began
    label, obj = _owner_label(frames, i)
    if label is None:
        label = f"park() in {outer.f_code.co_name if outer is not None else '?'}"
    if left is not None:
        label += f" (timeout in {left:.3g} s)"
    return label, obj, began


def _timer_times(hub: Hub, f: Fiber, waits: _HubWaits) -> tuple[float | None, float | None]:
    """For a fiber in a timed `Hub.park`: (when the wait began, seconds left), hub clock."""
    entry = waits.timers.get(f)
    if entry is None:
        return None, None
    began = getattr(f, "_wait_began", None)
    return began, entry[0] - hub.time()


def _group_label(f: Fiber) -> str | None:
    group = f._group
    if group is None:
        return None
    owner = getattr(group, "_owner", None)
    owner_name = owner.name if isinstance(owner, Fiber) else "the hub"
    return f"TaskGroup {id(group):#x} of {owner_name}"


def fiber_info(f: Fiber) -> FiberInfo:
    """A `FiberInfo` snapshot of fiber ``f`` (best read from its hub's thread: the fibers of a
    hub running in another thread are read without stopping it)."""
    return _fiber_info(f, None)


def _fiber_info(f: Fiber, waits: _HubWaits | None) -> FiberInfo:
    """`fiber_info`, with the hub's waits gathered once for a whole dump (None: when needed)."""
    hub = f.hub
    waiting_on: str | None = None
    wait_object: Any = None
    waiting_for: float | None = None
    frame = f.gr_frame
    if f.dead:
        state = "done"
        frames: list[Any] = []
    elif not greenlet.__bool__(f):
        state = "pending"
        frames = []
    elif frame is None:
        state = "running"
        if f is getcurrent():
            frames = frames_of(sys._getframe(1))
        else:
            frames = frames_of(sys._current_frames().get(hub.thread.ident or -1))
    else:
        frames = frames_of(frame)
        if f._parked:
            state = "waiting"
            waiting_on, wait_object, began = _describe_wait(hub, f, frames, waits)
            if began is not None:
                waiting_for = max(0.0, hub.time() - began)
            else:
                since = _waited_since(f)  # the detector's sample before the wait began
                if since is not None:
                    waiting_for = max(0.0, time.monotonic() - since)
        else:
            state = "ready"
    return FiberInfo(
        name=f.name,
        state=state,
        waiting_on=waiting_on,
        waiting_for=waiting_for,
        stack=user_stack(frames),
        spawned_at=f._spawned_at,
        spawn_stack=_spawn_stacks.get(f),
        group=_group_label(f),
        is_root=f is hub.root,
        thread=hub.thread.name,
        fiber=f,
        wait_object=wait_object,
    )


def _hubs(hub: Hub | None) -> list[Hub]:
    if hub is not None:
        return [hub]
    hubs = running_hubs()
    here = get_hub()
    if here is not None:  # the caller's own hub first
        if here in hubs:
            hubs.remove(here)
        hubs.insert(0, here)
    return hubs


def _waited_since(f: Fiber) -> float | None:
    """The detector's sample before ``f``'s current wait began, if it ran then (and still runs:
    a parking fiber stores it only then, see `_monitor.EPOCH`)."""
    since = f._since
    if since is None or _monitor_mod.EPOCH[0] is None or since < _monitor_mod.BEGAN:
        return None
    return since


def fibers(hub: Hub | None = None) -> list[FiberInfo]:
    """A `FiberInfo` for every live fiber of ``hub`` (default: of every running hub), the root
    fibers first, then by name."""
    out: list[FiberInfo] = []
    for h in _hubs(hub):
        live = sorted(h.fibers, key=lambda f: (f is not h.root, f.name))
        waits = _HubWaits(h)  # (once: a dump stays linear in the fibers)
        out.extend(_fiber_info(f, waits) for f in live if not f.dead)
    return out


def format_dump(hub: Hub | None = None) -> str:
    """The text `dump` prints."""
    lines = []
    for h in _hubs(hub):
        infos = fibers(h)
        lines.append(
            f"=== unknot: hub in thread {h.thread.name!r}: {len(infos)} live fibers"
            # (From the settings: the detector thread samples a hub first up to 50 ms later.)
            + (
                ""
                if hub_threshold(h) is not None
                else " (blocking detector off: untimed waits undated)"
            )
            + _hub_notes(h)
            + " ==="
        )
        groups: dict[str | None, list[FiberInfo]] = {}
        for info in infos:
            groups.setdefault(info.group, []).append(info)
        for label in sorted(groups, key=lambda g: (g is not None, g or "")):
            members = groups[label]
            lines.append(f"--- {label or 'no task group'} ({len(members)} fibers) ---")
            lines.extend(info.format() for info in members)
    if not lines:
        lines.append("=== unknot: no hub is running ===")
    return "\n".join(lines) + "\n"


def _hub_notes(h: Hub) -> str:
    """What a dump's header says about a hub past its fibers: a root fiber that has finished
    (the loop should be stopping) and an interrupt (Ctrl-C) not yet delivered."""
    notes = []
    root = h.root
    if root is not None and root.done():
        notes.append("the root fiber has finished")
    if h.interrupt_pending:
        notes.append("an interrupt is pending")
    return "".join(f"; {n}" for n in notes)


def dump(file: IO[str] | None = None, hub: Hub | None = None) -> None:
    """Print every live fiber (name, state, what it waits on and for how long, stack, where it
    was spawned), grouped by hub and task group, to ``file`` (default ``sys.stderr``)."""
    out = file if file is not None else sys.stderr
    out.write(format_dump(hub))
    out.flush()


def dump_on_signal(
    signum: int = getattr(signal, "SIGUSR1", signal.SIGINT), file: IO[str] | None = None
) -> Callable[[], None]:
    """On signal ``signum`` (default ``SIGUSR1``), dump the fibers of every running hub.

    The signal handler only asks each hub's loop to make the dump (``call_soon_threadsafe``): the
    dump then runs in the hub's own thread, between two loop iterations, never in the middle of
    a switch. Call from the main thread. Returns a function that puts the previous handler back.
    """

    def handler(_signum: int, _frame: Any) -> None:
        hubs = running_hubs()
        if not hubs:
            dump(file)
        for h in hubs:
            loop = h.loop
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(dump, file, h)
                except RuntimeError:  # closing
                    pass

    # (A dump wakes no fiber: not a handler the deadlock check counts, `_deadlock.CANNOT_WAKE`.)
    handler.__unknot_cannot_wake__ = True  # type: ignore[attr-defined]
    previous = signal.signal(signum, handler)

    def restore() -> None:
        signal.signal(signum, previous)

    return restore


def set_debug(enabled: bool = True) -> None:
    """Turn unknot's debug mode on or off for this process.

    In debug mode every spawn records its whole stack (shown by `dump` as "spawned from"; it
    costs a stack walk per spawn, which made spawning about four times slower when measured,
    so it is off by default: without it a
    fiber records only the one line that spawned it), and the blocking detector starts unless
    ``UNKNOT_MONITOR`` or `stop_monitor` turned it off. Debug mode is on from the start under
    ``UNKNOT_DEBUG=1``, ``PYTHONASYNCIODEBUG=1`` or ``python -X dev``.
    """
    if not enabled:
        _fiber.SPAWN_STACKS = None  # (those recorded are kept while their fibers live)
        return
    _fiber.SPAWN_STACKS = _spawn_stacks
    enable_by_default()
    if not _monitor.explicit and _monitor.threshold is None:
        from ._monitor import DEFAULT_THRESHOLD, parse_setting

        setting = os.environ.get("UNKNOT_MONITOR", "")
        threshold = parse_setting(setting) if setting else DEFAULT_THRESHOLD
        if threshold is not None:
            _monitor.start(threshold, None)


if debug_mode():
    _fiber.SPAWN_STACKS = _spawn_stacks
