"""The server's shortcuts give what the general code gives: a handler's dict of headers passed
to send_response as it is, and the bounded cache of split request targets."""

from __future__ import annotations

import pytest

from unknot.http._headers import normalize_headers
from unknot.http._message import _TARGETS, _TARGETS_MAX, Request
from unknot.http._protocol import LocalProtocolError, ServerConnection
from unknot.http._protocol._writer import FIELD_LINES

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def answered(headers: object, body: bytes = b"hi") -> bytes:
    conn = ServerConnection()
    conn.receive_data(REQUEST)
    conn.next_events()
    return conn.send_response(200, headers, body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"Content-Type": "text/plain", "X-Count": 5},
        {b"X-Bytes": b"v", "x-str": "caf\u00e9"},
        {"content-length": "2", "x-a": "b"},
        {"Connection": "close"},
        {},
    ],
)
def test_a_dict_is_sent_as_its_normalized_pairs(fields: dict[object, object]) -> None:
    for _ in range(2):  # the second time from FIELD_LINES
        assert answered(fields) == answered(normalize_headers(fields))


@pytest.mark.parametrize(
    "fields",
    [{"bad name": "x"}, {"x": "a\r\nb"}, {"x": "\u20ac"}, {"x": True}, {"x": 1.5}, {1: "x"}],
)
def test_a_bad_dict_is_refused_like_a_bad_pair(fields: dict[object, object]) -> None:
    with pytest.raises(LocalProtocolError):
        answered(fields)


def test_only_str_and_bytes_pairs_are_remembered() -> None:
    answered({"x-int": 7, "x-kept": "1"})
    assert ("x-kept", "1") in FIELD_LINES
    assert not any(key[0] == "x-int" for key in FIELD_LINES)
    assert b"x-int: 7\r\n" in answered({"x-int": 7})  # (and True is no 1: refused above)


def test_split_targets_are_cached_within_bounds() -> None:
    first = Request("GET", b"/a%20b?x=1", [])
    again = Request("GET", b"/a%20b?x=1", [])
    assert (again.path, again.raw_path, again.query_string) == ("/a b", b"/a%20b", "x=1")
    # Split once, then found in the cache (compared by value: the compiled build keeps a
    # tuple attribute unboxed, so it is a new tuple object on each read).
    assert _TARGETS[b"/a%20b?x=1"] == again._parts == first._parts
    for i in range(_TARGETS_MAX + 10):
        Request("GET", b"/many/%d" % i, [])
    assert len(_TARGETS) <= _TARGETS_MAX
    long_target = b"/" + b"x" * 300
    assert Request("GET", long_target, []).path == long_target.decode()
    assert long_target not in _TARGETS
    assert Request("GET", bytearray(b"/b?c"), []).path == "/b"  # not bytes: not cached
