"""The events of HTTP/1.1 messages, and the sentinels ``NEED_DATA`` and ``PAUSED``.

A message is a head event (:class:`RequestHead`, :class:`ResponseHead`), zero or more
:class:`Data` events, then :class:`EndOfMessage`; a server may send :class:`InformationalResponse`
events (1xx) before its :class:`ResponseHead`. :class:`ConnectionClosed` means the peer's side of
the connection ended cleanly.

Headers travel as ``list[tuple[bytes, bytes]]``: names lowercased, values as received, repeats
and order kept. The classes are slotted and compare by value; they are the same on the receiving
side (built by the parser) and the sending side (``Connection.send``).

Their arguments are checked alike in the pure and the compiled build: one of a wrong type (a
float status, a ``str`` method, an ``int`` for a flag...) is a ``TypeError`` (subclasses pass:
an ``IntEnum`` status, a ``bytes`` subclass). Compiled, the call itself refuses it; interpreted,
``__init__`` does, with one cheap test in the common case.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar, Final, NoReturn

from ..._native import mypyc_attr
from ._errors import LocalProtocolError

#: A header (or trailer) block: ``(name, value)`` pairs, names lowercased on receipt.
HeaderList = list[tuple[bytes, bytes]]


@mypyc_attr(allow_interpreted_subclasses=True)
class Event:
    """Base of the protocol events: value equality and a readable repr over ``FIELDS``.

    ``FIELDS`` names each class's attributes (its ``__slots__`` too): a class constant, because
    the compiled build's classes have no ``__slots__`` to read at run time."""

    __slots__: tuple[str, ...] = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    def __hash__(self) -> int:
        return _hash_key((type(self), *(_freeze(getattr(self, n)) for n in self.FIELDS)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({fields})"


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: How deep event hashes may nest (an event in a header list of an event...) before a
#: RecursionError: an event that contains itself nests without end.
MAX_HASH_DEPTH: Final = 100

#: Per thread: how deep the event hashes running now are nested (``depth``).
_HASHING: Final = threading.local()


def _hash_key(key: tuple[Any, ...]) -> int:
    """``hash(key)`` for an event's ``__hash__``: a ``RecursionError`` once nested deeper than
    ``MAX_HASH_DEPTH`` events.

    An event can contain itself (a list in one of its fields holds it), and then hashing it
    recurses without end. Interpreted, Python's recursion limit stops that; compiled, the
    recursion runs in C (the tuple's hash calls the event's, which hashes a tuple...), where
    nothing counts it, and the process crashed when the C stack ran out. The depth is kept per
    thread: threads hashing at once do not add up."""
    depth: int = getattr(_HASHING, "depth", 0)
    if depth >= MAX_HASH_DEPTH:
        raise RecursionError("events nested too deep to hash (does one contain itself?)")
    _HASHING.depth = depth + 1
    try:
        return hash(key)
    finally:
        _HASHING.depth = depth


def _refuse_arguments(owner: str, args: tuple[tuple[str, Any, type], ...]) -> None:
    """The check an event's ``__init__`` makes when its quick one fails: a ``TypeError`` for
    the first of ``args``, ``(name, value, type)``, whose value is not of its type; subclasses
    pass (an ``int`` takes a ``bool``: so does the compiled build)."""
    for name, value, kind in args:
        if not isinstance(value, kind):
            _wrong_type(owner, name, value, kind)


def _wrong_type(owner: str, name: str, value: Any, kind: type) -> NoReturn:
    raise TypeError(f"{owner}: {name} must be {kind.__name__}, not {type(value).__name__}")


@mypyc_attr(allow_interpreted_subclasses=True)
class RequestHead(Event):
    """A request line and its headers.

    ``method`` and ``target`` are the raw bytes of the request line; ``http_version`` is
    ``b"1.1"`` or ``b"1.0"``. On received requests the parser also fills in:
    ``keep_alive`` (the connection may carry another request after this one: HTTP/1.1 without
    ``Connection: close``, or HTTP/1.0 with ``Connection: keep-alive`` and without ``close``),
    ``expect_continue`` (an HTTP/1.1 ``Expect: 100-continue``: the client may wait for a 100
    before sending the body) and ``upgrade`` (a CONNECT: nothing after it is parsed. An
    ``Upgrade`` offered with ``Connection: upgrade`` leaves it false: this layer never switches
    protocols and ignores it, see ``ServerConnection``).
    """

    FIELDS = (
        "method",
        "target",
        "headers",
        "http_version",
        "keep_alive",
        "expect_continue",
        "upgrade",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        http_version: bytes = b"1.1",
        keep_alive: bool = True,
        expect_continue: bool = False,
        upgrade: bool = False,
    ) -> None:
        # (One test for the common case; it runs for every request parsed.)
        if not (
            type(method) is type(target) is type(http_version) is bytes
            and type(headers) is list
            and (keep_alive is True or keep_alive is False)
            and (expect_continue is False or expect_continue is True)
            and (upgrade is False or upgrade is True)
        ):
            _refuse_arguments(
                "RequestHead",
                (
                    ("method", method, bytes),
                    ("target", target, bytes),
                    ("headers", headers, list),
                    ("http_version", http_version, bytes),
                    ("keep_alive", keep_alive, bool),
                    ("expect_continue", expect_continue, bool),
                    ("upgrade", upgrade, bool),
                ),
            )
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade


@mypyc_attr(allow_interpreted_subclasses=True)
class InformationalResponse(Event):
    """A 1xx interim response (100 Continue, 103 Early Hints...); the final one follows."""

    FIELDS = ("status", "headers", "reason", "http_version")
    __slots__ = FIELDS

    def __init__(
        self, status: int, headers: HeaderList, reason: bytes = b"", http_version: bytes = b"1.1"
    ) -> None:
        if not (
            type(status) is int
            and type(headers) is list
            and type(reason) is type(http_version) is bytes
        ):
            _refuse_arguments(
                "InformationalResponse", _head_arguments(status, headers, reason, http_version)
            )
        self.status = status
        self.headers = headers
        self.reason = reason
        self.http_version = http_version


@mypyc_attr(allow_interpreted_subclasses=True)
class ResponseHead(Event):
    """A final response's status line and headers (status 200-599).

    On received responses ``keep_alive`` says whether the server keeps the connection open
    after this response (no ``Connection: close``, and a body that does not end at EOF).
    """

    FIELDS = ("status", "headers", "reason", "http_version", "keep_alive")
    __slots__ = FIELDS

    def __init__(
        self,
        status: int,
        headers: HeaderList,
        reason: bytes = b"",
        http_version: bytes = b"1.1",
        keep_alive: bool = True,
    ) -> None:
        if not (
            type(status) is int
            and type(headers) is list
            and type(reason) is type(http_version) is bytes
            and (keep_alive is True or keep_alive is False)
        ):
            args = _head_arguments(status, headers, reason, http_version)
            _refuse_arguments("ResponseHead", (*args, ("keep_alive", keep_alive, bool)))
        self.status = status
        self.headers = headers
        self.reason = reason
        self.http_version = http_version
        self.keep_alive = keep_alive


def _head_arguments(
    status: Any, headers: Any, reason: Any, http_version: Any
) -> tuple[tuple[str, Any, type], ...]:
    """The arguments a response head checks, for `_refuse_arguments`."""
    return (
        ("status", status, int),
        ("headers", headers, list),
        ("reason", reason, bytes),
        ("http_version", http_version, bytes),
    )


def as_bytes(data: Any) -> bytes:
    """``data``, a body or a piece of one that is not ``bytes``, as ``bytes``: a bytes-like
    object (``bytearray``, ``memoryview``, any buffer) is copied, all its bytes (a
    ``memoryview`` of wider items too); anything else (``str``, ``int``, None...) is a
    ``LocalProtocolError``. Callers test ``type(data) is not bytes`` first: bytes need nothing.
    """
    if isinstance(data, (str, int)):  # (bytes(5) would be five NUL bytes)
        raise LocalProtocolError(f"a body is bytes-like, not {type(data).__name__}")
    try:
        return bytes(memoryview(data))
    except TypeError:
        raise LocalProtocolError(f"a body is bytes-like, not {type(data).__name__}") from None


@mypyc_attr(allow_interpreted_subclasses=True)
class Data(Event):
    """A piece of a message body, with the transfer framing (chunk sizes) removed.

    ``data`` is ``bytes``; a bytes-like object given (``bytearray``, ``memoryview``) is
    copied into ``bytes``, anything else is a ``LocalProtocolError``."""

    FIELDS = ("data",)
    __slots__ = FIELDS

    # (``Any``: a bytes-like object is taken, and a wrong type reaches the check in both builds;
    # the compiled one would refuse anything but bytes at the call.)
    def __init__(self, data: Any) -> None:
        self.data: bytes = data if type(data) is bytes else as_bytes(data)


@mypyc_attr(allow_interpreted_subclasses=True)
class EndOfMessage(Event):
    """The end of a message body; ``trailers`` holds the trailer fields of a chunked body."""

    FIELDS = ("trailers",)
    __slots__ = FIELDS

    def __init__(self, trailers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.trailers = trailers

    def __eq__(self, other: object) -> bool:
        if type(other) is not EndOfMessage:
            return NotImplemented
        return list(self.trailers) == list(other.trailers)

    def __hash__(self) -> int:
        return _hash_key((EndOfMessage, tuple(self.trailers)))


@mypyc_attr(allow_interpreted_subclasses=True)
class ConnectionClosed(Event):
    """The peer closed its sending side cleanly, between messages (or after a message whose
    body runs until the connection closes)."""

    __slots__ = ()


#: The event every message without trailers ends with (shared: events are not to be mutated).
END_OF_MESSAGE: Final = EndOfMessage()


class NeedData:
    """Type of :data:`NEED_DATA`: nothing to hand out until more bytes are received."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


class Paused:
    """Type of :data:`PAUSED`: the peer's message is complete; the next one (even if its bytes
    are already here) is handed out only after this side finished its own message."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PAUSED"


NEED_DATA: Final = NeedData()
PAUSED: Final = Paused()
