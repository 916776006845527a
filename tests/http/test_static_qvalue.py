"""StaticFiles and Accept-Encoding qvalues: only RFC 9110's grammar (12.4.2) is a weight.

``qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )``: anything else (``inf``,
``nan``, ``2``, ``-1``, ``1e0``, four decimals...) counts as ``q=0``, as nginx reads it, so
such an entry never makes the precompressed sibling preferred.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from unknot.http._message import Request
from unknot.http._response import normalize_result
from unknot.http._static import StaticFiles, accepts_gzip

CSS = b"body { color: red }\n" * 20


@pytest.fixture
def files(tmp_path: Path) -> StaticFiles:
    (tmp_path / "style.css").write_bytes(CSS)
    (tmp_path / "style.css.gz").write_bytes(gzip.compress(CSS))
    return StaticFiles(tmp_path)


def encoding_sent(files: StaticFiles, accept: str) -> bytes | None:
    """The Content-Encoding of the answer to a GET of /style.css with ``accept``."""
    request = Request("GET", b"/style.css", [(b"accept-encoding", accept.encode())])
    status, headers, body = normalize_result(files(request))
    assert status == 200
    encoding = dict(headers).get(b"content-encoding")
    assert isinstance(body, bytes)  # (a small file: read whole)
    assert (gzip.decompress(body) if encoding else body) == CSS
    return encoding


INVALID = ["inf", "INF", "nan", "2", "-1", "1e0", "0.5555", "1.0001", "1.5", "+1", ".5", "0x1"]


@pytest.mark.parametrize("q", INVALID)
def test_an_invalid_qvalue_does_not_select_gzip(files: StaticFiles, q: str) -> None:
    assert not accepts_gzip(f"gzip;q={q}")
    assert encoding_sent(files, f"gzip;q={q}") is None


@pytest.mark.parametrize("q", INVALID)
def test_an_invalid_qvalue_on_the_wildcard_does_not_select_gzip(files: StaticFiles, q: str) -> None:
    assert encoding_sent(files, f"br, *;q={q}") is None


def test_an_invalid_qvalue_refuses_that_coding_only(files: StaticFiles) -> None:
    # The gzip entry counts as q=0 (an explicit refusal): "*" does not bring gzip back.
    assert encoding_sent(files, "gzip;q=inf, *") is None
    # Another coding's invalid weight does not touch gzip's.
    assert encoding_sent(files, "br;q=inf, gzip;q=0.5") == b"gzip"


@pytest.mark.parametrize("q", ["1", "1.", "1.0", "1.000", "0.001", "0.5", "0.999", "0.1"])
def test_valid_qvalues_above_zero_select_gzip(files: StaticFiles, q: str) -> None:
    assert accepts_gzip(f"gzip;q={q}")
    assert accepts_gzip(f"gzip; Q={q}")  # (the parameter name is case-insensitive)
    assert encoding_sent(files, f"gzip;q={q}") == b"gzip"


@pytest.mark.parametrize("q", ["0", "0.", "0.0", "0.000"])
def test_valid_zero_qvalues_refuse_gzip(files: StaticFiles, q: str) -> None:
    assert encoding_sent(files, f"gzip;q={q}, *") is None
