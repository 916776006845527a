"""Run one CPython test module in this process, optionally under `unknot.patch()`.

Started by ``run.py`` in a fresh interpreter, once per mode::

    python conformance/child.py MODULE RESULTS.jsonl [--patched] [--timeout S]
        [--use RES,...] [--exclude FILE] [--disable FILE] [--only FILE]

``--patched`` calls `unknot.patch()` before anything else is imported (``test.support``, the test
module, unittest), then runs the tests inside ``unknot.run``: the test code is the root fiber on
a hub, so every socket, lock, sleep or select in the test body goes through unknot. (Threads the
tests start stay OS threads, as they do under the patch; code in them uses the stdlib paths.)

Results go to RESULTS.jsonl, one JSON object a line, written as they happen: ``{"start": id}``
before a test, ``{"id": id, "outcome": ..., "time": s, "detail": text}`` after it. A watchdog OS
thread ends the process (exit status 3) when one test runs longer than ``--timeout``, after
recording it as ``timeout`` and dumping every thread's stack to stderr; ``run.py`` then starts a
new process for the tests not yet run (``--exclude``). ``--disable`` names tests to skip (as
``disabled``) without running them; ``--only`` restricts the run to the ids listed.
"""

from __future__ import annotations

import sys

PATCHED = "--patched" in sys.argv
if PATCHED:  # before the test package, unittest or anything else the tests use is imported
    import unknot

    unknot.patch()

import _thread  # noqa: E402
import argparse  # noqa: E402
import faulthandler  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import unittest  # noqa: E402
from typing import Any  # noqa: E402

TIMEOUT_EXIT = 3
_sleep = time.sleep  # unknot's sleep; this watchdog thread is no fiber, so it blocks the thread


# When a test reports several outcomes (a failing subtest, then an error in a cleanup), the
# worst one is its outcome.
RANK = {
    "passed": 0,
    "expected_failure": 0,
    "skipped": 1,
    "disabled": 1,
    "unexpected_success": 2,
    "failed": 3,
    "error": 4,
}


class Recorder(unittest.TestResult):
    """A TestResult writing one JSON line per test, with its worst outcome (a failed subtest
    fails the test; unittest then reports no success for it)."""

    def __init__(self, out: Any, timeout: float) -> None:
        super().__init__()
        self.out = out
        self.timeout = timeout
        self.current: tuple[str, float] | None = None  # (test id, start time)
        self.result: tuple[str, str] | None = None  # the current test's (outcome, detail)

    def write(self, **record: Any) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def startTest(self, test: Any) -> None:
        super().startTest(test)
        self.write(start=test.id())
        self.current = (test.id(), time.monotonic())
        self.result = None

    def stopTest(self, test: Any) -> None:
        super().stopTest(test)
        if self.current is not None and self.current[0] == test.id():
            outcome, detail = self.result or ("error", "the test reported no outcome")
            elapsed = round(time.monotonic() - self.current[1], 3)
            self.write(id=test.id(), outcome=outcome, time=elapsed, detail=detail[-2000:])
        # Class and module fixtures run between tests: bound them by the timeout too.
        self.current = (f"fixtures after {test.id()}", time.monotonic())

    def outcome(self, test: Any, outcome: str, detail: str = "") -> None:
        if self.current is None or self.current[0] != test.id():
            # A class or module fixture failed (an _ErrorHolder: no startTest/stopTest).
            self.write(id=test.id(), outcome=outcome, time=0.0, detail=detail[-2000:])
        elif self.result is None or RANK[outcome] > RANK[self.result[0]]:
            self.result = (outcome, detail)

    def _error_text(self, err: Any) -> str:
        return "".join(traceback.format_exception(*err, limit=-6))

    def addSuccess(self, test: Any) -> None:
        self.outcome(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self.outcome(test, "failed", self._error_text(err))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self.outcome(test, "error", self._error_text(err))

    def addSkip(self, test: Any, reason: str) -> None:
        disabled = reason.startswith(DISABLED_PREFIX)
        self.outcome(test, "disabled" if disabled else "skipped", reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        self.outcome(test, "expected_failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self.outcome(test, "unexpected_success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self.outcome(test, "failed" if failed else "error", self._error_text(err))


DISABLED_PREFIX = "unknot conformance: disabled: "


def tests_of(suite: Any) -> list[Any]:
    """The individual tests of a (nested) suite, in order."""
    flat: list[Any] = []
    for t in suite:
        flat.extend(tests_of(t) if isinstance(t, unittest.TestSuite) else [t])
    return flat


def disable(test: Any, reason: str) -> None:
    """Make ``test`` skip (before its setUp runs) instead of running."""

    @unittest.skip(DISABLED_PREFIX + reason)
    def disabled() -> None:
        pass

    setattr(test, test._testMethodName, disabled)


def watchdog(recorder: Recorder, started: Any) -> None:
    """End the process if a test runs past its timeout, recording it as timed out. Releases
    ``started`` first."""
    started.release()
    while True:
        _sleep(0.5)
        current = recorder.current
        if current and time.monotonic() - current[1] > recorder.timeout:
            recorder.write(id=current[0], outcome="timeout", time=recorder.timeout, detail="")
            print(f"\n*** {current[0]} timed out after {recorder.timeout} s", file=sys.stderr)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
            os._exit(TIMEOUT_EXIT)


def read_ids(path: str | None) -> dict[str, str]:
    """``id<TAB>reason`` lines (reason optional) as a dict."""
    if not path:
        return {}
    with open(path) as f:
        return dict((line.rstrip("\n").split("\t", 1) + [""])[:2] for line in f if line.strip())


def setup_support(resources: list[str]) -> None:
    """What regrtest sets up before running a test module (the parts these modules rely on)."""
    from test import support

    # A runner started in the background inherits SIGINT ignored; the tests of Ctrl-C
    # (_thread.interrupt_main) expect Python's default handler, as in an interactive shell.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    support.verbose = 0
    support.use_resources = resources
    support.record_original_stdout(sys.stdout)
    faulthandler.enable(all_threads=True)


def check_patched() -> None:
    """The patched run must really go through unknot: the tests run in a fiber, patched."""
    import socket
    import threading

    from greenlet import getcurrent

    if not (
        type(getcurrent()) is unknot.Fiber
        and socket.socket is unknot.socket.socket
        and threading.Lock().__module__ == "unknot._patch._hybrid"
    ):
        raise SystemExit("child.py --patched: the tests would not run patched in a fiber")


def run_module(args: argparse.Namespace, out: Any) -> None:
    if PATCHED:
        check_patched()
    recorder = Recorder(out, args.timeout)
    recorder.current = (f"test.{args.module} (import)", time.monotonic())
    # The watchdog runs before the first test starts: `_thread._count()` counts a thread once
    # it runs, and a watchdog that started during test_thread's first test (BarrierTest, in
    # `wait_threads_exit`, which compares that count before and after) was taken for a thread
    # the test left running: 46 failures in 90 runs under load on 3.13, before this wait.
    started = _thread.allocate_lock()
    started.acquire()
    _thread.start_new_thread(watchdog, (recorder, started))  # not in threading.enumerate()
    started.acquire()
    try:
        module = importlib.import_module(f"test.{args.module}")
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    except unittest.SkipTest as e:
        recorder.write(id=f"test.{args.module}", outcome="skipped", time=0.0, detail=str(e))
        return
    except BaseException:
        recorder.write(
            id=f"test.{args.module}", outcome="error", time=0.0, detail=traceback.format_exc()
        )
        return
    exclude, disabled, only = read_ids(args.exclude), read_ids(args.disable), read_ids(args.only)
    tests = []
    for t in tests_of(suite):
        tid = t.id()
        if tid in exclude or (only and tid not in only):
            continue
        if tid in disabled and hasattr(t, "_testMethodName"):
            disable(t, disabled[tid])
        tests.append(t)
    unittest.TestSuite(tests).run(recorder)
    recorder.current = None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("module")
    p.add_argument("results")
    p.add_argument("--patched", action="store_true")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--use", default="")
    p.add_argument("--exclude")
    p.add_argument("--disable")
    p.add_argument("--only")
    args = p.parse_args()
    setup_support([r for r in args.use.split(",") if r])
    with open(args.results, "a") as out:
        if PATCHED:
            unknot.run(run_module, args, out)
        else:
            run_module(args, out)


if __name__ == "__main__":
    main()
