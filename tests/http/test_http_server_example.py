"""examples/http_server.py, the untangle seed's server: thousands of concurrent requests through
it on one thread, each of which makes an HTTPS request upstream."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_two_thousand_concurrent_requests_through_the_seed_server() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "http_server.py"),
            "--concurrency",
            "2000",
            "--requests",
            "2000",
        ],
        capture_output=True,
        text=True,
        timeout=220,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = re.findall(
        r"^GET (/\S*)\s+(\d+) requests in .* with (\d+) concurrent clients, on one "
        r"OS thread",
        out.stdout,
        re.M,
    )
    # every answer was checked by the example itself (status 200, the upstream's JSON)
    assert lines == [("/", "2000", "2000"), ("/pooled", "2000", "2000")], out.stdout
