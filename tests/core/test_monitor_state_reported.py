"""What `unknot.stats` and the dump header say about the blocking detector: the threshold in
force for the hub (its loop's ``slow_callback_duration`` when asyncio's debug mode turned the
detector on for it), and whether it watches the hub, from the moment the hub starts (not from
the detector thread's first sample of it)."""

from __future__ import annotations

import asyncio
import sys

import pytest

import unknot
from unknot._core import _monitor
from unknot._core._introspect import format_dump

OFF = "blocking detector off"


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting decides the detector (no environment, no start/stop_monitor, no plugin
    default): only a loop's debug mode can turn it on."""
    if sys.flags.dev_mode:
        pytest.skip("python -X dev turns the detector on")
    for name in ("UNKNOT_MONITOR", "UNKNOT_DEBUG", "PYTHONASYNCIODEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_monitor, "_default_on", False)
    _monitor._monitor.stop()
    _monitor._monitor.explicit = False


def _in_debug_mode(slow: float) -> list[tuple[float | None, str]]:
    """(stats' threshold, dump header) right after ``loop.set_debug(True)``, then after
    ``set_debug(False)``."""
    got: list[tuple[float | None, str]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        hub = loop.hub  # type: ignore[attr-defined]
        loop.slow_callback_duration = slow
        loop.set_debug(True)
        got.append((unknot.stats(hub).monitor_threshold, format_dump(hub).splitlines()[0]))
        loop.set_debug(False)
        got.append((unknot.stats(hub).monitor_threshold, format_dump(hub).splitlines()[0]))

    with asyncio.Runner(loop_factory=unknot.new_event_loop) as runner:
        runner.run(main())
    return got


@pytest.mark.usefixtures("restore_monitor", "unconfigured")
def test_stats_report_the_threshold_a_loops_debug_mode_set() -> None:
    (on, on_header), (off, off_header) = _in_debug_mode(0.2)
    assert on == 0.2
    assert OFF not in on_header, on_header
    assert off is None
    assert OFF in off_header, off_header


@pytest.mark.usefixtures("restore_monitor", "unconfigured")
def test_a_loops_debug_mode_wins_over_the_default_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (Watched by default, as under the pytest plugin: the debug hub's own threshold is in
    # force, and what stats reports; back to the default once debug mode is off.)
    monkeypatch.setattr(_monitor, "_default_on", True)
    (on, _), (off, off_header) = _in_debug_mode(0.3)
    assert on == 0.3
    assert off == _monitor.DEFAULT_THRESHOLD
    assert OFF not in off_header, off_header


@pytest.mark.usefixtures("restore_monitor")
def test_the_dump_header_knows_the_detector_watches_a_hub_from_its_start() -> None:
    # The detector thread already runs (and samples every 50 ms at most): a hub started now is
    # watched at once, before the thread's next sample.
    unknot.start_monitor(0.5)
    headers: list[str] = []

    def main() -> None:
        headers.append(format_dump().splitlines()[0])
        unknot.stop_monitor()
        headers.append(format_dump().splitlines()[0])
        unknot.start_monitor(0.5)
        headers.append(format_dump().splitlines()[0])

    unknot.run(main)
    assert OFF not in headers[0], headers
    assert OFF in headers[1], headers
    assert OFF not in headers[2], headers


@pytest.mark.usefixtures("restore_monitor")
def test_stats_threshold_follows_start_and_stop() -> None:
    def main() -> list[float | None]:
        got = [unknot.stats().monitor_threshold]
        unknot.stop_monitor()
        got.append(unknot.stats().monitor_threshold)
        unknot.start_monitor(0.25)
        got.append(unknot.stats().monitor_threshold)
        return got

    unknot.start_monitor(0.5)
    assert unknot.run(main) == [0.5, None, 0.25]
