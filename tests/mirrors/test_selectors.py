"""unknot.selectors: the stdlib selector classes over the cooperative primitives of unknot.select.

Every selector class runs on every hub backend (``backend`` fixture: epoll, poll, select), and
its results are compared with the same stdlib class's on the same registrations. Pipes and
socketpairs only; bounded in time.
"""

from __future__ import annotations

import os
import selectors as std
import socket
import time
from typing import Any

import pytest
from fiber_helpers import Ticker, later, outcome

import unknot
import unknot.selectors as us

pytestmark = pytest.mark.timeout(30)

CLASSES = [
    name for name in ("SelectSelector", "PollSelector", "EpollSelector") if hasattr(std, name)
]


def summary(ready: list[tuple[std.SelectorKey, int]]) -> list[tuple[Any, int, Any, int]]:
    """Comparable form of select() results: (fileobj, key events, data, ready events)."""
    return sorted(
        (
            (k.fileobj if isinstance(k.fileobj, int) else k.fd, k.events, k.data, ev)
            for k, ev in ready
        ),
        key=repr,
    )


@pytest.fixture(params=CLASSES)
def cls_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_classes_are_the_stdlib_classes_underneath() -> None:
    for name in CLASSES:
        mine = getattr(us, name)
        assert issubclass(mine, getattr(std, name)) and mine is not getattr(std, name)
        assert mine.select is getattr(std, name).select  # the stdlib's own select() code
    assert us.DefaultSelector is (
        us.EpollSelector if hasattr(std, "EpollSelector") else us.PollSelector
    )
    for name in dir(std):
        if not name.startswith("_"):
            assert hasattr(us, name), name


@pytest.mark.unknot
def test_select_suspends_only_the_fiber(backend: str, cls_name: str) -> None:
    r, w = os.pipe()
    try:
        with getattr(us, cls_name)() as sel:
            sel.register(r, us.EVENT_READ, "reader")
            ticker = Ticker()
            later(0.1, os.write, w, b"x")
            t0 = time.monotonic()
            [(key, events)] = sel.select()
            assert 0.05 < time.monotonic() - t0 < 1.0
            assert (key.fd, key.data, events) == (r, "reader", us.EVENT_READ)
            assert ticker.stop() >= 3
            os.read(r, 1)
            t0 = time.monotonic()
            assert sel.select(0.06) == []
            assert 0.05 < time.monotonic() - t0 < 1.0
            assert sel.select(0) == []
            assert sel.select(-1) == []
            fibers_fd = sel.fileno() if cls_name == "EpollSelector" else r
            assert fibers_fd not in unknot.current().hub.fds  # type: ignore[union-attr]
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.unknot
def test_results_match_stdlib(backend: str, cls_name: str) -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    r2, w2 = os.pipe()
    try:
        b.send(b"x")
        os.write(w, b"y")
        os.close(w2)
        selectors = (getattr(us, cls_name)(), getattr(std, cls_name)())
        for sel in selectors:
            sel.register(a, us.EVENT_READ | us.EVENT_WRITE, "a")
            sel.register(b, us.EVENT_READ, "b")
            sel.register(r, us.EVENT_READ)
            sel.register(w, us.EVENT_WRITE, 1)
            sel.register(r2, us.EVENT_READ)
        mine, theirs = selectors
        assert summary(mine.select()) == summary(theirs.select(0))
        for sel in selectors:
            sel.modify(a, us.EVENT_READ, "a2")
            sel.unregister(w)
        assert summary(mine.select(2)) == summary(theirs.select(0))
        assert mine.get_key(a).data == theirs.get_key(a).data == "a2"
        assert sorted(mine.get_map()) == sorted(theirs.get_map())
        for sel in selectors:
            sel.close()
        assert mine.get_map() is None
    finally:
        a.close()
        b.close()
        for fd in (r, w, r2):
            os.close(fd)


@pytest.mark.unknot
def test_errors_match_stdlib(backend: str, cls_name: str) -> None:
    r, w = os.pipe()

    try:
        for call in (
            lambda s: s.register(-1, us.EVENT_READ),
            lambda s: s.register(r, 0),
            lambda s: (s.register(r, us.EVENT_READ), s.register(r, us.EVENT_READ)),
            lambda s: s.unregister(w),
            lambda s: s.modify(w, us.EVENT_READ),
            lambda s: s.get_key(w),
            lambda s: s.register(object(), us.EVENT_READ),
        ):
            with getattr(us, cls_name)() as mine, getattr(std, cls_name)() as theirs:
                expected = outcome(call, theirs)
                assert isinstance(expected, tuple)
                got = outcome(call, mine)
                assert (got[0], got[1].replace(mine.__class__.__module__, "")) == (
                    expected[0],
                    expected[1].replace(theirs.__class__.__module__, ""),
                )
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.unknot
def test_empty_selector_sleeps_cooperatively(backend: str, cls_name: str) -> None:
    with getattr(us, cls_name)() as sel:
        ticker = Ticker()
        t0 = time.monotonic()
        assert sel.select(0.08) == []
        assert time.monotonic() - t0 >= 0.07
        assert ticker.stop() >= 3


@pytest.mark.unknot
def test_many_fibers_each_with_a_selector(backend: str, cls_name: str) -> None:
    pairs = [socket.socketpair() for _ in range(20)]

    def serve(sock: socket.socket) -> bytes:
        with getattr(us, cls_name)() as sel:
            sel.register(sock, us.EVENT_READ)
            assert sel.select(5)
            return sock.recv(10)

    try:
        with unknot.TaskGroup() as tg:
            fibers = [tg.spawn(serve, a) for a, _ in pairs]
            for i, (_, b) in enumerate(reversed(pairs)):
                later(0.005 * i, b.send, b"%d" % i)
        assert sorted(int(f.result()) for f in fibers) == list(range(20))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@pytest.mark.unknot
def test_cancelled_select_cleans_up(backend: str, cls_name: str) -> None:
    r, w = os.pipe()
    try:
        with getattr(us, cls_name)() as sel:
            sel.register(r, us.EVENT_READ)
            with unknot.move_on_after(0.05) as scope:
                sel.select()
            assert scope.cancelled_caught
            os.write(w, b"x")
            assert len(sel.select(1)) == 1
            hub = unknot.current().hub  # type: ignore[union-attr]
            assert r not in hub.fds and (cls_name != "EpollSelector" or sel.fileno() not in hub.fds)
    finally:
        os.close(r)
        os.close(w)


def test_outside_fibers_is_stdlib(cls_name: str) -> None:
    r, w = os.pipe()
    try:
        with getattr(us, cls_name)() as sel:
            sel.register(r, us.EVENT_READ, "d")
            t0 = time.monotonic()
            assert sel.select(0.05) == []
            assert time.monotonic() - t0 >= 0.04
            os.write(w, b"x")
            [(key, events)] = sel.select()
            assert (key.data, events) == ("d", us.EVENT_READ)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.unknot
def test_socket_closed_by_another_fiber(backend: str, cls_name: str) -> None:
    """An unknot socket closed while registered: the result is what the stdlib reports."""

    def result(sel: Any, timeout: float) -> Any:
        try:
            return sorted((key.data, events) for key, events in sel.select(timeout))
        except Exception as e:
            return (type(e), str(e))

    a, b = unknot.socket.socketpair()
    c, d = unknot.socket.socketpair()
    r, w = os.pipe()
    try:
        with getattr(std, cls_name)() as ref:
            ref.register(c, us.EVENT_READ, "sock")
            ref.register(r, us.EVENT_READ, "pipe")
            c.close()
            expected = result(ref, 0)
        later(0.01, b.send, b"x")
        assert a.recv(1) == b"x"  # the socket now has its hub record
        with getattr(us, cls_name)() as sel:
            sel.register(a, us.EVENT_READ, "sock")
            sel.register(r, us.EVENT_READ, "pipe")
            later(0.05, a.close)
            t0 = time.monotonic()
            assert result(sel, 0.3) == expected
            assert time.monotonic() - t0 < 1
    finally:
        for s in (a, b, d):
            s.close()
        os.close(r)
        os.close(w)
