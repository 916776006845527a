"""Helpers shared by the test modules of the stdlib mirrors (select, selectors, time, os,
subprocess, socket) and the core's: evidence that the hub kept running while a fiber blocked,
and outcomes to compare with the stdlib's; a script run in a child process where Ctrl-C works as
usual (and where a hang cannot be mistaken for a deadlock waker), or a script file in a fresh
interpreter; a listener with a full accept queue; an integer-like object; the current fiber's hub
and a socket's fd record; and `Where`, which runs a test body in a fiber or in a thread (the
``where`` fixture of tests/mirrors/conftest.py). For the core's tests also: coroutines run on a
hub's loop and the await cycle between a task and a fiber, a hub in a thread of its own, the
unretrieved-error hook's calls, the outcomes of a pytester run, and a backdoor client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

import unknot
from unknot import lowlevel

if TYPE_CHECKING:
    import unknot.socket as us
    from unknot._core._hub import FdWait, Hub

T = TypeVar("T")


class Ticker:
    """A fiber counting every 10 ms: if it advanced, the hub kept running other fibers."""

    def __init__(self) -> None:
        self.count = 0
        self.fiber = unknot.spawn(self._run)

    def _run(self) -> None:
        while True:
            self.count += 1
            unknot.sleep(0.01)

    def stop(self) -> int:
        self.fiber.cancel()
        return self.count


def later(delay: float, fn: Callable[..., Any], *args: Any) -> unknot.Fiber:
    """Run ``fn(*args)`` in a new fiber after ``delay`` seconds."""

    def main() -> Any:
        unknot.sleep(delay)
        return fn(*args)

    return unknot.spawn(main)


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """The result of ``fn(*args)``, or (exception type, message) if it raised."""
    try:
        return fn(*args)
    except Exception as e:
        return (type(e), str(e))


def fill(fd: int, write: Callable[[int, bytes], int] = os.write, size: int = 65536) -> None:
    """Write to the non-blocking ``fd`` until it says EAGAIN (its buffers are full); bounded
    by 10 s."""
    chunk = b"x" * size
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            write(fd, chunk)
        except BlockingIOError:
            return
    raise AssertionError(f"fd {fd} still takes data after 10 s")


def run_script(
    script: str, env: dict[str, str] | None = None, cpus: set[int] | None = None
) -> list[str]:
    """Run ``script`` in a child Python with Ctrl-C as usual (even when the test runner was
    started with SIGINT ignored), optionally pinned to ``cpus``; it must exit with 0 within a
    minute. Its output, split at ``|``."""

    def child_setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **(env or {})),
        preexec_fn=child_setup,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split("|")


def run_script_file(tmp_path: Path, source: str, *args: str) -> list[str]:
    """Write ``source`` to ``tmp_path / "script.py"`` and run it with ``args`` in a fresh
    interpreter, in ``tmp_path`` (so that multiprocessing's "spawn" children can import it); it
    must exit with 0 within 50 s. Its printed words."""
    script = tmp_path / "script.py"
    script.write_text(source)
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout.split()


class FullBacklog:
    """A listener whose accept queue is full, so that a further connect hangs (SYN dropped)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.address = self.listener.getsockname()
        self.fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(self.address)
            self.fillers.append(c)
        time.sleep(0.05)  # handshakes done: the queue is full

    def close(self) -> None:
        for s in [*self.fillers, self.listener]:
            s.close()


def fill_send_buffer(sock: Any) -> int:
    """Write until the socket's send buffer is full (non-blocking); the bytes written."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    total = 0
    for _ in range(10_000):
        try:
            total += sock.send(b"x" * 65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return total
    raise AssertionError("the send buffer never filled")


class IntLike:
    """An integer-like object (as numpy's integers): what takes a size or an fd takes it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


# -- the hub's records ---------------------------------------------------------------------------


def current_hub() -> Hub:
    """The hub of the current fiber (in a fiber only)."""
    f = unknot.current()
    assert f is not None
    return f.hub


def fd_record_of(sock: us.socket) -> FdWait:
    """The fd record of an unknot socket (it has waited at least once)."""
    rec = sock._state.rec  # type: ignore[attr-defined]
    assert rec is not None
    return rec


# -- running the same test in fibers and in threads -------------------------------------------


HUB_CLASS = {"epoll": "EpollHub", "poll": "PollHub", "select": "SelectHub"}


class ThreadPeer:
    """A started OS thread whose `join` re-raises what the function raised, like Fiber.join."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(fn, args), daemon=True)
        self.thread.start()

    def _main(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.result = fn(*args)
        except BaseException as e:
            self.error = e

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout: float = 20.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "peer thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


class Where:
    """Runs a test body in a fiber (on a given backend) or plainly; starts peers to match."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fiber = name != "thread"
        self.backend = name.split("-")[1] if self.fiber else None

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not self.fiber:
            return fn(*args)

        def root() -> Any:
            hub = unknot.current().hub  # type: ignore[union-attr]
            assert type(hub).__name__ == HUB_CLASS[self.backend or ""]
            return fn(*args)

        return unknot.run(root)

    def start(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A concurrent peer: a fiber in fiber mode, else a thread. ``.join()`` it."""
        if self.fiber:
            return unknot.spawn(fn, *args)
        return ThreadPeer(fn, args)

    def sleep(self, seconds: float) -> None:
        if self.fiber:
            unknot.sleep(seconds)
        else:
            time.sleep(seconds)

    def fail_after(self, seconds: float) -> contextlib.AbstractContextManager[Any]:
        """``unknot.fail_after(seconds)`` in fiber mode; in a thread, nothing."""
        if self.fiber:
            return unknot.fail_after(seconds)
        return contextlib.nullcontext()


def wait_consumed(where: Where, sock: Any, peer: Any) -> None:
    """Wait (bounded) until nothing is queued to read on ``sock``: ``peer`` took it."""
    for _ in range(5000):
        try:
            socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        assert not peer.done(), "the reader returned early"
        where.sleep(0.001)
    raise AssertionError("the reader never took the data")


# -- the core: asyncio, other hubs, unretrieved errors, pytester runs, the backdoor --------------


def run_on_hub_loop(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``coro_fn()`` to its end on a fresh unknot event loop."""
    with asyncio.Runner(loop_factory=unknot.new_event_loop) as runner:
        return runner.run(coro_fn())


def await_cycle_errors(
    task_awaits: Callable[[unknot.Fiber], Awaitable[Any]], timeout: float = 30
) -> tuple[str, str]:
    """A fiber waits (``await_``) for a task first; the task then awaits ``task_awaits(fiber)``,
    which closes the cycle. The messages of the RuntimeError the task ends with and of the one
    the fiber gets through ``await_`` (``timeout`` bounds the task: it used to hang)."""

    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        go: asyncio.Future[None] = loop.create_future()
        box: dict[str, Any] = {}

        async def task_body() -> Any:
            await go
            return await task_awaits(box["fiber"])

        def fiber_body() -> Any:
            loop.call_soon(go.set_result, None)  # (runs once this fiber waits in await_)
            return unknot.await_(box["task"])

        box["task"] = task = loop.create_task(task_body())
        box["fiber"] = fiber = unknot.spawn(fiber_body)
        done, _ = await asyncio.wait([task], timeout=timeout)
        assert done
        with pytest.raises(RuntimeError) as task_error:
            task.result()
        with pytest.raises(RuntimeError) as fiber_error:  # the task's error, through await_
            await fiber
        return str(task_error.value), str(fiber_error.value)

    return run_on_hub_loop(main)


class OtherHub:
    """A hub that runs in a thread of its own from `start` until `stop` (or as a ``with``
    block)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._running = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(
            target=unknot.run, args=(self._main,), name="other-hub", daemon=True
        )

    def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._running.set()
        unknot.to_thread(self._stop.wait, 30)

    def start(self) -> None:
        self.thread.start()
        assert self._running.wait(30)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def __enter__(self) -> OtherHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a fiber of this hub: from a plain thread, or from a fiber of another
        hub (through a worker thread: only that fiber waits). Once it returns, everything this
        thread sent to the hub before (``call_soon_threadsafe``) has run."""
        if unknot.current() is None:
            return unknot.from_thread(fn, *args, loop=self.loop)
        return unknot.to_thread(unknot.from_thread, fn, *args, loop=self.loop)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> unknot.Fiber:
        fiber: unknot.Fiber = self.call(unknot.spawn, fn, *args)
        return fiber


@contextlib.contextmanager
def unretrieved_hook_calls() -> Iterator[list[tuple[Any, BaseException]]]:
    """An unretrieved-error hook installed for the block (the log and the pytest plugin use the
    same): the ``(fiber, error)`` of each call."""
    seen: list[tuple[Any, BaseException]] = []

    def hook(fiber: Any, error: BaseException) -> None:
        seen.append((fiber, error))

    lowlevel.add_unretrieved_hook(hook)
    try:
        yield seen
    finally:
        lowlevel.remove_unretrieved_hook(hook)


def call_outcomes(result: pytest.RunResult) -> dict[str, str]:
    """The outcome of each test's call phase in an in-process pytester run, by test name."""
    return {
        r.nodeid.split("::")[-1]: r.outcome
        for r in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
        if r.when == "call"
    }


BACKDOOR_PROMPT = b">>> "


class BackdoorClient:
    """A plain blocking client of the backdoor (run its calls in a worker thread: the hub stays
    free to serve it)."""

    def __init__(self, address: Any) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.buf = b""

    def _more(self) -> bool:
        """Receive into the buffer; False once the server has closed the connection."""
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _take(self) -> str:
        out, self.buf = self.buf, b""
        return out.decode()

    def until_prompt(self, prompt: bytes = BACKDOOR_PROMPT) -> str:
        """What comes until the buffer ends with ``prompt`` (or the server closes)."""
        while not self.buf.endswith(prompt) and self._more():
            pass
        return self._take()

    def until(self, token: bytes) -> str:
        """What comes up to the first ``token``, itself included (the rest stays buffered)."""
        while token not in self.buf and self._more():
            pass
        out, _, self.buf = self.buf.partition(token)
        return (out + token).decode()

    def rest(self) -> str:
        """Everything until the server closes the connection."""
        while self._more():
            pass
        return self._take()

    def run(self, line: str, prompt: bytes = BACKDOOR_PROMPT) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self.until_prompt(prompt)

    def closed(self) -> bool:
        return self.sock.recv(1) == b""


def cancelled_at_once(call: Callable[[], Any]) -> None:
    """In a cancelled scope, ``call()`` (a blocking call that will not have to wait) raises
    `unknot.Cancelled` at once, without letting another fiber run first."""
    ran: list[str] = []
    unknot.spawn(ran.append, "other")
    with unknot.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(unknot.Cancelled):
            call()
        assert ran == []  # raised without switching
        raise unknot.Cancelled()
    assert scope.cancelled_caught
