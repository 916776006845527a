"""benchmarks/echo_pool.py: issue 13's cells pooled over the rounds of several echo.py
reports. The reports here are written by echo_report itself, so a change to its "All runs"
table that the pooling can no longer read fails here. Nothing here measures speed."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.append(str(BENCH))  # after the stdlib: benchmarks/http.py is not the http package

import echo_pool  # noqa: E402
import echo_report  # noqa: E402


def _report(rounds: dict[str, list[float]], conns: int = 1000) -> str:
    peers = list(rounds)
    results = echo_report.Results(peers, [1024], [conns])
    for peer, values in rounds.items():
        for i, rps in enumerate(values):
            cell = echo_report.Cell(peer, 1024, conns, rps=rps, round_trips=1000, round=i)
            results.add(cell)
        results.peer_status[peer] = "ok"
    return echo_report.markdown(results, {}, {})


def test_pooled_ratios_are_the_per_round_ratios_of_every_report() -> None:
    one = _report(
        {
            "c-epoll": [200e3, 100e3, 200e3],
            "uvloop-streams": [100e3, 100e3, 100e3],
            "greenlet-floor": [160e3, 80e3, 160e3],
            "unknot-compiled": [160e3, 60e3, 150e3],
        }
    )
    two = _report({"c-epoll": [100e3, 100e3], "unknot-compiled": [90e3, 50e3]})
    rows = {(r.cell, r.peer): r for r in echo_pool.pool([one, two])}
    c_epoll = rows[("1 KiB x 1000", "c-epoll")]
    # per round: 0.8, 0.6, 0.75 and 0.9, 0.5
    assert len(c_epoll.paired) == 5
    assert statistics.median(c_epoll.paired) == pytest.approx(0.75)
    # each report's ratio of medians: 150/200 and 70/100
    assert c_epoll.per_report == [pytest.approx(0.75), pytest.approx(0.7)]
    assert c_epoll.met() == 2
    uvloop = rows[("1 KiB x 1000", "uvloop-streams")]
    assert uvloop.per_report == [pytest.approx(1.5), None]  # (the second has no uvloop)
    assert len(uvloop.paired) == 3 and statistics.median(uvloop.paired) == pytest.approx(1.5)
    floor = rows[("1 KiB x 1000", "greenlet-floor")]
    assert floor.target is None and statistics.median(floor.paired) == pytest.approx(150 / 160)
    assert ("1 KiB x 100", "c-epoll") not in rows  # (no report measured 100 connections)


def test_the_table_gives_the_verdict_of_the_pooled_median(tmp_path: Path, capsys) -> None:
    path = tmp_path / "run.md"
    path.write_text(
        _report({"c-epoll": [100e3, 100e3, 100e3], "unknot-compiled": [60e3, 80e3, 69e3]})
    )
    assert echo_pool.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "| 1 KiB x 1000 | c-epoll | >= 0.7 | 0.69 | 0 of 1 | 0.69 (0.60-0.80), n = 3 | **missed** |"
        in out
    )


def test_a_file_that_is_not_an_echo_report_is_refused() -> None:
    with pytest.raises(ValueError, match="not an echo.py report"):
        echo_pool.all_runs("# something else\n")


def test_the_floor_can_be_the_subject(tmp_path: Path, capsys) -> None:
    path = tmp_path / "run.md"
    path.write_text(
        _report(
            {
                "c-epoll": [200e3, 200e3, 200e3],
                "uvloop-streams": [100e3, 100e3, 100e3],
                "greenlet-floor": [140e3, 160e3, 150e3],
                "unknot-compiled": [130e3, 150e3, 140e3],
            }
        )
    )
    assert echo_pool.main(["--subject", "greenlet-floor", str(path)]) == 0
    out = capsys.readouterr().out
    row = "| 1 KiB x 1000 | c-epoll | >= 0.7 | 0.75 | 1 of 1 | 0.75 (0.70-0.80), n = 3 | met |"
    assert row in out
    assert "| 1 KiB x 1000 | uvloop-streams | >= 1.5 | 1.50 | 1 of 1 |" in out
    assert "| greenlet-floor |" not in out  # (no row of the floor against itself)
    rows = {(r.cell, r.peer) for r in echo_pool.pool([path.read_text()])}
    assert ("1 KiB x 1000", "greenlet-floor") in rows  # (unknot-compiled: the floor's row too)


def test_a_subject_no_report_has_is_said(tmp_path: Path, capsys) -> None:
    path = tmp_path / "run.md"
    path.write_text(_report({"c-epoll": [100e3, 90e3], "unknot-compiled": [70e3, 60e3]}))
    assert echo_pool.main(["--subject", "gevent", str(path)]) == 1
    assert "no report has gevent beside a target peer" in capsys.readouterr().err
