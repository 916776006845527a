"""Inlined copies kept honest (see "Inlined copies" in the docstring of `unknot._core`).

A few hot paths carry a copy of another function's code instead of calling it. This module checks

* the markers: every ``INLINED-COPY-BEGIN(name)`` has its ``INLINED-COPY-END(name)`` further down
  the same function, every name has at least one ``INLINED-ORIGINAL(name)``, each marker names the
  function(s) holding the other side, and every name has agreement tests here (`AGREEMENT`);
* the behaviour: the same scenarios run through each copy and through the general code it copies
  (the original itself, or a path that reaches it: a timeout, a level-triggered backend, another
  argument type), and the outcomes must be the same: return values, exceptions with their type
  and errno, readiness hints, what other fibers observe, the order fibers resume in. Each
  scenario's main outcome is also checked against what it should be, so that the two sides
  cannot agree on a wrong answer.

Everything is loopback and bounded in time; each scenario runs on a fresh hub.
"""

from __future__ import annotations

import _socket
import ast
import errno
import gc
import io
import os
import re
import select
import socket as std
import struct
import threading
import time
import tokenize
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import unknot
import unknot.socket as us
from unknot import _sockio, lowlevel
from unknot._core._backends import BACKENDS
from unknot._patch import _hybrid

pytestmark = pytest.mark.timeout(60)

SRC = Path(__file__).resolve().parents[2] / "src" / "unknot"
HAVE_EPOLL = "epoll" in BACKENDS
needs_epoll = pytest.mark.skipif(not HAVE_EPOLL, reason="the copy runs only on the epoll hub")

#: For each copied rule (the marker's name), the tests here that run it both ways.
AGREEMENT = {
    "park-checks": ["test_park_checks_agree_with_park"],
    "wait-readable": ["test_park_checks_agree_with_park"],
    "detach": ["test_unpark_detaches_as_detach_does"],
    "fd-wake": ["test_fd_wake_agrees_with_fd_event"],
    "pass-rule": ["test_pass_rule_agrees_with_switch_out"],
    "switch-out": [
        "test_switch_out_copy_keeps_the_pass_rule",
        "test_park_checks_agree_with_park",
    ],
    "resume": ["test_park_checks_agree_with_park", "test_resume_copies_agree_whoever_switches"],
    "batched-wake": ["test_batched_wake_agrees_with_wake_and_throw"],
    "socket-recv": ["test_recv_agrees_with_io"],
    "socket-sendall": [
        "test_sendall_agrees_with_io",
        "test_sendall_clears_the_write_hint_only_on_streams",
    ],
    "never-waits": ["test_never_waits_rule_agrees", "test_never_waits_rule_agrees_for_sends"],
    "hybrid-release": ["test_hybrid_lock_exit_agrees_with_release"],
    "hybrid-acquire": ["test_hybrid_rlock_acquire_agrees_with_lock_acquire"],
    "rlock-owner": ["test_hybrid_rlock_owner_agrees_with_me"],
    "io-entry": ["test_io_entry_agrees_with_entry"],
    "whole-request": ["test_next_events_agrees_with_whole_request"],
    "whole-response": ["test_send_response_agrees_with_whole_response"],
}


# -- the markers --------------------------------------------------------------------------------

MARKER = re.compile(r"#\s*INLINED-(COPY-BEGIN|COPY-END|ORIGINAL)\(([^)]*)\)(.*)$")


@dataclass
class Marker:
    kind: str  # COPY-BEGIN, COPY-END or ORIGINAL
    names: list[str]
    path: Path
    line: int  # 1-based
    function: str  # qualified name of the function holding it ("" at module level)
    text: str  # the marker's comment, continuation lines included

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"


def _function_spans(tree: ast.Module, nlines: int) -> list[tuple[int, int, int, str]]:
    """(first line, last line, column, qualified name) of every function, where the last line
    runs to the line before the next statement of its block (so trailing comments count)."""
    spans: list[tuple[int, int, int, str]] = []

    def first_line(node: ast.stmt) -> int:
        decorators = getattr(node, "decorator_list", None) or []
        return min([node.lineno] + [d.lineno for d in decorators])

    def visit(stmts: list[ast.stmt], prefix: str, end: int) -> None:
        for k, node in enumerate(stmts):
            stop = first_line(stmts[k + 1]) - 1 if k + 1 < len(stmts) else end
            inner = prefix
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                spans.append((node.lineno, stop, node.col_offset, prefix + node.name))
                inner = f"{prefix}{node.name}."
            elif isinstance(node, ast.ClassDef):
                inner = f"{prefix}{node.name}."
            for field in ("body", "orelse", "finalbody"):
                sub = getattr(node, field, None)
                if isinstance(sub, list) and sub and isinstance(sub[0], ast.stmt):
                    visit(sub, inner, stop)
            for handler in getattr(node, "handlers", None) or []:
                visit(handler.body, inner, stop)

    visit(tree.body, "", nlines)
    return spans


def scan_markers() -> list[Marker]:
    """Every INLINED- marker in the comments of unknot's sources (not in strings)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        source = path.read_text()
        if "INLINED-" in source:
            found += markers_in(source, path)
    return found


def markers_in(source: str, path: Path) -> list[Marker]:
    """The INLINED- markers in the comments of ``source`` (the file ``path``)."""
    spans = _function_spans(ast.parse(source), len(source.splitlines()))
    comments = {}  # line -> text, for the lines holding nothing but a comment
    marked = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        number = tok.start[0]
        if not tok.line[: tok.start[1]].strip():
            comments[number] = tok.string
        m = MARKER.search(tok.string)
        if m is not None:
            marked.append((number, tok.start[1], m))
    found = []
    for number, column, m in marked:
        holders = [s for s in spans if s[0] < number <= s[1] and column > s[2]]
        function = max(holders)[3] if holders else ""
        text = [m.group(3)]
        more = number + 1
        while more in comments and not MARKER.search(comments[more]):
            text.append(comments[more].lstrip("#").strip())
            more += 1
        names = [n.strip() for n in m.group(2).split(",")]
        found.append(Marker(m.group(1), names, path, number, function, " ".join(text)))
    return found


def mentions(text: str, qualname: str) -> bool:
    """Whether ``text`` names the function ``qualname`` (``_me()`` and ``Hub.park's`` count)."""
    return re.search(rf"(?<![\w.]){re.escape(qualname)}(?!\w)", text) is not None


def test_copy_markers_pair_up_within_one_function() -> None:
    markers = scan_markers()
    assert any(m.kind == "COPY-BEGIN" for m in markers), "no INLINED-COPY-BEGIN found"
    problems = []
    open_blocks: dict[tuple[Path, str], Marker] = {}
    for m in markers:
        if m.kind == "ORIGINAL":
            continue
        if len(m.names) != 1 or not re.fullmatch(r"[a-z][a-z0-9-]*", m.names[0]):
            problems.append(f"{m.where()}: a copy marker takes one lower-case name: {m.names}")
            continue
        key = (m.path, m.names[0])
        if m.kind == "COPY-BEGIN":
            if key in open_blocks:
                problems.append(f"{m.where()}: BEGIN({m.names[0]}) inside another one")
            open_blocks[key] = m
        else:
            begin = open_blocks.pop(key, None)
            if begin is None:
                problems.append(f"{m.where()}: END({m.names[0]}) without a BEGIN")
            elif begin.function != m.function or not m.function:
                problems.append(
                    f"{m.where()}: END({m.names[0]}) in {m.function or 'no function'}, "
                    f"its BEGIN in {begin.function or 'no function'}"
                )
    problems += [f"{m.where()}: BEGIN({m.names[0]}) never ends" for m in open_blocks.values()]
    assert not problems, "\n".join(problems)


def test_every_copy_has_an_original_and_every_original_a_copy() -> None:
    markers = scan_markers()
    copied = {m.names[0] for m in markers if m.kind == "COPY-BEGIN"}
    originals = {n for m in markers if m.kind == "ORIGINAL" for n in m.names}
    assert copied - originals == set(), "copies whose original is not marked"
    assert originals - copied == set(), "originals marked for a copy that does not exist"
    for m in markers:
        if m.kind == "ORIGINAL":
            assert m.function, f"{m.where()}: an original marker belongs inside the original"


def test_markers_name_the_functions_on_the_other_side() -> None:
    markers = scan_markers()
    copies: dict[str, set[str]] = {}
    originals: dict[str, set[str]] = {}
    for m in markers:
        for name in m.names:
            if m.kind == "COPY-BEGIN":
                copies.setdefault(name, set()).add(m.function)
            elif m.kind == "ORIGINAL":
                originals.setdefault(name, set()).add(m.function)
    problems = []
    for m in markers:
        for name in m.names:
            if m.kind == "COPY-BEGIN":
                wanted = originals.get(name, set())
            elif m.kind == "ORIGINAL":
                wanted = copies.get(name, set())
            else:
                continue
            problems += [
                f"{m.where()}: {m.kind}({name}) does not name {q}"
                for q in sorted(wanted)
                if not mentions(m.text, q)
            ]
    assert not problems, "\n".join(problems)


def test_every_copy_has_agreement_tests() -> None:
    copied = {m.names[0] for m in scan_markers() if m.kind == "COPY-BEGIN"}
    assert copied == set(AGREEMENT), "a marked copy needs its agreement tests (AGREEMENT)"
    for tests in AGREEMENT.values():
        for name in tests:
            assert callable(globals().get(name)), f"{name} is not a test of this module"


def test_the_marker_scanner_finds_functions_and_continuation_lines() -> None:
    source = (
        "class A:\n"
        "    def f(self):\n"
        "        x = 1\n"
        "        # INLINED-COPY-BEGIN(demo): from g,\n"
        "        # and from B.h\n"
        "        y = 2\n"
        "        # INLINED-COPY-END(demo)\n"
        "\n"
        "    # INLINED-ORIGINAL(demo): a comment of the class, not of A.f\n"
        "    z = '# INLINED-ORIGINAL(in-a-string)'\n"
    )
    markers = markers_in(source, SRC / "demo.py")
    assert [(m.kind, m.names, m.line, m.function) for m in markers] == [
        ("COPY-BEGIN", ["demo"], 4, "A.f"),
        ("COPY-END", ["demo"], 7, "A.f"),  # (after the last statement: still A.f's)
        ("ORIGINAL", ["demo"], 9, ""),
    ]
    assert mentions(markers[0].text, "B.h") and mentions(markers[0].text, "g")
    assert mentions("_me() inlined", "_me") and mentions("Hub.park's checks", "Hub.park")
    assert not mentions("see socket.sendall", "socket.send")
    assert not mentions("Hub.parking", "Hub.park")


# -- running scenarios --------------------------------------------------------------------------


#: Seconds after which a scenario's root fiber is told it is stuck: far above what any scenario
#: waits, and below pytest's timeout, which cannot end a hub stuck in its poll (an exception a
#: signal handler raises there is handed to the root fiber, which may be waiting uncancellably).
WATCHDOG = 10.0


class Stuck(Exception):
    """Thrown into a scenario's root fiber that waited longer than `WATCHDOG`."""


def _watched(fn: Callable[..., Any], *args: Any) -> Any:
    hub, root = hub_of_me(), me()

    def watchdog() -> None:
        unknot.sleep(WATCHDOG)
        hub.throw(root, Stuck(f"{fn.__name__}{args} still running after {WATCHDOG} s"))

    dog = unknot.spawn(watchdog)
    try:
        return fn(*args)
    finally:
        dog.cancel()


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` as the root fiber of a fresh hub, failing with `Stuck` if it hangs."""
    return unknot.run(_watched, fn, *args)


def run_on(backend: str, fn: Callable[..., Any], *args: Any) -> Any:
    """`run` on the hub ``backend``."""
    saved = os.environ.get("UNKNOT_SELECTOR")
    os.environ["UNKNOT_SELECTOR"] = backend
    try:
        return run(fn, *args)
    finally:
        if saved is None:
            del os.environ["UNKNOT_SELECTOR"]
        else:
            os.environ["UNKNOT_SELECTOR"] = saved


@pytest.fixture(autouse=True)
def _no_selector_override() -> Iterator[None]:
    """Each scenario picks its backend; none leaks into the next test."""
    saved = os.environ.get("UNKNOT_SELECTOR")
    yield
    assert os.environ.get("UNKNOT_SELECTOR") == saved


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """What ``fn(*args)`` came to: its value, or its exception's type, errno and message."""
    try:
        return ("returned", fn(*args))
    except (Exception, unknot.Cancelled) as e:
        return ("raised", type(e).__name__, getattr(e, "errno", None), str(e))


def me() -> lowlevel.Fiber:
    f = unknot.current()
    assert f is not None
    return f


def hub_of_me() -> lowlevel.Hub:
    return me().hub


class Interrupt(Exception):
    """Stands for Ctrl-C: the exception a signal handler raised, waiting for the root fiber."""


def interrupt_root(hub: lowlevel.Hub, exc: BaseException) -> None:
    """What unknot's SIGINT handler does when it runs in a fiber other than the root (with
    ``exc`` for `KeyboardInterrupt`, which would stop pytest if it got loose)."""
    hub.interrupt, hub.interrupt_pending = exc, True
    assert hub.loop is not None
    hub.loop._write_to_self()  # type: ignore[attr-defined]


def wait_readable(sock: Any) -> None:
    """Block the thread (briefly) until ``sock`` has something to read."""
    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    assert p.poll(2000), "nothing arrived"


def fill(sock: Any) -> None:
    """Write into a non-blocking ``sock`` until its buffer is full."""
    try:
        while True:
            sock.send(b"f" * 65536)
    except BlockingIOError:
        pass


def drain(sock: Any) -> int:
    """Read everything a non-blocking ``sock`` has; return how much."""
    n = 0
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return n
            n += len(chunk)
    except BlockingIOError:
        return n


# -- park-checks: Hub.wait_fd's untimed edge-triggered wait copies Hub.park ----------------------


class FdWaiter:
    """The root fiber waits on one end of a socketpair through `Hub.wait_fd`, one of four ways:

    ``inlined``: an armed record on the edge-triggered hub, no timeout (the copy);
    ``first``: the same, at the record's first wait (armed by this wait, then the copy);
    ``timed``: an armed record with a timeout, which goes through `Hub.park`;
    ``level``: the poll hub, where every wait goes through `Hub.park`;
    ``readable``, ``readable-first``, ``readable-level``: ``inlined``, ``first`` and ``level``
    through `Hub.wait_readable` (its copy of `Hub.wait_fd`, or `wait_fd` itself).
    """

    BACKEND = {
        "inlined": "epoll",
        "first": "epoll",
        "timed": "epoll",
        "level": "poll",
        "readable": "epoll",
        "readable-first": "epoll",
        "readable-level": "poll",
    }

    def __init__(self, path: str) -> None:
        self.readable = path.startswith("readable")
        path = path.removeprefix("readable").removeprefix("-") or "inlined"
        self.hub = hub_of_me()
        self.fiber = me()
        self.a, self.b = std.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.rec = self.hub.fd_record(self.a.fileno())
        if path != "first":
            unknot.spawn(self.b.send, b"!")  # a first wait registers the record
            assert self.hub.wait_fd(self.fiber, self.rec, False, 5.0) is None
            assert self.a.recv(10) == b"!"
        self.timeout = 60.0 if path == "timed" else None
        inlined = self.hub.edge_triggered and self.timeout is None
        assert inlined == (path in ("inlined", "first"))
        assert self.rec.armed == (path in ("inlined", "timed"))  # (level: only while waiting)

    def wait(self) -> Any:
        if self.readable:
            return self.hub.wait_readable(self.fiber, self.rec)
        return self.hub.wait_fd(self.fiber, self.rec, False, self.timeout)

    def state(self) -> tuple[Any, ...]:
        """What is left of the wait: the fiber's park state, the record's reader, the count."""
        return (self.fiber._parked, self.rec.reader, self.hub.fd_waiters)

    def close(self) -> None:
        self.hub.forget_fd(self.rec)
        self.a.close()
        self.b.close()


def park_fd_ready(w: FdWaiter) -> tuple[Any, ...]:
    seen = []

    def peer() -> None:
        seen.append(w.fiber._parked)
        w.b.send(b"x")

    unknot.spawn(peer)
    return outcome(w.wait), seen, w.state()


def park_woken_with_a_value(w: FdWaiter) -> tuple[Any, ...]:
    wakes = []

    def peer() -> None:
        wakes.append(w.hub.wake(w.fiber, "value"))
        wakes.append(w.hub.wake(w.fiber, "late"))  # the first wake-up won

    unknot.spawn(peer)
    return outcome(w.wait), wakes, w.state()


def park_thrown_into(w: FdWaiter) -> tuple[Any, ...]:
    exc = OSError(errno.EPIPE, "thrown in")
    unknot.spawn(w.hub.throw, w.fiber, exc)
    try:
        w.wait()
        got: tuple[Any, ...] = ("returned",)
    except OSError as e:
        got = ("raised", e is exc)
    return got, w.state()


def park_cancelled_before_parking(w: FdWaiter) -> tuple[Any, ...]:
    ran: list[str] = []
    unknot.spawn(ran.append, "switched")  # runs only if the wait switches out
    with unknot.CancelScope() as scope:
        scope.cancel()
        got = outcome(w.wait)
    return got, tuple(ran), w.state()  # (a snapshot: the fiber runs once the root is done)


def park_cancelled_while_waiting(w: FdWaiter) -> tuple[Any, ...]:
    seen = []
    with unknot.CancelScope() as scope:

        def peer() -> None:
            seen.append(w.fiber._parked)
            scope.cancel()

        unknot.spawn(peer)
        got = outcome(w.wait)
    return got, seen, w.state()


def park_interrupt_pending(w: FdWaiter) -> tuple[Any, ...]:
    ran: list[str] = []
    unknot.spawn(ran.append, "switched")
    exc = Interrupt("Ctrl-C")
    w.hub.interrupt, w.hub.interrupt_pending = exc, True
    try:
        w.wait()
        got: tuple[Any, ...] = ("returned",)
    except Interrupt as e:
        got = ("raised", e is exc)
    return got, tuple(ran), w.hub.interrupt_pending, w.hub.interrupt, w.state()


def park_interrupt_while_waiting(w: FdWaiter) -> tuple[Any, ...]:
    exc = Interrupt("Ctrl-C")
    unknot.spawn(interrupt_root, w.hub, exc)
    try:
        w.wait()
        got: tuple[Any, ...] = ("returned",)
    except Interrupt as e:
        got = ("raised", e is exc)
    return got, w.hub.interrupt_pending, w.state()


def park_closed_while_waiting(w: FdWaiter) -> tuple[Any, ...]:
    unknot.spawn(w.hub.forget_fd, w.rec)
    return outcome(w.wait), w.state()


CANCELLABLE, NOT_PARKED = lowlevel.PARKED_CANCELLABLE, lowlevel.NOT_PARKED
CLEAN = (NOT_PARKED, None, 0)
EBADF_WAITING = (
    "raised",
    "OSError",
    errno.EBADF,
    "[Errno 9] the file descriptor was closed while waiting",
)
CANCELLED = ("raised", "Cancelled", None, "fiber cancelled")

PARK_SCENARIOS: dict[str, tuple[Callable[[FdWaiter], tuple[Any, ...]], tuple[Any, ...]]] = {
    "fd-ready": (park_fd_ready, (("returned", None), [CANCELLABLE], CLEAN)),
    "woken-with-a-value": (park_woken_with_a_value, (("returned", "value"), [True, False], CLEAN)),
    "thrown-into": (park_thrown_into, (("raised", True), CLEAN)),
    "cancelled-before-parking": (park_cancelled_before_parking, (CANCELLED, (), CLEAN)),
    "cancelled-while-waiting": (park_cancelled_while_waiting, (CANCELLED, [CANCELLABLE], CLEAN)),
    "interrupt-pending": (park_interrupt_pending, (("raised", True), (), False, None, CLEAN)),
    "interrupt-while-waiting": (park_interrupt_while_waiting, (("raised", True), False, CLEAN)),
    "closed-while-waiting": (park_closed_while_waiting, (EBADF_WAITING, CLEAN)),
}


def _park_main(path: str, scenario: str) -> tuple[Any, ...]:
    w = FdWaiter(path)
    try:
        return PARK_SCENARIOS[scenario][0](w)
    finally:
        w.close()


@needs_epoll
@pytest.mark.parametrize("scenario", sorted(PARK_SCENARIOS))
def test_park_checks_agree_with_park(scenario: str) -> None:
    got = {p: run_on(FdWaiter.BACKEND[p], _park_main, p, scenario) for p in FdWaiter.BACKEND}
    assert got["timed"] == got["inlined"]
    assert got["level"] == got["inlined"]
    assert got["first"] == got["inlined"]
    for path in ("readable", "readable-first", "readable-level"):
        assert got[path] == got["inlined"], path
    assert got["inlined"] == PARK_SCENARIOS[scenario][1]


# -- resume: the value or exception a fiber was woken with, read by the fiber itself ----------
#
# The switch carries nothing (`Hub._switch_out`): the fiber resumed reads its ``_wake_value``
# where it parked, in `Hub._switch_out` or in the copies in `Hub.wait_fd` and
# `Hub.wait_readable`. Whoever switches to it (the hub's pass, or another fiber parking through
# any of the three, straight to it), it gets the same outcome.


def _close(hub: Any, recs: list[Any], pairs: list[tuple[std.socket, std.socket]]) -> None:
    """Forget the records ``recs`` and close the socket ``pairs`` they were made for."""
    for rec in recs:
        hub.forget_fd(rec)
    for a, b in pairs:
        a.close()
        b.close()


RESUMERS = ("hub", "park", "fd", "readable")
RECEIVERS = ("park", "fd", "readable")


def _resume_main(receiver: str, resumer: str, kind: str) -> tuple[Any, ...]:
    hub = hub_of_me()
    pairs = [std.socketpair() for _ in range(2)]
    for a, b in pairs:
        a.setblocking(False)
        b.setblocking(False)
    recs = [hub.fd_record(a.fileno()) for a, _ in pairs]
    exc = LookupError("thrown")
    got: list[Any] = []

    def park_by(how: str, f: lowlevel.Fiber, rec: Any, timeout: float | None = None) -> Any:
        if how == "park":
            return hub.park(f, timeout)
        if how == "fd":
            return hub.wait_fd(f, rec, False, None)
        return hub.wait_readable(f, rec)

    def waiter() -> None:
        f = me()
        try:
            got.append(("returned", park_by(receiver, f, recs[0])))
        except LookupError as e:
            got.append(("raised", e is exc))
        got.append((f._wake_value, f._parked))

    def resumer_main() -> None:
        if kind == "value":
            assert hub.wake(w, "value")
        else:
            assert hub.throw(w, exc)
        if resumer == "hub":
            return  # it ends: the hub's pass resumes the waiter
        pairs[1][1].send(b"x")  # (so that its own wait ends too, once the waiter ran)
        # It parks (a park times out, after the waiter ran): straight to the waiter, which the
        # wake queued.
        park_by(resumer, me(), recs[1], 0.01)

    w = unknot.spawn(waiter)
    unknot.sleep(0)  # the waiter parks
    r = unknot.spawn(resumer_main)
    w.join(5)
    r.join(5)
    _close(hub, recs, pairs)
    return tuple(got)


@needs_epoll
@pytest.mark.parametrize("kind", ["value", "exception"])
@pytest.mark.parametrize("resumer", RESUMERS)
@pytest.mark.parametrize("receiver", RECEIVERS)
def test_resume_copies_agree_whoever_switches(receiver: str, resumer: str, kind: str) -> None:
    got = run_on("epoll", _resume_main, receiver, resumer, kind)
    outcome = ("returned", "value") if kind == "value" else ("raised", True)
    assert got[0] == outcome
    assert got[1] == (None, 0)  # the value taken, the fiber no longer parked


def _many_woken_main() -> tuple[Any, ...]:
    """Nine fibers parked through each of the three places, then woken before any runs: with
    None, with a value, with an exception, and two by batched calls (one returning a value, one
    raising). What each got, and the hub's count of wake values not yet taken, before the
    fibers ran and after."""
    hub = hub_of_me()
    pairs = [std.socketpair() for _ in range(9)]
    recs = [hub.fd_record(a.fileno()) for a, _ in pairs]
    got: dict[str, Any] = {}

    def parked(name: str, how: str, rec: Any) -> None:
        f = me()
        try:
            if how == "park":
                got[name] = ("returned", hub.park(f))
            elif how == "fd":
                got[name] = ("returned", hub.wait_fd(f, rec, False, None))
            else:
                got[name] = ("returned", hub.wait_readable(f, rec))
        except LookupError as e:
            got[name] = ("raised", str(e))

    def fail() -> None:
        raise LookupError("from the call")

    def batched(name: str, fn: Callable[[], Any]) -> None:
        try:
            got[name] = ("returned", hub.call_batched(me(), fn))
        except LookupError as e:
            got[name] = ("raised", str(e))

    fibers = {}
    places = [(how, kind) for how in RECEIVERS for kind in ("none", "value", "exception")]
    for (how, kind), rec in zip(places, recs, strict=True):
        name = f"{how}-{kind}"
        fibers[name] = unknot.spawn(parked, name, how, rec)
    unknot.sleep(0)  # they all park
    for name, f in fibers.items():
        kind = name.split("-")[1]
        if kind == "exception":
            assert hub.throw(f, LookupError(name))
        else:
            assert hub.wake(f, None if kind == "none" else name)
    fibers["batched-value"] = unknot.spawn(batched, "batched-value", lambda: "called")
    fibers["batched-raise"] = unknot.spawn(batched, "batched-raise", fail)
    counted_before = hub.wake_values
    for f in fibers.values():
        f.join(5)
    _close(hub, recs, pairs)
    return got, counted_before, hub.wake_values, "wake_values" in getattr(hub, "__dict__", {})


@needs_epoll
def test_the_count_of_wake_values_lets_no_value_be_missed() -> None:
    # Compiled, a resumed fiber reads its wake value only while the hub counts some not yet
    # taken (`Hub.wake_values`); every way of giving one must count it, every fiber taking one
    # must uncount it.
    got, before, after, attribute = run_on("epoll", _many_woken_main)
    expected = {
        "batched-value": ("returned", "called"),
        "batched-raise": ("raised", "from the call"),
    }
    for how in RECEIVERS:
        expected[f"{how}-none"] = ("returned", None)
        expected[f"{how}-value"] = ("returned", f"{how}-value")
        expected[f"{how}-exception"] = ("raised", f"{how}-exception")
    assert got == expected
    assert after == 0
    if unknot.compiled:
        assert before == 6  # a value or an exception given to six fibers, not yet run
    else:
        assert before == 0 and not attribute  # the pure hub never counts (29 attributes)


class Thrown(LookupError):
    """An exception that can be referred to weakly (built-in exceptions cannot)."""


def _thrown_main(receiver: str) -> bool:
    """A fiber parked through ``receiver`` is thrown an exception, which it catches and drops;
    whether the exception is then freed at once (no reference cycle keeps it)."""
    hub = hub_of_me()
    a, b = std.socketpair()
    rec = hub.fd_record(a.fileno())
    refs: list[Any] = []

    def waiter() -> None:
        f = me()
        try:
            if receiver == "park":
                hub.park(f)
            elif receiver == "fd":
                hub.wait_fd(f, rec, False, None)
            else:
                hub.wait_readable(f, rec)
        except LookupError:
            pass

    def thrower() -> None:
        exc = Thrown("thrown")
        refs.append(weakref.ref(exc))
        assert hub.throw(w, exc)

    w = unknot.spawn(waiter)
    unknot.sleep(0)
    unknot.spawn(thrower).join(5)
    w.join(5)
    hub.forget_fd(rec)
    a.close()
    b.close()
    return refs[0]() is None


@needs_epoll
@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_thrown_exception_makes_no_reference_cycle(receiver: str) -> None:
    # The resumed fiber raises the exception it was thrown where it parked: the frame doing so
    # must not keep it (its traceback holds that frame), or every cancelled wait would leave
    # garbage for the cyclic collector.
    gc.collect()
    gc.disable()
    try:
        assert run_on("epoll", _thrown_main, receiver)
    finally:
        gc.enable()


# -- fd-wake: EpollHub.select copies Hub._fd_event and Hub.wake ---------------------------------


class FdPair:
    """A non-blocking socketpair whose end ``a`` has a record on the current hub."""

    def __init__(self) -> None:
        self.hub = hub_of_me()
        self.a, self.b = std.socketpair()
        self.a.setblocking(False)
        self.b.setblocking(False)
        self.rec = self.hub.fd_record(self.a.fileno())

    def wait(self, write: bool) -> Any:
        return self.hub.wait_fd(me(), self.rec, write, 5.0)

    def close(self) -> None:
        self.hub.forget_fd(self.rec)
        self.a.close()
        self.b.close()


def fd_wake_reader_then_writer(p: FdPair) -> tuple[Any, ...]:
    """Both directions become ready in one poll: the reader is resumed first."""
    fill(p.a)
    order = []

    def waiter(write: bool, name: str) -> None:
        order.append((name, p.wait(write)))

    writer = unknot.spawn(waiter, True, "writer")  # waits first
    reader = unknot.spawn(waiter, False, "reader")
    unknot.sleep(0)  # both wait now
    drained = drain(p.b) > 0  # `a` is writable again...
    p.b.send(b"x")  # ...and readable
    writer.join()
    reader.join()
    return drained, order


def fd_wake_hang_up(p: FdPair) -> tuple[Any, ...]:
    fill(p.a)
    order = []

    def waiter(write: bool, name: str) -> None:
        order.append((name, p.wait(write)))

    reader = unknot.spawn(waiter, False, "reader")
    writer = unknot.spawn(waiter, True, "writer")
    unknot.sleep(0)
    p.b.close()
    reader.join()
    writer.join()
    return order, outcome(p.a.recv, 10)[:3]  # (what it wrote to the peer was never read)


def fd_wake_first_wake_wins(p: FdPair) -> tuple[Any, ...]:
    """A fiber woken by someone else before the hub sees its fd's event is not queued twice."""
    hub = p.hub
    got = []

    def reader() -> None:
        got.append(p.wait(False))
        got.append(hub.park(me(), 0.05))  # a stale second resume would end this early

    r = unknot.spawn(reader)
    unknot.sleep(0)  # it waits
    p.b.send(b"x")
    woke = hub.wake(r, "first")
    unknot.sleep(0)  # the hub polls (and sees the event) before the reader runs
    queued = list(hub.ready).count(r)
    r.join()
    return woke, got, queued


def fd_wake_after_a_valued_wake(p: FdPair) -> tuple[Any, ...]:
    """An fd wake-up resumes the wait with None, whatever the fiber was woken with before."""
    hub = p.hub
    got = []

    def reader() -> None:
        got.append(hub.park(me()))
        got.append(p.wait(False))

    r = unknot.spawn(reader)
    unknot.sleep(0)
    hub.wake(r, "old")
    unknot.sleep(0)  # it took "old" and waits on the fd
    p.b.send(b"x")
    r.join()
    return (got,)


FD_WAKE_SCENARIOS: dict[str, tuple[Callable[[FdPair], tuple[Any, ...]], tuple[Any, ...]]] = {
    "reader-then-writer": (
        fd_wake_reader_then_writer,
        (True, [("reader", None), ("writer", None)]),
    ),
    "hang-up": (
        fd_wake_hang_up,
        (
            [("reader", None), ("writer", None)],
            ("raised", "ConnectionResetError", errno.ECONNRESET),
        ),
    ),
    "first-wake-wins": (fd_wake_first_wake_wins, (True, ["first", lowlevel.TIMED_OUT], 0)),
    "after-a-valued-wake": (fd_wake_after_a_valued_wake, (["old", None],)),
}


def _fd_wake_main(scenario: str) -> tuple[Any, ...]:
    p = FdPair()
    try:
        return FD_WAKE_SCENARIOS[scenario][0](p)
    finally:
        p.close()


@needs_epoll
@pytest.mark.parametrize("scenario", sorted(FD_WAKE_SCENARIOS))
def test_fd_wake_agrees_with_fd_event(scenario: str) -> None:
    # epoll wakes fibers with its copy; poll and select call Hub._fd_event.
    got = {b: run_on(b, _fd_wake_main, scenario) for b in sorted(BACKENDS)}
    for backend in got:
        assert got[backend] == got["epoll"], backend
    assert got["epoll"] == FD_WAKE_SCENARIOS[scenario][1]


# -- pass-rule: Hub._run_pass copies Hub._switch_out's test ---------------------------------------


def _pass_main(ending: str, extension: str, parking: str = "sleep") -> list[Any]:
    """Two fibers, S1 and S2, start a pass together. S1 wakes a third, T, then yields
    (``extension="yield"``) or parks; S2 runs next and then parks (the next fiber is chosen by
    `Hub._switch_out`) or ends (chosen by `Hub._run_pass`), with T first in the ready queue.

    T records whether the loop went round before it ran (an asyncio callback S2 scheduled has
    run). It must run in the same pass unless the pass may no longer be extended: a fiber
    yielded in it, or Ctrl-C arrived (S2 makes one: ``extension="interrupt"``).

    ``parking``: how S1 and S2 park: ``sleep`` (`Hub.park`, which calls `Hub._switch_out`) or
    ``fd``, an untimed `Hub.wait_fd` on a quiet socket (on the epoll hub: its inlined copy), or
    ``readable``, the same through `Hub.wait_readable` (its own copy).
    """
    hub = hub_of_me()
    loop = hub.loop
    assert loop is not None
    marks: list[int] = []
    log: list[Any] = []
    pairs = [std.socketpair() for _ in range(2)]
    records = [hub.fd_record(a.fileno()) for a, _ in pairs]

    def park(i: int) -> None:
        if parking == "sleep":
            unknot.sleep(1)
        elif parking == "readable":
            with unknot.move_on_after(1):
                hub.wait_readable(me(), records[i])
        else:
            with unknot.move_on_after(1):
                hub.wait_fd(me(), records[i], False, None)

    def third() -> None:
        lowlevel.park()
        log.append(("T", len(marks)))

    def first() -> None:
        lowlevel.park()
        log.append(("S1 starts the pass with S2", list(hub.ready) == [s2]))
        hub.wake(t)
        if extension == "yield":
            unknot.sleep(0)
        else:
            park(0)  # parks: S2 is resumed straight from here

    def second() -> None:
        lowlevel.park()
        log.append(("S2: T is next", list(hub.ready)[:1] == [t]))
        loop.call_soon(marks.append, 1)
        if extension == "interrupt":
            interrupt_root(hub, Interrupt("Ctrl-C"))
        if ending == "park":
            park(1)

    t = unknot.spawn(third)
    s1 = unknot.spawn(first)
    s2 = unknot.spawn(second)
    unknot.sleep(0)  # all three are parked

    def start(_: Any) -> None:
        hub.wake(s1)
        hub.wake(s2)

    hub.add_timer(hub.time() + 0.01, start, None)
    try:
        try:
            t.join()
        except Interrupt:
            log.append(("root: Interrupt", len(marks)))
            t.join()
    finally:
        for rec, (a, b) in zip(records, pairs, strict=True):
            hub.forget_fd(rec)
            a.close()
            b.close()
    return log


_PASS_START = [("S1 starts the pass with S2", True), ("S2: T is next", True)]
PASS_EXPECTED = {
    "none": [*_PASS_START, ("T", 0)],
    "yield": [*_PASS_START, ("T", 1)],
    "interrupt": [*_PASS_START, ("T", 1), ("root: Interrupt", 1)],
}


@pytest.mark.timeout(20)  # were they to disagree, the hub would spin: pytest's timeout ends it
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("extension", sorted(PASS_EXPECTED))
def test_pass_rule_agrees_with_switch_out(extension: str, backend: str) -> None:
    got = {e: run_on(backend, _pass_main, e, extension) for e in ("park", "end")}
    assert got["end"] == got["park"]
    assert got["park"] == PASS_EXPECTED[extension]


@pytest.mark.timeout(20)
@needs_epoll
@pytest.mark.parametrize("extension", sorted(PASS_EXPECTED))
def test_switch_out_copy_keeps_the_pass_rule(extension: str) -> None:
    # Hub.wait_fd's copy of Hub._switch_out (an untimed wait on the epoll hub) hands over to
    # the next ready fiber exactly as Hub._switch_out does (a sleep parks through it); the
    # values and exceptions it delivers: test_park_checks_agree_with_park.
    paths = ("sleep", "fd", "readable")
    got = {p: run_on("epoll", _pass_main, "park", extension, p) for p in paths}
    assert got["readable"] == got["fd"] == got["sleep"] == PASS_EXPECTED[extension]


# -- batched-wake: Hub._run_calls copies Hub.wake and Hub.throw ---------------------------------


def _batched_main(path: str, kind: str) -> list[Any]:
    """A fiber waits for a value (or an exception); it gets it from a batched call (the copy)
    or from `Hub.wake`/`Hub.throw` (the originals), and another fiber watches."""
    hub = hub_of_me()
    log: list[Any] = []
    exc = OSError(errno.EPIPE, "from the call")

    def call() -> str:
        if kind == "error":
            raise exc
        return "value"

    def waiter() -> None:
        f = me()
        try:
            if path == "batched":
                got: tuple[Any, ...] = ("returned", hub.call_batched(f, call))
            else:
                got = ("returned", hub.park(f, cancellable=False))
        except OSError as e:
            got = ("raised", e is exc)
        log.append(("waiter got", got))
        try:
            unknot.sleep(0)
            log.append(("waiter", "not cancelled"))
        except unknot.Cancelled:
            log.append(("waiter", "cancelled"))
            raise

    def observe() -> None:
        log.append(("observed", w._parked, w in hub.ready, hub.wake(w, "late")))

    def observer() -> None:
        log.append(("while waiting", w._parked))
        if kind == "cancelled":
            w.cancel()  # it waits uncancellably: it gets its value all the same
            log.append(("after cancel", w._parked))
        if path == "batched":
            hub.call_batched(me(), observe)  # made right after the waiter's call
        else:
            try:
                hub.wake(w, call())
            except OSError as e:
                hub.throw(w, e)
            observe()

    w = unknot.spawn(waiter)
    o = unknot.spawn(observer)
    o.join()
    try:
        w.join()
    except Exception as e:
        log.append(("join", type(e).__name__))
    return log


SHIELDED = lowlevel.PARKED_SHIELDED
BATCHED_EXPECTED = {
    "value": [
        ("while waiting", SHIELDED),
        ("observed", NOT_PARKED, True, False),
        ("waiter got", ("returned", "value")),
        ("waiter", "not cancelled"),
    ],
    "error": [
        ("while waiting", SHIELDED),
        ("observed", NOT_PARKED, True, False),
        ("waiter got", ("raised", True)),
        ("waiter", "not cancelled"),
    ],
    "cancelled": [
        ("while waiting", SHIELDED),
        ("after cancel", SHIELDED),
        ("observed", NOT_PARKED, True, False),
        ("waiter got", ("returned", "value")),
        ("waiter", "cancelled"),
        ("join", "FiberCancelled"),
    ],
}


@pytest.mark.parametrize("kind", sorted(BATCHED_EXPECTED))
def test_batched_wake_agrees_with_wake_and_throw(kind: str) -> None:
    for backend in sorted(BACKENDS):
        got = {p: run_on(backend, _batched_main, p, kind) for p in ("batched", "woken")}
        assert got["batched"] == got["woken"], backend
        assert got["batched"] == BATCHED_EXPECTED[kind], backend


# -- the parking lot's detach ------------------------------------------------------------------


def _detach_main(kind: str, how: str) -> tuple[Any, ...]:
    """One fiber parks in a lot (``kind``: bare, or with a payload) and is woken by ``how``:
    ``unpark`` and ``unpark_all`` carry `_detach`'s copy, ``take`` calls `_detach`, and
    ``unpark_all-2`` (two waiters) calls it through `_take_all`. What the waker and the woken
    fiber observe."""
    from unknot._core._parking import ParkedFiber

    lot = unknot.lowlevel.ParkingLot()
    got: list[Any] = []

    def waiter() -> None:
        me = unknot.lowlevel.current_fiber()
        got.append(lot.park(me, payload="item" if kind == "payload" else None))

    f = unknot.spawn(waiter)
    g = unknot.spawn(waiter) if how == "unpark_all-2" else None
    unknot.sleep(0)
    entry = lot.head
    assert entry is not None
    if how == "unpark":
        woken: Any = lot.unpark("v")
    elif how == "take":
        place = lot.take("v")
        woken = place.fiber if place is not None else None
    else:
        woken = f if lot.unpark_all("v") == (2 if g else 1) else None
    left = entry.queued if type(entry) is ParkedFiber else entry._lot
    state = (woken is f, left, len(lot), lot.head is None)
    f.join()
    if g is not None:
        g.join()
    return (*state, got[0])


@pytest.mark.parametrize("kind", ["bare", "payload"])
def test_unpark_detaches_as_detach_does(kind: str) -> None:
    got = {
        how: unknot.run(_detach_main, kind, how)
        for how in ("unpark", "unpark_all", "take", "unpark_all-2")
    }
    # woken fiber, its entry no longer queued (False for a place, no lot for a bare fiber),
    # the lot empty, the value the fiber's park returned
    expected = (True, False if kind == "payload" else None, 0, True, "v")
    assert got == dict.fromkeys(got, expected)


# -- sockets ------------------------------------------------------------------------------------


def tcp_pair() -> tuple[us.socket, us.socket]:
    """Two connected cooperative TCP sockets (client, server side)."""
    with us.create_server(("127.0.0.1", 0)) as listener:
        client = us.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def wait_once(sock: Any, other: Any) -> None:
    """Make ``sock`` wait for data once in a fiber (``other`` sends it), so that it has its
    record on this hub."""
    f = unknot.spawn(sock.recv, 1)
    unknot.sleep(0)
    assert not f.done()
    other.send(b"!")
    assert f.join() == b"!"
    assert sock._state.rec is not None


def hint(sock: Any, write: bool) -> bool | None:
    """The socket's readiness hint (None where the backend keeps none)."""
    rec = sock._state.rec
    if rec is None or not rec.hints:
        return None
    return bool(rec.writable if write else rec.readable)


def reset(sock: Any) -> None:
    """Close ``sock`` so that its peer gets a reset (TCP: SO_LINGER 0; AF_UNIX: the caller left
    data unread in it)."""
    if sock.family != std.AF_UNIX:
        sock.setsockopt(std.SOL_SOCKET, std.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_hint(sock: Any) -> Any:
    """The readable hint, where recv and _io must agree on it: not on a non-blocking socket,
    where recv never waits (the `never-waits` branch) and leaves the hint alone while _io
    clears it after a short TCP read."""
    return "not compared" if sock.gettimeout() == 0.0 else hint(sock, False)


MODES = {"blocking": None, "timed": 5.0, "non-blocking": 0.0}

_peers: list[lowlevel.Fiber] = []


def peer(fn: Callable[..., Any], *args: Any) -> lowlevel.Fiber:
    """Spawn a fiber acting on the scenario's sockets (it is cancelled when the scenario ends:
    where the call under test did not wait, it has not run yet, and must not once the sockets
    are closed)."""
    f = unknot.spawn(fn, *args)
    _peers.append(f)
    return f


def cancel_peers() -> None:
    while _peers:
        _peers.pop().cancel()


# -- socket-recv: socket.recv copies socket._io and socket._wait --------------------------------


def recv_inlined(sock: Any, n: int) -> bytes:
    rec = sock._state.rec
    if sock.gettimeout() != 0.0:  # (non-blocking: recv never waits, and takes another branch)
        assert rec is not None and rec.hub is hub_of_me(), "the inlined path needs the record"
    return bytes(sock.recv(n))


def recv_general(sock: Any, n: int) -> bytes:
    return bytes(sock._io(False, _socket.socket.recv, n, (n,)))


def recv_ready(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    p.sendall(b"hello")
    wait_readable(r)
    return outcome(recv, r, 100), read_hint(r)


def recv_ready_exact(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    p.sendall(b"hello")
    wait_readable(r)
    return outcome(recv, r, 5), read_hint(r)


def recv_later(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    reader = me()
    seen = []

    def send_later() -> None:
        seen.append(reader._parked)
        p.sendall(b"later")

    peer(send_later)
    return outcome(recv, r, 100), tuple(seen), read_hint(r)


def recv_drained_then_later(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    p.sendall(b"ab")
    wait_readable(r)
    first = outcome(recv, r, 100), read_hint(r)  # (TCP: a short read clears the hint)
    peer(p.sendall, b"cd")
    return first, outcome(recv, r, 100), read_hint(r)


def recv_zero_and_negative(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    p.sendall(b"ab")
    wait_readable(r)
    first = outcome(recv, r, 100), read_hint(r)
    return first, outcome(recv, r, 0), outcome(recv, r, -1), read_hint(r)


def recv_eof(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    p.shutdown(std.SHUT_WR)
    wait_readable(r)
    return outcome(recv, r, 100), outcome(recv, r, 100), read_hint(r)


def recv_eof_while_waiting(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    peer(p.shutdown, std.SHUT_WR)
    return outcome(recv, r, 100), read_hint(r)


def recv_reset(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    r.sendall(b"unread")
    wait_readable(p)
    reset(p)
    wait_readable(r)
    return outcome(recv, r, 100), read_hint(r)


def recv_reset_while_waiting(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    r.sendall(b"unread")
    wait_readable(p)
    peer(reset, p)
    return outcome(recv, r, 100), read_hint(r)


def recv_closed_while_waiting(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    peer(r.close)
    return (outcome(recv, r, 100),)


def recv_cancelled_while_waiting(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    with unknot.CancelScope() as scope:
        peer(scope.cancel)
        got = outcome(recv, r, 100)
    return got, read_hint(r), outcome(recv, r, 0)


def recv_woken_without_data(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    """Woken again and again with nothing to read: the timeout still bounds the whole call
    (a deadline set once, at the first wait)."""
    if r.gettimeout() != 5.0:
        return ("not applicable",)
    r.settimeout(0.1)
    hub, reader = hub_of_me(), me()

    def wake_up() -> None:
        for _ in range(6):  # for 0.3 s
            unknot.sleep(0.05)
            hub.wake(reader)

    peer(wake_up)
    t0 = time.monotonic()
    got = outcome(recv, r, 100)
    return got, read_hint(r), time.monotonic() - t0 < 0.25


def recv_timed_out(r: Any, p: Any, recv: Callable[..., bytes]) -> tuple[Any, ...]:
    if r.gettimeout() == 5.0:
        r.settimeout(0.05)
    elif r.gettimeout() is None:
        return ("not applicable",)
    t0 = time.monotonic()
    got = outcome(recv, r, 100)
    waited = time.monotonic() - t0
    return got, read_hint(r), (r.gettimeout() or 0) <= waited < 2


RECV_SCENARIOS = {
    f.__name__.removeprefix("recv_"): f
    for f in (
        recv_ready,
        recv_ready_exact,
        recv_later,
        recv_drained_then_later,
        recv_zero_and_negative,
        recv_eof,
        recv_eof_while_waiting,
        recv_reset,
        recv_reset_while_waiting,
        recv_closed_while_waiting,
        recv_cancelled_while_waiting,
        recv_woken_without_data,
        recv_timed_out,
    )
}

WOULD_BLOCK = (
    "raised",
    "BlockingIOError",
    errno.EAGAIN,
    "[Errno 11] Resource temporarily unavailable",
)


def recv_expected(scenario: str, mode: str) -> Any:
    """The first outcome of each scenario (the rest is compared between the two paths)."""
    nb = mode == "non-blocking"
    reset_error = ("raised", "ConnectionResetError", errno.ECONNRESET)
    return {
        "ready": ("returned", b"hello"),
        "ready_exact": ("returned", b"hello"),
        "later": WOULD_BLOCK if nb else ("returned", b"later"),
        "drained_then_later": (("returned", b"ab"), ANY),
        "zero_and_negative": (("returned", b"ab"), ANY),
        "eof": ("returned", b""),
        "eof_while_waiting": WOULD_BLOCK if nb else ("returned", b""),
        "reset": reset_error,
        "reset_while_waiting": WOULD_BLOCK if nb else reset_error,
        "closed_while_waiting": WOULD_BLOCK if nb else EBADF_WAITING,
        "cancelled_while_waiting": WOULD_BLOCK if nb else CANCELLED,
        "timed_out": {
            "non-blocking": WOULD_BLOCK,
            "blocking": "not applicable",
            "timed": ("raised", "TimeoutError", None, "timed out"),
        }[mode],
        "woken_without_data": ("raised", "TimeoutError", None, "timed out")
        if mode == "timed"
        else "not applicable",
    }[scenario]


class _Any:
    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


def _recv_main(kind: str, mode: str, scenario: str, path: str) -> tuple[Any, ...]:
    r, p = tcp_pair() if kind == "tcp" else us.socketpair()
    try:
        wait_once(r, p)
        r.settimeout(MODES[mode])
        recv = recv_inlined if path == "inlined" else recv_general
        return RECV_SCENARIOS[scenario](r, p, recv)
    finally:
        cancel_peers()
        r.close()
        p.close()


@pytest.mark.parametrize("scenario", sorted(RECV_SCENARIOS))
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_recv_agrees_with_io(kind: str, mode: str, scenario: str) -> None:
    for backend in sorted(BACKENDS):
        got = {
            path: run_on(backend, _recv_main, kind, mode, scenario, path)
            for path in ("inlined", "general")
        }
        assert got["inlined"] == got["general"], backend
        first = got["inlined"][0]
        expected = recv_expected(scenario, mode)
        if isinstance(first, tuple) and first[:1] == ("raised",) and len(expected) == 3:
            first = first[:3]  # (an errno's message is the C library's: not compared)
        assert first == expected, backend


# -- socket-sendall: socket.sendall's first try copies socket._io's ----------------------------

SEND_KINDS = ["tcp", "unix", "unix-as-seqpacket"]


def send_pair(kind: str) -> tuple[us.socket, us.socket]:
    """(sender, peer). The TCP sender is the accepted side: not a client socket, which would
    let the ready fibers go first. ``unix-as-seqpacket``: a stream fd the socket object is told
    is SOCK_SEQPACKET (no Linux socket of a message type ever writes short: this is how to get
    a short write on a socket that is not a stream, which is what the hint rule looks at)."""
    if kind == "tcp":
        client, server = tcp_pair()
        sender, receiver = server, client
    else:
        sender, receiver = us.socketpair()
        if kind == "unix-as-seqpacket":
            fd = sender.detach()
            sender = us.socket(std.AF_UNIX, std.SOCK_SEQPACKET, 0, fileno=fd)
            assert not sender._state.stream  # type: ignore[attr-defined]
    sender.setsockopt(std.SOL_SOCKET, std.SO_SNDBUF, 16384)
    receiver.setsockopt(std.SOL_SOCKET, std.SO_RCVBUF, 16384)
    return sender, receiver


def sendall_inlined(sock: Any, data: bytes) -> None:
    if sock.gettimeout() != 0.0:
        st = sock._state
        assert st.rec is not None and not st.client, "the inlined path needs these"
    sock.sendall(data)


def sendall_general(sock: Any, data: bytes) -> None:
    sock.sendall(bytearray(data))  # not bytes: straight to the loop over _io


BIG = bytes(range(256)) * 4096  # 1 MiB: more than the buffers hold


def recv_n(sock: Any, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def sendall_fits(s: Any, p: Any, sendall: Callable[..., None]) -> tuple[Any, ...]:
    data = b"x" * 1000
    got = outcome(sendall, s, data)
    p.settimeout(5)
    return got, hint(s, True), recv_n(p, len(data)) == data


def sendall_full_then_drained(s: Any, p: Any, sendall: Callable[..., None]) -> tuple[Any, ...]:
    p.settimeout(5)
    reader = peer(recv_n, p, len(BIG))
    got = outcome(sendall, s, BIG)
    if got[0] == "raised":  # non-blocking: the peer takes what was sent
        reader.cancel()
        return got, hint(s, True)
    return got, hint(s, True), reader.join() == BIG


def sendall_timed_out(s: Any, p: Any, sendall: Callable[..., None]) -> tuple[Any, ...]:
    if s.gettimeout() is None:
        return ("not applicable",)
    if s.gettimeout() == 5.0:
        s.settimeout(0.1)
    return outcome(sendall, s, BIG), hint(s, True)


def sendall_peer_gone(s: Any, p: Any, sendall: Callable[..., None]) -> tuple[Any, ...]:
    reset(p)
    if s.family != std.AF_UNIX:
        wait_readable(s)  # the reset arrived
    got = outcome(sendall, s, b"x" * 1000)
    return got[:3], hint(s, True)


def sendall_peer_gone_while_waiting(
    s: Any, p: Any, sendall: Callable[..., None]
) -> tuple[Any, ...]:
    peer(reset, p)
    got = outcome(sendall, s, BIG)
    return got[:3], hint(s, True)


def sendall_closed_while_waiting(s: Any, p: Any, sendall: Callable[..., None]) -> tuple[Any, ...]:
    peer(s.close)
    return (outcome(sendall, s, BIG),)


def sendall_cancelled_while_waiting(
    s: Any, p: Any, sendall: Callable[..., None]
) -> tuple[Any, ...]:
    with unknot.CancelScope() as scope:
        peer(scope.cancel)
        got = outcome(sendall, s, BIG)
    return got, hint(s, True)


SENDALL_SCENARIOS = {
    f.__name__.removeprefix("sendall_"): f
    for f in (
        sendall_fits,
        sendall_full_then_drained,
        sendall_timed_out,
        sendall_peer_gone,
        sendall_peer_gone_while_waiting,
        sendall_closed_while_waiting,
        sendall_cancelled_while_waiting,
    )
}


def sendall_expected(scenario: str, kind: str, mode: str) -> Any:
    nb = mode == "non-blocking"
    gone = ("raised", "BrokenPipeError", errno.EPIPE)
    if kind == "tcp":
        gone = ("raised", "ConnectionResetError", errno.ECONNRESET)
    return {
        "fits": ("returned", None),
        "full_then_drained": WOULD_BLOCK if nb else ("returned", None),
        "timed_out": {
            "non-blocking": WOULD_BLOCK,
            "blocking": "not applicable",
            "timed": ("raised", "TimeoutError", None, "timed out"),
        }[mode],
        "peer_gone": gone,
        "peer_gone_while_waiting": WOULD_BLOCK[:3] if nb else ANY,
        "closed_while_waiting": WOULD_BLOCK if nb else EBADF_WAITING,
        "cancelled_while_waiting": WOULD_BLOCK if nb else CANCELLED,
    }[scenario]


def _sendall_main(kind: str, mode: str, scenario: str, path: str) -> tuple[Any, ...]:
    s, p = send_pair(kind)
    try:
        wait_once(s, p)
        s.settimeout(MODES[mode])
        sendall = sendall_inlined if path == "inlined" else sendall_general
        return SENDALL_SCENARIOS[scenario](s, p, sendall)
    finally:
        cancel_peers()
        s.close()
        p.close()


@pytest.mark.parametrize("scenario", sorted(SENDALL_SCENARIOS))
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("kind", SEND_KINDS)
def test_sendall_agrees_with_io(kind: str, mode: str, scenario: str) -> None:
    for backend in sorted(BACKENDS):
        got = {
            path: run_on(backend, _sendall_main, kind, mode, scenario, path)
            for path in ("inlined", "general")
        }
        assert got["inlined"] == got["general"], backend
        assert got["inlined"][0] == sendall_expected(scenario, kind, mode), backend


def _short_write_main(kind: str, path: str) -> tuple[Any, ...]:
    s, p = send_pair(kind)
    try:
        wait_once(s, p)
        s.settimeout(0.1)
        assert hint(s, True) is True
        got = outcome(sendall_inlined if path == "inlined" else sendall_general, s, BIG)
        return got, hint(s, True)
    finally:
        s.close()
        p.close()


@needs_epoll
@pytest.mark.parametrize("kind", SEND_KINDS)
def test_sendall_clears_the_write_hint_only_on_streams(kind: str) -> None:
    """The drift that was: sendall's first try cleared the writable hint after any short write,
    where _io (the general path) clears it only on a stream, whose short write promises an edge
    once the buffer drains. Nobody reads here, so no edge comes after the short write and the
    hint stays as the short write left it."""
    got = {path: run_on("epoll", _short_write_main, kind, path) for path in ("inlined", "general")}
    timed_out = ("raised", "TimeoutError", None, "timed out")
    stream = kind != "unix-as-seqpacket"
    assert got["general"] == (timed_out, not stream)
    assert got["inlined"] == got["general"]


# -- never-waits: socket.recv_into and socket.send copy socket.recv's test ------------------------

DONTWAIT = std.MSG_DONTWAIT


def _recv_into(sock: Any, n: int, flags: int) -> bytes:
    buf = bytearray(n)
    return bytes(buf[: sock.recv_into(buf, n, flags)])


RECEIVERS: dict[str, Callable[[Any, int, int], bytes]] = {
    "recv": lambda s, n, flags: bytes(s.recv(n, flags)),  # the original
    "recv_into": _recv_into,  # the copy
    "recvfrom": lambda s, n, flags: bytes(s.recvfrom(n, flags)[0]),  # the general methods
}
NEVER_WAITS_CASES = {
    # name: (timeout, flags, data ready?)
    "non-blocking, ready": (0.0, 0, True),
    "non-blocking, nothing": (0.0, 0, False),
    "blocking + DONTWAIT, ready": (None, DONTWAIT, True),
    "blocking + DONTWAIT, nothing": (None, DONTWAIT, False),
    "timed + DONTWAIT, nothing": (0.05, DONTWAIT, False),  # waits: a timeout is a timeout
}


def _never_waits_main(kind: str, case: str, receiver: str) -> tuple[Any, ...]:
    timeout, flags, ready = NEVER_WAITS_CASES[case]
    r, p = tcp_pair() if kind == "tcp" else us.socketpair()
    try:
        wait_once(r, p)
        r.settimeout(timeout)
        if ready:
            p.sendall(b"ab")
            wait_readable(r)
        got = outcome(RECEIVERS[receiver], r, 100, flags)
        return got, hint(r, False)
    finally:
        r.close()
        p.close()


@pytest.mark.parametrize("case", sorted(NEVER_WAITS_CASES))
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_never_waits_rule_agrees(kind: str, case: str) -> None:
    timeout, flags, ready = NEVER_WAITS_CASES[case]
    if ready:
        expected: tuple[Any, ...] = ("returned", b"ab")
    elif timeout:
        expected = ("raised", "TimeoutError", None, "timed out")
    else:
        expected = WOULD_BLOCK
    for backend in sorted(BACKENDS):
        got = {name: run_on(backend, _never_waits_main, kind, case, name) for name in RECEIVERS}
        assert got["recv_into"] == got["recv"], backend
        assert got["recvfrom"] == got["recv"], backend
        assert got["recv"][0] == expected, backend


SENDERS: dict[str, Callable[[Any, bytes, int], int]] = {
    "send": lambda s, data, flags: s.send(data, flags),  # the copy
    "sendmsg": lambda s, data, flags: s.sendmsg([data], [], flags),  # the general methods
}


def _never_waits_send_main(case: str, sender: str) -> tuple[Any, ...]:
    timeout, flags, room = NEVER_WAITS_CASES[case]
    s, p = us.socketpair()  # (AF_UNIX: a full buffer stays full while nobody reads)
    try:
        wait_once(s, p)
        if not room:
            s.setblocking(False)
            fill(s)
        s.settimeout(timeout)
        return outcome(SENDERS[sender], s, b"ab", flags), hint(s, True)
    finally:
        s.close()
        p.close()


@pytest.mark.parametrize("case", sorted(NEVER_WAITS_CASES))
def test_never_waits_rule_agrees_for_sends(case: str) -> None:
    timeout, flags, room = NEVER_WAITS_CASES[case]
    if room:
        expected: tuple[Any, ...] = ("returned", 2)
    elif timeout:
        expected = ("raised", "TimeoutError", None, "timed out")
    else:
        expected = WOULD_BLOCK
    for backend in sorted(BACKENDS):
        got = {name: run_on(backend, _never_waits_send_main, case, name) for name in SENDERS}
        assert got["send"] == got["sendmsg"], backend
        assert got["send"][0] == expected, backend


# -- hybrid locks: Lock.__exit__ and RLock.__exit__ copy Lock.release; RLock copies _me, and
#    Lock.acquire's argument check and first try -----------------------------------------------


def release_with_exit(lock: Any) -> None:
    lock.__exit__(None, None, None)


def release_rlock_through_lock_release(lock: Any) -> None:
    lock._release_save()  # gives the lock up through Lock.release (the original)


RELEASES: dict[str, dict[str, Callable[[Any], None]]] = {
    # lock type: {path: release}; the first path is the copy.
    "Lock": {"__exit__": release_with_exit, "release": lambda lock: lock.release()},
    "RLock": {
        "release": lambda lock: lock.release(),
        "Lock.release": release_rlock_through_lock_release,
    },
}
LOCK_TYPES = {"Lock": _hybrid.Lock, "RLock": _hybrid.RLock}


def held(lock: Any) -> bool:
    """Whether anyone holds ``lock`` (an RLock has no ``locked()`` before Python 3.14)."""
    return bool(lock._block.locked() if type(lock) is _hybrid.RLock else lock.locked())


def _lock_release_main(lock_type: str, path: str, scenario: str) -> tuple[Any, ...]:
    lock = LOCK_TYPES[lock_type]()
    release = RELEASES[lock_type][path]
    hub = hub_of_me()
    if scenario == "unlocked":
        if lock_type == "RLock":
            return ("not applicable",)
        return (outcome(release, lock), held(lock))
    assert lock.acquire()
    if scenario == "free":
        release(lock)
        return (held(lock), lock.acquire(False))
    if scenario == "fiber-waiting":
        w = unknot.spawn(lock.acquire)
        unknot.sleep(0)  # it waits
        release(lock)
        seen = (w._parked, w in hub.ready, held(lock))
        return seen, w.join(), held(lock)
    if scenario == "first-waiter-gone":
        w1 = unknot.spawn(lock.acquire)
        w2 = unknot.spawn(lock.acquire)
        unknot.sleep(0)
        w1.cancel()  # woken with Cancelled, not run yet: still first in the lock's queue
        release(lock)
        second = (w2._parked, w2 in hub.ready)
        return second, outcome(w1.join)[:2], w2.join(), held(lock)
    assert scenario == "thread-waiting"
    got = []
    trying = threading.Event()

    def thread() -> None:
        trying.set()
        got.append(lock.acquire(True, 5))

    t = threading.Thread(target=thread)
    t.start()
    deadline = time.monotonic() + 5
    while not (trying.is_set() and _thread_blocked(t)) and time.monotonic() < deadline:
        unknot.sleep(0.001)
    unknot.sleep(0.01)  # (blocked in the acquire, most likely: a release now wakes it)
    release(lock)
    t.join(5)
    return got, t.is_alive(), held(lock)


def _thread_blocked(t: threading.Thread) -> bool:
    """Whether ``t`` is blocked in a lock's acquire (its state in /proc is sleeping)."""
    try:
        with open(f"/proc/self/task/{t.native_id}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "S"
    except OSError:
        return False


LOCK_SCENARIOS = ["unlocked", "free", "fiber-waiting", "first-waiter-gone", "thread-waiting"]


@pytest.mark.parametrize("scenario", LOCK_SCENARIOS)
@pytest.mark.parametrize("lock_type", sorted(RELEASES))
def test_hybrid_lock_exit_agrees_with_release(lock_type: str, scenario: str) -> None:
    copy, original = RELEASES[lock_type]
    got = {p: run(_lock_release_main, lock_type, p, scenario) for p in (copy, original)}
    assert got[copy] == got[original]
    expected = {
        "unlocked": ("not applicable",)
        if lock_type == "RLock"
        else (("raised", "RuntimeError", None, "release unlocked lock"), False),
        "free": (False, True),
        "fiber-waiting": ((NOT_PARKED, True, False), True, True),
        "first-waiter-gone": (
            (NOT_PARKED, True),
            ("raised", "FiberCancelled"),
            True,
            True,
        ),
        "thread-waiting": ([True], False, True),
    }[scenario]
    assert got[copy] == expected


def _rlock_owner_main() -> list[Any]:
    """Who the RLock's inlined owner tests (acquire, release) take for the owner, against
    `_me` (behind `_is_owned` and `_recursion_count`)."""
    lock = _hybrid.RLock()
    lock.acquire()
    log = []

    def report(who: str) -> None:
        again = lock.acquire(False)  # inlined: re-entrant only for the owner
        owned, count = lock._is_owned(), lock._recursion_count()  # through _me
        if again:
            lock.release()
        released = outcome(lock.release)[0]  # inlined: only the owner may release
        if released == "returned":
            lock.acquire()
        log.append((who, again, owned, count, released))

    report("owner")
    unknot.spawn(report, "other fiber").join()
    t = threading.Thread(target=report, args=("thread",))
    t.start()
    t.join(5)
    lock.release()
    return log


def test_hybrid_rlock_owner_agrees_with_me() -> None:
    log = run(_rlock_owner_main)
    # The owner's re-entrant acquire (inlined getcurrent) and _me agree; a release by the owner
    # works, by anyone else raises, as _is_owned says.
    assert log == [
        ("owner", True, True, 2, "returned"),
        ("other fiber", False, False, 0, "raised"),
        ("thread", False, False, 0, "raised"),
    ]


BAD_ACQUIRE_ARGS: list[tuple[Any, ...]] = [(False, 1), (True, -5), (True, "x"), (True, 1e300)]


def _acquire_main(lock_type: str) -> list[Any]:
    lock = LOCK_TYPES[lock_type]()
    log: list[Any] = [outcome(lock.acquire, *args)[:2] for args in BAD_ACQUIRE_ARGS]
    log.append(held(lock))  # a rejected call left it free

    def other(*args: Any) -> Any:
        return lock.acquire(*args)

    assert lock.acquire()
    log.append(unknot.spawn(other, False).join())  # held by another fiber
    log.append(unknot.spawn(other, True, 0.02).join())
    w = unknot.spawn(other)
    unknot.sleep(0)
    lock.release()
    log.append(w.join())
    return log


def test_hybrid_rlock_acquire_agrees_with_lock_acquire() -> None:
    got = {name: run(_acquire_main, name) for name in LOCK_TYPES}
    assert got["RLock"] == got["Lock"]
    assert got["Lock"][len(BAD_ACQUIRE_ARGS) :] == [False, False, False, True]
    assert all(o[0] == "raised" for o in got["Lock"][: len(BAD_ACQUIRE_ARGS)])


# -- io-entry: socket.recv and socket.sendall copy socket._entry ---------------------------------


def _entry_outcome(call: Callable[[], Any], budget: int, cancelled: bool) -> tuple[Any, ...]:
    """Run ``call`` with the hub's I/O budget at ``budget`` (in a cancelled scope if
    ``cancelled``): what it raised, whether a ready fiber ran meanwhile, and the budget after."""
    hub = hub_of_me()
    ran: list[bool] = []
    unknot.spawn(ran.append, True)
    raised = None
    hub.io_budget = budget
    with unknot.CancelScope() as scope:
        if cancelled:
            scope.cancel()  # holds the budget at 0: every entry takes the slow path
        try:
            call()
        except unknot.Cancelled:
            raised = "Cancelled"
        after = hub.io_budget
        ran_during = bool(ran)
    unknot.sleep(0)  # (the bystander runs now if it did not)
    return raised, ran_during, after


def test_io_entry_agrees_with_entry() -> None:
    def main() -> None:
        a, b = us.socketpair()
        full = hub_of_me().io_budget_full
        with a, b:
            wait_once(a, b)
            wait_once(b, a)
            for budget, cancelled in ((5, False), (5, True), (0, False)):
                outcomes = []
                for call in (
                    lambda: _sockio.entry(hub_of_me()),  # the original
                    lambda: (b.sendall(b"d"), a.recv(1)),  # recv's copy (sendall's first)
                    lambda: a.sendall(b"e"),  # sendall's copy
                ):
                    outcomes.append(_entry_outcome(call, budget, cancelled))
                    while True:  # drain what a call sent (nothing waits: data is there or not)
                        try:
                            b.recv(100, std.MSG_DONTWAIT)
                            a.recv(100, std.MSG_DONTWAIT)
                        except BlockingIOError:
                            break
                expected = {
                    (5, False): (None, False, 4),  # one step of the budget
                    (5, True): ("Cancelled", False, 0),
                }.get((budget, cancelled), (None, True, full))  # yielded: the budget refilled
                # (recv's scenario makes two calls: sendall's entry first, then recv's)
                assert outcomes[0] == expected, (budget, cancelled, outcomes)
                assert outcomes[2] == expected, (budget, cancelled, outcomes)
                if (budget, cancelled) == (5, False):
                    assert outcomes[1] == (None, False, 3)
                elif cancelled:
                    assert outcomes[1] == expected
                else:
                    assert outcomes[1] == (None, True, full - 1)

    unknot.run(main)


# -- the HTTP state machine's shortcuts ---------------------------------------------------------


def _http_states() -> Iterator[tuple[Any, ...]]:
    """Every (client state, server state, keep_alive, waiting for a 100) the machine has."""
    from unknot.http._protocol import _state

    every = [
        _state.IDLE,
        _state.SEND_RESPONSE,
        _state.SEND_BODY,
        _state.DONE,
        _state.MUST_CLOSE,
        _state.CLOSED,
        _state.ERROR,
    ]
    for client in every:
        for server in every:
            for keep_alive in (True, False):
                for waiting in (True, False):
                    yield client, server, keep_alive, waiting


def _set_http_state(state: Any, client: Any, server: Any, keep_alive: bool, waiting: bool) -> None:
    state.states[:] = [client, server]
    state.keep_alive = keep_alive
    state.client_waiting_for_continue = waiting


def _http_snapshot(state: Any) -> tuple[Any, ...]:
    return (*state.states, state.keep_alive, state.client_waiting_for_continue)


def test_next_events_agrees_with_whole_request() -> None:
    from unknot.http._protocol import (
        LocalProtocolError,
        RemoteProtocolError,
        RequestHead,
        ServerConnection,
    )
    from unknot.http._protocol._events import END_OF_MESSAGE
    from unknot.http._protocol._state import DONE, SEND_RESPONSE, ConnectionState

    fast_ones = 0
    for client, server, keep_alive, waiting in _http_states():
        for head_keep_alive in (True, False):
            head = RequestHead(b"GET", b"/", [(b"host", b"x")], b"1.1", head_keep_alive)
            original = ConnectionState()
            _set_http_state(original, client, server, keep_alive, waiting)
            try:
                original.whole_request(head)
                expected: Any = _http_snapshot(original)
            except LocalProtocolError:
                expected = "refused"
            conn = ServerConnection()
            _set_http_state(conn._state, client, server, keep_alive, waiting)
            conn._reader.ready.append([head, END_OF_MESSAGE])
            try:
                events = conn.next_events()
            except RemoteProtocolError:
                outcome: Any = "refused"
            else:
                if client is DONE:  # the previous request is not answered yet: nothing moves
                    assert events is not None and type(events).__name__ == "Paused"
                    continue
                assert events == [head, END_OF_MESSAGE]
                assert conn._request is head
                outcome = _http_snapshot(conn._state)
            assert outcome == expected, (client, server, keep_alive, waiting, head_keep_alive)
            if outcome == (DONE, SEND_RESPONSE, True, False) and keep_alive:
                fast_ones += 1
    assert fast_ones >= 1  # the copied common case ran, with the expected outcome


def test_send_response_agrees_with_whole_response() -> None:
    from unknot.http._protocol import LocalProtocolError, RequestHead, ServerConnection
    from unknot.http._protocol._server_conn import _CLOSING, _KEPT_ALIVE
    from unknot.http._protocol._state import IDLE, SEND_RESPONSE, ConnectionState

    fast_ones = 0
    for client, server, keep_alive, waiting in _http_states():
        for has_request in (True, False):
            request = RequestHead(b"GET", b"/", [(b"host", b"x")]) if has_request else None
            conn = ServerConnection()
            _set_http_state(conn._state, client, server, keep_alive, waiting)
            conn._request = request
            try:
                wire = conn.send_response(200, [], b"hi")
            except LocalProtocolError:
                # refused before anything moved: the original is never reached
                assert server not in (IDLE, SEND_RESPONSE) or not has_request
                continue
            # What send_response tells the machine: keep-alive if the request allows it.
            kept = request is not None and server is SEND_RESPONSE and keep_alive and not waiting
            original = ConnectionState()
            _set_http_state(original, client, server, keep_alive, waiting)
            try:
                original.whole_response(_KEPT_ALIVE if kept else _CLOSING)
                expected: Any = _http_snapshot(original)
            except LocalProtocolError:
                expected = "refused"
            assert _http_snapshot(conn._state) == expected, (client, server, keep_alive, waiting)
            assert wire.endswith(b"\r\n\r\nhi")
            assert (b"connection: close" in wire) == (not kept)
            if expected == (IDLE, IDLE, True, False):
                fast_ones += 1
    assert fast_ones >= 1  # the copied common case ran, with the expected outcome
