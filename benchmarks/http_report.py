"""Results of the HTTP benchmark and their presentation: one record per measured run, medians
and spreads per cell, unknot's ratios to every peer (per round, then their median), the
issue's targets, the check that nginx (the ceiling) beat every other server, and the Markdown
section that ``http.py --markdown`` puts into BENCHMARKS.md."""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchlib import builds

SECTION_TITLE = "HTTP"
#: The rows whose ratios to the peers are reported (the build peers: with --unknot-python).
SUBJECTS = ("unknot", "unknot-bare", builds.COMPILED, builds.PURE)
CEILING = "nginx"
CLIENT_CASE = "client"
WRK_BUSY = 0.9  # wrk's CPU share from which it may have been the limit

#: Case name -> its label in tables.
CASE_LABELS = {
    "hello": "hello",
    "bytes64k": "64 KiB body",
    "routed": "routed JSON",
    "static64k": "static 64 KiB",
    "static1m": "static 1 MiB",
    CLIENT_CASE: "client",
}
#: The cases whose throughput in bytes/s is worth a table of its own.
BULK_CASES = ("bytes64k", "static64k", "static1m")

#: The issue's targets: (case, connections, peer, floor of unknot / peer).
TARGETS = [
    ("hello", 100, "uvicorn", 2.0),
    ("hello", 100, "granian-rsgi", 1.0),
    ("static1m", 100, "nginx", 0.8),
    ("static64k", 100, "granian-rsgi", 1.0),  # granian's Rust static mount
    (CLIENT_CASE, 100, "aiohttp", 2.0),
]

Cell = tuple[str, int]  # (case, connections or client workers)


@dataclass
class Sample:
    """One measured run of one peer on one cell: wrk against a server, or a client against
    nginx. ``server_cpu`` and ``load_cpu`` are shares of one CPU over the run (-1: unknown);
    the load side is wrk for the server cases and the client itself for the client case."""

    peer: str
    case: str
    conns: int
    round: int
    rps: float = 0.0
    body_bytes: int = 0
    requests: int = 0
    p50_ms: float = -1.0
    p99_ms: float = -1.0
    socket_errors: str = ""
    server_cpu: float = -1.0
    load_cpu: float = -1.0
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether this run measured something and nothing was wrong."""
        return not self.error and self.requests > 0

    @property
    def cell(self) -> Cell:
        """(case, connections or workers)."""
        return (self.case, self.conns)

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return asdict(self)


def cell_label(cell: Cell) -> str:
    """``hello x 100 conns``, ``client x 100 workers``..."""
    case, conns = cell
    unit = "workers" if case == CLIENT_CASE else "conns"
    return f"{CASE_LABELS.get(case, case)} x {conns} {unit}"


def rps_label(rps: float) -> str:
    """Requests/s, short: ``62.1k`` or ``940``."""
    return f"{rps / 1000:.1f}k" if rps >= 1000 else f"{rps:.0f}"


def share_label(share: float) -> str:
    """A CPU share as a percentage; ``?`` when unknown (negative)."""
    return f"{share * 100:.0f}%" if share >= 0 else "?"


def console_line(sample: Sample) -> str:
    """One aligned line per run, printed as the benchmark goes."""
    head = f"  {sample.peer:<15} {cell_label(sample.cell):<30}"
    if sample.error:
        return f"{head} ERROR {sample.error}"
    line = f"{head} {rps_label(sample.rps):>7} req/s"
    if sample.body_bytes >= 65536:
        line += f" {sample.rps * sample.body_bytes / 1e9:5.2f} GB/s"
    if sample.p50_ms >= 0:
        line += f"  p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms"
    line += f"  server CPU {share_label(sample.server_cpu)}"
    line += f"  {'client' if sample.case == CLIENT_CASE else 'wrk'} CPU "
    line += share_label(sample.load_cpu)
    if sample.socket_errors:
        line += f"  socket errors: {sample.socket_errors}"
    return line


class Results:
    """Every run of a benchmark invocation, by peer and cell, in round order."""

    def __init__(self, peers: list[str], clients: list[str], cells: list[Cell]) -> None:
        self.peers = peers
        self.clients = clients
        self.cells = cells
        self.samples: dict[tuple[str, Cell], list[Sample]] = {}
        self.status: dict[str, str] = {}  # server peers: "ok", "unavailable: ...", "failed: ..."
        self.client_status: dict[str, str] = {}  # the same, for the clients
        self.skipped: dict[tuple[str, str], str] = {}  # (peer, case) -> why it is not measured

    def add(self, sample: Sample) -> None:
        """Record one run."""
        self.samples.setdefault((sample.peer, sample.cell), []).append(sample)

    def runs(self, peer: str, cell: Cell) -> list[Sample]:
        """Every run of ``peer`` on ``cell``, in round order."""
        return self.samples.get((peer, cell), [])

    def values(self, peer: str, cell: Cell, field: str = "rps") -> list[float]:
        """``field`` of the good runs of ``peer`` on ``cell``."""
        return [float(getattr(s, field)) for s in self.runs(peer, cell) if s.ok]

    def median(self, peer: str, cell: Cell, field: str = "rps") -> float | None:
        """The median of ``field`` over the good runs (unknown values left out), or None."""
        values = [v for v in self.values(peer, cell, field) if v >= 0]
        return statistics.median(values) if values else None

    def round_ratios(self, subject: str, peer: str, cell: Cell) -> list[float]:
        """``subject`` / ``peer`` requests/s within each round both completed."""
        ours = {s.round: s.rps for s in self.runs(subject, cell) if s.ok}
        theirs = {s.round: s.rps for s in self.runs(peer, cell) if s.ok}
        return [ours[r] / theirs[r] for r in sorted(ours) if r in theirs and theirs[r]]

    def server_cells(self) -> list[Cell]:
        """The cells measured with wrk."""
        return [c for c in self.cells if c[0] != CLIENT_CASE]

    def client_cells(self) -> list[Cell]:
        """The client case's cells."""
        return [c for c in self.cells if c[0] == CLIENT_CASE]

    def measured(self, peer: str, cells: list[Cell]) -> bool:
        """Whether ``peer`` has a good run in any of ``cells``."""
        return any(self.values(peer, cell) for cell in cells)

    def ceiling_failures(self) -> list[str]:
        """Server cells where some peer matched or beat nginx: there wrk, not the server, may
        have been the limit, so that peer's number is only a lower bound."""
        failures = []
        for cell in self.server_cells():
            top = self.median(CEILING, cell)
            if top is None:
                continue
            for peer in self.peers:
                rps = self.median(peer, cell) if peer != CEILING else None
                if rps is not None and rps >= top:
                    failures.append(
                        f"{cell_label(cell)}: {peer} {rps_label(rps)} >= nginx {rps_label(top)}"
                    )
        return failures

    def busy_wrk(self) -> list[str]:
        """Server cells and peers where wrk's median CPU share reached ``WRK_BUSY``."""
        busy = []
        for cell in self.server_cells():
            for peer in self.peers:
                share = self.median(peer, cell, "load_cpu")
                if share is not None and share >= WRK_BUSY:
                    busy.append(f"{peer}, {cell_label(cell)} ({share_label(share)})")
        return busy

    def to_json(self) -> dict[str, Any]:
        """Statuses, skipped cells and every run, JSON-ready."""
        return {
            "status": self.status,
            "client_status": self.client_status,
            "skipped": {f"{peer} {case}": why for (peer, case), why in self.skipped.items()},
            "samples": [s.as_dict() for runs in self.samples.values() for s in runs],
        }


# ---- tables ------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _spread(values: list[float], label: Any) -> str:
    """``median (min-max)`` of ``values`` formatted by ``label``; just the value for one run."""
    if not values:
        return ""
    mid = label(statistics.median(values))
    if len(values) == 1:
        return mid
    return f"{mid} ({label(min(values))}-{label(max(values))})"


def _cell_text(results: Results, peer: str, cell: Cell, field: str, label: Any) -> str:
    runs = results.runs(peer, cell)
    if not runs:
        why = results.skipped.get((peer, cell[0]))
        return "n/a" if why else ""
    values = [v for v in results.values(peer, cell, field) if v >= 0]
    if not values:
        return "error"
    return _spread(values, label)


def _matrix(
    results: Results, peers: list[str], cells: list[Cell], field: str, label: Any
) -> list[str]:
    header = ["peer"] + [cell_label(c) for c in cells]
    rows = [
        [peer] + [_cell_text(results, peer, c, field, label) for c in cells]
        for peer in peers
        if results.measured(peer, cells)
    ]
    return _table(header, rows)


def _gbps(results: Results) -> list[str]:
    cells = [c for c in results.server_cells() if c[0] in BULK_CASES]
    if not cells:
        return []
    header = ["peer"] + [cell_label(c) for c in cells]
    rows = []
    for peer in results.peers:
        if not results.measured(peer, cells):
            continue
        row = [peer]
        for cell in cells:
            runs = [s for s in results.runs(peer, cell) if s.ok]
            values = [s.rps * s.body_bytes / 1e9 for s in runs]
            row.append(_spread(values, lambda v: f"{v:.2f}") if values else "")
        rows.append(row)
    return ["Payload throughput, GB/s (requests/s x body size):", "", *_table(header, rows)]


def _ratio_text(ratios: list[float]) -> str:
    return _spread(ratios, lambda v: f"{v:.2f}x")


def _ratios(results: Results, subject: str, peers: list[str], cells: list[Cell]) -> list[str]:
    if not results.measured(subject, cells):
        return []
    header = [f"{subject} / peer"] + [cell_label(c) for c in cells]
    rows = []
    for peer in peers:
        # One table compares the two unknot rows: the first subject's.
        if peer in SUBJECTS[: SUBJECTS.index(subject) + 1] or not results.measured(peer, cells):
            continue
        rows.append([peer] + [_ratio_text(results.round_ratios(subject, peer, c)) for c in cells])
    return _table(header, rows) if rows else []


def _targets(results: Results) -> list[str]:
    rows = []
    for case, conns, peer, floor in TARGETS:
        cell = (case, conns)
        if cell not in results.cells:
            continue
        ratios = results.round_ratios("unknot", peer, cell)
        if ratios:
            ratio = statistics.median(ratios)
            verdict = "met" if ratio >= floor else "**missed**"
            per_round = ", ".join(f"{r:.2f}" for r in ratios)
            rows.append(
                [cell_label(cell), peer, f">= {floor:.1f}x", f"{ratio:.2f}x", per_round, verdict]
            )
        else:
            statuses = results.client_status if case == CLIENT_CASE else results.status
            missing = [name for name in ("unknot", peer) if not results.values(name, cell)]
            why = "; ".join(f"{name}: {statuses.get(name, 'not run')}" for name in missing)
            rows.append([cell_label(cell), peer, f">= {floor:.1f}x", "", "", f"no ratio ({why})"])
    if not rows:
        return ["No target cell was part of this run."]
    header = ["cell", "peer", "target", "median of round ratios", "per round", "verdict"]
    return _table(header, rows)


def _ceiling(results: Results) -> list[str]:
    busy = results.busy_wrk()
    note = (
        [
            "",
            f"wrk used {WRK_BUSY:.0%} or more of its CPU (median) in: " + "; ".join(busy) + ". "
            "There wrk was at or near its own limit, so a faster server could not have shown "
            "more: treat those numbers, and ratios against them, as lower bounds.",
        ]
        if busy
        else []
    )
    if CEILING not in results.status or not results.measured(CEILING, results.server_cells()):
        return ["Not checked: nginx was not measured in this run.", *note]
    failures = results.ceiling_failures()
    if failures:
        return [
            "**Check failed**: a peer matched nginx, so wrk may have been the limit there and "
            "the peer's number is a lower bound: " + "; ".join(failures) + ".",
            *note,
        ]
    return [
        "Check passed: nginx beat every other server in every cell, so wrk had headroom.",
        *note,
    ]


def _cpu(results: Results) -> list[str]:
    cells = results.server_cells()
    header = ["server CPU / wrk CPU"] + [cell_label(c) for c in cells]
    rows = []
    for peer in results.peers:
        if not results.measured(peer, cells):
            continue
        row = [peer]
        for cell in cells:
            server = results.median(peer, cell, "server_cpu")
            load = results.median(peer, cell, "load_cpu")
            if server is None or load is None:
                row.append("")
            else:
                row.append(f"{share_label(server)} / {share_label(load)}")
        rows.append(row)
    return _table(header, rows)


def _share(results: Results, peer: str, cell: Cell, field: str) -> str:
    value = results.median(peer, cell, field)
    return share_label(value) if value is not None else "?"


def _clients(results: Results) -> list[str]:
    lines: list[str] = []
    for cell in results.client_cells():
        # unknot's ratios, and the compiled build's with --unknot-python.
        subjects = [s for s in ("unknot", builds.COMPILED) if results.values(s, cell)] or ["unknot"]
        header = ["client", "requests/s", *(f"{s} / client" for s in subjects)]
        header += ["client CPU", "nginx CPU"]
        rows = []
        for client in results.clients:
            runs = results.runs(client, cell)
            if not runs:
                continue
            ratios = [
                _ratio_text(results.round_ratios(s, client, cell) if client != s else [])
                for s in subjects
            ]
            rows.append(
                [
                    client,
                    _cell_text(results, client, cell, "rps", rps_label) or "error",
                    *ratios,
                    _share(results, client, cell, "load_cpu"),
                    _share(results, client, cell, "server_cpu"),
                ]
            )
        if rows:
            lines += [f"{cell_label(cell)}, keep-alive GETs of `/` (hello) from nginx:", ""]
            lines += [*_table(header, rows), ""]
    if lines and "httpx" in results.clients:
        lines += [
            "httpx's `AsyncClient` slows down sharply as the number of concurrent requests on "
            "one client grows (encode/httpx#3215, open): compare `--client-workers 10`.",
            "",
        ]
    return lines


def _builds(results: Results) -> list[str]:
    """``--unknot-python``: the compiled build's requests/s against the pure build's, per cell
    (medians; the ratio tables above have the per-round ratios, and both against the peers)."""
    rows = [
        (cell_label(cell), *(results.median(p, cell) for p in builds.PEERS), True)
        for cell in results.cells
    ]
    table = builds.ratio_table(rows, rps_label)
    if not table:
        return []
    intro = (
        "Requests/s (medians) of the installed unknot as installed (compiled) and with "
        "UNKNOT_PURE=1 (pure), server and client; above 1: the compiled build is faster."
    )
    return [intro, "", *table]


def _problems(results: Results) -> list[str]:
    lines = []
    for runs in results.samples.values():
        for s in runs:
            if s.error:
                lines.append(f"- {s.peer}, {cell_label(s.cell)}, round {s.round}: {s.error}")
            elif s.socket_errors:
                lines.append(
                    f"- {s.peer}, {cell_label(s.cell)}, round {s.round}: "
                    f"socket errors {s.socket_errors}"
                )
    return lines


def report(results: Results) -> list[str]:
    """The results as Markdown lines (tables and checks; no machine facts)."""
    server_cells = results.server_cells()
    out: list[str] = ["### Peers", ""]
    for name in results.peers:
        out.append(f"- server `{name}`: {results.status.get(name, 'not run')}")
    if results.client_cells():
        for name in results.clients:
            out.append(f"- client `{name}`: {results.client_status.get(name, 'not run')}")
    for (peer, case), why in results.skipped.items():
        out.append(f"- not measured: {peer}, {CASE_LABELS.get(case, case)}: {why}")
    if server_cells:
        out += ["", "### Servers: requests/s, median (min-max) over the rounds", ""]
        out += _matrix(results, results.peers, server_cells, "rps", rps_label)
        gbps = _gbps(results)
        if gbps:
            out += ["", *gbps]
        out += ["", "### Ratios to the peers, median of the per-round ratios (min-max)", ""]
        for subject in SUBJECTS:
            table = _ratios(results, subject, results.peers, server_cells)
            if table:
                out += [*table, ""]
        if not any(results.measured(s, server_cells) for s in SUBJECTS):
            out += [f"No ratios: unknot {results.status.get('unknot', 'not run')}.", ""]
        out += ["### Latency p50 / p99, ms (medians)", ""]
        out += _latency(results, server_cells)
        out += ["", "### CPU use during the measured runs (share of one CPU, medians)", ""]
        out += _cpu(results)
        out += ["", "### Ceiling check", "", *_ceiling(results)]
    if results.client_cells():
        out += ["", "### Client case", "", *_clients(results)]
    compiled = _builds(results)
    if compiled:
        out += ["### Compiled against pure", "", *compiled, ""]
    out += ["### Targets", "", *_targets(results)]
    problems = _problems(results)
    if problems:
        out += ["", "### Errors and socket errors", "", *problems]
    return out


def _latency(results: Results, cells: list[Cell]) -> list[str]:
    header = ["peer"] + [cell_label(c) for c in cells]
    rows = []
    for peer in results.peers:
        if not results.measured(peer, cells):
            continue
        row = [peer]
        for cell in cells:
            p50, p99 = results.median(peer, cell, "p50_ms"), results.median(peer, cell, "p99_ms")
            row.append(f"{p50:.2f} / {p99:.2f}" if p50 is not None and p99 is not None else "")
        rows.append(row)
    return _table(header, rows)


def replace_section(path: Path, section: str) -> None:
    """Replace the ``## HTTP`` section of ``path`` (up to the next level-2 header), or append
    it; other sections are left as they are."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(
        rf"^## {re.escape(SECTION_TITLE)}[ \t]*\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _m: section.rstrip("\n") + "\n\n", text, count=1)
        text = text.rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    path.write_text(text)
