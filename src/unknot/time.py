"""Cooperative `time`: a drop-in mirror of the stdlib module whose `sleep` suspends only a fiber.

Every name of the stdlib module is here, unchanged, except `sleep`: in a fiber it is
`unknot.sleep` (other fibers run meanwhile, and it raises `unknot.Cancelled` in a cancelled
scope); anywhere else (threads, the hub, asyncio callbacks) it is the stdlib's `time.sleep`,
blocking the thread as usual. Its argument is checked exactly as the stdlib checks it, so a bad
value raises the same exception with the same message in a fiber as outside one.
"""

from __future__ import annotations

import time as _stdlib
from operator import index as _index
from time import *  # noqa: F403 - this module mirrors the whole stdlib module
from typing import Any

from greenlet import getcurrent

from .lowlevel import Fiber
from .lowlevel import sleep as _fiber_sleep

# The stdlib's sleep, captured before unknot.patch() can replace it in the time module.
_std_sleep = _stdlib.sleep

_NS_MAX = 2.0**63  # _PyTime_t is a signed 64-bit count of nanoseconds


def _overflow_message(value: Any, fallback: str) -> str:
    """The running interpreter's own message for a timeout out of range (it changes between
    Python versions); the stdlib's sleep raises it while converting, before sleeping."""
    try:
        _std_sleep(value)
    except OverflowError as e:
        return str(e)
    return fallback  # pragma: no cover - every CPython rejects these values


_FLOAT_OVERFLOW = _overflow_message(1e300, "timestamp out of range for platform time_t")
_INT_OVERFLOW = _overflow_message(2**70, "timestamp too large to convert to C _PyTime_t")


def _time_arg(value: Any, unit_ns: int, type_error: str | None = None) -> float:
    """Convert a timeout argument as CPython's ``_PyTime_FromSecondsObject`` does.

    ``unit_ns`` is the argument's unit in nanoseconds (10**9 for seconds, 10**6 for
    milliseconds). Returns the value in seconds; raises the stdlib's errors: ValueError for NaN,
    OverflowError out of range, TypeError (with ``type_error`` as its message if given) for
    anything but a float or an integer.
    """
    if isinstance(value, float):
        if value != value:
            raise ValueError("Invalid value NaN (not a number)")
        ns = value * unit_ns
        if not -_NS_MAX <= ns < _NS_MAX:
            raise OverflowError(_FLOAT_OVERFLOW)
        return ns / 1e9
    try:
        n = _index(value)
    except TypeError:
        if type_error is None:
            raise
        raise TypeError(type_error) from None
    if not -_NS_MAX <= n * unit_ns < _NS_MAX:
        raise OverflowError(_INT_OVERFLOW)
    return n * unit_ns / 1e9


def sleep(secs: float, /) -> None:
    """Delay for ``secs`` seconds: in a fiber, suspend only that fiber (`unknot.sleep`).

    Outside fibers this is the stdlib's `time.sleep`. ``sleep(0)`` in a fiber lets the other
    ready fibers run once.
    """
    try:
        f = getcurrent()
    except RuntimeError:  # "greenlet is being finalized": the interpreter exits, no fiber runs
        _std_sleep(secs)
        return
    if type(f) is not Fiber:
        _std_sleep(secs)
        return
    seconds = _time_arg(secs, 10**9)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _fiber_sleep(seconds)
