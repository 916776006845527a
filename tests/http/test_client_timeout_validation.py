"""The client's Timeout and keepalive_expiry refuse NaN (and negatives) when built,
instead of meaning "no limit" or failing later in a request."""

from __future__ import annotations

import math
from typing import Any

import pytest
from client_helpers import serving

from unknot.http._client import Client
from unknot.http._client_timeout import Timeout

pytestmark = pytest.mark.timeout(30)

NAN = math.nan


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": NAN},
        {"connect": NAN},
        {"read": NAN},
        {"write": NAN},
        {"pool": NAN},
        {"total": NAN},
        {"timeout": 5, "total": NAN},
        {"timeout": (NAN, 5)},
        {"timeout": (5, NAN)},
        {"timeout": (-1, 5)},
        {"timeout": (5, -1)},
    ],
)
def test_timeout_refuses_nan_and_negatives_everywhere(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Timeout(**kwargs)


def test_timeout_tuple_members_are_checked_like_the_others() -> None:
    with pytest.raises(TypeError):
        Timeout((5, "7"))  # type: ignore[arg-type]
    assert Timeout((None, 8)) == Timeout(connect=None, read=8, write=8, pool=8)
    assert Timeout((2, 8)).connect == 2.0 and isinstance(Timeout((2, 8)).read, float)


def test_timeout_still_takes_zero_infinity_and_none() -> None:
    assert Timeout(0).read == 0.0
    assert Timeout(math.inf, total=math.inf).total == math.inf
    assert Timeout(None, total=None).connect is None


def test_client_refuses_a_nan_timeout() -> None:
    with pytest.raises(ValueError):
        Client(timeout=NAN)


@pytest.mark.parametrize("value", [-1, -0.001, NAN])
def test_client_refuses_a_negative_or_nan_keepalive_expiry(value: float) -> None:
    with pytest.raises(ValueError, match="keepalive_expiry"):
        Client(keepalive_expiry=value)


def test_client_refuses_a_keepalive_expiry_that_is_not_a_number() -> None:
    for value in ("5", True):
        with pytest.raises(TypeError, match="keepalive_expiry"):
            Client(keepalive_expiry=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 0, 0.5, 5, math.inf])
def test_client_takes_none_zero_and_positive_keepalive_expiry(value: float | None) -> None:
    with Client(keepalive_expiry=value) as client:
        assert client.pool.keepalive_expiry == value


@pytest.mark.unknot
def test_keepalive_expiry_zero_still_works_for_requests() -> None:
    with serving() as server, Client(keepalive_expiry=0) as client:
        for _ in range(2):
            assert client.get(server.url("/text?body=hi")).text == "hi"
