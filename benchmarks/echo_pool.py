"""Pool the rounds of several echo.py reports: issue 13's cells over every round of every run.

usage: python benchmarks/echo_pool.py [--subject PEER] REPORT.md [REPORT.md ...]

Each REPORT is a Markdown report written by ``echo.py --markdown`` with ``--unknot-python``
(its "All runs" table: requests/s of every peer in every round). For each of issue 13's cells
(`echo_report.BUILD_TARGETS`, and the same cells against the greenlet floor when it ran), the
ratio unknot-compiled / peer within each round, pooled over all the reports: median and
quartiles, beside each report's own ratio of medians and how many reports met the target. On a
host whose speed drifts between runs, the pooled per-round ratios say more than any one run
(BENCHMARKS.md, "Issue 13 on an Intel Xeon host (session 18)").

``--subject greenlet-floor`` puts the floor in unknot-compiled's place: whether any greenlet
server that makes the same syscalls and switches could meet the cells on the host at hand
(BENCHMARKS.md, "Issue 13 on a faster AMD EPYC host (session 26)").
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from benchlib import builds
from echo_report import BUILD_TARGETS, Cell, Results, _table, size_label

FLOOR_PEER = "greenlet-floor"
_ROW = re.compile(r"^\| (\S+) \| (\d+) (KiB|B) x (\d+) \| ([^|]*) \|$", re.M)


def all_runs(report: str) -> Results:
    """The report's "All runs" table (requests/s of every peer in every round) as `Results`,
    whose medians and per-round ratios are then the report's own."""
    start = report.find("## All runs")
    if start < 0:
        raise ValueError("not an echo.py report: no 'All runs' section")
    end = report.find("\n## ", start + 1)
    section = report[start : end if end >= 0 else len(report)]
    cells = []
    for m in _ROW.finditer(section):
        size = int(m[2]) * (1024 if m[3] == "KiB" else 1)
        for i, text in enumerate(m[5].split(",")):
            text = text.strip()
            if text.endswith("k"):  # (else "error": that round has no number)
                rps = float(text[:-1]) * 1000
                cells.append(Cell(m[1], size, int(m[4]), rps=rps, round_trips=1, round=i))
    results = Results(
        list(dict.fromkeys(c.peer for c in cells)),
        sorted({c.size for c in cells}),
        sorted({c.conns for c in cells}),
    )
    for cell in cells:
        results.add(cell)
    return results


@dataclass
class Pooled:
    """One cell, the subject (unknot-compiled) against ``peer``, over several reports."""

    cell: str
    peer: str
    target: float | None  # (None: no target, as against the greenlet floor)
    per_report: list[float | None]  # each report's ratio of medians (None: not measured)
    paired: list[float]  # the per-round ratios of all the reports

    def quartiles(self) -> list[float]:
        if len(self.paired) == 1:
            return self.paired * 3
        return statistics.quantiles(self.paired, n=4)

    def met(self) -> int:
        """How many reports met the target by their ratio of medians."""
        floor = self.target
        return sum(1 for r in self.per_report if r is not None and floor and r >= floor)


def pool(reports: list[str], subject: str = builds.COMPILED) -> list[Pooled]:
    """One row per cell of ``subject`` (unknot-compiled, or another peer of the reports): per
    report the ratio of the medians, and the per-round ratios of all reports pooled. The
    rows against the greenlet floor come after the targets' (unless the floor is the
    subject)."""
    runs = [all_runs(r) for r in reports]
    cells: list[tuple[int, int, str, float | None]] = list(BUILD_TARGETS)
    if subject != FLOOR_PEER:
        cells += [
            (size, conns, FLOOR_PEER, None)
            for size, conns in dict.fromkeys((size, conns) for size, conns, _, _ in BUILD_TARGETS)
        ]
    rows = []
    for size, conns, peer, floor in cells:
        per_report: list[float | None] = []
        paired: list[float] = []
        for results in runs:
            ours = results.rps(subject, size, conns)
            theirs = results.rps(peer, size, conns)
            per_report.append(ours / theirs if ours and theirs else None)
            paired += results.paired_ratios(size, conns, peer, subject)
        if paired:
            rows.append(Pooled(f"{size_label(size)} x {conns}", peer, floor, per_report, paired))
    return rows


def markdown(rows: list[Pooled], names: list[str]) -> str:
    """The rows as a Markdown table."""
    header = ["cell", "peer", "target", *names, "reports that met it"]
    header += ["rounds pooled: median (quartiles)", "verdict"]
    lines = []
    for row in rows:
        runs = [f"{r:.2f}" if r is not None else "-" for r in row.per_report]
        median, (q1, _, q3) = statistics.median(row.paired), row.quartiles()
        pooled = f"{median:.2f} ({q1:.2f}-{q3:.2f}), n = {len(row.paired)}"
        if row.target is None:
            target, met, verdict = "", "", ""
        else:
            target, met = f">= {row.target:g}", f"{row.met()} of {len(runs)}"
            verdict = "met" if median >= row.target else "**missed**"
        lines.append([row.cell, row.peer, target, *runs, met, pooled, verdict])
    return "\n".join(_table(header, lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Pool the rounds of several echo.py reports over issue 13's cells."
    )
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT.md")
    parser.add_argument(
        "--subject",
        default=builds.COMPILED,
        help=f"the peer whose ratios are pooled (default {builds.COMPILED}; "
        f"{FLOOR_PEER}: could the floor meet the cells?)",
    )
    args = parser.parse_args(argv)
    rows = pool([p.read_text() for p in args.reports], args.subject)
    if not rows:
        print(f"no report has {args.subject} beside a target peer", file=sys.stderr)
        return 1
    print(markdown(rows, [p.name for p in args.reports]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
