"""Pool the rounds of several echo.py reports: issue 13's cells over every round of every run.

usage: python benchmarks/echo_pool.py REPORT.md [REPORT.md ...]

Each REPORT is a Markdown report written by ``echo.py --markdown`` with ``--unknot-python``
(its "All runs" table: requests/s of every peer in every round). For each of issue 13's cells
(`echo_report.BUILD_TARGETS`, and the same cells against the greenlet floor when it ran), the
ratio unknot-compiled / peer within each round, pooled over all the reports: median and
quartiles, beside each report's own ratio of medians and how many reports met the target. On a
host whose speed drifts between runs, the pooled per-round ratios say more than any one run
(BENCHMARKS.md, "Issue 13 on an Intel Xeon host (session 18)").
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

from benchlib import builds
from echo_report import BUILD_TARGETS, size_label

FLOOR_PEER = "greenlet-floor"
_ROW = re.compile(r"^\| (\S+) \| (\d+ KiB|\d+ B) x (\d+) \| ([^|]*) \|$", re.M)


def _rps(text: str) -> float | None:
    text = text.strip()
    if text.endswith("k"):
        return float(text[:-1]) * 1000
    return None  # "error": that round has no number


def all_runs(report: str) -> dict[tuple[str, str, int], list[float | None]]:
    """The report's "All runs" table: (peer, size label, connections) -> requests/s by round."""
    start = report.find("## All runs")
    if start < 0:
        raise ValueError("not an echo.py report: no 'All runs' section")
    end = report.find("\n## ", start + 1)
    section = report[start : end if end >= 0 else len(report)]
    return {
        (m[1], m[2], int(m[3])): [_rps(v) for v in m[4].split(",")] for m in _ROW.finditer(section)
    }


def _median_of_medians(runs: list[float | None]) -> float | None:
    good = [r for r in runs if r]
    return statistics.median(good) if good else None


def pool(reports: list[str]) -> list[dict[str, object]]:
    """One row per cell (subject unknot-compiled): per report the ratio of the medians, and
    the per-round ratios of all reports pooled."""
    tables = [all_runs(r) for r in reports]
    cells = [(size, conns, peer, floor) for size, conns, peer, floor in BUILD_TARGETS]
    cells += [
        (size, conns, FLOOR_PEER, None)
        for size, conns in dict.fromkeys((size, conns) for size, conns, _, _ in BUILD_TARGETS)
    ]
    rows: list[dict[str, object]] = []
    for size, conns, peer, floor in cells:
        label = size_label(size)
        per_report: list[float | None] = []
        paired: list[float] = []
        for table in tables:
            ours = table.get((builds.COMPILED, label, conns))
            theirs = table.get((peer, label, conns))
            if not ours or not theirs:
                per_report.append(None)
                continue
            a, b = _median_of_medians(ours), _median_of_medians(theirs)
            per_report.append(a / b if a and b else None)
            paired += [x / y for x, y in zip(ours, theirs, strict=True) if x and y]
        if not paired:
            continue
        quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        rows.append(
            {
                "cell": f"{label} x {conns}",
                "peer": peer,
                "target": floor,
                "per_report": per_report,
                "met": sum(1 for r in per_report if r is not None and floor and r >= floor),
                "rounds": len(paired),
                "median": statistics.median(paired),
                "q1": quartiles[0],
                "q3": quartiles[2],
            }
        )
    return rows


def markdown(rows: list[dict[str, object]], names: list[str]) -> str:
    """The rows as a Markdown table."""
    head = [
        "cell",
        "peer",
        "target",
        *names,
        "reports that met it",
        "rounds pooled: median (quartiles)",
        "verdict",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        target = row["target"]
        runs = [f"{r:.2f}" if r is not None else "-" for r in row["per_report"]]  # type: ignore[attr-defined]
        pooled = f"{row['median']:.2f} ({row['q1']:.2f}-{row['q3']:.2f}), n = {row['rounds']}"
        if target is None:
            verdict, target_text, met = "", "", ""
        else:
            verdict = "met" if row["median"] >= target else "**missed**"  # type: ignore[operator]
            target_text, met = f">= {target:g}", f"{row['met']} of {len(runs)}"
        lines.append(
            "| "
            + " | ".join(
                [str(row["cell"]), str(row["peer"]), target_text, *runs, met, pooled, verdict]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    rows = pool([p.read_text() for p in paths])
    if not rows:
        print("no report has unknot-compiled beside a target peer", file=sys.stderr)
        return 1
    print(markdown(rows, [p.name for p in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
