"""pytest plugin (registered automatically when unknot is installed).

Mark a test with ``@pytest.mark.unknot`` and it runs as the root fiber of a fresh hub, via
`unknot.run`: it can spawn fibers, block, and use every unknot API. The ``autojump_clock``
fixture gives the hub a `MockClock` whose time jumps whenever all fibers wait, so tests of
timeouts finish instantly; ``mock_clock`` gives one that only moves when you call ``jump``.

A test that requests a clock fixture without the marker does not run in a fiber: it may start
a hub on the clock itself (``unknot.run(main, clock=autojump_clock)``). If no hub ran on the
clock, it was ignored (the test's sleeps took real time): the test fails, saying how to mark it.

A fiber that ends with an exception nobody retrieves during such a test (one marked, or one
requesting either clock fixture) fails the test, with the fiber's traceback in the report.
``@pytest.mark.unknot(background_errors="log")``, or the ini option
``unknot_background_errors = log`` for the whole run, leaves such errors logged only.

Under the plugin the blocking detector (`unknot.start_monitor`) is on by default: a test whose
fiber blocks the loop for more than 100 ms logs a warning naming the line (``UNKNOT_MONITOR=0``
turns it off). Its thread starts with the first hub, not with pytest.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Generator
from typing import Any

import pytest

from .testing import MockClock

#: The clock fixtures: a test requesting one is an unknot test even without the marker.
_FIXTURES = frozenset({"autojump_clock", "mock_clock"})
_MODES = ("fail", "log")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "unknot_background_errors",
        "unknot tests: 'fail' (default) fails a test in which a fiber ends with an exception "
        "nobody retrieved; 'log' only logs it",
        default="fail",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "unknot(background_errors='fail'): run the test function as the root fiber of a fresh "
        "unknot hub; background_errors='log' does not fail it for a fiber's unretrieved error",
    )
    from . import lowlevel

    lowlevel.enable_monitor_by_default()


class _FixtureClock(MockClock):
    """The clock fixtures' `MockClock`, which notes whether its time was ever read: a hub
    running on it reads it at every turn of its loop (see `_unused_clocks`)."""

    read = False

    def time(self) -> float:
        """The current virtual time (and a note that it was read)."""
        self.read = True
        return MockClock.time(self)


@pytest.fixture
def autojump_clock() -> MockClock:
    """A `MockClock` that jumps to the next deadline as soon as every fiber is waiting."""
    return _FixtureClock(autojump_threshold=0)


@pytest.fixture
def mock_clock() -> MockClock:
    """A `MockClock` that moves only when the test calls ``jump``."""
    return _FixtureClock()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker("unknot") is None:
        return None
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        raise TypeError("@pytest.mark.unknot runs plain functions, not coroutines")
    import unknot

    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    clock = _requested_clock(pyfuncitem)
    # (Bound first: an argument named ``clock`` or ``fn`` is the test's, not run's.)
    unknot.run(functools.partial(pyfuncitem.obj, **kwargs), clock=clock)
    return True


def _fixturenames(item: pytest.Item) -> list[str]:
    """The names of the fixtures ``item`` uses, once they are set up: its static ones
    (``item.fixturenames``: arguments, ``usefixtures``, autouse fixtures and their
    dependencies) and those a fixture asked for by name (``request.getfixturevalue``, which only
    the item's request knows of)."""
    request = getattr(item, "_request", None)
    if request is not None:
        return list(request.fixturenames)
    return list(getattr(item, "fixturenames", ()))


def _requested_clock(item: pytest.Function) -> MockClock | None:
    """The `MockClock` the test requested, however it did: as an argument, with
    ``@pytest.mark.usefixtures`` (on the test, its class or module), through a fixture that
    depends on one (autouse or not), or with ``request.getfixturevalue`` in a fixture. None if
    it requested none. The test fails if it requested two different ones: which of them its
    hub should run on is not for the plugin to guess."""
    found: dict[int, tuple[str, MockClock]] = {}
    request = getattr(item, "_request", None)
    for name in _fixturenames(item):
        if name in item.funcargs:
            value = item.funcargs[name]
        elif request is not None:
            value = request.getfixturevalue(name)  # (already set up: its cached value)
        else:
            continue
        if isinstance(value, MockClock):
            found.setdefault(id(value), (name, value))
    if len(found) > 1:
        which = ", ".join(sorted(name for name, _ in found.values()))
        pytest.fail(
            f"unknot: the test requests two different MockClocks ({which}): "
            "its hub can run on only one",
            pytrace=False,
        )
    return next(iter(found.values()))[1] if found else None


def _fixture_clocks(item: pytest.Item) -> list[tuple[str, _FixtureClock]]:
    """For a test not marked ``unknot``, once its fixtures are set up: the clock fixtures it
    requests itself (as an argument, or with ``usefixtures``), by name. Not one that only a
    fixture asks for (an autouse fixture of a conftest may hand a clock to every test, the
    unmarked ones included, which need not use it). Empty for a marked test (it runs on its
    clock) and for a clock fixture a conftest overrode."""
    if item.get_closest_marker("unknot") is not None:
        return []
    info = getattr(item, "_fixtureinfo", None)
    direct = set(getattr(info, "argnames", ()))
    for mark in item.iter_markers("usefixtures"):
        direct.update(mark.args)
    names = _FIXTURES.intersection(direct)
    if not names:
        return []
    funcargs = getattr(item, "funcargs", {})
    request = getattr(item, "_request", None)
    clocks = []
    for name in sorted(names):
        if name in funcargs:
            value = funcargs[name]
        elif request is not None:
            value = request.getfixturevalue(name)  # (already set up: its cached value)
        else:
            continue
        if isinstance(value, _FixtureClock):
            clocks.append((name, value))
    return clocks


def _unused_clocks(clocks: list[tuple[str, _FixtureClock]]) -> str | None:
    """Why a test not marked ``unknot`` fails, if no hub ran on a clock fixture it requested
    (of ``clocks``, from `_fixture_clocks`): it did not run in a fiber, and started no hub on
    the clock, which it then ignored (its sleeps took real time); else None."""
    unused = [name for name, clock in clocks if not clock.read]
    if not unused:
        return None
    which = " and ".join(unused)
    return (
        f"unknot: the test requests the {which} fixture, but no hub ran on that clock: it was "
        "ignored, and the test's sleeps and timeouts took real time (without the marker a test "
        "does not run in a fiber). Mark the test @pytest.mark.unknot to run it as a fiber on "
        f"that clock, or pass the clock to the hub it starts: unknot.run(main, clock={unused[0]})"
    )


class _UnretrievedErrors:
    """Notes the errors of fibers that ended with an exception nobody retrieved, as the core
    reports them (a `lowlevel.add_unretrieved_hook` hook: not the log's wording, which a logging
    configuration may filter), on one thread (the test's: its hub runs there).

    A fiber that fails while nobody waits for it is reported at once, from its own greenlet; the
    test may still retrieve the error later (``join`` the fibers one after the other, say), so
    such a fiber counts only if its error is still unretrieved when the test ends. One reported
    when it is garbage-collected (a done callback ignored its outcome) was never retrieved."""

    def __init__(self, thread: int) -> None:
        from greenlet import getcurrent

        from . import lowlevel

        self.thread = thread
        self.getcurrent = getcurrent
        self.fiber_info = lowlevel.fiber_info
        self.unretrieved_error = lowlevel.unretrieved_error
        self.ended: list[tuple[str, Any]] = []  # reported when they ended: look again at the end
        self.collected: list[tuple[str, BaseException]] = []  # reported when collected

    def __call__(self, fiber: Any, error: BaseException) -> None:
        if threading.get_ident() != self.thread:
            return
        filename, lineno, func = self.fiber_info(fiber).spawned_at
        where = f"fiber {fiber.name} (spawned at {filename}:{lineno} in {func})"
        if fiber is self.getcurrent() and self.unretrieved_error(fiber) is error:
            self.ended.append((where, fiber))
        else:  # (not the fiber itself: being collected; keep only its error)
            self.collected.append((where, error))

    def unretrieved(self) -> list[tuple[str, BaseException]]:
        """The errors nobody retrieved, in the order they were reported."""
        errors = list(self.collected)
        for where, fiber in self.ended:
            error = self.unretrieved_error(fiber)
            if error is not None:
                errors.append((where, error))
        return errors


def _background_errors(item: pytest.Item) -> str | None:
    """What to do with a fiber's unretrieved error in ``item``: "fail", "log", or None for a
    test that is not an unknot test."""
    marker = item.get_closest_marker("unknot")
    if marker is None and _FIXTURES.isdisjoint(_fixturenames(item)):
        return None
    mode = marker.kwargs.get("background_errors") if marker is not None else None
    if mode is None:
        mode = item.config.getini("unknot_background_errors") or "fail"
    if mode not in _MODES:
        pytest.fail(
            f"unknot: background_errors must be 'fail' or 'log', not {mode!r}", pytrace=False
        )
    return str(mode)


def _unretrieved_group(handler: _UnretrievedErrors) -> BaseExceptionGroup[BaseException] | None:
    """The errors ``handler`` saw that are still unretrieved, as one group (None: there are
    none)."""
    errors = handler.unretrieved()
    if not errors:
        return None
    if len(errors) == 1:
        message = f"{errors[0][0]} ended with an exception nobody retrieved"
    else:
        where = "; ".join(where for where, _ in errors)
        message = f"{len(errors)} fibers ended with an exception nobody retrieved: {where}"
    return BaseExceptionGroup(message, [error for _, error in errors])


def _watching(item: pytest.Item) -> _UnretrievedErrors | None:
    """For an unknot test that fails on its fibers' unretrieved errors, the hook that notes
    them, added with `lowlevel.add_unretrieved_hook` (the core still logs them: pytest shows
    them under "Captured log call"); else None."""
    if _background_errors(item) != "fail":
        return None
    from . import lowlevel

    handler = _UnretrievedErrors(threading.get_ident())
    lowlevel.add_unretrieved_hook(handler)
    return handler


def _unwatch(handler: _UnretrievedErrors) -> None:
    from . import lowlevel

    lowlevel.remove_unretrieved_hook(handler)


def _runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """A new-style wrapper of the test's call: a test that failed on its own keeps its own
    error (noted with `_unused_clocks`' hint, if any); one that passed fails with its fibers'
    unretrieved errors, or else if no hub ran on a clock fixture it requested."""
    clocks = _fixture_clocks(item)
    handler = _watching(item)
    if handler is None and not clocks:
        return (yield)
    try:
        result = yield
    except BaseException as e:
        hint = _unused_clocks(clocks)
        if hint is not None:
            e.add_note(hint)
        raise
    finally:
        if handler is not None:
            _unwatch(handler)
    error = _call_error(handler, clocks)
    if error is not None:
        raise error
    return result


def _call_error(
    handler: _UnretrievedErrors | None, clocks: list[tuple[str, _FixtureClock]]
) -> BaseException | None:
    """What a test that passed fails with: its fibers' unretrieved errors (noted with
    `_unused_clocks`' hint, if any), else that hint; None if neither."""
    group = _unretrieved_group(handler) if handler is not None else None
    hint = _unused_clocks(clocks)
    if group is not None:
        if hint is not None:
            group.add_note(hint)
        return group
    if hint is not None:
        return pytest.fail.Exception(hint, pytrace=False)
    return None


def _runtest_call_old_style(item: pytest.Item) -> Generator[None, Any, None]:
    """`_runtest_call` as an old-style wrapper, for pluggy before 1.1 (pytest 7)."""
    clocks = _fixture_clocks(item)
    handler = _watching(item)
    if handler is None and not clocks:
        yield
        return
    try:
        outcome = yield
    finally:
        if handler is not None:
            _unwatch(handler)
    if outcome.excinfo is not None:
        hint = _unused_clocks(clocks)
        if hint is not None:
            outcome.excinfo[1].add_note(hint)
        return
    error = _call_error(handler, clocks)
    if error is not None:
        if hasattr(outcome, "force_exception"):
            outcome.force_exception(error)
        else:
            raise error  # (pluggy 1.0: a wrapper's exception is the call's)


try:
    pytest_runtest_call = pytest.hookimpl(wrapper=True)(_runtest_call)
except TypeError:  # pluggy before 1.1
    pytest_runtest_call = pytest.hookimpl(hookwrapper=True)(_runtest_call_old_style)
