"""HTTP header fields: `Headers` (a request's, read-only) and `MutableHeaders` (a response's).

Both are case-insensitive multi-mappings over one list of ``(name, value)`` byte pairs, the form
the protocol layer produces and consumes: names lowercased, values as sent, order and repeats
kept. Lookups take ``str`` names in any case and give ``str`` values (decoded as latin-1, the
only decoding HTTP defines for field values). The multi-mapping semantics follow ``multidict``:
``len`` counts header lines, iteration yields one name per line (repeats included), and
``h[name]`` is the first value; ``get_all`` gives every value of a name.

`normalize_headers` turns what a handler may return (``None``, a dict, a list of pairs,
`Headers`) into that pair list, refusing what would break the response: names that are not
HTTP tokens and values with CR, LF, NUL or other control characters (header injection).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union

__all__ = [
    "Headers",
    "HeadersLike",
    "MutableHeaders",
    "RawHeaders",
    "header_pair",
    "normalize_headers",
]

#: The wire form: names lowercased, values as bytes, order and repeats kept.
RawHeaders = list[tuple[bytes, bytes]]
#: What a handler may give as headers.
HeadersLike = Union[
    None, Mapping[str, Any], Mapping[bytes, Any], Iterable[tuple[Any, Any]], "Headers"
]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Control characters other than horizontal tab; CR and LF would split the header block.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _key(name: str | bytes) -> bytes:
    """The lookup key of a header name: lowercased bytes."""
    if type(name) is str:
        return name.lower().encode("latin-1")
    if isinstance(name, bytes):
        return name.lower()
    raise TypeError(f"header names are str or bytes, not {type(name).__name__}")


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive multi-mapping of header fields over a list of byte pairs.

    ``Headers(raw)`` wraps ``raw`` (names must already be lowercased, as the protocol layer
    gives them) without copying or checking it: building one costs one attribute store, every
    lookup scans the list (a request has a handful of headers). ``h["Content-Type"]`` is the
    first value (`KeyError` if absent); ``get_all`` lists them all; `raw` is the list itself.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: RawHeaders | None = None) -> None:
        self._raw: RawHeaders = [] if raw is None else raw

    @property
    def raw(self) -> RawHeaders:
        """The underlying ``(name, value)`` byte pairs, in order (not a copy)."""
        return self._raw

    def __getitem__(self, name: str) -> str:
        key = _key(name)
        for k, v in self._raw:
            if k == key:
                return v.decode("latin-1")
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name``, or ``default`` if there is none."""
        key = _key(name)
        for k, v in self._raw:
            if k == key:
                return v.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order (an empty list if there is none)."""
        key = _key(name)
        return [v.decode("latin-1") for k, v in self._raw if k == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        key = _key(name)
        for k, _ in self._raw:
            if k == key:
                return True
        return False

    def __len__(self) -> int:
        """The number of header lines (a repeated name counts once per line)."""
        return len(self._raw)

    def __iter__(self) -> Iterator[str]:
        """The name of each header line, lowercased, repeats included."""
        return (k.decode("latin-1") for k, _ in self._raw)

    def keys(self) -> list[str]:  # type: ignore[override]
        """The name of each header line, lowercased, repeats included."""
        return [k.decode("latin-1") for k, _ in self._raw]

    def values(self) -> list[str]:  # type: ignore[override]
        """The value of each header line."""
        return [v.decode("latin-1") for _, v in self._raw]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """``(name, value)`` for each header line, names lowercased, repeats included."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw]

    def __eq__(self, other: object) -> bool:
        """Equal to another `Headers` with the same lines in the same order, or to a mapping
        with the same names (any case) and values (repeated names: the last value)."""
        if isinstance(other, Headers):
            return self._raw == other._raw
        if isinstance(other, Mapping):
            return dict(self.items()) == {_key(k).decode("latin-1"): v for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.items()!r})"


class MutableHeaders(Headers):
    """Response headers: `Headers` that can be changed, checking each name and value added.

    ``MutableHeaders(init)`` accepts what `normalize_headers` accepts and copies it.
    ``h[name] = value`` replaces every line of that name (appending if there was none);
    `add` appends a line, keeping others of the same name (``Set-Cookie``); ``del h[name]``
    removes every line of it. Values may be ``str`` (latin-1), ``bytes`` or ``int``.
    """

    __slots__ = ()

    def __init__(self, init: HeadersLike = None) -> None:
        super().__init__(normalize_headers(init))

    @classmethod
    def wrap(cls, raw: RawHeaders) -> MutableHeaders:
        """A mutable view over ``raw``, an already normalised list: no copy, no checks."""
        view = cls.__new__(cls)
        view._raw = raw
        return view

    def __setitem__(self, name: str, value: str | bytes | int) -> None:
        pair = header_pair(name, value)
        raw = self._raw
        for i, (k, _) in enumerate(raw):
            if k == pair[0]:
                raw[i] = pair
                raw[i + 1 :] = [p for p in raw[i + 1 :] if p[0] != pair[0]]
                return
        raw.append(pair)

    def __delitem__(self, name: str) -> None:
        key = _key(name)
        before = len(self._raw)
        self._raw[:] = [p for p in self._raw if p[0] != key]
        if len(self._raw) == before:
            raise KeyError(name)

    def add(self, name: str, value: str | bytes | int) -> None:
        """Append a line ``name: value``, keeping any other line of the same name."""
        self._raw.append(header_pair(name, value))

    def setdefault(self, name: str, value: str | bytes | int) -> str:
        """The first value of ``name``, after setting it to ``value`` if it had none."""
        found = self.get(name)
        if found is not None:
            return str(found)
        pair = header_pair(name, value)
        self._raw.append(pair)
        return pair[1].decode("latin-1")

    def update(self, other: HeadersLike = None, **more: str | bytes | int) -> None:
        """Set (replace) each name given in ``other`` and ``more``: its lines here give way to
        all of its lines given (a repeated name keeps every value, as in ``multidict``: the
        ``Set-Cookie`` lines of another response), in the place of the first. A keyword
        (``_`` for ``-``) replaces the lines ``other`` gave its name."""
        self._replace(normalize_headers(other))
        self._replace([header_pair(name.replace("_", "-"), value) for name, value in more.items()])

    def _replace(self, pairs: RawHeaders) -> None:
        """Replace the lines of each name in ``pairs`` (checked pairs) by its lines there."""
        given: dict[bytes, RawHeaders] = {}
        for pair in pairs:
            given.setdefault(pair[0], []).append(pair)
        raw = self._raw
        for name, lines in given.items():
            # (in the place of its first line here, or at the end)
            at = next((i for i, p in enumerate(raw) if p[0] == name), len(raw))
            raw[:] = [*raw[:at], *lines, *(p for p in raw[at:] if p[0] != name)]

    def pop(self, name: str, default: Any = None) -> Any:
        """Remove every line of ``name``; return its first value, or ``default``."""
        found = self.get(name, default)
        key = _key(name)
        self._raw[:] = [p for p in self._raw if p[0] != key]
        return found


def header_pair(name: str | bytes, value: Any) -> tuple[bytes, bytes]:
    """One checked wire pair ``(name, value)`` from a name and a value (str, bytes or int).

    Raises `ValueError` for a name that is not a token or a value with control characters.
    """
    key = _key(name)
    if not _TOKEN.match(key):
        raise ValueError(f"invalid header name {name!r}")
    if type(value) is str:
        try:
            data = value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(
                f"header {name!r}: value {value!r} is not latin-1 (percent-encode it,"
                " or use RFC 8187 encoding)"
            ) from None
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        return key, str(value).encode("ascii")
    else:
        raise TypeError(
            f"header {name!r}: values are str, bytes or int, not {type(value).__name__}"
        )
    if _BAD_VALUE.search(data):
        raise ValueError(f"header {name!r}: control character (CR, LF, NUL...) in {value!r}")
    return key, data


#: Pairs already checked: ``(name, value)`` as given (``str`` or ``bytes`` both) -> wire pair.
#: Handlers return the same few headers over and over; checking one costs two regex scans.
_CHECKED: dict[tuple[Any, Any], tuple[bytes, bytes]] = {}
_CHECKED_MAX = 4096
_CACHED_VALUE_MAX = 256


def _checked_pair(name: Any, value: Any) -> tuple[bytes, bytes]:
    """`header_pair`, remembered for ``str``/``bytes`` names and values (not ints: a
    ``True`` would find the entry of a ``1``, and bools are refused)."""
    pair = header_pair(name, value)
    if (
        (type(value) is str or type(value) is bytes)
        and (type(name) is str or type(name) is bytes)
        and len(value) <= _CACHED_VALUE_MAX
        and len(_CHECKED) < _CHECKED_MAX
    ):
        _CHECKED[(name, value)] = pair
    return pair


def normalize_headers(headers: HeadersLike) -> RawHeaders:
    """A fresh, checked wire list from ``None``, a mapping, pairs, or `Headers`.

    Names are lowercased (HTTP names are case-insensitive; the server may then look for its
    own with plain byte comparisons). A `Headers` is trusted (its list is copied as is).
    Raises `ValueError` for an invalid name or a value with control characters, and
    `TypeError` for anything that is not headers.
    """
    if headers is None:
        return []
    get = _CHECKED.get
    kind = type(headers)
    if kind is dict or kind is list:  # the common cases first: one lookup per pair seen before
        raw = []
        items: Iterable[Any] = headers.items() if kind is dict else headers  # type: ignore[union-attr]
        for item in items:
            try:
                pair = get(item)
            except TypeError:  # not a pair, or an unhashable value: checked below
                pair = None
            if pair is None:
                if type(item) is not tuple and not isinstance(item, list) or len(item) != 2:
                    raise TypeError(f"{_HEADERS_WANTED}; got the item {item!r:.80}")
                pair = _checked_pair(item[0], item[1])
            raw.append(pair)
        return raw
    if isinstance(headers, Headers):
        return list(headers._raw)
    if isinstance(headers, Mapping):
        return [_checked_pair(k, v) for k, v in headers.items()]
    if isinstance(headers, (str, bytes)) or not isinstance(headers, Iterable):
        raise TypeError(f"{_HEADERS_WANTED}; got {type(headers).__name__}")
    raw = []
    for item in headers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"{_HEADERS_WANTED}; got the item {item!r:.80}")
        raw.append(_checked_pair(item[0], item[1]))
    return raw


_HEADERS_WANTED = "headers must be None, a dict or a list of (name, value) pairs"
