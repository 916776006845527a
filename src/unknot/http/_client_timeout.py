"""`Timeout`: how long each phase of a client request may take."""

from __future__ import annotations

from typing import Any

_UNSET: Any = object()


class Timeout:
    """Limits, in seconds (None: no limit), on each phase of a request.

    ``connect``
        DNS, the TCP connect and the TLS handshake, together (``ConnectTimeout``).
    ``read``
        The longest wait for the next bytes of the response (``ReadTimeout``): a slow but
        steady download never times out on it.
    ``write``
        Sending each piece of the request (``WriteTimeout``).
    ``pool``
        Waiting for a connection when the pool is at its limit (``PoolTimeout``).
    ``total``
        The whole exchange, redirects and the body included, from the call until the
        response is read (``TotalTimeout``); for a streamed response, until its last read.

    ``Timeout(5)`` sets ``connect``, ``read``, ``write`` and ``pool`` to 5 seconds, as in httpx
    and requests (a number bounds each wait, not the whole exchange); ``total`` is set only by
    name. A ``(connect, read)`` tuple works as in requests. Keywords given with a number
    override it: ``Timeout(5, connect=1)``. The default, ``Timeout()``, is connect 10 s, read
    30 s, write 30 s, pool 30 s, no total limit.

    Each value is a number of seconds, 0 or more (``math.inf`` is no limit, as None is), or
    None: a negative value or NaN raises `ValueError` here, something else `TypeError`.
    """

    __slots__ = ("connect", "read", "write", "pool", "total")

    def __init__(
        self,
        timeout: float | tuple[float | None, float | None] | None | Any = _UNSET,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
        total: float | None = None,
    ) -> None:
        if timeout is _UNSET:
            base: list[float | None] = [10.0, 30.0, 30.0, 30.0]
        elif isinstance(timeout, tuple):
            if len(timeout) != 2:
                raise ValueError("a timeout tuple is (connect, read)")
            connect_s, read_s = _seconds(timeout[0]), _seconds(timeout[1])
            base = [connect_s, read_s, read_s, read_s]
        else:
            base = [_seconds(timeout)] * 4
        given = (connect, read, write, pool)
        self.connect, self.read, self.write, self.pool = (
            _seconds(g) if g is not _UNSET else b for g, b in zip(given, base, strict=True)
        )
        self.total = _seconds(total)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timeout):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Timeout({fields})"


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a timeout is a number of seconds or None, not {value!r}")
    if not value >= 0:  # (NaN too: it would mean "no limit" for some fields, fail for others)
        raise ValueError(f"a timeout must be a number of seconds >= 0 or None, not {value!r}")
    return float(value)


#: What ``timeout=`` accepts.
TimeoutTypes = Timeout | float | tuple[float | None, float | None] | None


def as_timeout(value: TimeoutTypes) -> Timeout:
    """``value`` as a `Timeout` (a `Timeout` is returned as it is)."""
    if isinstance(value, Timeout):
        return value
    return Timeout(value)


DEFAULT_TIMEOUT = Timeout()
