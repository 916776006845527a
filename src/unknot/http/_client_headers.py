"""Header fields on the client side: `header_pairs` and `merge_headers` for a request (a
response's headers are the server side's read-only `Headers`, from ``_headers``).

Request headers are sent with lowercased names (HTTP field names are case-insensitive; h11 and
HTTP/2 do the same), which also makes a caller's header replace a default of any case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ._headers import Headers

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
        raise TypeError(
            f"header {name.decode()!r}: a value is str, bytes or int, not {type(value).__name__}"
        )
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


def merge_headers(base: RawHeaders, override: list[tuple[bytes, bytes | None]]) -> RawHeaders:
    """``base`` with every name in ``override`` replaced by its lines there (None: removed)."""
    if not override:
        return base
    names = {name for name, _ in override}
    merged = [pair for pair in base if pair[0] not in names]
    merged.extend((name, value) for name, value in override if value is not None)
    return merged
