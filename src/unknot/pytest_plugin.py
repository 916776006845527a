"""pytest plugin (registered automatically when unknot is installed).

Mark a test with ``@pytest.mark.unknot`` and it runs as the root fiber of a fresh hub, via
`unknot.run`: it can spawn fibers, block, and use every unknot API. The ``autojump_clock``
fixture gives the hub a `MockClock` whose time jumps whenever all fibers wait, so tests of
timeouts finish instantly; ``mock_clock`` gives one that only moves when you call ``jump``.

Under the plugin the blocking detector (`unknot.start_monitor`) is on by default: a test whose
fiber blocks the loop for more than 100 ms logs a warning naming the line (``UNKNOT_MONITOR=0``
turns it off). Its thread starts with the first hub, not with pytest.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

from .testing import MockClock


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "unknot: run the test function as the root fiber of a fresh unknot hub"
    )
    from . import lowlevel

    lowlevel.enable_monitor_by_default()


@pytest.fixture
def autojump_clock() -> MockClock:
    """A `MockClock` that jumps to the next deadline as soon as every fiber is waiting."""
    return MockClock(autojump_threshold=0)


@pytest.fixture
def mock_clock() -> MockClock:
    """A `MockClock` that moves only when the test calls ``jump``."""
    return MockClock()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker("unknot") is None:
        return None
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        raise TypeError("@pytest.mark.unknot runs plain functions, not coroutines")
    import unknot

    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    clock = next((v for v in kwargs.values() if isinstance(v, MockClock)), None)
    # (Bound first: an argument named ``clock`` or ``fn`` is the test's, not run's.)
    unknot.run(functools.partial(pyfuncitem.obj, **kwargs), clock=clock)
    return True
