"""The hybrid locks `unknot.patch()` installs as ``threading.Lock`` / ``threading.RLock``:
what they share with the stdlib's ``_thread`` locks (arguments, errors, repr)."""

from __future__ import annotations

import _thread
import re
from typing import Any

import pytest

from unknot import _hybrid

BAD_ACQUIRE_ARGS: list[tuple[Any, ...]] = [(False, 1), (True, -5), (True, "x"), (True, 1e300)]


def _error(fn: Any, *args: Any) -> tuple[type, str] | None:
    try:
        fn(*args)
    except Exception as e:
        return type(e), str(e)
    return None


@pytest.mark.parametrize("make", [_hybrid.Lock, _hybrid.RLock], ids=["Lock", "RLock"])
@pytest.mark.parametrize("args", BAD_ACQUIRE_ARGS)
def test_acquire_rejects_what_the_stdlib_rejects(make: Any, args: tuple[Any, ...]) -> None:
    # Checked before the lock is taken (it is free here), with the running Python's errors.
    expected = _error(_thread.allocate_lock().acquire, *args)
    assert expected is not None
    lock = make()
    assert _error(lock.acquire, *args) == expected
    assert lock.acquire(False), "a rejected call must not leave the lock taken"
    if make is _hybrid.RLock:  # also when the caller already owns it
        assert _error(lock.acquire, *args) == expected


@pytest.mark.parametrize("make", [_hybrid.Lock, _hybrid.RLock], ids=["Lock", "RLock"])
def test_repr_has_the_stdlib_form(make: Any) -> None:
    # As _thread's locks: "<unlocked _thread.lock object at 0x...>" (CPython's lock_tests).
    lock = make()
    assert re.fullmatch(
        r"<unlocked unknot\._hybrid\.R?Lock object (.*)?at 0x[0-9a-f]+>", repr(lock)
    )
    lock.acquire()
    assert re.fullmatch(r"<locked unknot\._hybrid\.R?Lock object (.*)?at 0x[0-9a-f]+>", repr(lock))
