"""`unknot.socket.socket.sendfile` on a closed socket fails as the stdlib's does.

The stdlib's (3.11) returns 0 for an empty file, refuses a non-blocking socket, and otherwise
raises ``ValueError("Invalid file descriptor: -1")`` (its selector refuses the fd -1) before it
tries ``os.sendfile``; a file without ``fileno`` goes to its ``send`` fallback, whose ``send``
raises ``OSError(EBADF)``. unknot's raised ``OSError(EBADF)`` for a regular file.
"""

from __future__ import annotations

import io
import socket as std
from typing import Any

import pytest

import unknot
import unknot.socket as us

pytestmark = pytest.mark.timeout(30)


def _outcomes(mod: Any, tmp_path: Any) -> list[Any]:
    """What ``sendfile`` does on a closed ``mod.socket`` for each timeout and kind of file."""
    full = tmp_path / "full"
    full.write_bytes(b"data" * 1000)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    out: list[Any] = []
    for timeout in (None, 5.0, 0.0):
        for make in (
            lambda: open(full, "rb"),
            lambda: open(empty, "rb"),
            lambda: io.BytesIO(b"data"),
        ):
            a, b = mod.socketpair()
            a.settimeout(timeout)
            a.close()
            with b, make() as f:
                try:
                    out.append(a.sendfile(f))
                except Exception as err:
                    out.append((type(err), str(err), getattr(err, "errno", None)))
                out.append(f.tell())
    return out


def test_sendfile_on_a_closed_socket_matches_stdlib(tmp_path: Any) -> None:
    expected = _outcomes(std, tmp_path)
    assert (ValueError, "Invalid file descriptor: -1", None) in expected  # (this Python's)
    assert _outcomes(us, tmp_path) == expected  # outside fibers
    assert unknot.run(_outcomes, us, tmp_path) == expected  # in a fiber
