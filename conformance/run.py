"""Run CPython's own test modules unpatched (the baseline) and under `unknot.patch()`.

    python conformance/run.py [MODULE ...] [--timeout S] [--use RES,...] [--json FILE]

For each module (default: `MODULES`) this runs ``child.py`` in fresh interpreters, first
unpatched, then patched, every test bounded by ``--timeout`` seconds (a test that runs longer is
recorded as ``timeout`` and the rest of the module continues in a new process). Both modes use
the same resources (``--use``, regrtest's ``-u``). Tests listed in ``disabled.txt`` are skipped in
the patched run only (those tagged ``stall`` in both).

A *regression* is a test that goes wrong patched (failed, error, timeout, crashed, unexpected
success, not run at all, or skipped where it passed unpatched) but not unpatched. Each one is
run once more, alone in a new patched process; one that passes then is reported as *flaky* and
not counted. Tests that go wrong unpatched are this machine's *baseline failures*: reported,
never counted against unknot. The exit status is 1 if a regression remains, else 0.

``--jobs N`` runs N of these test processes at a time (module by module and mode by mode, as
CPython's own ``regrtest -j`` runs test modules in parallel); the reruns of regressions still run
one at a time once everything else has finished, so that a test failing only under load is
judged on a quiet machine. The report is the same, in the same order.

For working on the list: ``--run-disabled`` runs the disabled tests too and reports those that
pass (entries to delete); ``--baseline FILE`` reuses the baseline of an earlier ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODULES = [
    "test_socket",
    "test_ssl",
    "test_select",
    "test_selectors",
    "test_timeout",
    "test_httplib",
    "test_urllib2_localnet",
    "test_socketserver",
    "test_httpservers",
    "test_smtplib",
    "test_ftplib",
    "test_wsgiref",
    "test_xmlrpc",
    "test_subprocess",
    "test_threading",
    "test_thread",
    "test_queue",
]
# network: these modules use loopback only (the few tests that want the internet skip when
# name resolution fails); test_socketserver needs it to run at all.
RESOURCES = "network,cpu,walltime,subprocess"
BAD = {"failed", "error", "timeout", "crashed", "unexpected_success", "not run"}
TIMEOUT_EXIT = 3  # child.py's exit status after a test timed out
MAX_RESTARTS = 25
Results = dict[str, dict[str, Any]]  # test id -> child.py's record


def read_disabled(path: Path = HERE / "disabled.txt") -> tuple[dict[str, str], dict[str, str]]:
    """The entries of ``disabled.txt`` for this interpreter: (disabled, stalls), id -> reason.

    A line is ``<test id> [tags] <reason>``; ``#`` starts a comment line. Tags (optional,
    comma-separated): ``3.13`` (the entry applies only to Python 3.13), ``<3.13`` (only before
    3.13), ``stall`` (the test stalls on this machine even unpatched: skipped in both modes, so
    the run does not wait out its timeout twice; not counted as disabled).
    """
    disabled: dict[str, str] = {}
    stalls: dict[str, str] = {}
    mine = sys.version_info[:2]
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        tid, _, reason = line.partition(" ")
        reason, tags = reason.strip(), []
        if reason.startswith("["):
            tag_text, _, reason = reason[1:].partition("]")
            tags = [t.strip() for t in tag_text.split(",")]
        applies = True
        for tag in tags:
            if tag[:1].isdigit() or tag.startswith("<"):
                v = tuple(map(int, tag.lstrip("<").split(".")))
                applies &= mine < v if tag.startswith("<") else mine == v
        if applies:
            (stalls if "stall" in tags else disabled)[tid] = reason.strip()
    return disabled, stalls


def write_ids(ids: dict[str, str] | list[str], directory: str, name: str) -> str:
    """A file of ``id<TAB>reason`` lines for child.py."""
    path = os.path.join(directory, name)
    items = ids.items() if isinstance(ids, dict) else ((i, "") for i in ids)
    with open(path, "w") as f:
        f.writelines(f"{i}\t{r}\n" for i, r in items)
    return path


def run_mode(
    module: str,
    patched: bool,
    args: argparse.Namespace,
    skip: dict[str, str],
    log: Path,
    only: list[str] | None = None,
) -> Results:
    """Run ``module`` in one mode, restarting after a timeout or crash.

    ``skip``: tests not to run (recorded as ``disabled``); ``only``: run just these.
    """
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="unknot-conf-", ignore_cleanup_errors=True) as tmp:
        out = os.path.join(tmp, "results.jsonl")
        for _ in range(MAX_RESTARTS):
            cmd = [sys.executable, str(HERE / "child.py"), module, out]
            cmd += ["--timeout", str(args.timeout), "--use", args.use]
            cmd += ["--exclude", write_ids(list(results), tmp, "exclude")]
            if patched:
                cmd.append("--patched")
            if skip:
                cmd += ["--disable", write_ids(skip, tmp, "disable")]
            if only is not None:
                cmd += ["--only", write_ids(only, tmp, "only")]
            with open(log, "a") as logf:
                logf.write(f"$ {' '.join(cmd)}\n")
                logf.flush()
                cwd = tempfile.mkdtemp(dir=tmp)  # tests write files to the cwd
                rc = subprocess.call(
                    cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
                )
            started = []
            with open(out) as f:
                for line in f:
                    record = json.loads(line)
                    if "start" in record:
                        started.append(record["start"])
                    else:
                        results[record["id"]] = record
            os.truncate(out, 0)
            for t in started:  # killed by a signal or a hard crash: no outcome was written
                if t not in results:
                    results[t] = {"id": t, "outcome": "crashed", "time": 0.0, "detail": f"{rc}"}
            if rc == 0:
                break
            if not started:  # it stopped before running a test: starting again won't help
                if rc != TIMEOUT_EXIT:  # (after a timeout the child has recorded it)
                    tid, detail = f"test.{module} (exit)", f"exit status {rc} before any test"
                    results[tid] = {"id": tid, "outcome": "crashed", "time": 0.0, "detail": detail}
                break
    return results


def summarize(results: Results) -> dict[str, int]:
    c = Counter(r["outcome"] for r in results.values())
    return {
        "run": sum(v for k, v in c.items() if k not in ("skipped", "disabled")),
        "passed": c["passed"] + c["expected_failure"],
        "failed": c["failed"] + c["unexpected_success"],
        "errors": c["error"] + c["timeout"] + c["crashed"],
        "skipped": c["skipped"],
        "disabled": c["disabled"],
    }


def regressions(base: Results, patched: Results) -> list[str]:
    """Tests bad patched (or missing) but not unpatched, and tests that passed unpatched but
    skipped themselves patched (a skip must not hide a change)."""
    found = []
    for tid in sorted(set(base) | set(patched)):
        p = patched.get(tid, {"outcome": "not run"})["outcome"]
        b = base.get(tid, {"outcome": "not run"})["outcome"]
        if (p in BAD and b not in BAD) or (p == "skipped" and b in ("passed", "expected_failure")):
            found.append(tid)
    return found


def of_module(ids: dict[str, str], module: str) -> dict[str, str]:
    return {t: r for t, r in ids.items() if t.startswith(f"test.{module}.")}


def skips(
    module: str, args: argparse.Namespace, disabled: dict[str, str], stalls: dict[str, str]
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """``module``'s entries of disabled.txt: (disabled under the patch, stalling in both modes,
    what the patched run skips: both, or only the stalls with ``--run-disabled``)."""
    mine, stalling = of_module(disabled, module), of_module(stalls, module)
    return mine, stalling, stalling if args.run_disabled else {**stalling, **mine}


ROW = "{:<22} {:<9} {:>5} {:>5} {:>5} {:>4} {:>5} {:>5} {:>6}"


def row(module: str, mode: str, counts: dict[str, int], seconds: float) -> str:
    keys = ("run", "passed", "failed", "errors", "skipped", "disabled")
    return ROW.format(module, mode, *(counts[k] for k in keys), f"{seconds:.0f}s")


class Runs:
    """Every module's baseline and patched run, ``jobs`` test processes at a time.

    The baseline of a module named in ``old`` (``--baseline``) is reused, not run. Each run is
    announced on a progress line when it ends; `check_module` reads them back in module order.
    """

    def __init__(
        self,
        modules: list[str],
        args: argparse.Namespace,
        disabled: dict[str, str],
        stalls: dict[str, str],
        logs: Path,
        old: dict[str, Any],
    ) -> None:
        self.results: dict[tuple[str, bool], tuple[Results, float]] = {}
        self.lock = threading.Lock()
        work = []
        for module in modules:
            _, stalling, skip_patched = skips(module, args, disabled, stalls)
            if module in old:
                self.results[(module, False)] = (old[module]["baseline"], 0.0)
            else:
                work.append((module, False, stalling))
            work.append((module, True, skip_patched))

        def one(job: tuple[str, bool, dict[str, str]]) -> None:
            module, patched, skip = job
            mode = "patched" if patched else "baseline"
            t0 = time.monotonic()
            got = run_mode(module, patched, args, skip, logs / f"{module}.{mode}.log")
            seconds = time.monotonic() - t0
            with self.lock:
                self.results[(module, patched)] = (got, seconds)
                if args.jobs > 1:
                    print(f"  ran {module} {mode} ({seconds:.0f} s)", flush=True)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for _ in pool.map(one, work):
                pass


def check_module(
    module: str,
    args: argparse.Namespace,
    disabled: dict[str, str],
    stalls: dict[str, str],
    logs: Path,
    runs: Runs,
) -> dict[str, Any]:
    """One module's two runs (from ``runs``), the reruns of its regressions, printed as two
    table rows and notes; its part of the report."""
    mine, stalling, skip_patched = skips(module, args, disabled, stalls)
    base, base_seconds = runs.results[(module, False)]
    patched, patched_seconds = runs.results[(module, True)]
    regressed = [t for t in regressions(base, patched) if t not in mine]
    flaky = []
    if regressed:  # once more, in a fresh process of their own: flaky or real?
        again = run_mode(
            module, True, args, skip_patched, logs / f"{module}.rerun.log", only=regressed
        )
        flaky = [t for t in regressed if again.get(t, {}).get("outcome") == "passed"]
        regressed = [t for t in regressed if t not in flaky]
    print(row(module, "baseline", summarize(base), base_seconds))
    print(row(module, "patched", summarize(patched), patched_seconds))
    baseline_bad = sorted(t for t, r in base.items() if r["outcome"] in BAD)
    notes = [f"baseline failure: {t} ({base[t]['outcome']})" for t in baseline_bad]
    notes += [f"skipped in both modes (stalls unpatched): {t}" for t in stalling]
    notes += [f"flaky (failed patched, passed when rerun): {t}" for t in flaky]
    notes += [
        f"REGRESSION: {t} ({patched.get(t, {}).get('outcome', 'not run')})" for t in regressed
    ]
    if args.run_disabled:
        notes += [
            f"disabled but passes: {t}"
            for t in sorted(mine)
            if patched.get(t, {}).get("outcome") == "passed"
        ]
    notes += [
        f"disabled.txt names an unknown test: {t}"
        for t in {**mine, **stalling}
        if t not in base and t not in patched
    ]
    for note in notes:
        print("    " + note)
    sys.stdout.flush()
    return {
        "summary": {"baseline": summarize(base), "patched": summarize(patched)},
        "regressions": regressed,
        "flaky": flaky,
        "baseline_failures": baseline_bad,
        "seconds": {"baseline": round(base_seconds), "patched": round(patched_seconds)},
        "baseline": base,
        "patched": patched,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("modules", nargs="*", default=MODULES)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per test (default 120)")
    p.add_argument("--use", default=RESOURCES, help=f"test resources (default {RESOURCES})")
    p.add_argument("--json", help="write the full results here")
    p.add_argument("--logs", help="directory for the test processes' output (default: a temp dir)")
    p.add_argument("--baseline", help="reuse the baseline results of this --json report")
    p.add_argument("--run-disabled", action="store_true", help="run the disabled tests too")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="test processes at a time (default 1); reruns always run one at a time",
    )
    args = p.parse_args()
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    try:
        import test.support  # noqa: F401
    except ImportError:
        print(f"{sys.executable} has no 'test' package (CPython's test suite)", file=sys.stderr)
        return 2
    disabled, stalls = read_disabled()
    logs = Path(args.logs or tempfile.mkdtemp(prefix="unknot-conformance-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    for old_log in logs.glob("*.log"):
        old_log.unlink()
    old = json.loads(Path(args.baseline).read_text())["modules"] if args.baseline else {}
    python = sys.version.split()[0]
    report: dict[str, Any] = {
        "python": python,
        "resources": args.use,
        "jobs": args.jobs,
        "modules": {},
    }
    print(
        f"Python {python}, resources {args.use}, {args.timeout:g} s per test, "
        f"{args.jobs} at a time, logs in {logs}",
        flush=True,
    )
    started = time.monotonic()
    if args.jobs == 1:  # each module's rows as soon as it has run, as before
        runs = None
    else:
        runs = Runs(args.modules, args, disabled, stalls, logs, old)
    header = ROW.format("module", "mode", "run", "pass", "fail", "err", "skip", "disab", "time")
    print(header + "\n" + "-" * len(header), flush=True)
    for module in args.modules:
        module_runs = runs or Runs([module], args, disabled, stalls, logs, old)
        report["modules"][module] = check_module(module, args, disabled, stalls, logs, module_runs)
    wall = time.monotonic() - started
    modules = report["modules"].values()
    for mode in ("baseline", "patched"):
        total: Counter[str] = Counter()
        for m in modules:
            total.update(m["summary"][mode])
        print(row("TOTAL", mode, dict(total), sum(m["seconds"][mode] for m in modules)))
    found = [t for m in modules for t in m["regressions"]]
    report.update(wall_seconds=round(wall), disabled=len(disabled), stalls=len(stalls))
    print(
        f"\nPython {python}: {len(disabled)} tests disabled under the patch, {len(stalls)} "
        f"skipped in both modes (stall unpatched); {len(found)} regressions; "
        f"wall time {wall / 60:.1f} min"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
