"""Results of the echo benchmark and their presentation: console lines and a Markdown report
with absolute requests/s, latencies, unknot's ratios against every peer, and the check that the
load generator outran every Python server (it must report more against the native ``c-epoll``
server than against any Python peer, or the Python numbers measure the load generator)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchlib import builds
from echo_servers import spin_ns

NATIVE_PEER = "c-epoll"
SUBJECT = "unknot"

#: The issue's targets: (message size, connections, peer, floor of unknot / peer).
TARGETS = [
    (1024, 100, "gevent", 1.5),
    (1024, 100, "uvloop-streams", 1.1),
    (1024, 1000, "gevent", 1.4),
]
#: The compiled build's targets (issue 13), checked with --unknot-python: (message size,
#: connections, peer, floor of unknot-compiled / peer).
BUILD_TARGETS = [
    (size, conns, peer, floor)
    for size, conns in ((1024, 100), (1024, 1000))
    for peer, floor in ((NATIVE_PEER, 0.7), ("uvloop-streams", 1.5))
]


@dataclass
class Cell:
    """One measurement: a peer at one message size and connection count."""

    peer: str
    size: int
    conns: int
    rps: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    max_us: float = 0.0
    round_trips: int = 0
    starved_conns: int = 0
    error: str = ""
    round: int = 0  # which round of --repeat measured it, from 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_label(size: int) -> str:
    """1024 -> "1 KiB"; sizes that are not whole KiB stay in bytes."""
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def rps_label(rps: float) -> str:
    return f"{rps / 1000:.1f}k"


def ms_label(us: float) -> str:
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.0f}"


def console_line(cell: Cell) -> str:
    """One aligned line per cell, printed as the run goes."""
    head = f"  {cell.peer:<17} {size_label(cell.size):>7} x {cell.conns:>4} conns"
    if cell.error:
        return f"{head}  ERROR {cell.error}"
    line = (
        f"{head}  {rps_label(cell.rps):>7} rps   p50 {ms_label(cell.p50_us):>5} ms"
        f"   p99 {ms_label(cell.p99_us):>5} ms   max {ms_label(cell.max_us):>5} ms"
    )
    if cell.starved_conns:
        line += f"   ({cell.starved_conns} connections got no reply in the window)"
    return line


def _good(cell: Cell) -> bool:
    return not cell.error and cell.round_trips > 0


class Results:
    """All cells of a run, indexed by (peer, size, conns).

    With ``--repeat`` every cell is measured once per round; ``cells`` holds the sample with
    the median requests/s (its latencies are the ones shown), ``samples`` all of them in round
    order.
    """

    def __init__(self, peers: list[str], sizes: list[int], conns: list[int]) -> None:
        self.peers = peers
        self.sizes = sizes
        self.conns = conns
        self.cells: dict[tuple[str, int, int], Cell] = {}
        self.samples: dict[tuple[str, int, int], list[Cell]] = {}
        self.peer_status: dict[str, str] = {}  # "ok", "unavailable: ...", "failed: ..."

    def add(self, cell: Cell) -> None:
        key = (cell.peer, cell.size, cell.conns)
        samples = self.samples.setdefault(key, [])
        samples.append(cell)
        good = sorted((c for c in samples if _good(c)), key=lambda c: c.rps)
        # The median sample (the lower middle one for an even count), else the last error.
        self.cells[key] = good[(len(good) - 1) // 2] if good else cell

    def rps(self, peer: str, size: int, conns: int) -> float | None:
        """The median requests/s over the rounds (None if no round measured the cell)."""
        good = [c.rps for c in self.samples.get((peer, size, conns), []) if _good(c)]
        return statistics.median(good) if good else None

    def runs(self, peer: str, size: int, conns: int) -> list[float | None]:
        """Requests/s per round, None where that round failed."""
        return [c.rps if _good(c) else None for c in self.samples.get((peer, size, conns), [])]

    def per_round(self, peer: str, size: int, conns: int, rounds: int) -> list[float | None]:
        """Requests/s in each of ``rounds`` rounds, None where that round has no number (the
        cell failed, or the server did not start that round)."""
        out: list[float | None] = [None] * rounds
        for cell in self.samples.get((peer, size, conns), []):
            if _good(cell) and cell.round < rounds:
                out[cell.round] = cell.rps
        return out

    def rounds(self) -> int:
        """How many rounds have at least one cell."""
        return 1 + max((c.round for v in self.samples.values() for c in v), default=-1)

    def paired_ratios(
        self, size: int, conns: int, peer: str, subject: str = SUBJECT
    ) -> list[float]:
        """``subject`` / ``peer`` within each round (the two ran minutes apart, not hours)."""
        n = self.rounds()
        ours = self.per_round(subject, size, conns, n)
        theirs = self.per_round(peer, size, conns, n)
        return [a / b for a, b in zip(ours, theirs, strict=True) if a and b]

    def measured(self, peer: str) -> bool:
        """Whether ``peer`` has at least one cell with a number in it."""
        return any(
            cell.peer == peer and not cell.error and cell.round_trips
            for cell in self.cells.values()
        )

    def headroom(self) -> list[tuple[int, int, float | None, str, float | None]]:
        """Per cell: (size, conns, native rps, fastest Python peer, its rps)."""
        rows = []
        for size in self.sizes:
            for conns in self.conns:
                native = self.rps(NATIVE_PEER, size, conns)
                best_peer, best = "", None
                for peer in self.peers:
                    native_peer = peer == NATIVE_PEER or _spin(peer) is not None
                    rps = None if native_peer else self.rps(peer, size, conns)
                    if rps is not None and (best is None or rps > best):
                        best_peer, best = peer, rps
                rows.append((size, conns, native, best_peer, best))
        return rows

    def headroom_failures(self) -> list[str]:
        """Cells where a Python peer matched or beat the native server."""
        return [
            f"{size_label(s)} x {c} conns: {peer} {rps_label(best)} >= {NATIVE_PEER} "
            f"{rps_label(native)}"
            for s, c, native, peer, best in self.headroom()
            if native is not None and best is not None and best >= native
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "peers": self.peer_status,
            "cells": [c.as_dict() for samples in self.samples.values() for c in samples],
        }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _cell_text(results: Results, peer: str, size: int, conns: int, latency: bool) -> str:
    cell = results.cells.get((peer, size, conns))
    if cell is None:
        return ""
    if cell.error:
        return "error"
    if latency:
        return f"{ms_label(cell.p50_us)} / {ms_label(cell.p99_us)} / {ms_label(cell.max_us)}"
    text = rps_label(cell.rps)
    return text + (f" ({cell.starved_conns} starved)" if cell.starved_conns else "")


def _ratio_section(results: Results) -> list[str]:
    """One table per unknot row measured (unknot; with --unknot-python also unknot-compiled and
    unknot-pure): its requests/s divided by every other peer's."""
    subjects = [s for s in (SUBJECT, *builds.PEERS) if results.measured(s)]
    if not subjects:
        status = results.peer_status.get(SUBJECT)
        if status is None:
            return [f"{SUBJECT} was not part of this run, so there are no ratios."]
        return [f"No ratios: {SUBJECT} {status}."]
    out = [
        "Requests/s of each unknot row divided by the peer's, same cell, same run (above 1: "
        "that unknot is faster).",
    ]
    for subject in subjects:
        header = [f"{subject} / peer"] + [
            f"{size_label(s)} x {c}" for s in results.sizes for c in results.conns
        ]
        rows = []
        for peer in results.peers:
            if peer in subjects[: subjects.index(subject) + 1] or not results.measured(peer):
                continue
            row = [peer]
            for size in results.sizes:
                for conns in results.conns:
                    ours = results.rps(subject, size, conns)
                    theirs = results.rps(peer, size, conns)
                    row.append(f"{ours / theirs:.2f}" if ours and theirs else "")
            rows.append(row)
        if rows:
            out += ["", *_table(header, rows)]
    return out


def _targets_section(results: Results) -> list[str]:
    rows = []
    targets = [(SUBJECT, *t) for t in TARGETS]
    targets += [(builds.COMPILED, *t) for t in BUILD_TARGETS]
    for subject, size, conns, peer, floor in targets:
        if (
            size not in results.sizes
            or conns not in results.conns
            or peer not in results.peers
            or subject not in results.peers
        ):
            continue
        ours, theirs = results.rps(subject, size, conns), results.rps(peer, size, conns)
        if not ours or not theirs:
            continue
        ratio = ours / theirs
        paired = results.paired_ratios(size, conns, peer, subject)
        rows.append(
            [
                subject,
                f"{size_label(size)} x {conns}",
                peer,
                f">= {floor:g}",
                f"{ratio:.2f}",
                ", ".join(f"{r:.2f}" for r in paired),
                "met" if ratio >= floor else "**missed**",
            ]
        )
    if not rows:
        return ["No target cell was part of this run."]
    header = ["subject", "cell", "peer", "target", "ratio of medians", "per round", "verdict"]
    return [
        "The subject's median requests/s over the peer's median, and the ratio within each "
        f"round ({builds.COMPILED}: issue 13's targets for the compiled build, with "
        "--unknot-python).",
        "",
        *_table(header, rows),
    ]


def _builds_section(results: Results) -> list[str]:
    """The compiled build against the pure one (``--unknot-python``), cell by cell."""
    rows = [
        (
            f"{size_label(size)} x {conns}",
            results.rps(builds.COMPILED, size, conns),
            results.rps(builds.PURE, size, conns),
            True,
        )
        for size in results.sizes
        for conns in results.conns
    ]
    table = builds.ratio_table(rows, rps_label)
    if not table:
        return []
    return [
        "",
        "## Compiled against pure",
        "",
        "Requests/s (medians) of the installed unknot's compiled build and of the same install "
        "with UNKNOT_PURE=1, and their ratio (above 1: the compiled build is faster).",
        "",
        *table,
    ]


def _spin(peer: str) -> int | None:
    """The nanoseconds a spinning native peer spends per message; None for any other peer."""
    try:
        return spin_ns(peer)
    except ValueError:
        return None


def _budget_section(results: Results) -> list[str]:
    """With spinning native peers (``c-epoll+NNNns``): each one's requests/s beside the plain
    native server's, uvloop streams' and unknot's, so the user time per message that a ratio
    to a peer leaves a server can be read off."""
    spinning = sorted((ns, p) for p in results.peers if (ns := _spin(p)) is not None)
    if not spinning or not any(results.measured(p) for _, p in spinning):
        return []
    rows_of = [(0, NATIVE_PEER), *spinning]
    subjects = [s for s in (SUBJECT, *builds.PEERS) if results.measured(s)]
    references = [p for p in (NATIVE_PEER, "uvloop-streams") if results.measured(p)]
    header = ["server", "user ns per message added"]
    header += [f"{size_label(s)} x {c}" for s in results.sizes for c in results.conns]
    rows = []
    for ns, peer in [*rows_of, *((None, s) for s in subjects)]:
        if not results.measured(peer):
            continue
        row = [peer, "" if ns is None else f"{ns:,}"]
        for size in results.sizes:
            for conns in results.conns:
                rps = results.rps(peer, size, conns)
                parts = [rps_label(rps)] if rps else [""]
                for ref in references:
                    theirs = results.rps(ref, size, conns)
                    if rps and theirs and ref != peer:
                        parts.append(f"{rps / theirs:.2f}x {ref}")
                row.append(", ".join(parts))
        rows.append(row)
    return [
        "",
        "## User-time budget",
        "",
        "The native server with NNN ns of user time spent on every message it reads "
        "(`c-epoll+NNNns`, the same syscalls as `c-epoll`), beside the unknot rows: median "
        "requests/s and their ratios to the references. A server with the same syscalls that "
        "spends more user time per message than the spinning row that just reaches a target "
        "is not expected to reach it on this machine.",
        "",
        *_table(header, rows),
    ]


def _runs_section(results: Results) -> list[str]:
    header = ["peer", "cell", "requests/s per round"]
    rows = []
    for peer in results.peers:
        for size in results.sizes:
            for conns in results.conns:
                runs = results.runs(peer, size, conns)
                if runs:
                    text = ", ".join(rps_label(r) if r else "error" for r in runs)
                    rows.append([peer, f"{size_label(size)} x {conns}", text])
    return _table(header, rows)


def _headroom_section(results: Results) -> list[str]:
    if NATIVE_PEER not in results.peer_status:
        return [f"Not checked: {NATIVE_PEER} was not part of this run."]
    rows = [
        [
            f"{size_label(size)} x {conns}",
            rps_label(native) if native is not None else "",
            f"{peer} {rps_label(best)}" if best is not None else "",
            f"{native / best:.2f}" if native and best else "",
        ]
        for size, conns, native, peer, best in results.headroom()
    ]
    failures = results.headroom_failures()
    verdict = (
        "**Check failed**: the load generator may have limited these cells: "
        + "; ".join(failures)
        + ". There the peer's number is only a lower bound (and unknot's ratio against it an "
        "upper bound); rerun on a quiet machine with a longer --duration before quoting them."
        if failures
        else "Check passed: the native server got more round trips than every Python peer in "
        "every cell, so the load generator was not the bottleneck for any Python peer."
    )
    return [
        *_table(["cell", NATIVE_PEER, "fastest Python peer", "margin"], rows),
        "",
        verdict,
    ]


def markdown(results: Results, machine: dict[str, str], settings: dict[str, str]) -> str:
    """The whole report as Markdown."""
    out = ["# Closed-loop echo benchmark", ""]
    out += [
        "Each connection sends one message, reads the whole echo back, and repeats. The server "
        "runs on one CPU and the native load generator (`benchmarks/loadgen/echoload.c`) on "
        "another; every peer was measured in the same run.",
        "",
    ]
    out += [f"- **{key}**: {value}" for key, value in {**machine, **settings}.items()]
    out += ["", "## Peers", ""]
    out += [f"- `{peer}`: {results.peer_status.get(peer, 'not run')}" for peer in results.peers]
    for title, latency in (("Requests per second", False), ("Latency p50 / p99 / max, ms", True)):
        out += ["", f"## {title}"]
        for size in results.sizes:
            out += ["", f"### {size_label(size)} messages", ""]
            header = ["peer"] + [f"{c} conns" for c in results.conns]
            rows = [
                [peer] + [_cell_text(results, peer, size, c, latency) for c in results.conns]
                for peer in results.peers
                if results.measured(peer)
            ]
            out += _table(header, rows)
    rounds = max((len(v) for v in results.samples.values()), default=0)
    if rounds > 1:
        out += ["", f"Each cell: the median of {rounds} rounds (all runs below)."]
    out += ["", "## Ratios", "", *_ratio_section(results)]
    out += ["", "## Targets", "", *_targets_section(results)]
    out += _builds_section(results)
    out += _budget_section(results)
    if rounds > 1:
        out += ["", "## All runs", "", *_runs_section(results)]
    out += ["", "## Load generator headroom", "", *_headroom_section(results)]
    errors = [c for c in results.cells.values() if c.error]
    if errors:
        out += ["", "## Errors", ""]
        out += [f"- {c.peer}, {size_label(c.size)} x {c.conns}: {c.error}" for c in errors]
    return "\n".join(out) + "\n"
