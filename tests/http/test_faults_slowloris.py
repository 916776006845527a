"""Slowloris, reduced (fuzz/slowloris.py; ``make slowloris`` runs 5,000 connections): 500
connections trickle their heads for 4 s against a 1 s head timeout while a normal client makes
requests. Every slow connection is cut with a 408, the normal client gets every answer, and the
server's descriptors come back to their count. Its latency is printed, not checked here (a
timing on a shared machine); make slowloris checks the p99."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(__file__).resolve().parents[2] / "fuzz" / "slowloris.py"


def test_slowloris_reduced() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--conns",
            "500",
            "--seconds",
            "4",
            "--head-timeout",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=50,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(report)
    assert report["peak_open_on_server"] >= 450, report
    assert report["cuts"] >= 500, report  # every slow connection cut at least once
    assert report["cuts_with_408"] == report["cuts"], report
    assert report["normal_requests"] > 0 and report["normal_failures"] == 0, report
    assert report["attacker_errors"] == 0, report
    assert report["problems"] == [], report
    assert out.returncode == 0, out.stderr
