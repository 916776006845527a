"""If-Range with a date: it matches only a strong Last-Modified (RFC 9110 13.1.5, 8.8.2.2).

A file modified less than a second before the request could change again within the second
its Last-Modified names: that date is weak, and a range asked for with it gets the whole file.
The modification times are set with ``os.utime``, relative to the clock, without sleeping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from unknot.http._message import Request
from unknot.http._response import FileBody, normalize_result
from unknot.http._static import SMALL_FILE, StaticFiles, http_date

pytestmark = pytest.mark.timeout(10)

SMALL = bytes(range(256)) * 4  # served as bytes (and kept in the memory cache)
LARGE = bytes(range(256)) * (SMALL_FILE // 256 + 4)  # served as a FileBody


def ranged_get(files: StaticFiles, name: str, if_range: str) -> tuple[int, bytes]:
    """The status and body bytes of a GET of ``name`` for bytes 0-3 with ``if_range``."""
    request = Request(
        "GET", f"/{name}".encode(), [(b"range", b"bytes=0-3"), (b"if-range", if_range.encode())]
    )
    status, _, body = normalize_result(files(request))
    if isinstance(body, FileBody):
        with body:
            body = b"".join(body.chunks())
    assert isinstance(body, bytes)
    return status, body


def set_mtime(path: Path, mtime_ns: int) -> str:
    """Set ``path``'s modification time; its Last-Modified date."""
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return http_date(mtime_ns / 1e9)


@pytest.mark.parametrize(("name", "content"), [("small.bin", SMALL), ("large.bin", LARGE)])
def test_a_date_within_the_last_second_is_weak_the_whole_file_is_sent(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    files = StaticFiles(tmp_path)
    last_modified = set_mtime(path, time.time_ns() - 100_000_000)  # 0.1 s ago
    assert ranged_get(files, name, last_modified) == (200, content)
    # A second time, the small file from the memory cache: the same answer.
    assert ranged_get(files, name, last_modified) == (200, content)


@pytest.mark.parametrize(("name", "content"), [("small.bin", SMALL), ("large.bin", LARGE)])
def test_a_date_in_the_future_is_weak(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    last_modified = set_mtime(path, time.time_ns() + 3600 * 10**9)  # a clock set wrong
    assert ranged_get(StaticFiles(tmp_path), name, last_modified) == (200, content)


@pytest.mark.parametrize(("name", "content"), [("small.bin", SMALL), ("large.bin", LARGE)])
def test_a_date_older_than_a_second_is_strong_the_range_is_sent(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    files = StaticFiles(tmp_path)
    last_modified = set_mtime(path, time.time_ns() - 2 * 10**9)  # 2 s ago
    assert ranged_get(files, name, last_modified) == (206, content[:4])
    assert ranged_get(files, name, last_modified) == (206, content[:4])  # (cached, if small)


def test_a_fresh_file_still_matches_a_strong_etag(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(SMALL)
    files = StaticFiles(tmp_path)
    set_mtime(path, time.time_ns() - 100_000_000)
    _, raw, _ = normalize_result(files(Request("GET", b"/small.bin", [])))
    etag = dict(raw)[b"etag"].decode()
    assert ranged_get(files, "small.bin", etag) == (206, SMALL[:4])
