"""Size limits that protect a connection from oversized or endless input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """What a connection accepts from its peer; crossing a limit is a ``RemoteProtocolError``.

    The defaults follow common servers (nginx, Apache, Node) and are safe for the open
    internet; ``None`` turns a limit off. Each is ``None`` or an ``int`` of at least 0
    (``TypeError``, ``ValueError`` otherwise).

    ``max_target_size`` (8 KiB)
        Bytes in the request target (or a response's reason phrase). Status hint 414.
    ``max_header_size`` (16 KiB)
        Bytes in the header block, counted as ``name: value`` lines with their CRLF; the
        trailers of a chunked body have a block of their own. Status hint 431. While a head
        is incomplete the bytes fed are counted too (whitespace and empty lines included), so an
        endless head is cut off at about ``max_target_size + max_header_size``. Trailers are
        bounded while they arrive as well: their fields are measured after each feed, and the
        bytes of the feeds that bring no body byte are counted, so an endless trailer block is
        cut off at about the same size. So is a chunk-size line (an endless chunk extension),
        but as a malformed body: status hint 400.
    ``max_header_count`` (100)
        Header (or trailer) fields in one block. Status hint 431.
    ``max_body_size`` (1 MiB, as nginx's ``client_max_body_size``)
        Bytes in one message body. A Content-Length above it is refused as soon as the head
        is parsed, before any body byte is read; a chunked or read-until-close body is refused
        when it grows past it. Status hint 413.
    """

    max_target_size: int | None = 8 * 1024
    max_header_size: int | None = 16 * 1024
    max_header_count: int | None = 100
    max_body_size: int | None = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_target_size", "max_header_size", "max_header_count", "max_body_size"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Limits.{name} must be an int or None, not {value!r:.80}")
            if value < 0:
                raise ValueError(f"Limits.{name} must not be negative, got {value}")


#: What a limit set to None becomes in the readers: more than any input can reach, yet a small
#: int (no boxed int on the hot path of a compiled build; two of them still add up to one).
NO_LIMIT = 1 << 60


def limit_value(limit: int | None) -> int:
    """``limit`` as the readers compare with it: None (off) is `NO_LIMIT`."""
    return NO_LIMIT if limit is None else limit


#: The server side's defaults.
DEFAULT_LIMITS = Limits()

#: The client side's defaults: responses may be any size (downloads), heads are still bounded.
DEFAULT_CLIENT_LIMITS = Limits(max_body_size=None)
