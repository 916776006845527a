"""The hub as the selector of an asyncio event loop: what every backend shares.

asyncio calls ``selector.select(timeout)`` once per loop iteration. A hub selector's select

1. shortens the timeout if fibers are ready or a fiber timer is due (and, under a `MockClock`,
   jumps virtual time instead of sleeping);
2. polls the OS (the backend's job: `unknot._core._io_epoll`, `unknot._core._io_poll`);
3. wakes the fibers waiting on the fds that fired, straight from the event list: no asyncio
   Handle, no callback;
4. fires due fiber timers and runs the ready fibers (`HubSelector._after_poll`);
5. returns asyncio's own events, so transports, servers and ``add_reader`` keep working.

asyncio's own registrations stay level-triggered in the same kernel object.
"""

from __future__ import annotations

import math
import selectors
from typing import Any, Final

from ._hub import Hub
from ._interrupt import deliver_interrupt, signal_handler_raised
from ._monitor import POLLING_FILES
from ._native import mypyc_attr

#: The longest single poll, in seconds (asyncio's ``MAXIMUM_SELECT_TIMEOUT``).
MAX_POLL_TIMEOUT: Final = 24 * 3600.0

#: Files in which the hub's poll runs; frames from other files in a traceback raised by the
#: poll belong to a signal handler (see `signal_handler_raised`). Backends add their own file.
#: (The blocking detector reads the same set: a hub polling in one of them is idle; in the
#: stdlib selectors' file only if called by the hub's own select, `_monitor._is_polling`.)
POLLING_FILES.update({__file__, selectors.__file__})


@mypyc_attr(allow_interpreted_subclasses=True)
class HubSelector(Hub):
    """What both backends add to a stdlib selector: the timeout rules and the post-poll work."""

    _jump_to: float | None = None
    mock_clock: Any = None

    def _compute_timeout(self, timeout: float | None) -> float | None:
        if self.interrupt_pending:
            # A Ctrl-C handled since the last poll's check (in a fiber of the pass, or in the
            # loop's callbacks) is delivered now, before the poll may sleep: the byte its handler
            # wrote to the loop's self-pipe can already have been drained in this iteration
            # (asyncio reads the pipe after the poll that reported an earlier byte).
            deliver_interrupt(self)
        loop = self.loop
        busy = self.ready or self.calls
        if busy or (loop is not None and loop._ready):  # type: ignore[attr-defined]
            return 0
        deadline = self.next_deadline()
        if deadline is not None:
            # At most a day per poll, as asyncio does: epoll and poll refuse a timeout past
            # about 24.8 days (OverflowError), and a longer sleep just polls again.
            wait = min(max(0.0, deadline - self.time()), MAX_POLL_TIMEOUT)
            timeout = wait if timeout is None else min(timeout, wait)
        if timeout is None:
            return self._idle_timeout()  # (None, or when to look for a deadlock again)
        mock = self.mock_clock
        if mock is not None and timeout > 0:
            real = mock.real_timeout(timeout)
            # No jump while work runs in threads (`to_thread`, the loop's executor): its result
            # comes in real time, and jumping past a timeout meanwhile would fire it at once.
            if mock.autojump_threshold < real and not self._threads_at_work():
                self._jump_to = self.time() + timeout
                real = mock.autojump_threshold
            if real == math.inf:
                # The clock moves only when jumped: its timers cannot fire by themselves.
                return self._stalled_clock_timeout()  # (None, or when to look again)
            return min(real, MAX_POLL_TIMEOUT)
        return timeout

    def _threads_at_work(self) -> bool:
        """Whether a `to_thread` call or a job of the loop's executor is under way."""
        return self.threads_in_flight > 0 or getattr(self.loop, "_executor_jobs", 0) > 0

    def _after_poll(self, had_events: bool) -> None:
        # The loop came back: the blocking detector's thread clears the pulse at each sample (on
        # the thread object, see the note in Hub._hub_init).
        self.thread.unknot_pulse = True  # type: ignore[attr-defined]
        jump_to = self._jump_to
        if jump_to is not None:
            self._jump_to = None
            if not had_events and jump_to > self.time():
                self.mock_clock.jump(jump_to - self.time())
        if self.timers:
            self._expire_timers()
        if self.interrupt_pending:
            deliver_interrupt(self)
        if self.ready or self.calls:
            self._run_ready()

    def _signal_handler_raised(self, exc: BaseException) -> None:
        """The poll raised ``exc``: see `unknot._core._interrupt.signal_handler_raised`."""
        signal_handler_raised(self, exc, POLLING_FILES)

    def _check_not_asyncio(self, fd: int, key_map: Any) -> None:
        if fd in key_map:
            raise RuntimeError(
                f"fd {fd} is watched by the asyncio loop (add_reader/add_writer or a transport); "
                "a fiber cannot wait on it at the same time"
            )

    def _refuse_fiber_fd(self, fd: int) -> None:
        """asyncio wants to watch ``fd``: allowed only if no fiber is waiting on it."""
        rec = self.fds.get(fd)
        if rec is None:
            return
        if self._has_waiters(rec):
            raise RuntimeError(
                f"fd {fd} is being waited on by a fiber; asyncio cannot watch it at the same time"
            )
        del self.fds[fd]
        if rec.armed:
            self._disarm(rec)

    # After a fork (`unknot._core._fork`): the backends' kernel objects.

    def _reset_backend_after_fork(self) -> None:
        """In a child forked while this hub ran in the forking thread: a kernel object of its
        own (the parent's is shared with the child), with none of the parent's registrations
        (asyncio's are dropped; the loop registers its new self-pipe again)."""
        self._reset_fd_records_after_fork()

    def _close_after_fork(self) -> None:
        """In a child forked while this hub ran in another thread (not in the child): close
        the child's copy of its kernel object (that of the parent stays open)."""
