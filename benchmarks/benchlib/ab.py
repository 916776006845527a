"""A/B runs: this checkout's unknot against an earlier commit's, alternating in one invocation.

``--ab REF`` (see `add_arguments`) makes a benchmark script measure a second unknot beside its
``unknot`` peer: ``unknot@REF``, the same worker or server code run with the ``src/`` of commit
REF first on ``PYTHONPATH``. That tree is a ``git archive`` copy of REF's ``src/`` in a temporary
directory (`base_checkout`), deleted when the run ends, by Ctrl-C, SIGTERM or SIGHUP included.
A copy, not ``git worktree add``: it registers nothing in the repository, so a harness killed
with SIGKILL leaves at worst a directory in ``$TMPDIR``, never a stale worktree entry. ``unknot``
itself imports from this checkout's ``src/`` (its working tree, uncommitted changes included),
never from whatever copy is installed in the interpreter.

Each child gets ``UNKNOT_BENCH_EXPECT_SRC`` in its environment and calls
`assert_unknot_source` after importing unknot, so a child that imports the wrong tree stops
instead of measuring it; the parent also checks each variant once (`verify_import`) and puts
the paths in the report.

The verdict, per cell (`compare`). The two variants run in the same rounds, so each round gives
a paired ratio head/base (head = this checkout); the machine's drift between rounds mostly
cancels out of it. The run's own spread for the cell is the largest deviation of one round from
its variant's median, relative to that median, the larger of the two variants'. A cell is
**slower beyond spread** (for a lower-is-better cell such as memory: *worse*) when every
round's ratio is on the slow side of 1.0 *and* the median ratio is further from 1.0 than that
spread: no noise seen in this very run explains it. Slower in every round but by less than the
spread is reported as such, without the alarm: rerun it with more rounds. The symmetric
verdicts say *faster*. Fewer than three paired rounds give no verdict (with two, both
ratios fall on the same side of 1.0 by chance one time in two).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from benchlib import builds, machine, procs

REPO = Path(__file__).resolve().parents[2]
SUBJECT = "unknot"
EXPECT_ENV = "UNKNOT_BENCH_EXPECT_SRC"
MIN_ROUNDS = 3  # paired rounds needed for a verdict (5 or more recommended)
GIT_TIMEOUT = 60.0


class ABError(RuntimeError):
    """The A/B cannot run: an unknown ref, a bad peer name, unknot imported from elsewhere."""


# ---------------------------------------------------------------------------------------------
# The two trees
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A source tree a variant's children import unknot from."""

    #: How the user named it: ``"this checkout"`` or the ref given to ``--ab``.
    label: str
    #: Its commit (short hash; ``+dirty`` for a working tree with changes).
    revision: str
    #: The commit's subject line.
    subject: str
    #: The directory holding ``src/unknot``.
    root: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with this tree's ``src/`` first on
        ``PYTHONPATH`` and the expectation the child checks (`assert_unknot_source`)."""
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.src), env.get("PYTHONPATH")]))
        env[EXPECT_ENV] = str(self.src)
        return env

    def describe(self) -> str:
        """One line for the report: revision, subject and where the sources are."""
        return f"{self.revision} ({self.subject}), unknot from {self.src}"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT
    )
    if done.returncode != 0:
        raise ABError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def this_checkout(repo: Path = REPO) -> Tree:
    """The checkout the scripts run from (the head of the A/B)."""
    try:
        subject = _git(repo, "log", "-1", "--format=%s")
    except (ABError, OSError, subprocess.SubprocessError):
        subject = "unknown"
    return Tree("this checkout", machine.git_revision(), subject, repo)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Hold off a second Ctrl-C while cleanup runs (main thread only)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def base_checkout(ref: str, repo: Path = REPO) -> Iterator[Tree]:
    """A temporary copy of ``src/`` at commit ``ref``, compiled to bytecode (so its first child
    pays no more than this checkout's), deleted on leaving the block however that happens.
    Installs `procs.install_exit_signals` so that SIGTERM and SIGHUP unwind through here."""
    sha = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    short = _git(repo, "rev-parse", "--short", sha)
    subject = _git(repo, "log", "-1", "--format=%s", sha)
    procs.install_exit_signals()
    root = Path(tempfile.mkdtemp(prefix=f"unknot-ab-{short}-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", sha, "--", "src"],
            capture_output=True,
            timeout=GIT_TIMEOUT,
        )
        if archive.returncode != 0:
            raise ABError(f"git archive {sha} src: {archive.stderr.decode(errors='replace')}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(root, filter="data")
        if not (root / "src" / "unknot" / "__init__.py").exists():
            raise ABError(f"{ref} ({short}) has no src/unknot package")
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(root / "src")],
            capture_output=True,
            timeout=GIT_TIMEOUT,
        )
        yield Tree(ref, short, subject, root)
    finally:
        with _sigint_ignored():
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Peers and their environments
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    """Add ``--ab REF`` and ``--ab-title`` to a script's command line."""
    parser.add_argument(
        "--ab",
        metavar="REF",
        help="also measure unknot@REF: the unknot peer run with git commit REF's src/ "
        "(alternating with this checkout's in every round); --markdown then writes the "
        "'A/B: TITLE' section",
    )
    parser.add_argument(
        "--ab-title",
        default=title,
        metavar="TITLE",
        help="the title of the A/B section --markdown writes",
    )


def variant(peer: str, ref: str) -> str:
    """The name of ``peer`` run from commit ``ref``: ``unknot@HEAD~1``."""
    return f"{peer}@{ref}"


def split(peer: str) -> tuple[str, str | None]:
    """``"unknot@HEAD~1"`` -> ``("unknot", "HEAD~1")``; a plain name -> ``(name, None)``."""
    name, sep, ref = peer.partition("@")
    return name, (ref if sep else None)


def expand_peers(
    peers: Sequence[str], ref: str | None, family: Sequence[str], known: Sequence[str]
) -> list[str]:
    """Check ``peers`` and, with ``ref``, make sure the A/B pair is among them.

    A name ``X@REF`` is accepted for ``X`` in ``family`` (the peers that run unknot) when REF is
    the ref given to ``--ab``. With a ref, ``unknot`` and ``unknot@REF`` are always measured:
    either is added if missing, the base right after the head. Raises `ABError`.
    """
    out: list[str] = []
    for peer in peers:
        name, at = split(peer)
        if name not in known:
            raise ABError(f"unknown peer {peer!r} (choose from {', '.join(known)})")
        if at is not None:
            if ref is None:
                raise ABError(f"{peer!r} needs --ab {at}")
            if at != ref or name not in family:
                raise ABError(f"{peer!r}: only {', '.join(family)} can run @{ref} (the --ab ref)")
        if peer not in out:
            out.append(peer)
    if ref is None:
        return out
    base = variant(SUBJECT, ref)
    if SUBJECT not in out:
        out.insert(0, SUBJECT)
    if base not in out:
        out.insert(out.index(SUBJECT) + 1, base)
    return out


def tree_of(peer: str, head: Tree, base: Tree | None) -> Tree:
    """The tree a peer of the unknot family imports from."""
    _, at = split(peer)
    if at is None:
        return head
    if base is None:
        raise ABError(f"{peer} needs the --ab checkout")
    return base


def pairs(peers: Sequence[str], ref: str | None) -> list[tuple[str, str]]:
    """(head peer, base peer) for every peer whose base variant is also in ``peers``."""
    if ref is None:
        return []
    return [(p, variant(p, ref)) for p in peers if "@" not in p and variant(p, ref) in peers]


def verify_import(tree: Tree, python: str = sys.executable) -> str:
    """Import unknot in a child with ``tree``'s environment and return the file it came from;
    raise `ABError` if it is not under ``tree.src``. (``-P``: no script or cwd on the path,
    just as for the scripts' children, whose ``sys.path[0]`` is ``benchmarks/``.)"""
    code = "import unknot; print(unknot.__file__)"
    done = subprocess.run(
        [python, "-P", "-c", code],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        env=tree.env(),
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ABError(f"unknot from {tree.label} does not import: {done.stderr.strip()[-500:]}")
    if not _inside(lines[-1], str(tree.src)):
        raise ABError(f"unknot for {tree.label} came from {lines[-1]}, not from {tree.src}")
    return lines[-1]


def _inside(path: str, directory: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(directory).resolve())


def assert_unknot_source(module: ModuleType) -> None:
    """In a child: stop if the harness expects unknot from a tree it was not imported from, or
    the other build than the one that runs (``--unknot-python``, `builds.check`)."""
    expected = os.environ.get(EXPECT_ENV)
    where = getattr(module, "__file__", None) or "?"
    if expected and not _inside(where, expected):
        raise SystemExit(f"unknot was imported from {where}, expected under {expected}")
    builds.check(module)


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------


def _default_format(value: float) -> str:
    return f"{value:.3g}"


@dataclass(frozen=True)
class Cell:
    """One A/B cell: a measurement's value per round for the head and for the base (None for a
    round in which that variant failed)."""

    name: str
    unit: str
    higher_is_better: bool
    head: Sequence[float | None]
    base: Sequence[float | None]
    fmt: Callable[[float], str] = _default_format


def relative_spread(values: Sequence[float | None]) -> float | None:
    """The largest deviation of one value from the median, relative to the median."""
    vals = [v for v in values if v is not None]
    if len(vals) < MIN_ROUNDS:
        return None
    med = statistics.median(vals)
    return max(abs(v - med) for v in vals) / abs(med) if med else None


def _median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


@dataclass(frozen=True)
class Comparison:
    """The verdict on one `Cell` (see the module docstring for the rule)."""

    cell: Cell
    ratios: list[float]  # head / base, per round both measured
    spread: float | None
    verdict: str
    alarm: bool  # slower (or worse) beyond spread

    @property
    def median_ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


def compare(cell: Cell) -> Comparison:
    """Pair the rounds, measure the spread and give the verdict."""
    ratios = [h / b for h, b in zip(cell.head, cell.base, strict=False) if h and b]
    spreads = [relative_spread(cell.head), relative_spread(cell.base)]
    spread = None if None in spreads else max(s for s in spreads if s is not None)
    worse, better = ("slower", "faster") if cell.higher_is_better else ("worse", "better")
    if len(ratios) < MIN_ROUNDS or spread is None:
        return Comparison(cell, ratios, spread, "too few rounds for a verdict", False)
    # Oriented so that below 1 means the head is worse, whatever the metric's direction.
    score = ratios if cell.higher_is_better else [1 / r for r in ratios]
    med = statistics.median(score)
    if max(score) < 1 and med < 1 - spread:
        return Comparison(cell, ratios, spread, f"{worse} beyond spread", True)
    if min(score) > 1 and med > 1 + spread:
        return Comparison(cell, ratios, spread, f"{better} beyond spread", False)
    if max(score) < 1:
        return Comparison(cell, ratios, spread, f"{worse} every round, within spread", False)
    if min(score) > 1:
        return Comparison(cell, ratios, spread, f"{better} every round, within spread", False)
    return Comparison(cell, ratios, spread, "within spread", False)


def _median_text(values: Sequence[float | None], cell: Cell) -> str:
    med, spread = _median(values), relative_spread(values)
    if med is None:
        return "n/a"
    return cell.fmt(med) + (f" ±{spread:.0%}" if spread is not None else "")


def rows(comparisons: Sequence[Comparison], head: Tree, base: Tree) -> list[list[str]]:
    """Header plus one row per comparison: the A/B table's cells as text."""
    header = [
        "cell",
        "unit",
        "better",
        f"head {head.revision}",
        f"base {base.revision} ({base.label})",
        "head/base",
        "per round",
        "verdict",
    ]
    out = [header]
    for c in comparisons:
        ratio = "n/a" if c.median_ratio is None else f"{c.median_ratio:.3f}"
        span = f"{min(c.ratios):.3f}-{max(c.ratios):.3f}" if c.ratios else "n/a"
        out.append(
            [
                c.cell.name,
                c.cell.unit,
                "higher" if c.cell.higher_is_better else "lower",
                _median_text(c.cell.head, c.cell),
                _median_text(c.cell.base, c.cell),
                ratio,
                span,
                f"**{c.verdict}**" if c.alarm else c.verdict,
            ]
        )
    return out


def console_table(table: list[list[str]]) -> str:
    """A `rows` table as aligned plain text."""
    plain = [[cell.replace("**", "") for cell in row] for row in table]
    widths = [max(len(r[i]) for r in plain) for i in range(len(plain[0]))]
    lines = []
    for n, row in enumerate(plain):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: list[list[str]], right: Sequence[int] = ()) -> str:
    """A table of strings as Markdown, the columns numbered in ``right`` right-aligned."""
    lines = ["| " + " | ".join(table[0]) + " |"]
    lines.append(
        "| " + " | ".join("---:" if i in right else "---" for i in range(len(table[0]))) + " |"
    )
    lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return "\n".join(lines)


def summary(comparisons: Sequence[Comparison]) -> str:
    """One sentence: how many cells are slower beyond spread, and which."""
    alarms = [c.cell.name for c in comparisons if c.alarm]
    judged = [c for c in comparisons if c.ratios and c.spread is not None]
    if not judged:
        return "No verdict: too few paired rounds."
    if not alarms:
        return f"No cell slower (or worse) beyond the run's spread ({len(judged)} cells judged)."
    return f"{len(alarms)} of {len(judged)} cells slower (or worse) beyond spread: " + "; ".join(
        alarms
    )


def runs_table(comparisons: Sequence[Comparison]) -> list[list[str]]:
    """Header plus, per cell, each round's head and base values and their ratio."""
    out = [["cell", "head per round", "base per round", "head/base per round"]]
    for c in comparisons:
        fmt = c.cell.fmt
        head = ", ".join("failed" if v is None else fmt(v) for v in c.cell.head)
        base = ", ".join("failed" if v is None else fmt(v) for v in c.cell.base)
        out.append([c.cell.name, head, base, ", ".join(f"{r:.2f}" for r in c.ratios)])
    return out


RULE = (
    "Head and base columns: the median over the rounds ± the largest deviation of one round "
    "from it. Verdict rule: each round ran both variants (order rotated per round), so each round "
    "gives a paired ratio head/base. The cell's spread is the largest deviation of one round "
    "from its variant's median (relative; the larger of the two variants'). *Slower beyond "
    "spread* (*worse* for lower-is-better cells) means every round's ratio is on the bad side "
    "of 1.0 and the median ratio is further from 1.0 than that spread; *slower every round, "
    "within spread* deserves a rerun with more rounds; fewer than three paired rounds give "
    "no verdict."
)


def section(
    title: str,
    intro: str,
    head: Tree,
    base: Tree,
    comparisons: Sequence[Comparison],
    facts: dict[str, str],
    notes: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> str:
    """The ``## A/B: {title}`` Markdown section: what ran, the A/B table, every round, then the
    ``extra`` lines (Markdown, such as the script's own table of every peer) and the notes."""
    out = [f"## A/B: {title}", "", intro, ""]
    out.append(f"- Head (`unknot`): this checkout, {head.describe()}")
    out.append(
        f"- Base (`unknot@{base.label}`): {base.describe()} (a `git archive` copy, deleted "
        "after the run)"
    )
    out += [f"- {label}: {value}" for label, value in facts.items()]
    table = markdown_table(rows(comparisons, head, base), right=(3, 4, 5, 6))
    out += ["", table, "", summary(comparisons), ""]
    out += [RULE, "", "### A/B: every round", ""]
    out += [markdown_table(runs_table(comparisons)), ""]
    out += [*extra]
    if notes:
        out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)
