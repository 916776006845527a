"""`unknot.open`: regular-file I/O on the thread pool, so a fiber reading a file lets others run.

Regular files are always "ready" to the OS (``epoll`` refuses them), so a file read or write
blocks the thread however it is waited for. `open` (gevent's ``FileObjectThread``, aiofiles'
idea) returns a file object whose blocking methods run in a worker thread of unknot's pool
(`unknot.to_thread`) when called in a fiber, and directly outside fibers.

One operation at a time per file: calls from several fibers take turns on a fiber lock (they do
not occupy several worker threads), and a call left running in the pool by a cancellation is
waited for by the next one.

Cancellation: a call cancelled while it waits for its turn never runs, except ``close``, which
closes the file all the same (shielded), then raises `Cancelled`. One cancelled while it runs in
the pool raises `Cancelled` at once but finishes in the background: the data a read
returns is lost to the caller while the file position has moved past it; a write is done all
the same; ``readinto`` fills the buffer later. After a cancelled read, `seek` to a known
position before reading on. An `open` cancelled while the pool opens the file closes the file.
"""

from __future__ import annotations

import _thread
import builtins
import io as _io
from collections.abc import Callable, Iterable
from typing import Any

from greenlet import getcurrent

from ._sync import Lock
from .lowlevel import CancelScope, Fiber, checkpoint_if_cancelled, current, to_thread

# The OS lock itself, captured before unknot.patch() could make `threading.Lock` a hybrid one:
# these locks are only ever held by worker threads and code outside fibers.
_os_lock = _thread.allocate_lock


class CooperativeFile:
    """A file object (as `open` returns) whose blocking methods run on unknot's thread pool.

    Offloaded: ``read``, ``read1``, ``readinto``, ``readinto1``, ``readline``, ``readlines``,
    ``peek``, iteration (a ``readline`` per line), ``write``, ``writelines``, ``seek``,
    ``tell``, ``flush``, ``truncate``, ``close`` (also at the end of a ``with`` block). Other
    attributes (``fileno``, ``name``, ``mode``, ``closed``, ``encoding``, ``readable``...) are
    the underlying file's, used directly.
    """

    def __init__(self, file: Any) -> None:
        self._file = file
        self._turn = Lock()  # fibers take turns here, before the pool
        self._busy = _os_lock()  # held by the thread running an operation

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        if current() is None:
            with self._busy:
                return method(*args)
        with self._turn:
            return to_thread(self._run, method, args)

    def _run(self, method: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self._busy:  # (a call cancelled earlier may still be running: wait for it)
            return method(*args)

    # -- reading -----------------------------------------------------------------------------

    def read(self, size: int | None = -1) -> Any:
        """Read up to ``size`` characters or bytes (all that is left by default)."""
        return self._call(self._file.read, size)

    def read1(self, size: int = -1) -> bytes:
        """Binary files: read up to ``size`` bytes with at most one call to the OS."""
        return self._call(self._file.read1, size)

    def readinto(self, buffer: Any) -> int:
        """Binary files: read into ``buffer``; return the number of bytes read."""
        return self._call(self._file.readinto, buffer)

    def readinto1(self, buffer: Any) -> int:
        """Binary files: `readinto` with at most one call to the OS."""
        return self._call(self._file.readinto1, buffer)

    def peek(self, size: int = 0) -> bytes:
        """Buffered binary files: bytes ahead, without moving the position."""
        return self._call(self._file.peek, size)

    def readline(self, size: int | None = -1) -> Any:
        """Read one line (up to ``size`` characters or bytes); empty at the end of the file."""
        return self._call(self._file.readline, size)

    def readlines(self, hint: int = -1) -> list[Any]:
        """Read the remaining lines (stopping once ``hint`` characters or bytes were read)."""
        return self._call(self._file.readlines, hint)

    def __iter__(self) -> CooperativeFile:
        return self

    def __next__(self) -> Any:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    # -- writing and moving ------------------------------------------------------------------

    def write(self, data: Any) -> int:
        """Write ``data`` (str or bytes, by the mode); return how much was written."""
        return self._call(self._file.write, data)

    def writelines(self, lines: Iterable[Any]) -> None:
        """Write each of ``lines`` (collected first, in the calling fiber)."""
        self._call(self._file.writelines, list(lines))

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to ``offset`` (from the start, the current position or the end: ``whence``)."""
        return self._call(self._file.seek, offset, whence)

    def tell(self) -> int:
        """The current position."""
        return self._call(self._file.tell)

    def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` (default: the current position); return the new size."""
        return self._call(self._file.truncate, size)

    def flush(self) -> None:
        """Write out what is buffered."""
        self._call(self._file.flush)

    def close(self) -> None:
        """Flush and close the file (once it is closed, this does nothing).

        Closes also in a cancelled scope (a ``with`` block left by a cancellation closes its
        file, as the builtin's does), then raises `Cancelled` there, as trio's ``aclose``.
        """
        if current() is None:
            self._call(self._file.close)
            return
        with CancelScope(shield=True):
            self._call(self._file.close)
        checkpoint_if_cancelled()

    # -- the rest ------------------------------------------------------------------------------

    def __enter__(self) -> CooperativeFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # (only for names not defined above: fileno, name, mode, closed, encoding...)
        if name == "_file":  # (not set yet: an object being copied or unpickled)
            raise AttributeError(name)
        return getattr(self._file, name)

    def __repr__(self) -> str:
        return f"<unknot file {self._file!r}>"


def open(  # noqa: A001 - the builtin's name, on purpose (unknot.open)
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> CooperativeFile:
    """The builtin `open`, returning a `CooperativeFile` whose blocking methods run on the
    thread pool in fibers; opening the file runs there too."""
    args = (file, mode, buffering, encoding, errors, newline, closefd, opener)
    if current() is None:
        return CooperativeFile(builtins.open(*args))
    return CooperativeFile(_open_in_pool(args))


def _open_in_pool(args: tuple[Any, ...]) -> Any:
    """``builtins.open(*args)`` in a worker; a file opened for a caller cancelled meanwhile is
    closed (by the worker, or here if the worker finished first)."""
    hand_off = _os_lock()
    state: dict[str, Any] = {"abandoned": False, "file": None}

    def work() -> Any:
        f = builtins.open(*args)
        with hand_off:
            if not state["abandoned"]:
                state["file"] = f
                return f
        f.close()
        return None

    try:
        return to_thread(work)
    except BaseException:  # Cancelled, or Ctrl-C in the root fiber
        with hand_off:
            state["abandoned"] = True
            opened = state["file"]
        if opened is not None:
            opened.close()
        raise


# -- buffered and text files over sockets and pipes: fibers take turns, as threads do -------------


class _FiberTurns:
    """The turns of `FiberSafeReader` and the other fiber-safe files: the fibers of one hub
    that call the file's I/O methods at once take turns on an `unknot.Lock`, as threads take
    turns on the C file's own lock.

    That lock belongs to the OS thread: a second fiber of the same thread calling in while the
    first waits inside the file (for the socket or the pipe) got ``RuntimeError("reentrant
    call inside ...")``. The methods below take the turn first (one lock per hub and per
    direction: a fiber waiting to read does not hold up one writing), then call the C method.
    Outside fibers they call it directly: threads are the C lock's business. A fiber already
    holding the turn (``close`` calls ``flush``) goes on. Taking a free turn is no
    cancellation point (a cancelled fiber's ``close`` at the end of a ``with`` block closes);
    waiting for one held by another fiber is.

    The locks of the first hub that uses the file are instance attributes (``_turn_r``...,
    with ``_turn_hub``), read with one dict look-up per call; other hubs' are in ``_turns``.
    """

    def _turn(self, f: Fiber, attr: str) -> Lock:
        d = self.__dict__
        hub = f.hub
        if d.get("_turn_hub", hub) is hub:
            d["_turn_hub"] = hub
            new = d[attr] = Lock()
            return new
        turns = d.setdefault("_turns", {})
        key = (hub, attr)
        turn: Lock | None = turns.get(key)
        if turn is None:
            turn = turns[key] = Lock()
        return turn


def _in_turn(kinds: str, c_method: Callable[..., Any], name: str) -> Any:
    """A method calling ``c_method`` (the C file method ``name``) in the fiber's turn(s)."""
    if len(kinds) == 1:
        attr = "_turn_" + kinds

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            f = getcurrent()
            if type(f) is not Fiber:
                return c_method(self, *args, **kwargs)
            d = self.__dict__
            turn = d.get(attr)
            if turn is None or d["_turn_hub"] is not f.hub:
                turn = self._turn(f, attr)
            if turn._owner is f:  # (a method of this file calling another)
                return c_method(self, *args, **kwargs)
            if not turn.acquire(False):
                turn.acquire()
            try:
                return c_method(self, *args, **kwargs)
            finally:
                turn.release()

    else:
        attrs = ["_turn_" + k for k in kinds]

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            f = getcurrent()
            if type(f) is not Fiber:
                return c_method(self, *args, **kwargs)
            d = self.__dict__
            taken: list[Lock] = []
            try:
                for a in attrs:
                    turn = d.get(a)
                    if turn is None or d["_turn_hub"] is not f.hub:
                        turn = self._turn(f, a)
                    if turn._owner is not f:
                        if not turn.acquire(False):
                            turn.acquire()
                        taken.append(turn)
                return c_method(self, *args, **kwargs)
            finally:
                for turn in reversed(taken):
                    turn.release()

    method.__name__ = name
    method.__doc__ = f"As ``{c_method.__qualname__}``; fibers take turns (`_FiberTurns`)."
    return method


def _repr_as(base: type) -> Callable[[Any], str]:
    """The ``__repr__`` of the C file type ``base`` for its subclass: the C one names the
    object's own type, and code (CPython's own tests included) expects the stdlib's
    ``<_io.BufferedReader name=3>`` of a socket file or pipe."""
    shown = f"{base.__module__}.{base.__qualname__}"
    known: dict[Any, tuple[str, ...]] = {
        _io.BufferedReader: ("name",),
        _io.BufferedWriter: ("name",),
        _io.TextIOWrapper: ("name", "mode"),
    }
    fields = known.get(base)

    def __repr__(self: Any) -> str:
        if fields is None:  # (BufferedRWPair: object's repr)
            return f"<{shown} object at {id(self):#x}>"
        parts = [f"<{shown}"]
        for field in fields:
            try:
                value = getattr(self, field)
            except (AttributeError, ValueError):  # (as the C repr: absent, or detached)
                continue
            parts.append(f" {field}={value!r}")
        if base is _io.TextIOWrapper:
            parts.append(f" encoding={self.encoding!r}")
        return "".join(parts) + ">"

    return __repr__


def _fiber_safe(base: type, name: str, doc: str, kinds: dict[str, str]) -> type:
    """A subclass of the C file type ``base`` whose methods in ``kinds`` (name: the turns they
    take, "r" and/or "w") take the fiber's turn, shown as ``base`` is."""
    namespace: dict[str, Any] = {"__doc__": doc, "__module__": __name__, "__repr__": _repr_as(base)}
    for method_name, method_kinds in kinds.items():
        if hasattr(base, method_name):
            namespace[method_name] = _in_turn(method_kinds, getattr(base, method_name), method_name)
    return type(name, (_FiberTurns, base), namespace)


_READS = dict.fromkeys(
    ("read", "read1", "readinto", "readinto1", "readline", "readlines", "peek"), "r"
)
_WRITES = dict.fromkeys(("write", "writelines", "flush"), "w")
_BOTH = dict.fromkeys(("close", "detach", "seek", "tell", "truncate"), "wr")

FiberSafeReader: Any = _fiber_safe(
    _io.BufferedReader,
    "FiberSafeReader",
    "`io.BufferedReader` that several fibers may use at once (`_FiberTurns`).",
    dict.fromkeys((*_READS, *_WRITES, *_BOTH), "t"),  # (one turn: the C file has one lock)
)
FiberSafeWriter: Any = _fiber_safe(
    _io.BufferedWriter,
    "FiberSafeWriter",
    "`io.BufferedWriter` that several fibers may use at once (`_FiberTurns`).",
    dict.fromkeys((*_READS, *_WRITES, *_BOTH), "t"),  # (one turn: the C file has one lock)
)
FiberSafeRWPair: Any = _fiber_safe(
    _io.BufferedRWPair,
    "FiberSafeRWPair",
    "`io.BufferedRWPair` that several fibers may use at once (`_FiberTurns`): readers take "
    "turns, and so do writers, one reader and one writer at once.",
    {**_READS, **_WRITES, "close": "wr"},
)
FiberSafeText: Any = _fiber_safe(
    _io.TextIOWrapper,
    "FiberSafeText",
    "`io.TextIOWrapper` that several fibers may use at once (`_FiberTurns`): readers take "
    "turns, and so do writers.",
    {**{k: "r" for k in ("read", "readline", "readlines")}, **_WRITES, **_BOTH},
)
