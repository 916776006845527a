"""The blocking detector: a monitor thread that notices when a hub stops coming back to its loop.

The hub sets a pulse, ``hub.thread.unknot_pulse = True``, each time its loop comes back
(`HubSelector._after_poll`): that one store is all it pays (on the thread object, not the hub:
see the note in `Hub._hub_init`). One daemon thread, shared by every hub of the process, wakes
every ``threshold / 4`` seconds and, for each running hub, clears the pulse it finds set. A pulse
still clear ``threshold`` seconds later means the hub thread is either asleep in its poll (idle:
fine) or stuck in code that does not yield (a fiber calling the unpatched ``time.sleep``, a
CPU-bound loop, an asyncio callback doing blocking I/O). The thread tells them apart by the hub
thread's innermost frame (``sys._current_frames()``), and reports a stall once, through the
``unknot.monitor`` logger and an optional callback, naming the file and line that holds the loop.

The same thread keeps what `unknot.stats` and the dumps report about time: the loop lag (every
`LAG_PROBE_INTERVAL` it posts a callback to each loop with ``call_soon_threadsafe`` and records
how late it runs), and `EPOCH`, the time of its latest sample, which a parking fiber copies so
that a dump can tell how long it has waited.

Configuration: ``UNKNOT_MONITOR`` (``0``/``off``, ``1``/``on``, or a threshold such as
``0.25`` or ``250ms``); without it the monitor is on in debug mode (``UNKNOT_DEBUG=1``,
``PYTHONASYNCIODEBUG``, ``python -X dev``) and under unknot's pytest plugin, off otherwise.
`start_monitor` and `stop_monitor` override all of it. Without either of those and without
``UNKNOT_MONITOR``, asyncio's debug mode on a hub's loop (``loop.set_debug(True)``) watches that
hub with the loop's ``slow_callback_duration`` as its threshold (`loop_debug`).
"""

from __future__ import annotations

import asyncio.base_events
import logging
import os
import selectors
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from greenlet import greenlet

if TYPE_CHECKING:
    from ._hub import Hub

log = logging.getLogger("unknot.monitor")

_monotonic = time.monotonic
_sleep = time.sleep  # the original, even after unknot.patch()
# (With the separator: ``.../unknot_plugin/x.py`` is not unknot's. `_stacks.PACKAGE_PREFIX`,
# which this leaf of the core's layers cannot import.)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_BASE_EVENTS_FILE = asyncio.base_events.__file__
_SELECTORS_FILE = selectors.__file__
_FIBER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fiber.py")

#: The default threshold, seconds.
DEFAULT_THRESHOLD = 0.1
#: Seconds between two loop-lag probes of one hub.
LAG_PROBE_INTERVAL = 0.25
#: Loop-lag samples kept per hub (the percentiles are over these).
LAG_SAMPLES = 1024

#: Files in which a hub's poll runs (filled by `unknot._core._selector_hub` and the backends):
#: a hub thread whose innermost frame is a ``select`` in one of them is idle, not blocked; but
#: for the stdlib ``selectors``, whose ``select`` is the hub's poll only when the hub called it
#: (`_is_polling`).
POLLING_FILES: set[str] = set()

#: When the detector thread last sampled the hubs (`time.monotonic`), None while it is off. A
#: parking fiber copies it (``Fiber._since``, in `Hub.park`) so that a dump can tell how long
#: the fiber has waited. (One value for every hub: they are sampled together. Not a hub
#: attribute: a CPython 3.11 instance with over 30 attributes loses its fast attribute access.)
#: While it is None a parking fiber stores nothing (from compiled code the store is a generic
#: attribute access, about 150 instructions per park), so a fiber's ``_since`` may be left from
#: an earlier run of the detector: a dump trusts it only from `BEGAN` on.
#: A one-element list (``EPOCH[0]``), never rebound: the compiled hub holds the list itself as
#: a C constant and reads its item in a few instructions, where a module attribute read costs
#: a dict look-up and a generic attribute access at every park.
EPOCH: Final[list[float | None]] = [None]
#: The first `EPOCH` of the detector's current run (EPOCH was None before it).
BEGAN = 0.0

#: The hubs whose loop runs, in any thread (`hub_started`/`hub_stopped`).
_hubs: dict[Hub, None] = {}


@dataclass(frozen=True)
class BlockingReport:
    """A hub that has not come back to its loop for longer than the monitor's threshold.

    ``filename``, ``lineno``, ``function`` and ``line`` name the blocking call: the innermost frame
    of the hub thread outside unknot itself (for ``time.sleep(0.5)`` in a fiber, that line).
    """

    #: The name of the OS thread running the hub.
    thread: str
    #: Seconds since the loop last came back, when the report was made (it may block longer).
    blocked_for: float
    #: The running fiber's name, or None if the hub itself (an asyncio callback) is blocking.
    fiber: str | None
    filename: str
    lineno: int
    function: str
    #: The source line, if it could be read.
    line: str
    #: The hub thread's whole stack, outermost call first.
    stack: traceback.StackSummary
    #: How many fibers the detector saw running, one after the other, during the stall (it
    #: looks a few times per threshold). More than one: perhaps no fiber held the loop long,
    #: but many ready ones ran in a row without the loop coming back; ``fiber`` is the one
    #: running when the report was made.
    fibers_seen: int = 1

    def format(self) -> str:
        """The report as the monitor logs it."""
        who = f"fiber {self.fiber!r}" if self.fiber is not None else "the event loop itself"
        text = (
            f"the event loop in thread {self.thread!r} has been blocked for "
            f"{self.blocked_for:.3f} s by {who}, at {self.filename}:{self.lineno} in "
            f"{self.function}"
        )
        if self.line:
            text += f": {self.line}"
        if self.fibers_seen > 1:
            text += (
                f"\n({self.fibers_seen} fibers were seen running during this stall: perhaps "
                "many ready fibers ran in a row, none of them for long, rather than one fiber "
                "holding the loop)"
            )
        return text + "\nStack (most recent call last):\n" + "".join(self.stack.format())


class _Watch:
    """What the monitor knows about one hub."""

    __slots__ = ("changed", "reported", "lags", "next_probe", "probing", "running", "seen")

    def __init__(self, now: float) -> None:
        self.changed = now  # when the pulse was last seen set
        self.reported = False
        # The hub's running fiber at the latest sample since the pulse was last seen set, and
        # how many different ones the samples saw (a long pass of many fibers, or one fiber).
        self.running: Any = None
        self.seen = 0
        self.lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        self.next_probe = now
        self.probing = False


class Monitor:
    """The monitor thread's state. One per process (`_monitor`)."""

    def __init__(self) -> None:
        self.threshold: float | None = None
        self.callback: Callable[[BlockingReport], Any] | None = None
        self.explicit = False  # start_monitor/stop_monitor was called: ignore defaults
        #: Hubs whose loop's asyncio debug mode turned watching on (`loop_debug`): each is
        #: watched with its loop's ``slow_callback_duration``, whatever ``threshold`` says.
        self.debug_hubs: dict[Hub, None] = {}
        #: The current run's watches (each run of the thread has its own dict: a thread that
        #: stop() ended may still finish its sample, in a dict nobody else uses any more).
        self.watches: dict[Hub, _Watch] = {}
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.stalls = 0

    # -- control ----------------------------------------------------------------------------

    def start(self, threshold: float, callback: Callable[[BlockingReport], Any] | None) -> None:
        _check_threshold(threshold)
        with self.lock:
            self.threshold = float(threshold)
            self.callback = callback
            self._start_thread()

    def _start_thread(self) -> None:
        """Start the thread unless it runs (under the lock)."""
        if self.thread is None or not self.thread.is_alive():
            watches: dict[Hub, _Watch] = {}
            self.watches = watches
            self.thread = threading.Thread(
                target=self._run, args=(watches,), name="unknot-monitor", daemon=True
            )
            self.thread.start()

    def stop(self) -> None:
        with self.lock:
            self.threshold = None
            self.debug_hubs.clear()
            self.thread = None  # the thread sees it and ends at its next wake-up
            EPOCH[0] = None  # (no longer kept up to date)
            self.watches = {}  # (not cleared: the ending thread may still be using its dict)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self, watches: dict[Hub, _Watch]) -> None:
        """The thread's loop: sample every running hub, into ``watches`` (this run's own)."""
        global BEGAN
        me = threading.current_thread()
        while True:
            with self.lock:
                # (Under the lock, as stop() clears EPOCH: once stop() has returned, no sample
                # of this thread lands in EPOCH.)
                threshold = self.threshold
                if self.thread is not me:
                    return
                debug_hubs = set(self.debug_hubs)
                if threshold is None and not any(h in _hubs for h in debug_hubs):
                    # Nothing to watch (no loop in asyncio's debug mode runs): ends, and says
                    # so under the lock, for `loop_debug` or `hub_started` to start a new one.
                    self.thread = None
                    EPOCH[0] = None
                    return
                now = _monotonic()
                if EPOCH[0] is None:
                    BEGAN = now
                EPOCH[0] = now
            hubs = list(_hubs)
            if threshold is None:
                hubs = [h for h in hubs if h in debug_hubs]
            shortest = threshold if threshold is not None else float("inf")
            for hub in hubs:
                if self.thread is not me:
                    return  # stopped meanwhile (maybe restarted): leave the hubs to the new run
                t = _debug_threshold(hub) if hub in debug_hubs else threshold
                if t is None:
                    continue
                shortest = min(shortest, t)
                w = watches.get(hub)
                if w is None:
                    watches[hub] = _Watch(now)
                    hub.thread.unknot_pulse = False  # type: ignore[attr-defined]
                    continue
                try:
                    self._check(hub, w, now, t)
                except Exception:  # never let the watchdog die silently
                    log.exception("the blocking detector failed to check a hub")
            if len(watches) > len(hubs):
                for hub in [h for h in watches if h not in hubs]:
                    del watches[hub]
            _sleep(min(shortest / 4, 0.05))

    def _check(self, hub: Hub, w: _Watch, now: float, threshold: float) -> None:
        thread: Any = hub.thread
        if getattr(thread, "unknot_pulse", False):
            thread.unknot_pulse = False  # (a pulse set meanwhile is lost: it just came back)
            w.changed = now
            w.reported = False
            w.running = None
            w.seen = 0
            return self._probe(hub, w, now)
        running = getattr(hub, "running", None)
        if running is not w.running:
            w.running = running
            w.seen += 1
        if not w.reported and now - w.changed > threshold:
            frame = sys._current_frames().get(hub.thread.ident or -1)
            if frame is None or _is_polling(frame):
                w.changed = now  # asleep in its poll: idle, not blocked
                w.running = None
                w.seen = 0
            else:
                w.reported = True
                self.stalls += 1
                self._report(hub, frame, now - w.changed, w.seen)
        self._probe(hub, w, now)

    def _probe(self, hub: Hub, w: _Watch, now: float) -> None:
        """Post the next loop-lag probe to ``hub``, if one is due."""
        if now >= w.next_probe and not w.probing:
            w.next_probe = now + LAG_PROBE_INTERVAL
            loop = hub.loop
            if loop is not None:
                w.probing = True
                try:
                    loop.call_soon_threadsafe(_probe_done, w, now)
                except RuntimeError:  # the loop is closing
                    w.probing = False

    def _report(self, hub: Hub, frame: Any, blocked_for: float, fibers_seen: int) -> None:
        stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=True)
        stack.reverse()
        while len(stack) > 1 and stack[0].filename == _FIBER_FILE:
            del stack[0]  # Fiber.run, where every fiber's stack begins
        blame = next(
            (fs for fs in reversed(stack) if not fs.filename.startswith(_PACKAGE_DIR)),
            stack[-1] if stack else None,
        )
        report = BlockingReport(
            thread=hub.thread.name,
            blocked_for=blocked_for,
            fiber=_running_fiber_name(hub),
            filename=blame.filename if blame else "?",
            lineno=(blame.lineno or 0) if blame else 0,
            function=blame.name if blame else "?",
            line=(blame.line or "") if blame else "",
            stack=stack,
            fibers_seen=max(1, fibers_seen),
        )
        log.warning("%s", report.format())
        callback = self.callback
        if callback is not None:
            try:
                callback(report)
            except Exception:
                log.exception("error in the blocking detector's callback")


def _debug_threshold(hub: Hub) -> float:
    """The threshold of a hub watched for its loop's debug mode: the loop's
    ``slow_callback_duration`` (read at every sample: it may change), at least a millisecond."""
    value = getattr(hub.loop, "slow_callback_duration", DEFAULT_THRESHOLD)
    try:
        return max(float(value), 0.001)
    except (TypeError, ValueError):
        return DEFAULT_THRESHOLD


def _probe_done(w: _Watch, posted: float) -> None:
    """Runs on the hub: how late the loop got to a callback posted at ``posted``."""
    w.lags.append(_monotonic() - posted)
    w.probing = False


def _is_polling(frame: Any) -> bool:
    """Whether the hub thread's innermost frame is the hub waiting in its poll.

    asyncio's ``_run_once`` innermost is the compiled build's poll: its hub's ``select`` (and
    the pass it runs) are compiled functions with no Python frame. Counted as polling: the
    hub's own compiled code costs nothing worth reporting, and any Python code it runs (a
    fiber, a callback) has frames of its own above ``_run_once``.

    The poll backend's hub polls in the stdlib selector's ``select``, which a fiber or an
    asyncio callback may call too (the unpatched ``subprocess.run(..., capture_output=True)``
    waits there): that ``select`` is the hub's poll only if the hub called it, from its own
    ``select`` (or, compiled, straight from ``_run_once``).
    """
    code = frame.f_code
    if code.co_name == "select" and code.co_filename == _SELECTORS_FILE:
        frame = frame.f_back
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "select":
            return code.co_filename in POLLING_FILES and code.co_filename != _SELECTORS_FILE
    elif code.co_name == "select":
        return code.co_filename in POLLING_FILES
    return code.co_name == "_run_once" and code.co_filename == _BASE_EVENTS_FILE


def _running_fiber_name(hub: Hub) -> str | None:
    """The name of the fiber running on ``hub`` (read from another thread), if any."""
    for f in list(hub.fibers):
        if f.gr_frame is None and greenlet.__bool__(f):
            return f.name
    return None


_monitor = Monitor()


def start_monitor(
    threshold: float = DEFAULT_THRESHOLD, callback: Callable[[BlockingReport], Any] | None = None
) -> None:
    """Start the blocking detector (or change its settings) for every hub of the process.

    Whenever a hub has not come back to its loop for more than ``threshold`` seconds, a warning
    naming the blocking line is logged to the ``unknot.monitor`` logger and, if given,
    ``callback(report)`` is called (from the monitor thread) with a `BlockingReport`. One
    report per stall. The thread is a daemon: it never keeps the process alive.

    A ``threshold`` that is not a positive number of seconds raises `ValueError` and changes
    nothing (the environment's ``UNKNOT_MONITOR`` and debug mode still apply).
    """
    _check_threshold(threshold)
    _monitor.explicit = True
    with _monitor.lock:
        _monitor.debug_hubs.clear()  # (the explicit setting wins over asyncio's debug mode)
    _monitor.start(threshold, callback)


def _check_threshold(threshold: float) -> None:
    """`ValueError` unless ``threshold`` is a positive number of seconds."""
    if not threshold > 0:
        raise ValueError(
            f"the monitor's threshold must be a positive number of seconds, got {threshold!r}"
        )


def stop_monitor() -> None:
    """Stop the blocking detector (it stays off, whatever the environment says)."""
    _monitor.explicit = True
    _monitor.stop()


def monitor_threshold() -> float | None:
    """The blocking detector's threshold in seconds, or None while it is off."""
    return _monitor.threshold


def hub_threshold(hub: Hub) -> float | None:
    """The threshold the detector watches ``hub`` with, in seconds (None: it does not watch
    it): its loop's ``slow_callback_duration`` if asyncio's debug mode turned watching on for it
    (`loop_debug`), else the process-wide one. Read from the settings, as the thread's samples
    are (`Monitor._run`): right from the start, not once the thread has first sampled the hub.
    """
    m = _monitor
    if hub in m.debug_hubs:
        return _debug_threshold(hub)
    return m.threshold


def parse_setting(value: str) -> float | None:
    """``UNKNOT_MONITOR``'s value as a threshold (None: off). `ValueError` if malformed."""
    v = value.strip().lower()
    if v in ("0", "off", "false", "no"):
        return None
    if v in ("1", "on", "true", "yes"):
        return DEFAULT_THRESHOLD
    scale = 1.0
    if v.endswith("ms"):
        v, scale = v[:-2], 0.001
    elif v.endswith("s"):
        v = v[:-1]
    try:
        seconds = float(v) * scale
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"UNKNOT_MONITOR={value!r}: expected 0/off, 1/on, or a threshold such as 0.25 or 250ms"
        )
    return seconds


def debug_mode() -> bool:
    """Whether a debug flag is set: ``UNKNOT_DEBUG``, ``PYTHONASYNCIODEBUG`` or ``-X dev``."""
    env = os.environ
    return bool(
        sys.flags.dev_mode
        or env.get("PYTHONASYNCIODEBUG")
        or env.get("UNKNOT_DEBUG", "0") not in ("", "0")
    )


_default_on = False


def enable_by_default() -> None:
    """Turn the monitor on for hubs started from now on, unless the environment or an explicit
    `stop_monitor` says otherwise (the pytest plugin and debug mode call this)."""
    global _default_on
    _default_on = True


def hub_stopped(hub: Hub) -> None:
    """A hub's loop stopped running."""
    _hubs.pop(hub, None)


def wanted_threshold() -> float | None:
    """The threshold a hub starting now should be watched with (None: not watched), from
    `start_monitor`/`stop_monitor`, else ``UNKNOT_MONITOR``, debug mode and the pytest plugin.
    `ValueError` if ``UNKNOT_MONITOR`` is malformed (and is what decides)."""
    m = _monitor
    if m.explicit:
        return m.threshold
    setting = os.environ.get("UNKNOT_MONITOR", "")
    if setting:
        return parse_setting(setting)
    if _default_on or debug_mode():
        return DEFAULT_THRESHOLD
    return None


def loop_debug(hub: Hub, enabled: bool) -> None:
    """asyncio's debug mode was turned on or off on ``hub`` 's loop (`HubEventLoop.set_debug`).

    asyncio's own check of slow callbacks cannot see fibers (they run inside the loop's
    ``select``), so on: unless the detector was configured (`start_monitor`, `stop_monitor`,
    ``UNKNOT_MONITOR``), the hub is watched, with its loop's ``slow_callback_duration`` as the
    threshold, and the thread started if the hub runs. Off: the hub is no longer watched for
    that reason (only what turning it on did is undone; the detector may still watch it, as
    every hub, for its own settings)."""
    m = _monitor
    if not enabled:
        with m.lock:
            m.debug_hubs.pop(hub, None)
        return
    if m.explicit or os.environ.get("UNKNOT_MONITOR", ""):
        return  # configured: that decides
    with m.lock:
        m.debug_hubs[hub] = None
        if hub in _hubs:
            _begin_epoch()
            m._start_thread()


def _begin_epoch() -> None:
    global BEGAN
    if EPOCH[0] is None:
        EPOCH[0] = BEGAN = _monotonic()  # (the thread keeps it up to date from its next sample on)


def hub_started(hub: Hub) -> None:
    """A hub's loop starts running: start the monitor thread if it is wanted and not running.

    A malformed ``UNKNOT_MONITOR`` raises `ValueError` before anything is registered."""
    threshold = wanted_threshold()
    _hubs[hub] = None
    m = _monitor
    if threshold is None and hub not in m.debug_hubs:
        return
    _begin_epoch()
    if threshold is None:  # (watched for its loop's debug mode only)
        with m.lock:
            m._start_thread()
    elif m.thread is None or not m.thread.is_alive():
        m.start(threshold, m.callback)


def monitor_thread_ident() -> int | None:
    """The monitor thread's ident (deadlock detection does not count it as a waker)."""
    t = _monitor.thread
    return t.ident if t is not None else None


def lag_samples(hub: Hub) -> list[float] | None:
    """The loop-lag samples of ``hub`` (seconds), or None if the monitor does not watch it."""
    w = _monitor.watches.get(hub)
    return None if w is None else list(w.lags)
