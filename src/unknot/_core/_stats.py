"""`stats`: a hub's counters and gauges, read when asked (the hub keeps only two counters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _thread_pool
from ._lookup import get_hub
from ._monitor import hub_threshold, lag_samples

if TYPE_CHECKING:
    from ._hub import Hub


@dataclass(frozen=True, repr=False)
class LoopStats:
    """A snapshot of one hub, from `unknot.stats`.

    The loop-lag fields are measured by the blocking detector's thread (a callback posted to the
    loop every quarter second, timed until it runs): they are None while the detector is off.
    """

    #: The name of the OS thread running the hub.
    thread: str
    #: Fibers alive (started or not, not finished).
    fibers: int
    #: Fibers ready to run now.
    ready: int
    #: File descriptors watched: by fibers (unknot's sockets keep theirs registered) and by
    #: asyncio (transports, ``add_reader``).
    fds: int
    #: Fibers waiting on an fd right now.
    fd_waiters: int
    #: Timers pending: fiber sleeps and timeouts, plus asyncio's ``call_later`` handles.
    timers: int
    #: `to_thread` calls of this hub in flight.
    threads_in_flight: int
    #: Jobs queued in unknot's thread pool and not started yet (all hubs share the pool).
    pool_queue: int
    #: Loop-lag samples taken (the percentiles below are over the latest 1024).
    lag_samples: int
    lag_p50: float | None
    lag_p90: float | None
    lag_p99: float | None
    lag_max: float | None
    #: The blocking detector's threshold for this hub (seconds), None while it does not watch
    #: it: its loop's ``slow_callback_duration`` when asyncio's debug mode turned it on for the
    #: hub (``loop.set_debug(True)``), else the process-wide threshold.
    monitor_threshold: float | None

    def __repr__(self) -> str:
        return f"<LoopStats {self}>"

    def __str__(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.2f} ms"

        return (
            f"hub in thread {self.thread!r}: {self.fibers} fibers ({self.ready} ready), "
            f"{self.fds} fds watched ({self.fd_waiters} waited on), {self.timers} timers, "
            f"{self.threads_in_flight} to_thread calls in flight, {self.pool_queue} queued in "
            f"the thread pool; loop lag p50 {ms(self.lag_p50)}, p90 {ms(self.lag_p90)}, "
            f"p99 {ms(self.lag_p99)}, max {ms(self.lag_max)} ({self.lag_samples} samples)"
        )


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stats(hub: Hub | None = None) -> LoopStats:
    """Counters and gauges of ``hub`` (default: the current one). `RuntimeError` outside a hub."""
    if hub is None:
        hub = get_hub()
        if hub is None:
            raise RuntimeError("unknot.stats() needs a hub: call it in a fiber, or pass hub=")
    loop: Any = hub.loop
    asyncio_fds = len(getattr(hub, "_fd_to_key", ()))  # our own loops: the hub is the selector
    # asyncio's pending timers: its heap keeps the cancelled ones until it sweeps them, and
    # counts them (``_timer_cancelled_count``, in every asyncio loop since 3.4).
    asyncio_timers = (
        max(0, len(getattr(loop, "_scheduled", ())) - getattr(loop, "_timer_cancelled_count", 0))
        if loop is not None
        else 0
    )
    pool = _thread_pool._pool
    lags = lag_samples(hub)
    ordered = sorted(lags) if lags else []
    return LoopStats(
        thread=hub.thread.name,
        fibers=len(hub.fibers),
        ready=len(hub.ready),
        fds=len(hub.fds) + asyncio_fds,
        fd_waiters=hub.fd_waiters,
        timers=max(0, len(hub.timers) - getattr(hub, "_cancelled_timers", 0)) + asyncio_timers,
        threads_in_flight=hub.threads_in_flight,
        pool_queue=pool._work_queue.qsize() if pool is not None else 0,
        lag_samples=len(ordered),
        lag_p50=_percentile(ordered, 0.5) if ordered else None,
        lag_p90=_percentile(ordered, 0.9) if ordered else None,
        lag_p99=_percentile(ordered, 0.99) if ordered else None,
        lag_max=ordered[-1] if ordered else None,
        monitor_threshold=hub_threshold(hub),
    )
