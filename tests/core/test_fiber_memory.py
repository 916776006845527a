"""What a fiber keeps for its life, kept small (docs/internals.md, "Memory per idle connection"):
a name made when first read, one shared spawn-site tuple, no list for a single done-callback,
no context copy when the spawner's context is empty, and no bound ``run`` per greenlet."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import pytest

import unknot
from unknot import lowlevel

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_spawn_named_makes_the_name_when_first_read() -> None:
    seen: list[Any] = []
    addr = ("127.0.0.1", 40123)

    def main() -> None:
        f = lowlevel.spawn_named(lambda: None, (), "conn-{}", addr)
        # nothing formatted yet: the template and the argument (kept anyway) only
        seen.append((f._name, f._name_arg))
        seen.append(f.name)
        seen.append((f._name, f._name_arg is lowlevel.Fiber.__init__.__defaults__[0]))
        f.join()

    unknot.run(main)
    assert seen[0] == ("conn-{}", addr)
    assert seen[1] == f"conn-{addr}"
    assert seen[2] == (f"conn-{addr}", True)  # made once, and the argument let go


def test_a_named_fibers_name_can_be_replaced_before_it_is_read() -> None:
    def main() -> str:
        f = lowlevel.spawn_named(lambda: None, (), "conn-{}", 7)
        f.name = "renamed"
        f.join()
        return f.name

    assert unknot.run(main) == "renamed"


def test_a_lazy_name_is_what_repr_dumps_instruments_and_logs_show(
    caplog: pytest.LogCaptureFixture,
) -> None:
    names: list[str] = []

    class Spawns(lowlevel.Instrument):
        def fiber_spawned(self, fiber: lowlevel.Fiber) -> None:
            names.append(fiber.name)

    def fail() -> None:
        unknot.sleep(0.01)
        raise ValueError("boom")

    def main() -> tuple[str, list[str]]:
        instrument = Spawns()
        lowlevel.add_instrument(instrument)
        try:
            f = lowlevel.spawn_named(fail, (), "conn-{}", ("10.0.0.1", 5))
            infos = [i.name for i in unknot.fibers()]
            text = repr(f)
            unknot.sleep(0.05)
        finally:
            lowlevel.remove_instrument(instrument)
        return text, infos

    with caplog.at_level(logging.ERROR, logger="unknot"):
        text, infos = unknot.run(main)
    name = "conn-('10.0.0.1', 5)"
    assert text == f"<Fiber {name} pending>"
    assert name in infos
    assert name in names
    assert any(f"Unhandled exception in fiber {name}" in r.getMessage() for r in caplog.records)


def test_fibers_spawned_from_one_line_share_their_spawn_site() -> None:
    def main() -> list[Any]:
        fibers = []
        for _ in range(3):
            fibers.append(unknot.spawn(lambda: None))
        for f in fibers:
            f.join()
        return [f._spawned_at for f in fibers]

    sites = unknot.run(main)
    assert sites[0][0] == __file__ and sites[0][2] == "main"
    assert sites[0] is sites[1] is sites[2]


def test_each_spawning_call_gets_its_own_line_looked_up_once() -> None:
    from unknot._core import _fiber

    def main() -> list[Any]:
        sites = []
        for _ in range(2):
            sites.append(unknot.spawn(int)._spawned_at)
            sites.append(unknot.spawn(int)._spawned_at)  # the next line: another site
        return sites

    first = main.__code__.co_firstlineno
    sites = unknot.run(main)
    assert [s[1] - first for s in sites] == [3, 4, 3, 4]  # the lines of the two calls
    assert sites[0] is sites[2] and sites[1] is sites[3]
    assert sites[0][0] == __file__ and sites[0][2] == "main"
    # Found again by its call (code and instruction), without a second line-table walk; an
    # entry whose code object is not this one (its id reused) is not taken for it.
    calls = [k for k, (code, _) in _fiber._SITE_OF_CALL.items() if code is main.__code__]
    assert len(calls) == 2
    stale = ("elsewhere.py", 1, "other")
    for k in calls:
        _fiber._SITE_OF_CALL[k] = (compile("pass", "elsewhere.py", "exec"), stale)
    assert unknot.run(main) == sites


def test_one_done_callback_is_kept_without_a_list_and_all_of_them_run() -> None:
    calls: list[str] = []

    def main() -> None:
        f = unknot.spawn(unknot.sleep, 0.01)
        f.add_done_callback(lambda _f: calls.append("a"))
        assert not isinstance(f._callbacks, list)
        b = lambda _f: calls.append("b")  # noqa: E731
        f.add_done_callback(b)
        f.add_done_callback(lambda _f: calls.append("c"))
        f.remove_done_callback(b)
        f.join()

        g = unknot.spawn(unknot.sleep, 0.01)
        d = lambda _f: calls.append("d")  # noqa: E731
        g.add_done_callback(d)
        g.remove_done_callback(d)
        g.join()

    unknot.run(main)
    assert calls == ["a", "c"]


def test_an_unretrieved_error_is_logged_when_its_only_callback_was_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> None:
        raise ValueError("nobody waits")

    def main() -> None:
        f = unknot.spawn(fail)
        cb = lambda _f: None  # noqa: E731
        f.add_done_callback(cb)
        f.remove_done_callback(cb)
        unknot.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="unknot"):
        unknot.run(main)
    assert any("Unhandled exception in fiber" in r.getMessage() for r in caplog.records)


def test_a_fiber_from_an_empty_context_gets_a_context_of_its_own() -> None:
    def child(out: list[str]) -> None:
        out.append(VAR.get())
        VAR.set("child")
        unknot.sleep(0.01)
        out.append(VAR.get())

    def main() -> tuple[list[str], list[str], str]:
        a: list[str] = []
        b: list[str] = []
        fa = unknot.spawn(child, a)
        fb = unknot.spawn(child, b)
        fa.join()
        fb.join()
        return a, b, VAR.get()

    # (unknot.run gives main a fresh copy of this, empty, context)
    assert unknot.run(main) == (["unset", "child"], ["unset", "child"], "unset")


def test_a_fiber_still_gets_a_copy_of_a_context_with_values() -> None:
    def child() -> tuple[str, str]:
        seen = VAR.get()
        VAR.set("child")
        return seen, VAR.get()

    def main() -> tuple[tuple[str, str], str]:
        VAR.set("parent")
        got = unknot.spawn(child).join()
        return got, VAR.get()

    assert unknot.run(main) == (("parent", "child"), "parent")


def test_fibers_share_one_run_function() -> None:
    # greenlet would make a bound ``run`` per fiber (64 bytes) and call it through C frames
    # its stack copy keeps while the fiber waits
    def main() -> bool:
        a, b = unknot.spawn(lambda: None), unknot.spawn(lambda: None)
        same = a.run is b.run
        a.join()
        b.join()
        return same

    assert unknot.run(main)
