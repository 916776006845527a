"""Header fields on the client side: `Headers` for a response, `header_pairs` for a request.

`Headers` is a read-only, case-insensitive multi-mapping over the ``(name, value)`` byte pairs the
protocol layer produces (names lowercased, values as received, order and repeats kept); lookups
take ``str`` names in any case and give ``str`` values (latin-1, the decoding HTTP defines). It
has the interface of the server side's ``Headers`` (``unknot.http._headers``), so that the two
can become one.

Request headers are sent with lowercased names (HTTP field names are case-insensitive; h11 and
HTTP/2 do the same), which also makes a caller's header replace a default of any case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: The wire form: names lowercased, values as bytes, order and repeats kept.
RawHeaders = list[tuple[bytes, bytes]]

#: What ``headers=`` accepts; a None value removes a default header of that name.
HeaderTypes = Mapping[str, Any] | Mapping[bytes, Any] | Iterable[tuple[Any, Any]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _key(name: str | bytes) -> bytes:
    if type(name) is str:
        return name.lower().encode("latin-1")
    if isinstance(name, bytes):
        return name.lower()
    raise TypeError(f"header names are str or bytes, not {type(name).__name__}")


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header fields over a list of lowercased byte pairs.

    ``h["Content-Type"]`` is the first value (``KeyError`` if absent), ``h.get_all(name)`` every
    value; ``len`` and iteration count header lines, repeats included; ``raw`` is the list.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: RawHeaders | None = None) -> None:
        self._raw: RawHeaders = [] if raw is None else raw

    @property
    def raw(self) -> RawHeaders:
        """The ``(name, value)`` byte pairs, in order (not a copy)."""
        return self._raw

    def __getitem__(self, name: str) -> str:
        key = _key(name)
        for k, v in self._raw:
            if k == key:
                return v.decode("latin-1")
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name``, or ``default``."""
        key = _key(name)
        for k, v in self._raw:
            if k == key:
                return v.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order (empty if there is none)."""
        key = _key(name)
        return [v.decode("latin-1") for k, v in self._raw if k == key]

    get_list = get_all  # httpx's name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str | bytes):
            return False
        key = _key(name)
        return any(k == key for k, _ in self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __iter__(self) -> Iterator[str]:
        return (k.decode("latin-1") for k, _ in self._raw)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """``(name, value)`` per header line, names lowercased, repeats included."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._raw == other._raw
        if isinstance(other, Mapping):
            return dict(self.items()) == {_key(k).decode("latin-1"): v for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


def _value(name: bytes, value: Any) -> bytes:
    if isinstance(value, str):
        try:
            data = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name.decode()!r}: value {value!r} is not latin-1") from None
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    else:
        raise TypeError(f"header {name.decode()!r}: a value is str, bytes or int, not "
                        f"{type(value).__name__}")
    if _BAD_VALUE.search(data):
        raise ValueError(f"header {name.decode()!r}: invalid character in value {value!r}")
    return data.strip(b" \t")


def header_pairs(headers: HeaderTypes | Headers | None) -> list[tuple[bytes, bytes | None]]:
    """``headers`` as checked wire pairs (lowercased names); a None value is kept as None
    (it removes a header when merged). ``ValueError`` for a name that is not a token or a value
    that could split the header block."""
    if not headers:
        return []
    if isinstance(headers, Headers):
        return list(headers.raw)
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[bytes, bytes | None]] = []
    for name, value in items:
        key = _key(name)
        if not _TOKEN.fullmatch(key):
            raise ValueError(f"invalid header name {name!r}")
        pairs.append((key, None if value is None else _value(key, value)))
    return pairs


def merge_headers(
    base: RawHeaders, override: list[tuple[bytes, bytes | None]]
) -> RawHeaders:
    """``base`` with every name in ``override`` replaced by its lines there (None: removed)."""
    if not override:
        return base
    names = {name for name, _ in override}
    merged = [pair for pair in base if pair[0] not in names]
    merged.extend((name, value) for name, value in override if value is not None)
    return merged
