"""The access log: one line per response, in the Common or the Combined Log Format.

Lines go to the ``unknot.http.access`` logger at INFO level, formatted as Apache's and nginx's
(``combined`` is their default)::

    127.0.0.1 - - [10/Oct/2026:13:55:36 +0200] "GET /a?b=c HTTP/1.1" 200 2326 "-" "curl/8.5.0"

The host is the client's address, ident and user are ``-``, the time is local with its UTC
offset (formatted at most once a second), the size counts the body bytes sent (``-`` for none).
What comes from the client (the request line, Referer, User-Agent) is escaped as nginx does:
``"``, ``\\``, control characters and bytes above 0x7e become ``\\xHH``, so a line can neither
be split nor forged. A request refused before its head was parsed is logged with ``"-"`` as
its request line. The server builds an `AccessLog` only when the log is switched on: off, it
costs one test per request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ._protocol import RequestHead

__all__ = ["AccessLog", "escape"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ESCAPES = {c: f"\\x{c:02X}" for c in (*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100))}
_FORMATS = ("common", "combined")


def escape(value: bytes) -> str:
    """``value`` made safe for a log line (see the module docstring)."""
    return value.decode("latin-1").translate(_ESCAPES)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return f'"{escape(value)}"'
    return '"-"'


class AccessLog:
    """Writes access log lines to ``logger`` (default: ``unknot.http.access``).

    ``log_format`` is ``"combined"`` (the default) or ``"common"`` (without Referer and
    User-Agent).
    """

    __slots__ = ("logger", "combined", "_second", "_stamp")

    def __init__(self, logger: logging.Logger | None = None, log_format: str = "combined") -> None:
        if log_format not in _FORMATS:
            raise ValueError(f"access log format is one of {_FORMATS}, not {log_format!r}")
        self.logger = logger or logging.getLogger("unknot.http.access")
        self.combined = log_format == "combined"
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        now = int(time.time())
        if now != self._second:
            t = time.localtime(now)
            offset = t.tm_gmtoff // 60
            sign = "-" if offset < 0 else "+"
            offset = abs(offset)
            self._stamp = (
                f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
                f"{sign}{offset // 60:02d}{offset % 60:02d}"
            )
            self._second = now
        return self._stamp

    def log(self, client: Any, head: RequestHead | None, status: int, size: int) -> None:
        """Log one response: ``status`` and ``size`` body bytes sent for ``head`` (None: a
        request refused before its head was parsed) from ``client`` (an address or None)."""
        host = client[0] if isinstance(client, tuple) and client else "-"
        if head is None:
            request_line = "-"
            extra = ' "-" "-"' if self.combined else ""
        else:
            request_line = escape(b"%s %s HTTP/%s" % (head.method, head.target, head.http_version))
            if self.combined:
                headers = head.headers
                extra = f" {_header(headers, b'referer')} {_header(headers, b'user-agent')}"
            else:
                extra = ""
        line = (
            f'{host} - - [{self._now()}] "{request_line}" {status} {size if size else "-"}{extra}'
        )
        self.logger.info(line)  # (no arguments: a "%" in the line is not a placeholder)
