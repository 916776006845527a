"""A dump reads the hub's tables (timer heap, fd records) once, not once per fiber: it stays
linear in the fibers (it was quadratic: 9 s for 20k fibers in timed sleeps, on the hub's
thread). Counted, not timed."""

from __future__ import annotations

import io
from typing import Any

import pytest

import unknot
from unknot import lowlevel, socket


class _CountingDict(dict[Any, Any]):
    """The hub's fd table, counting the scans of its records."""

    scans = 0

    def values(self) -> Any:  # type: ignore[override]
        type(self).scans += 1
        return super().values()


class _CountingList(list[Any]):
    """The hub's timer heap, counting the scans of its entries."""

    scans = 0

    def __iter__(self) -> Any:
        type(self).scans += 1
        return super().__iter__()


@pytest.mark.unknot
def test_one_dump_scans_the_timers_and_fds_once() -> None:
    hub = lowlevel.current_hub()
    assert hub is not None
    pairs = [socket.socketpair() for _ in range(50)]
    ev = unknot.Event()
    try:
        with unknot.TaskGroup() as tg:
            for i in range(100):
                tg.spawn(unknot.sleep, 1000, name=f"sleeper-{i:03}")
            for i in range(50):
                tg.spawn(ev.wait, 1000, name=f"waiter-{i:03}")
            readers = [tg.spawn(a.recv, 1, name=f"reader-{i:03}") for i, (a, _) in enumerate(pairs)]
            queued = tg.spawn(pairs[0][0].recv, 1, name="reader-queued")  # behind reader-000
            unknot.sleep(0)
            unknot.sleep(0)
            fds, timers = hub.fds, hub.timers
            # (No switch until they are put back: the dump runs without leaving this fiber.)
            hub.fds = _CountingDict(fds)
            hub.timers = _CountingList(timers)
            try:
                out = io.StringIO()
                unknot.dump(out, hub)
                infos = {i.name: i for i in unknot.fibers(hub)}
            finally:
                hub.fds, hub.timers = fds, timers
            # One scan per dump, and one for fibers(): the old code scanned once per fiber.
            assert _CountingDict.scans == 2
            assert _CountingList.scans == 2
            text = out.getvalue()
            assert text.count(" on sleep (") == 100
            assert text.count(" on Event.wait (timeout in ") == 50
            for i, (a, _) in enumerate(pairs):
                assert infos[f"reader-{i:03}"].waiting_on == f"fd {a.fileno()} (read)"
                assert infos[f"reader-{i:03}"].wait_object is not None
            assert infos["reader-queued"].waiting_on == f"fd {pairs[0][0].fileno()} (read)"
            sleeper = infos["sleeper-000"]
            assert sleeper.waiting_on is not None and sleeper.waiting_on.startswith("sleep (")
            assert sleeper.waiting_for is not None and sleeper.waiting_for >= 0.0
            tg.cancel()
        assert all(f.cancelled() for f in [*readers, queued])
    finally:
        for a, b in pairs:
            a.close()
            b.close()
