"""A hub made after `unknot.patch()` still polls the stdlib's epoll object, not the
cooperative `unknot.select.epoll` that the patch puts in `select` and `selectors`: that one
only adds a Python layer to every loop iteration, and the blocking detector took the idle hub,
waiting in that layer's frame, for a blocked one."""

from __future__ import annotations

import select
import textwrap

import pytest
from fiber_helpers import run_script

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll: Linux only")


def run_patched(code: str) -> str:
    return "|".join(run_script(textwrap.dedent(code)))


def test_the_hub_polls_the_stdlib_epoll() -> None:
    out = run_patched("""
        import asyncio, select, selectors
        import unknot
        unknot.patch()
        assert selectors.EpollSelector.__module__ == "unknot.selectors"

        def main():
            sel = asyncio.get_running_loop()._selector
            print(type(sel).__name__, type(sel._selector).__module__)

        unknot.run(main)
    """)
    assert out.split() == ["EpollHub", "select"]


def test_an_idle_patched_hub_is_not_reported_as_blocked() -> None:
    out = run_patched("""
        import time
        import unknot
        unknot.patch()
        reports = []
        unknot.start_monitor(0.05, reports.append)

        def main():
            unknot.sleep(0.4)  # the hub waits in its poll: idle, not blocked
            time.sleep(0.2)  # patched: a fiber's sleep, idle too

        unknot.run(main)
        print(len(reports), [(r.filename, r.function) for r in reports])
    """)
    assert out.split(maxsplit=1)[0] == "0", out
