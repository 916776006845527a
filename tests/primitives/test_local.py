"""unknot.local: one namespace per fiber, threading.local's subclassing rules, entries that die
with their fiber."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import pytest

import unknot

pytestmark = pytest.mark.timeout(30)


@pytest.mark.unknot
def test_each_fiber_sees_only_its_own_values() -> None:
    data = unknot.local()
    data.x = "root"
    seen: dict[int, Any] = {}

    def child(i: int) -> None:
        seen[i] = getattr(data, "x", None)  # a new fiber starts empty
        data.x = i
        unknot.sleep(0.001 * (5 - i))  # the others set theirs meanwhile
        assert data.x == i

    with unknot.TaskGroup() as tg:
        for i in range(5):
            tg.spawn(child, i)
    assert seen == {i: None for i in range(5)}
    assert data.x == "root"
    with pytest.raises(AttributeError):
        unknot.spawn(lambda: data.x).join()


@pytest.mark.unknot
def test_dict_and_delattr() -> None:
    data = unknot.local()
    data.a = 1
    assert data.__dict__ == {"a": 1}
    del data.a
    assert not hasattr(data, "a")
    with pytest.raises(AttributeError):
        del data.a
    with pytest.raises(AttributeError):
        data.__dict__ = {}  # type: ignore[misc]
    assert unknot.spawn(lambda: data.__dict__).join() == {}


class Settings(unknot.local):
    created = 0
    limit = 10  # a class attribute: the default until a fiber sets its own

    def __init__(self, colour: str, *, size: int) -> None:
        Settings.created += 1
        self.colour = colour
        self.size = size

    @property
    def label(self) -> str:
        return f"{self.colour}/{self.size}"

    @label.setter
    def label(self, value: str) -> None:
        self.colour, size = value.split("/")
        self.size = int(size)

    def grow(self) -> int:
        self.size += 1
        return self.size

    def __getattr__(self, name: str) -> str:
        return f"no {name}"


@pytest.mark.unknot
def test_subclass_init_runs_once_per_fiber_with_the_constructor_arguments() -> None:
    Settings.created = 0
    s = Settings("red", size=1)
    assert Settings.created == 1 and s.label == "red/1"
    s.grow()
    s.label = "blue/7"
    assert (s.colour, s.size, s.limit) == ("blue", 7, 10)
    s.limit = 3

    def child() -> tuple[str, int, int]:
        return s.label, s.grow(), s.limit  # fresh values from __init__

    assert unknot.spawn(child).join() == ("red/1", 2, 10)
    assert Settings.created == 2
    assert (s.label, s.limit, s.missing) == ("blue/7", 3, "no missing")
    assert isinstance(s, Settings) and s.__class__ is Settings


def test_arguments_without_an_init_are_refused() -> None:
    with pytest.raises(TypeError):
        unknot.local(1)


@pytest.mark.unknot
def test_a_failing_init_in_a_fiber_is_retried_next_time() -> None:
    attempts: list[int] = []

    class Flaky(unknot.local):
        def __init__(self) -> None:
            attempts.append(1)
            if len(attempts) == 2:
                raise RuntimeError("init failed")
            self.ok = True

    flaky = Flaky()

    def child() -> bool:
        with pytest.raises(RuntimeError):
            flaky.ok  # noqa: B018
        return flaky.ok

    assert unknot.spawn(child).join() is True
    assert len(attempts) == 3


class Payload:
    pass


@pytest.mark.unknot
def test_entries_die_with_their_fiber() -> None:
    data = unknot.local()
    refs: list[weakref.ref[Payload]] = []

    def child() -> None:
        payload = Payload()
        refs.append(weakref.ref(payload))
        data.payload = payload

    f = unknot.spawn(child)
    f.join()
    namespaces = data._local__namespaces  # type: ignore[attr-defined]
    assert len(namespaces.dicts) == 2  # the root's and the child's
    del f
    gc.collect()
    assert refs[0]() is None
    assert len(namespaces.dicts) == 1


@pytest.mark.unknot
def test_a_dropped_local_frees_its_values_in_live_fibers() -> None:
    data = unknot.local()
    payload = Payload()
    data.payload = payload
    ref = weakref.ref(payload)
    del payload, data
    gc.collect()
    assert ref() is None


@pytest.mark.unknot
def test_children_do_not_inherit_like_contextvars_do() -> None:
    data = unknot.local()
    data.user = "ann"
    assert unknot.spawn(lambda: hasattr(data, "user")).join() is False


def test_outside_fibers_each_thread_has_its_own() -> None:
    data = unknot.local()
    data.v = "main"
    seen: list[Any] = []

    def body() -> None:
        seen.append(getattr(data, "v", None))
        data.v = "thread"

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [None] and data.v == "main"
