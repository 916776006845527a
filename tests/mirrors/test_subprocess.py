"""unknot.subprocess: the stdlib's subprocess, waiting cooperatively in fibers.

Results are compared with the stdlib's for the same commands; concurrency is proved by timing
(ten 0.3 s children in well under 3 s on one thread) and by a ticker fiber that must keep
counting while another fiber waits. Cancellation must leave no zombie, and no test may leak an
fd (``/proc/self/fd`` is compared before and after). Children are ``sh``, ``cat``, ``sleep`` and
the test interpreter itself.
"""

from __future__ import annotations

import os
import signal
import subprocess as std
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fiber_helpers import IntLike, Ticker, outcome

import unknot
import unknot.subprocess as us

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux (/proc, pidfd)"),
]

PY = sys.executable


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    """Every test must close all the fds it opened (pipes, pidfds)."""
    before = open_fds()
    yield
    after = open_fds()
    for _ in range(50):  # the listdir fd itself, or a GC'd file closing late
        if after <= before:
            break
        time.sleep(0.01)
        after = open_fds()
    assert after <= before, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in after - before}


def gone(pid: int) -> bool:
    """True if ``pid`` no longer exists at all (neither running nor a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def no_zombie_children() -> bool:
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[1] == me and fields[0] == "Z":
                return False
    return True


# -- concurrency ---------------------------------------------------------------------------------


@pytest.mark.unknot
def test_ten_children_at_once_on_one_thread() -> None:
    threads = threading.active_count()
    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(us.run, ["sleep", "0.3"]) for _ in range(10)]
    elapsed = time.monotonic() - t0
    assert [f.result().returncode for f in fibers] == [0] * 10
    assert elapsed < 1.2, elapsed  # sequentially: 3 s
    assert threading.active_count() == threads  # no helper threads
    assert no_zombie_children()


@pytest.mark.unknot
def test_wait_and_pipe_reads_let_other_fibers_run() -> None:
    ticker = Ticker()
    p = us.Popen(
        ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.05; done"], stdout=us.PIPE, text=True
    )
    with p:
        assert [line.strip() for line in p.stdout] == ["1", "2", "3"]  # type: ignore[union-attr]
        assert p.wait() == 0
    p2 = us.Popen(["sleep", "0.1"])
    assert p2.wait() == 0
    assert ticker.stop() >= 10


@pytest.mark.unknot
def test_communicate_large_both_ways() -> None:
    data = os.urandom(3 << 20)  # 3 MiB: the stdout pipe fills long before stdin is written
    ticker = Ticker()
    script = "import sys; d = sys.stdin.buffer.read(); sys.stderr.buffer.write(d[::-1])"
    p = us.Popen(
        ["sh", "-c", f"tee /dev/stderr | {PY} -c '{script}'"],
        stdin=us.PIPE,
        stdout=us.PIPE,
        stderr=us.PIPE,
    )
    out, err = p.communicate(data, timeout=20)
    assert out == b"" and len(err) == 2 * len(data)
    assert data in err and data[::-1] in err
    cat = us.run(["cat"], input=data, capture_output=True, timeout=20)
    assert cat.stdout == data and cat.returncode == 0
    assert ticker.stop() >= 1


@pytest.mark.unknot
def test_stdin_stdout_file_objects() -> None:
    # bufsize=0: raw PipeIO; a big write writes everything (as a blocking pipe write does)
    data = os.urandom(1 << 20)
    with us.Popen(["cat"], stdin=us.PIPE, stdout=us.PIPE, bufsize=0) as p:
        reader = unknot.spawn(p.stdout.read)  # type: ignore[union-attr]
        assert p.stdin.write(data) == len(data)  # type: ignore[union-attr]
        p.stdin.close()  # type: ignore[union-attr]
        assert reader.join() == data
    # buffered text, line by line, interactively
    with us.Popen(
        [PY, "-u", "-c", "import sys\nfor l in sys.stdin: print(l.strip().upper())"],
        stdin=us.PIPE,
        stdout=us.PIPE,
        text=True,
        bufsize=1,
    ) as p:
        for word in ("spam", "eggs"):
            p.stdin.write(word + "\n")  # type: ignore[union-attr]
            assert p.stdout.readline() == word.upper() + "\n"  # type: ignore[union-attr]
        p.stdin.close()  # type: ignore[union-attr]
        assert p.stdout.read() == ""  # type: ignore[union-attr]
    assert p.returncode == 0


@pytest.mark.unknot
def test_pipe_file_read_sizes_as_the_stdlib() -> None:
    # PipeIO.read compared its size with 0 itself: an integer-like size raised TypeError where
    # io.FileIO.read takes it, and a size the stdlib rejects at once (a float, beyond ssize_t)
    # waited for data before failing.
    with us.Popen(
        ["sh", "-c", "read line; echo abcdef"], stdin=us.PIPE, stdout=us.PIPE, bufsize=0
    ) as p:
        out = p.stdout  # type: ignore[union-attr]
        with unknot.fail_after(5):  # (nothing to read until stdin gets a line)
            for size in (1.5, "3", 2**63):
                with open("/dev/null", "rb", buffering=0) as ref:
                    expected = outcome(ref.read, size)
                assert isinstance(expected, tuple)
                assert outcome(out.read, size) == expected
        p.stdin.write(b"go\n")  # type: ignore[union-attr]
        assert out.read(IntLike(3)) == b"abc"
        assert out.read(IntLike(-1)) == b"def\n"
        p.stdin.close()  # type: ignore[union-attr]


@pytest.mark.unknot
def test_pipeline_keeps_pipes_blocking() -> None:
    p1 = us.Popen(["printf", "a\\nc\\nb\\n"], stdout=us.PIPE)
    p2 = us.Popen(["sort", "-r"], stdin=p1.stdout, stdout=us.PIPE)
    assert os.get_blocking(p1.stdout.fileno())  # type: ignore[union-attr]
    p1.stdout.close()  # type: ignore[union-attr]
    assert p2.communicate()[0] == b"c\nb\na\n"
    assert p1.wait() == 0


# -- same results as the stdlib --------------------------------------------------------------------


CASES: list[tuple[str, Callable[[Any], Any]]] = [
    (
        "run text",
        lambda m: m.run(
            ["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True, text=True
        ),
    ),
    ("run input", lambda m: m.run(["tr", "a-z", "A-Z"], input=b"abc\r\ndef", stdout=m.PIPE)),
    (
        "universal newlines",
        lambda m: m.run(["printf", "a\\r\\nb\\rc"], stdout=m.PIPE, universal_newlines=True),
    ),
    (
        "check_output",
        lambda m: m.check_output(["sh", "-c", "echo hi; echo there >&2"], stderr=m.STDOUT),
    ),
    ("check_output input None", lambda m: m.check_output(["cat"], input=None, text=True)),
    ("check_output fails", lambda m: m.check_output(["sh", "-c", "echo partial; exit 2"])),
    ("check_call", lambda m: m.check_call(["true"])),
    ("check_call fails", lambda m: m.check_call(["sh", "-c", "exit 5"])),
    ("call", lambda m: m.call(["sh", "-c", "exit 4"])),
    ("getstatusoutput", lambda m: m.getstatusoutput("echo x; echo y >&2; exit 1")),
    ("getoutput", lambda m: m.getoutput("echo line; echo")),
    ("killed", lambda m: m.run(["sh", "-c", "kill -TERM $$"]).returncode),
    ("not found", lambda m: m.run(["/nonexistent/program"])),
    ("bad cwd", lambda m: m.run(["true"], cwd="/nonexistent")),
    ("input and stdin", lambda m: m.run(["cat"], input=b"x", stdin=m.PIPE)),
    (
        "communicate",
        lambda m: m.Popen(["cat"], stdin=m.PIPE, stdout=m.PIPE, stderr=m.PIPE).communicate(b"z"),
    ),
]


def describe(fn: Callable[[], Any]) -> Any:
    """The result of ``fn()`` in comparable form (exceptions as type and attributes)."""
    try:
        r = fn()
    except Exception as e:
        return (
            type(e).__name__,
            str(e),
            getattr(e, "returncode", None),
            getattr(e, "output", None),
        )
    if isinstance(r, std.CompletedProcess):
        return ("CompletedProcess", r.args, r.returncode, r.stdout, r.stderr)
    return r


@pytest.mark.parametrize("case", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_results_match_stdlib_in_and_outside_fibers(case: Callable[[Any], Any]) -> None:
    expected = describe(lambda: case(std))
    assert describe(lambda: case(us)) == expected  # outside fibers
    assert unknot.run(describe, lambda: case(us)) == expected  # in a fiber


SECOND_COMMUNICATE = [
    # (the stdlib's one-pipe shortcut: the second call reads the closed pipe, ValueError)
    ("stdout", dict(stdout=std.PIPE), (), {}),
    ("stdout text", dict(stdout=std.PIPE, text=True), (), {}),
    ("stderr", dict(stderr=std.PIPE), (), {}),
    ("stdin", dict(stdin=std.PIPE), (b"in",), {}),
    ("stdin no input", dict(stdin=std.PIPE), (), {}),
    ("no pipe", {}, (), {}),
    # (the stdlib's loop: the second call returns the output again)
    ("stdout and stderr", dict(stdout=std.PIPE, stderr=std.PIPE), (), {}),
    ("stdout with a timeout", dict(stdout=std.PIPE), (), dict(timeout=10)),
    ("stdin and stdout", dict(stdin=std.PIPE, stdout=std.PIPE), (b"in",), {}),
]


def communicate_twice(
    popen: Any, options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    script = "import sys; sys.stdin.read(); print('out'); print('err', file=sys.stderr)"
    with popen([PY, "-c", script], **options) as p:
        return [outcome(lambda: p.communicate(*args, **kwargs)) for _ in range(2)] + [p.returncode]


@pytest.mark.parametrize(
    "options,args,kwargs",
    [c[1:] for c in SECOND_COMMUNICATE],
    ids=[c[0] for c in SECOND_COMMUNICATE],
)
def test_second_communicate_as_the_stdlib(
    options: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """A second communicate() gives what the stdlib's does: the output again after its
    multiplexing loop, but ValueError (the pipe it closed) after its one-pipe shortcut, which
    unknot's communicate in a fiber never takes (it always runs the loop)."""
    options = dict(options, stdin=options.get("stdin", std.DEVNULL))
    expected = communicate_twice(std.Popen, options, args, kwargs)
    assert unknot.run(communicate_twice, us.Popen, options, args, kwargs) == expected


def test_names_mirror_the_stdlib() -> None:
    for name in dir(std):  # the public names (the modules it imports are not part of its API)
        if not name.startswith("_") and not isinstance(getattr(std, name), types.ModuleType):
            assert hasattr(us, name), name
    for name in ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        assert getattr(us, name).__code__ is getattr(std, name).__code__  # the stdlib's code
        assert getattr(us, name).__globals__ is vars(us)
    assert issubclass(us.Popen, std.Popen)
    # What the rebinding relies on in the stdlib's code (fails loudly if a new Python changes it)
    assert {"io", "open"} <= set(std.Popen.__init__.__code__.co_names)
    assert "_PopenSelector" in std.Popen._communicate.__code__.co_names  # type: ignore[attr-defined]
    assert us.Popen.__init__.__code__ is std.Popen.__init__.__code__
    assert us.TimeoutExpired is std.TimeoutExpired and us.PIPE == std.PIPE


# -- timeouts ------------------------------------------------------------------------------------


@pytest.mark.unknot
def test_run_timeout_kills_and_keeps_partial_output() -> None:
    ticker = Ticker()
    t0 = time.monotonic()
    with pytest.raises(us.TimeoutExpired) as info:
        us.run(["sh", "-c", "echo partial; exec sleep 5"], capture_output=True, timeout=0.2)
    assert time.monotonic() - t0 < 2
    assert info.value.cmd == ["sh", "-c", "echo partial; exec sleep 5"]
    assert info.value.stdout == b"partial\n"
    assert ticker.stop() >= 5
    assert no_zombie_children()
    with pytest.raises(us.TimeoutExpired) as info:
        us.call(["sleep", "5"], timeout=0.1)
    assert info.value.timeout == 0.1
    with pytest.raises(us.TimeoutExpired):
        us.check_output(["sleep", "5"], timeout=0.1)
    assert no_zombie_children()


@pytest.mark.unknot
def test_wait_and_communicate_timeouts_then_retry() -> None:
    p = us.Popen(["sh", "-c", "echo a; sleep 0.3; echo b"], stdout=us.PIPE)
    with pytest.raises(us.TimeoutExpired) as info:
        p.communicate(timeout=0.1)
    assert info.value.stdout == b"a\n" and info.value.timeout == 0.1
    assert p.communicate() == (b"a\nb\n", None)  # the stdlib's retry protocol
    assert p.returncode == 0
    p = us.Popen(["sleep", "5"])
    with pytest.raises(us.TimeoutExpired) as info:
        p.wait(timeout=0.1)
    assert str(info.value) == "Command '['sleep', '5']' timed out after 0.1 seconds"
    assert p.poll() is None
    p.terminate()
    assert p.wait(timeout=5) == -signal.SIGTERM
    assert p.wait(0) == -signal.SIGTERM  # reaped: answers at once


def test_timeouts_outside_fibers() -> None:
    with pytest.raises(us.TimeoutExpired):
        us.run(["sleep", "5"], timeout=0.1)
    p = us.Popen(["sleep", "5"])
    with pytest.raises(us.TimeoutExpired):
        p.wait(0.05)
    p.kill()
    assert p.wait() == -signal.SIGKILL
    assert no_zombie_children()


# -- cancellation: no zombie -----------------------------------------------------------------------


@pytest.mark.unknot
def test_cancelled_wait_leaves_the_process_waitable() -> None:
    p = us.Popen(["sleep", "5"])
    with unknot.move_on_after(0.1) as scope:
        p.wait()
    assert scope.cancelled_caught
    assert p.returncode is None and p.poll() is None and not gone(p.pid)  # still running
    p.kill()
    assert p.wait() == -signal.SIGKILL
    assert gone(p.pid)


@pytest.mark.unknot
def test_cancelled_run_kills_and_reaps(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    for fn in (us.run, us.call, us.check_call, us.check_output):
        with unknot.move_on_after(0.2) as scope:
            fn(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 5"])
        assert scope.cancelled_caught
        assert gone(int(pidfile.read_text()))  # killed and reaped: not even a zombie
    with unknot.move_on_after(0.2):
        us.run(["sh", "-c", f"echo $$ > {pidfile}; exec cat"], input=os.urandom(1 << 20))
    assert gone(int(pidfile.read_text()))


@pytest.mark.unknot
def test_cancelled_with_block_kills_and_reaps() -> None:
    with unknot.move_on_after(0.1) as scope:
        with us.Popen(["sleep", "5"], stdin=us.PIPE, stdout=us.PIPE) as p:
            p.stdin.write(b"x" * 100_000)  # type: ignore[union-attr]  # fills the pipe: waits
    assert scope.cancelled_caught
    assert p.returncode == -signal.SIGKILL and gone(p.pid)
    assert p.stdin.closed and p.stdout.closed  # type: ignore[union-attr]


@pytest.mark.unknot
def test_cancelled_communicate_then_finish() -> None:
    p = us.Popen(["sh", "-c", "echo a; sleep 0.3; echo b"], stdout=us.PIPE)
    with unknot.move_on_after(0.1):
        p.communicate()
    assert p.poll() is None
    assert p.communicate(timeout=5) == (b"a\nb\n", None)


# A child that reads nothing until the parent opens its gates (a byte each on the gate pipe),
# so that its stdin pipe stays full as long as a test needs. In mode "partial", after gate 1 it
# reads 4096 bytes of stdin, says so on the report pipe and waits for gate 2; then it reads the
# rest and prints how many bytes it got in all, and how many of them were b"f", b"x" and b"y".
GATED_READER = """
import os, sys
mode, gate, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.read(gate, 1)
first = b""
if mode == "partial":
    first = os.read(0, 4096)
    os.write(report, b"!")
    os.read(gate, 1)
data = first + sys.stdin.buffer.read()
print(len(data), *(data.count(c) for c in b"fxy"))
"""


class GatedChild:
    def __init__(self, mode: str = "all", **kwargs: Any) -> None:
        gate_r, self.gate_w = os.pipe()
        self.report_r, report_w = os.pipe()
        self.p = us.Popen(
            [PY, "-c", GATED_READER, mode, str(gate_r), str(report_w)],
            stdin=us.PIPE,
            stdout=us.PIPE,
            pass_fds=(gate_r, report_w),
            **kwargs,
        )
        os.close(gate_r)
        os.close(report_w)

    def open_gate(self) -> None:
        os.write(self.gate_w, b"g")

    def reported(self) -> bytes:
        return unknot.os.read(self.report_r, 1)  # waits cooperatively for the child's report

    def fill_stdin_pipe(self) -> int:
        """Fill the stdin pipe to the brim (O_NONBLOCK briefly, on the parent's end only)."""
        fd = self.p.stdin.fileno()  # type: ignore[union-attr]
        os.set_blocking(fd, False)
        n = 0
        try:
            while True:
                n += os.write(fd, b"f" * 4096)
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(fd, True)
        return n

    def close(self) -> None:
        os.close(self.gate_w)
        os.close(self.report_r)


@pytest.mark.unknot
@pytest.mark.parametrize("interruption", ["cancelled", "timeout"])
def test_interrupted_communicate_resumes_sending_its_input(interruption: str) -> None:
    # The stdlib's loop registers stdin only when given input, which a retry may not pass:
    # the rest of the input was never sent and stdin never closed, so the retry hung
    # (CPython gh-141473). unknot's promise: a later communicate() continues, losing nothing.
    child = GatedChild()
    data = b"y" * 300_000  # more than a pipe holds: the first call must stop midway
    if interruption == "cancelled":
        with unknot.move_on_after(0.1) as scope:
            child.p.communicate(data)
        assert scope.cancelled_caught
    else:
        with pytest.raises(us.TimeoutExpired):
            child.p.communicate(data, timeout=0.1)
    child.open_gate()
    assert child.p.communicate(timeout=10) == (b"300000 0 0 300000\n", None)
    assert child.p.returncode == 0
    child.close()


@pytest.mark.unknot
def test_communicate_cancelled_while_flushing_stdin_has_not_started() -> None:
    # communicate() first flushes what the caller wrote to stdin, which may wait. Cancelled
    # there, it used to count as started anyway: the retry could not pass its input (ValueError),
    # and without input it failed (AttributeError: no _fileobj2output) or never closed stdin.
    child = GatedChild()
    filled = child.fill_stdin_pipe()
    child.p.stdin.write(b"x" * 100)  # type: ignore[union-attr]  # buffered: flushed by communicate
    with unknot.move_on_after(0.1) as scope:
        child.p.communicate(b"y" * 10)
    assert scope.cancelled_caught
    child.open_gate()
    out, _ = child.p.communicate(b"y" * 10, timeout=10)  # the same call, again: not started yet
    assert out == f"{filled + 110} {filled} 100 10\n".encode()
    child.close()


@pytest.mark.unknot
def test_cancelled_flush_of_a_pipe_file_writes_nothing_twice() -> None:
    # A pipe's raw file (PipeIO) writes big data in PIPE_BUF chunks. Cancelled after writing a
    # chunk, it raised: the BufferedWriter above it, not told of the bytes written, kept them
    # and wrote them again at the next flush.
    child = GatedChild("partial", bufsize=65536)  # a buffer bigger than PIPE_BUF
    filled = child.fill_stdin_pipe()
    child.p.stdin.write(b"x" * 8000)  # type: ignore[union-attr]  # stays in the buffer
    child.open_gate()
    assert child.reported() == b"!"  # the child took 4096 bytes: room for one chunk
    with unknot.move_on_after(0.2) as scope:
        child.p.stdin.flush()  # type: ignore[union-attr]  # writes a chunk, then must wait
    assert scope.cancelled_caught
    child.open_gate()
    out, _ = child.p.communicate(timeout=10)
    assert out == f"{filled + 8000} {filled} 8000 0\n".encode()
    child.close()


@pytest.mark.unknot
def test_preexec_fn_runs_no_fiber_of_the_parent_in_the_child() -> None:
    # The forked child resumes in a copy of the fiber that forked it, hub and all. A
    # cooperative call in preexec_fn (unknot.time.sleep here; time.sleep, a lock... once
    # patched) switched to the child's copy of the hub, which ran the parent's other fibers
    # in the child before it exec'd: here, one that reports where it runs.
    r, w = os.pipe()
    parent = os.getpid()

    def sentinel() -> None:
        while True:
            if os.getpid() != parent:
                os.write(w, b"!")
            unknot.sleep(0.005)

    s = unknot.spawn(sentinel)
    try:
        assert us.run(["true"], preexec_fn=lambda: unknot.time.sleep(0.05)).returncode == 0
        with pytest.raises(us.SubprocessError, match="preexec_fn"):  # as the stdlib reports it
            us.run(["true"], preexec_fn=lambda: 1 / 0)
    finally:
        s.cancel()
    os.set_blocking(r, False)
    with pytest.raises(BlockingIOError):
        os.read(r, 10)  # nothing ran in a child
    os.close(r)
    os.close(w)


# -- waiting without pidfds ------------------------------------------------------------------------


@pytest.mark.unknot
def test_wait_without_pidfd_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unknot.os, "_pidfd_open", None)
    ticker = Ticker()
    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(us.call, ["sleep", "0.2"]) for _ in range(5)]
    assert time.monotonic() - t0 < 1.0
    assert [f.result() for f in fibers] == [0] * 5
    p = us.Popen(["sleep", "5"])
    with pytest.raises(us.TimeoutExpired):
        p.wait(0.1)
    p.kill()
    assert p.wait() == -signal.SIGKILL
    assert ticker.stop() >= 10


@pytest.mark.unknot
def test_wait_when_pidfd_open_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int) -> int:
        raise PermissionError(1, "pidfd_open refused by a sandbox")

    monkeypatch.setattr(unknot.os, "_pidfd_open", refuse)
    assert us.run(["sleep", "0.05"]).returncode == 0


@pytest.mark.unknot
def test_process_reaped_behind_popens_back() -> None:
    p = us.Popen(["true"])
    os.waitpid(p.pid, 0)  # someone else reaps it: the stdlib reports returncode 0
    assert p.wait(timeout=5) == 0


# -- under unknot.patch() ------------------------------------------------------------------------


def test_patched_stdlib_subprocess_is_cooperative() -> None:
    code = """
import time, unknot
unknot.patch()
import subprocess
assert subprocess.Popen is unknot.subprocess.Popen  # run, check_call... look it up when called
def main():
    t0 = time.monotonic()
    with unknot.TaskGroup() as tg:
        for _ in range(5):
            tg.spawn(subprocess.check_call, ["sleep", "0.2"])
    print(round(time.monotonic() - t0, 1))
unknot.run(main)
"""
    out = std.run([PY, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 0.7
