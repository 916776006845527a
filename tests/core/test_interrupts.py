"""Signals: an exception raised by a Python signal handler comes out of the root fiber's
blocking call; Ctrl-C (SIGINT) stops a program whether the root fiber is blocked or running
or another fiber runs, cancels a task group's children, and unknot.run restores the
SIGINT handler it found."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import NamedTuple

import pytest
from fiber_helpers import run_script

import unknot

# -- signal handlers -------------------------------------------------------------------------


class _Alarm(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_signal_handler_exception_comes_out_of_the_root_fibers_blocking_call(
    backend: str,
) -> None:
    # As without unknot, where the handler runs in the main thread's blocking call: the common
    # SIGALRM-timeout pattern. The hub keeps running afterwards.
    def on_alarm(signum: int, frame: object) -> None:
        raise _Alarm()

    def main() -> list[str]:
        log = []
        a, b = unknot.socket.socketpair()
        with a, b:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(_Alarm):
                a.recv(1)
            log.append("recv interrupted")
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(_Alarm):
                unknot.sleep(10)
            log.append("sleep interrupted")
            b.sendall(b"x")
            log.append(a.recv(1).decode())
        return log

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        assert unknot.run(main) == ["recv interrupted", "sleep interrupted", "x"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_signal_handler_exception_raised_while_asyncio_reads_the_self_pipe_reaches_the_root(
    backend: str,
) -> None:
    # A handler that runs between two bytecodes of asyncio's self-pipe callback (a thread's
    # call_soon_threadsafe, or an earlier signal, wrote to the pipe) and raises: asyncio would
    # log the exception as the callback's and drop it, the root waiting on for ever. Made
    # deterministic by raising from the callback's processing step, where the handler would.
    def main() -> str:
        loop = unknot.lowlevel.current_hub().loop
        raised = []

        def process(data: bytes) -> None:
            if not raised:
                raised.append(True)
                raise _Alarm()

        loop._process_self_data = process  # type: ignore[attr-defined]
        writer = threading.Timer(0.05, loop.call_soon_threadsafe, (lambda: None,))
        writer.start()
        a, b = unknot.socket.socketpair()
        a.settimeout(5)  # (the bound of this test: without the fix the exception is lost)
        try:
            with a, b:
                try:
                    a.recv(1)
                except _Alarm:
                    return "raised in recv"
                except TimeoutError:
                    return "recv timed out"
            return "recv returned"
        finally:
            writer.join()

    assert unknot.run(main) == "raised in recv"


# -- Ctrl-C ----------------------------------------------------------------------------------


class Interrupted(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    elapsed: float  # seconds from SIGINT to exit


def _run_and_interrupt(script: str, ready_marker: str = "ready") -> Interrupted:
    """Run ``script`` in a subprocess and send it SIGINT once it prints ``ready_marker``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a runner started in the background may ignore SIGINT; the child must not inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip() == ready_marker:
                break
        assert lines and lines[-1].strip() == ready_marker, (lines, proc.stderr.read())
        time.sleep(0.2)  # let it block
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return Interrupted(proc.returncode, "".join(lines) + out, err, elapsed)


def _assert_interrupted(res: Interrupted) -> None:
    assert "KeyboardInterrupt" in res.stderr, res.stderr
    assert res.returncode in (-signal.SIGINT, 128 + signal.SIGINT, 1), res.returncode


@pytest.mark.parametrize(
    "wait", ["unknot.sleep(60)", "unknot.spawn(unknot.sleep, 60); unknot.Event().wait()"]
)
def test_ctrl_c_root_blocked(wait: str) -> None:
    res = _run_and_interrupt(
        f"""
        import unknot

        def main():
            try:
                print("ready")
                {wait}
            finally:
                print("cleanup")

        unknot.run(main)
        """
    )
    _assert_interrupted(res)
    assert "cleanup" in res.stdout


def test_ctrl_c_while_another_fiber_runs() -> None:
    res = _run_and_interrupt(
        """
        import time
        import unknot

        def busy():
            try:
                print("ready")
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    t = time.monotonic() + 0.1
                    while time.monotonic() < t:  # Python code running in this fiber
                        pass
                    unknot.sleep(0)
            finally:
                print("busy cleanup")

        def main():
            try:
                unknot.spawn(busy)
                unknot.Event().wait()
            finally:
                print("cleanup")

        unknot.run(main)
        """
    )
    _assert_interrupted(res)
    assert "cleanup" in res.stdout
    assert "busy cleanup" in res.stdout
    # delivered at the busy fiber's next yield (0.1 s), not after hundreds of its time slices
    assert res.elapsed < 10


def test_ctrl_c_while_root_runs() -> None:
    res = _run_and_interrupt(
        """
        import time
        import unknot

        def main():
            try:
                print("ready")
                end = time.monotonic() + 30
                # Not `while time.monotonic() < end: pass`: on CPython 3.13 an interrupt raised
                # in such a tight loop's condition can skip the finally block, without unknot
                # too (python/cpython#130279).
                while True:
                    if time.monotonic() >= end:
                        break
            finally:
                print("cleanup")

        unknot.run(main)
        """
    )
    _assert_interrupted(res)
    assert "cleanup" in res.stdout


def test_ctrl_c_in_taskgroup_cancels_children() -> None:
    res = _run_and_interrupt(
        """
        import unknot

        def child(i):
            try:
                unknot.sleep(60)
            finally:
                print("child cleanup", i)

        def main():
            try:
                with unknot.TaskGroup() as tg:
                    tg.spawn(child, 1)
                    tg.spawn(child, 2)
                    unknot.sleep(0)
                    print("ready")
            finally:
                print("cleanup")

        unknot.run(main)
        """
    )
    _assert_interrupted(res)
    assert "child cleanup 1" in res.stdout
    assert "child cleanup 2" in res.stdout
    assert "cleanup" in res.stdout


def test_sigint_handler_restored_after_run() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    before = signal.getsignal(signal.SIGINT)
    seen: list[object] = []
    unknot.run(lambda: seen.append(signal.getsignal(signal.SIGINT)))
    assert signal.getsignal(signal.SIGINT) is before
    if before is signal.default_int_handler:
        assert seen[0] is not signal.default_int_handler  # run routed SIGINT to the root fiber


# -- Ctrl-C that does not interrupt the poll -------------------------------------------------
#
# `_thread.interrupt_main()` (and a signal delivered to another thread) trips the handler
# without interrupting the hub's wait with EINTR. The handler must still run before the hub
# wakes anyone: then the root fiber, parked in `to_thread`, takes the KeyboardInterrupt there.
# (The compiled hub runs no bytecode after the wait; it calls _nbio.check_signals. Each script
# runs in the compiled build where there is one, and in the pure build.)

_NO_EINTR = """
import _thread, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import unknot

def blocking():
    time.sleep(0.05)  # the hub is waiting in its poll by now
    _thread.interrupt_main()
    return "returned"

def main():
    log = []
    for i in range(5):
        try:
            log.append(unknot.to_thread(blocking))
        except KeyboardInterrupt:
            log.append("raised in to_thread")
        try:
            unknot.sleep(0.01)
        except KeyboardInterrupt:
            log.append("raised late, in sleep")
    return log

print(unknot.compiled, *unknot.run(main), sep="|")
"""


def _run_build(script: str, pure: bool, cpus: set[int] | None = None) -> list[str]:
    """Run ``script`` (which prints ``unknot.compiled`` first) in the build asked for; check
    that build ran; the rest of its output."""
    built, *rest = run_script(script, {"UNKNOT_PURE": "1" if pure else ""}, cpus)
    assert built == str(unknot.compiled and not pure)
    return rest


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_without_eintr_is_raised_in_the_roots_wait(pure: bool) -> None:
    log = _run_build(_NO_EINTR, pure)
    assert log == ["raised in to_thread"] * 5


# A Ctrl-C that reaches the root fiber while `to_thread` hands its call to the thread pool,
# which may be starting a worker thread and waiting for it to say it started: were it raised
# there, the pool would never record that running worker, never tell it to exit, and the
# interpreter's exit would wait for it forever. Pinned to one CPU, where the new threads start
# late enough for the Ctrl-C to come during that wait (without the fix, every run hung).
_INTERRUPTED_STARTS = """
import _thread, signal, threading
signal.signal(signal.SIGINT, signal.default_int_handler)
import unknot
unknot.patch()

def main():
    raised = late = 0
    for i in range(40):
        t = threading.Thread(target=_thread.interrupt_main)
        try:
            t.start()
            t.join()
        except KeyboardInterrupt:
            raised += 1
            t.join()
            continue
        try:
            unknot.sleep(0.01)
        except KeyboardInterrupt:
            late += 1
    return raised, late

print(unknot.compiled, *unknot.run(main), sep="|")
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_while_a_thread_starts_leaves_none_behind_at_exit(pure: bool) -> None:
    cpu = min(os.sched_getaffinity(0))
    raised, late = _run_build(_INTERRUPTED_STARTS, pure, {cpu})  # (exits: no timeout)
    # As without unknot: each Ctrl-C comes out of the thread's start() or join().
    assert (raised, late) == ("40", "0")


# The same for a program's own long-lived pool under unknot.patch: the patched
# ThreadPoolExecutor.submit takes no Ctrl-C while it starts a worker (without that, two runs in
# three hung at exit). A Ctrl-C comes out of future.result(), or, when the call had already
# finished by then, out of the next blocking call: never lost.
# The rest of the submitting scripts below: ROUNDS calls of their submit_one(i), counting the
# Ctrl-Cs that come out of the result or of the next blocking call.
_SUBMITS_INTERRUPTED = """
def main():
    raised = late = 0
    for i in range(ROUNDS):
        try:
            submit_one(i).result()
        except KeyboardInterrupt:
            raised += 1
            continue
        try:
            unknot.sleep(0.01)
        except KeyboardInterrupt:
            late += 1
    return raised + late

print(unknot.compiled, unknot.run(main), sep="|")
"""
_INTERRUPTED_SUBMITS = (
    """
import _thread, signal, concurrent.futures
signal.signal(signal.SIGINT, signal.default_int_handler)
import unknot
unknot.patch()
POOL = concurrent.futures.ThreadPoolExecutor(40)
ROUNDS = 40

def submit_one(i):
    return POOL.submit(_thread.interrupt_main)
"""
    + _SUBMITS_INTERRUPTED
)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_in_a_patched_pool_submit_leaves_no_worker_behind_at_exit(pure: bool) -> None:
    (delivered,) = _run_build(_INTERRUPTED_SUBMITS, pure, {min(os.sched_getaffinity(0))})
    assert delivered == "40"


# The same for a process pool: its first submit starts the pool's manager thread and waits for
# it to say it started; a Ctrl-C raised there leaves that thread unknown to the pool's exit
# handler, which the interpreter's exit then waits for forever (without unknot too: CPython
# hangs so in every run of this script). Patched, the Ctrl-C comes out of future.result() or
# the next blocking call. The manager thread's first Python call interrupts the main thread:
# `threading.setprofile` hooks every new thread before its run(). ``concurrent.futures.process``
# imported before `patch`, or after it (then the lazy row of the patch table wraps submit).
_INTERRUPTED_PROCESS_POOL_SUBMITS = (
    """
import _thread, signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)
import concurrent.futures
if sys.argv[1] == "before":
    import concurrent.futures.process
import unknot
unknot.patch()
import concurrent.futures.process

def hook(frame, event, arg):
    if isinstance(threading.current_thread(), concurrent.futures.process._ExecutorManagerThread):
        sys.setprofile(None)
        _thread.interrupt_main()

threading.setprofile(hook)
POOLS = []  # (kept: a pool collected early wakes its manager thread up itself)
ROUNDS = 10

def submit_one(i):
    POOLS.append(concurrent.futures.ProcessPoolExecutor(1))
    return POOLS[-1].submit(abs, -i)
"""
    + _SUBMITS_INTERRUPTED
)


@pytest.mark.parametrize("imported", ["before", "after"])
@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_in_a_process_pools_first_submit_leaves_no_thread_behind_at_exit(
    pure: bool, imported: str
) -> None:
    built, *rest = run_script(
        _INTERRUPTED_PROCESS_POOL_SUBMITS.replace("sys.argv[1]", repr(imported)),
        {"UNKNOT_PURE": "1" if pure else ""},
    )
    assert built == str(unknot.compiled and not pure)
    assert rest == ["10"]


def test_ctrl_c_inside_run_to_finish_waits_for_the_next_blocking_call() -> None:
    # A real SIGINT while the root fiber blocks the thread inside run_to_finish: the handler
    # does not raise there; the call finishes, and the next blocking call raises.
    res = _run_and_interrupt(
        """
        import time
        import unknot
        from unknot import lowlevel

        def main():
            print("ready")
            lowlevel.run_to_finish(time.sleep, 1.0)  # (unpatched: blocks the thread)
            print("finished")
            unknot.sleep(30)
            print("not reached")

        unknot.run(main)
        """
    )
    _assert_interrupted(res)
    assert "finished" in res.stdout and "not reached" not in res.stdout
    assert res.elapsed < 10


_HANDLED_IN_A_PASS = """
import os, signal
import unknot
from unknot import lowlevel

r, w = os.pipe()

def main():
    log = []
    hub = lowlevel.current_hub()

    def reader():
        lowlevel.wait_fds([r], [])  # an fd wait: no deadlock, the poll may sleep for ever

    def sleeper():  # the test's bound: with the interrupt lost, it is delivered after this
        unknot.sleep(3)
        log.append("slept")

    def presser():
        hub.loop.call_soon_threadsafe(lambda: None)  # a byte in the self-pipe, as a thread's
        unknot.sleep(0)  # resumed in the pass after a poll that found the self-pipe readable
        os.kill(os.getpid(), signal.SIGINT)  # handled here, in this fiber, not in the root

    for fn in (reader, sleeper, presser):
        unknot.spawn(fn)
    try:
        lowlevel.park(cancellable=False, interruptible=True)
    except KeyboardInterrupt:
        log.append("interrupted")
    return log  # (unknot.run cancels the reader before the pipe is closed)

print(unknot.compiled, *unknot.run(main), sep="|")
os.close(r)
os.close(w)
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_handled_in_a_pass_is_delivered_before_the_next_sleep(
    backend: str, pure: bool
) -> None:
    # The handler ran in a fiber of the pass that followed a poll which had reported the loop's
    # self-pipe (a thread's call_soon_threadsafe wrote to it first); asyncio then drained the
    # pipe, the byte of the handler with it. The hub must not sleep with the interrupt pending:
    # before the fix the root got it only when the sleeper's timer ended the next poll (and
    # without a timer, never).
    assert _run_build(_HANDLED_IN_A_PASS, pure) == ["interrupted"]


# A Ctrl-C that comes while the root fiber's done callbacks run (its function has returned, the
# callbacks run in its greenlet): raised there, a callback would swallow it (logged as "error in
# a done-callback") and the program would go on as if it never came. It must come out of `run`.
_IN_ROOT_DONE_CALLBACK = """
import os, signal
import unknot

def press(_fiber):
    os.kill(os.getpid(), signal.SIGINT)
    (lambda: None)()  # a call into Python code: the handler runs here, in the root's greenlet

def main():
    unknot.current().add_done_callback(press)
    return "returned"

try:
    result = unknot.run(main)
except KeyboardInterrupt:
    result = "interrupted"
print(unknot.compiled, result, sep="|")
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_in_the_roots_done_callback_comes_out_of_run(pure: bool) -> None:
    assert _run_build(_IN_ROOT_DONE_CALLBACK, pure) == ["interrupted"]


# A Ctrl-C handled in another fiber while the root fiber yields (sleep(0), checkpoint()) is
# pending for the root, which is queued to run again rather than parked: the hub cannot throw it
# in. The root's yield must raise it (it used to return, and a root looping on checkpoint()
# never got it: it came out of `run` at shutdown instead).
_IN_A_YIELD = """
import os, signal, sys
import unknot

def press():
    os.kill(os.getpid(), signal.SIGINT)
    (lambda: None)()  # a call into Python code: the handler runs here, in this fiber

def main():
    unknot.spawn(press)
    try:
        for i in range(1000):
            YIELD
        return "not interrupted"
    except KeyboardInterrupt:
        return f"interrupted in yield {i}"

try:
    result = unknot.run(main)
except KeyboardInterrupt:
    result = "out of run"
print(unknot.compiled, result, sep="|")
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
@pytest.mark.parametrize("call", ["unknot.checkpoint()", "unknot.sleep(0)"])
def test_ctrl_c_handled_in_another_fiber_is_raised_in_the_roots_yield(
    call: str, pure: bool
) -> None:
    assert _run_build(_IN_A_YIELD.replace("YIELD", call), pure) == ["interrupted in yield 0"]


# A Ctrl-C during `run`'s shutdown (here handled in a leftover fiber's finally block) comes out of
# `run` once the shutdown is done: the other leftover fibers are still cancelled and unwound
# (it used to come out of the loop at once, cutting the shutdown short).
_DURING_SHUTDOWN = """
import os, signal
import unknot

log = []

def presser():
    try:
        unknot.sleep(60)
    finally:
        os.kill(os.getpid(), signal.SIGINT)
        (lambda: None)()  # the handler runs here: the root is done, the interrupt pending

def slow_cleanup():
    try:
        unknot.sleep(60)
    finally:
        with unknot.CancelScope(shield=True):
            unknot.sleep(0.1)  # the loop polls meanwhile, with the interrupt pending
        log.append("unwound")

def main():
    unknot.spawn(presser)
    unknot.spawn(slow_cleanup)
    unknot.sleep(0)
    return "returned"

try:
    result = unknot.run(main)
except KeyboardInterrupt:
    result = "interrupted"
print(unknot.compiled, result, *log, sep="|")
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_during_the_shutdown_lets_leftover_fibers_unwind(pure: bool) -> None:
    assert _run_build(_DURING_SHUTDOWN, pure) == ["interrupted", "unwound"]


# Ctrl-C while the root fiber is blocked in a TaskGroup's body (or a Pool's with-block, built on
# one) comes out of `run` as KeyboardInterrupt, after the children unwound, as when it comes
# while the group waits for its children; it used to come in a BaseExceptionGroup.
_IN_A_GROUPS_BODY = """
import os, signal
import unknot

log = []

def child(i):
    try:
        unknot.sleep(60)
    finally:
        log.append(f"child {i} unwound")

def press():
    os.kill(os.getpid(), signal.SIGINT)
    (lambda: None)()  # the handler runs here, in this fiber: the root is blocked

def main():
    with GROUP as g:
        g.spawn(child, 1)
        g.spawn(child, 2)
        unknot.spawn(press)
        unknot.sleep(60)

try:
    unknot.run(main)
    result = "returned"
except KeyboardInterrupt:
    result = "KeyboardInterrupt"
except BaseException as e:
    result = repr(e)
print(unknot.compiled, result, *sorted(log), sep="|")
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
@pytest.mark.parametrize("group", ["unknot.TaskGroup()", "unknot.Pool(5)"])
def test_ctrl_c_in_a_groups_body_comes_out_of_run_bare(group: str, pure: bool) -> None:
    out = _run_build(_IN_A_GROUPS_BODY.replace("GROUP", group), pure)
    assert out == ["KeyboardInterrupt", "child 1 unwound", "child 2 unwound"]


# -- Ctrl-C that does not interrupt the poll at all ------------------------------------------
#
# A SIGINT delivered to another thread runs its C handler there: the hub's poll in the main
# thread goes on sleeping, and the Python handler waits for it to return. So does one that
# reaches the main thread after its last bytecode before the poll, before the poll's system
# call begins (in the compiled build no bytecode runs in between at all: a Ctrl-C right after a
# busy pass could then be seen only at the next wake-up, for an idle server never). The loop's
# self-pipe is the wakeup fd, which the C handler writes to: the poll returns at once.

_TO_ANOTHER_THREAD = """
import signal, threading, time
import unknot

def main():
    ready = threading.Event()
    t = threading.Thread(target=lambda: (ready.set(), time.sleep(5)), daemon=True)
    t.start()
    ready.wait()
    began = time.monotonic()
    threading.Timer(0.1, signal.pthread_kill, (t.ident, signal.SIGINT)).start()
    try:
        unknot.sleep(30)  # the only other wake-up of the hub's poll
    except KeyboardInterrupt:
        return "interrupted", time.monotonic() - began
    return "slept", time.monotonic() - began

outcome, elapsed = unknot.run(main)
print(unknot.compiled, outcome, elapsed < 10, sep="|")
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_ctrl_c_delivered_to_another_thread_wakes_the_hubs_poll(pure: bool) -> None:
    assert _run_build(_TO_ANOTHER_THREAD, pure) == ["interrupted", "True"]


def _wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd)
    return fd


def test_run_makes_the_loops_self_pipe_the_wakeup_fd_and_clears_it_after() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    assert _wakeup_fd() == -1

    def main() -> list[bool]:
        loop = unknot.lowlevel.current_hub().loop
        pipe = loop._csock.fileno()  # type: ignore[attr-defined]
        seen = [_wakeup_fd() == pipe]
        # asyncio clears the wakeup fd with the last signal handler it removes: kept here
        loop.add_signal_handler(signal.SIGUSR2, lambda: None)
        loop.remove_signal_handler(signal.SIGUSR2)
        seen.append(_wakeup_fd() == pipe)
        return seen

    assert unknot.run(main) == [True, True]
    assert _wakeup_fd() == -1


def test_run_leaves_someone_elses_wakeup_fd_alone() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    try:
        assert unknot.run(_wakeup_fd) == w
        assert _wakeup_fd() == w
    finally:
        signal.set_wakeup_fd(-1)
        os.close(r)
        os.close(w)


_FORKED = """
import os, signal
import unknot

def wakeup_fd():
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd)
    return fd

def main():
    csock = unknot.lowlevel.current_hub().loop._csock
    ours = wakeup_fd() == csock.fileno()
    parents = os.fstat(csock.fileno()).st_ino
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running anything of the parent's
        try:
            # Its wakeup fd: its loop's self-pipe (the same fd number), a socket of its own.
            fd = wakeup_fd()
            own = fd == csock.fileno() and os.fstat(fd).st_ino != parents
            os.write(w, b"%d" % own)
        finally:
            os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            seen = f.read().decode()
    finally:
        os.waitpid(pid, 0)
    return ours, seen

print(*unknot.run(main), sep="|")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_under_run_wakes_its_own_self_pipe() -> None:
    # The parent's wakeup fd is its loop's self-pipe, which the child shared: the child's
    # signals must not write there, but into the child loop's own (made in the child with the
    # same fd number, `HubEventLoop._reset_after_fork`). (In a process of its own: this one has
    # threads, and forking it may deadlock the child.)
    assert run_script(_FORKED) == ["True", "1"]


_RUNNER_TO_ANOTHER_THREAD = """
import asyncio, signal, threading, time
import unknot

async def main():
    ready = threading.Event()
    t = threading.Thread(target=lambda: (ready.set(), time.sleep(5)), daemon=True)
    t.start()
    ready.wait()
    threading.Timer(0.1, signal.pthread_kill, (t.ident, signal.SIGINT)).start()
    await asyncio.sleep(30)  # the only other wake-up of the loop's poll

began = time.monotonic()
try:
    with asyncio.Runner(loop_factory=unknot.new_event_loop) as runner:
        runner.run(main())
    outcome = "slept"
except KeyboardInterrupt:
    outcome = "interrupted"
print(unknot.compiled, outcome, time.monotonic() - began < 10, sep="|")
"""


@pytest.mark.parametrize("pure", [False, True], ids=["default-build", "pure"])
def test_the_hub_loop_under_asyncio_runner_wakes_for_ctrl_c_in_another_thread(pure: bool) -> None:
    # asyncio.Runner's own SIGINT handler cancels the main task; it runs only once the poll
    # returns, which the wakeup fd makes happen at once (asyncio's own loop would sleep on).
    assert _run_build(_RUNNER_TO_ANOTHER_THREAD, pure) == ["interrupted", "True"]


def test_a_refused_run_forever_leaves_the_running_loops_wakeup_fd() -> None:
    # run_forever called again while the loop runs raises; its way out must not clear the
    # wakeup fd the run in progress still needs.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")

    def main() -> bool:
        loop = unknot.lowlevel.current_hub().loop
        refused = []

        def again() -> None:
            try:
                loop.run_forever()
            except RuntimeError:
                refused.append(True)

        loop.call_soon(again)  # (from the loop's own callbacks, on the hub greenlet)
        unknot.sleep(0.05)
        assert refused == [True]
        return _wakeup_fd() == loop._csock.fileno()  # type: ignore[attr-defined]

    assert unknot.run(main) is True
    assert _wakeup_fd() == -1
