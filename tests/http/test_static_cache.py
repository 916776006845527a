"""StaticFiles' small files: read whole and sent as bytes, kept in memory while unchanged.

Every answer from memory must be the answer the file on disk gives: the tests change, replace,
remove and re-link files between requests and compare with a StaticFiles that keeps nothing.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from unknot.http._message import Request
from unknot.http._response import FileBody, normalize_result
from unknot.http._static import SMALL_FILE, StaticFiles

pytestmark = pytest.mark.timeout(10)


def get(
    handler: Any, target: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[bytes, bytes], bytes]:
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    status, raw, body = normalize_result(handler(Request(method, target.encode(), raw_headers)))
    if isinstance(body, FileBody):
        with body:
            body = b"".join(body.chunks())
    return status, dict(raw), body


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"first version\n")
    (root / "b.bin").write_bytes(bytes(range(256)) * 4)
    return root


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths StaticFiles opens (a cache hit opens nothing)."""
    seen: list[str] = []
    real_open = os.open

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> int:
        seen.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    return seen


def same_answers(cached: StaticFiles, plain: StaticFiles, target: str, **headers: str) -> Any:
    """The answer of the caching StaticFiles, after checking it against the plain one."""
    answer = get(cached, target, headers)
    assert answer == get(plain, target, headers), (target, headers)
    return answer


def test_a_small_file_is_served_from_memory_while_unchanged(root: Path, opens: list[str]) -> None:
    files = StaticFiles(root)
    assert get(files, "/a.txt")[2] == b"first version\n"
    assert len(opens) == 1
    for _ in range(3):
        status, headers, body = get(files, "/a.txt")
        assert (status, body) == (200, b"first version\n")
        assert headers[b"etag"] and headers[b"last-modified"] and headers[b"accept-ranges"]
    assert len(opens) == 1  # no more opens: the content came from memory


def test_cached_answers_are_the_files_answers(root: Path) -> None:
    cached, plain = StaticFiles(root), StaticFiles(root, memory_cache=0)
    status, headers, _ = same_answers(cached, plain, "/b.bin")
    etag, modified = headers[b"etag"].decode(), headers[b"last-modified"].decode()
    for target, request_headers in [
        ("/b.bin", {}),
        ("/b.bin", {"if-none-match": etag}),
        ("/b.bin", {"if-none-match": '"other"'}),
        ("/b.bin", {"if-modified-since": modified}),
        ("/b.bin", {"range": "bytes=10-19"}),
        ("/b.bin", {"range": "bytes=-5"}),
        ("/b.bin", {"range": "bytes=1000-"}),
        ("/b.bin", {"range": "bytes=10-19", "if-range": etag}),
        ("/b.bin", {"range": "bytes=10-19", "if-range": '"stale"'}),
    ]:
        same_answers(cached, plain, target, **request_headers)
    assert get(cached, "/b.bin", {"range": "bytes=10-19"})[2] == bytes(range(10, 20))
    assert get(cached, "/b.bin", {"range": "bytes=5000-"})[0] == 416
    head = normalize_result(cached(Request("HEAD", b"/b.bin", [])))
    assert head[0] == 200 and head[2] == bytes(range(256)) * 4  # the server drops it for HEAD


def test_an_unsatisfiable_range_of_a_cached_file_is_416(root: Path) -> None:
    from unknot.http._message import HTTPError

    files = StaticFiles(root)
    get(files, "/b.bin")
    with pytest.raises(HTTPError) as refused:
        files.handle(Request("GET", b"/b.bin", [(b"range", b"bytes=5000-")]))
    assert refused.value.status == 416


def test_a_changed_file_is_read_again(root: Path) -> None:
    cached, plain = StaticFiles(root), StaticFiles(root, memory_cache=0)
    path = root / "a.txt"
    before = same_answers(cached, plain, "/a.txt")
    # The same size, another content, another modification time: seen.
    path.write_bytes(b"other version\n")
    os.utime(path, ns=(10**18, 10**18))
    after = same_answers(cached, plain, "/a.txt")
    assert after[2] == b"other version\n" and after[1][b"etag"] != before[1][b"etag"]
    # The same times put back by hand: the change time still moves (chmod, writes).
    stamp = os.stat(path)
    path.write_bytes(b"third version\n")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert same_answers(cached, plain, "/a.txt")[2] == b"third version\n"
    # Replaced by another file (another inode), and by a longer one.
    (root / "new.txt").write_bytes(b"replaced\n")
    os.replace(root / "new.txt", path)
    assert same_answers(cached, plain, "/a.txt")[2] == b"replaced\n"
    path.write_bytes(b"x" * 100)
    assert same_answers(cached, plain, "/a.txt")[2] == b"x" * 100


def test_a_removed_or_relinked_file_is_not_served_from_memory(root: Path, tmp_path: Path) -> None:
    cached, plain = StaticFiles(root), StaticFiles(root, memory_cache=0)
    path = root / "a.txt"
    same_answers(cached, plain, "/a.txt")
    path.unlink()
    assert same_answers(cached, plain, "/a.txt")[0] == 404
    (tmp_path / "secret.txt").write_bytes(b"first version\n")  # the same bytes, outside
    path.symlink_to(tmp_path / "secret.txt")
    assert same_answers(cached, plain, "/a.txt")[0] == 404
    path.unlink()
    path.mkdir()
    assert same_answers(cached, plain, "/a.txt")[0] == 301  # now a directory
    assert same_answers(cached, plain, "/a.txt/")[0] == 404  # without an index file


def test_a_gzip_sibling_that_appears_is_used(root: Path) -> None:
    cached, plain = StaticFiles(root), StaticFiles(root, memory_cache=0)
    same_answers(cached, plain, "/a.txt", **{"accept-encoding": "gzip"})
    os.utime(root / "a.txt", ns=(10**18, 10**18))
    get(cached, "/a.txt")  # cached again, with its new times
    (root / "a.txt.gz").write_bytes(gzip.compress(b"first version\n"))
    status, headers, body = same_answers(cached, plain, "/a.txt", **{"accept-encoding": "gzip"})
    assert headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(body) == b"first version\n"
    status, headers, body = same_answers(cached, plain, "/a.txt")
    assert headers[b"vary"] == b"Accept-Encoding" and body == b"first version\n"


def test_the_cache_is_bounded(root: Path, opens: list[str]) -> None:
    for i in range(4):
        (root / f"f{i}.bin").write_bytes(bytes([i]) * 1000)
    files = StaticFiles(root, memory_cache=2500)  # room for two of them
    for i in range(4):
        assert get(files, f"/f{i}.bin")[2] == bytes([i]) * 1000
    assert files._cached_bytes <= 2500
    assert len(files._cache) <= 2
    opened = len(opens)
    assert get(files, "/f3.bin")[2] == bytes([3]) * 1000  # the last one is still there
    assert len(opens) == opened
    nothing = StaticFiles(root, memory_cache=0)
    get(nothing, "/f0.bin")
    get(nothing, "/f0.bin")
    assert len(opens) == opened + 2 and not nothing._cache
    with pytest.raises(ValueError):
        StaticFiles(root, memory_cache=-1)


def test_a_file_larger_than_small_file_is_not_kept(root: Path) -> None:
    (root / "big.bin").write_bytes(b"y" * (SMALL_FILE + 1))
    files = StaticFiles(root)
    status, _, body = get(files, "/big.bin")
    assert (status, body) == (200, b"y" * (SMALL_FILE + 1))
    assert not files._cache
    (root / "edge.bin").write_bytes(b"z" * SMALL_FILE)
    assert get(files, "/edge.bin")[2] == b"z" * SMALL_FILE
    assert list(files._cache) == [str(root / "edge.bin")]
