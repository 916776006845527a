"""`Response.redirect` sends one Location: the URL given."""

from __future__ import annotations

from unknot.http import Response


def test_redirect_sends_one_location_the_url_given() -> None:
    # (Location is a singleton field, RFC 9110 10.2.2: clients join two into "a, b".)
    response = Response.redirect("/new", headers={"Location": "/old", "cache-control": "no"})
    assert response.headers.items() == [("location", "/new"), ("cache-control", "no")]
