"""`MutableHeaders.update` with repeated names (Set-Cookie): every line given is kept."""

from __future__ import annotations

from unknot.http import Headers, MutableHeaders, Response


def test_update_keeps_every_line_of_a_repeated_name() -> None:
    upstream = Headers([(b"set-cookie", b"a=1"), (b"x-one", b"1"), (b"set-cookie", b"b=2")])
    response = Response.text("hi", headers={"set-cookie": "old=0", "x-two": "2"})
    response.headers.update(upstream)
    # The old line is replaced where it was, by both new ones; other names as before.
    assert response.headers.items() == [
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("x-two", "2"),
        ("content-type", "text/plain; charset=utf-8"),
        ("x-one", "1"),
    ]


def test_update_from_pairs_and_keywords() -> None:
    h = MutableHeaders([("x-a", "0"), ("Set-Cookie", "old=0")])
    h.update([("Set-Cookie", "a=1"), ("set-cookie", "b=2")], x_a="1")
    assert h.items() == [("x-a", "1"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]
    # A keyword wins over ``other`` for its name, as dict.update's do.
    h.update({"x-b": "1"}, x_b="2")
    assert h.get_all("x-b") == ["2"]
    h.update()
    assert len(h) == 4
