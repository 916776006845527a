"""benchmarks/scale.py still runs: every peer at 200 connections, a fraction of a second each.

Not a measurement (the numbers of so short a run mean nothing, and nothing here is timed):
it checks that each peer held every connection, answered every message, and that the report
and the model come out. `make scale` is the real run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scale.py"
sys.path.append(str(ROOT / "benchmarks"))  # after the stdlib: benchmarks/http.py is not http

import scale  # noqa: E402

CONNS = 200
#: peers whose packages come with the bench extra only: reported unavailable without them
OPTIONAL = {"uvloop": "uvloop", "http-uvicorn": "uvicorn"}


def test_every_peer_holds_and_echoes_on_every_connection(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    md = tmp_path / "BENCHMARKS.md"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])
    )
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--conns",
            f"{CONNS // 2},{CONNS}",
            "--settle",
            "0.1",
            "--interval",
            "0.5",
            "--echo-seconds",
            "0.5",
            "--no-pin",
            "--json",
            str(out),
            "--markdown",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    expected = set(scale.PEERS)
    for peer, module in OPTIONAL.items():
        if importlib.util.find_spec(module) is None:
            expected.discard(peer)
            assert f"{peer} (unavailable" in run.stdout
    assert {r["peer"] for r in results} == expected
    for r in results:
        assert r["fds"] >= r["conns"], r  # the server held every connection at once
        # one message each (float rounding may add one more send), every one answered
        assert r["conns"] <= r["samples"] <= r["conns"] + 1, r
        assert r["errors"] == 0, r
        assert r["rss_idle"] > r["rss_base"], r
    text = md.read_text()
    assert "## Scale" in text and "| unknot | 200 |" in text and "slope" in text


def test_the_model_finds_a_slope_and_flags_a_square_term() -> None:
    linear = [(n, 1000.0 + 8000.0 * n) for n in (1000, 2000, 5000, 10000)]
    m = scale.model_of(linear)
    assert m[1] == pytest.approx(8000.0)
    assert max(abs(r) for r in m[2]) < 1e-9
    assert abs(scale.quad_share(linear)) < 1e-6
    square = [(n, 8000.0 * n + 0.5 * n * n) for n in (1000, 2000, 5000, 10000)]
    assert scale.quad_share(square) > 0.3
