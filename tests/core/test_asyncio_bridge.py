"""The asyncio bridge: await_ from fibers, ``await fiber`` from coroutines, cancellation both
ways, and asyncio machinery (timers, tasks, readers, transports, signals) on the hub loop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

import unknot
from unknot.testing import MockClock

T = TypeVar("T")


def run_on_hub_loop(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on unknot's loop (Python 3.11 has no loop_factory in asyncio.run)."""
    with asyncio.Runner(loop_factory=unknot.new_event_loop) as runner:
        return runner.run(coro_fn())


# -- await_ from a fiber -------------------------------------------------------------------------


@pytest.mark.unknot
def test_await_coroutine() -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0.001)
        return a + b

    assert unknot.await_(add(1, 2)) == 3


@pytest.mark.unknot
def test_await_task_and_future() -> None:
    loop = asyncio.get_running_loop()

    async def work() -> str:
        await asyncio.sleep(0)
        return "task result"

    task = loop.create_task(work())
    assert unknot.await_(task) == "task result"

    fut: asyncio.Future[int] = loop.create_future()
    loop.call_later(0.01, fut.set_result, 99)
    assert unknot.await_(fut) == 99

    done: asyncio.Future[int] = loop.create_future()
    done.set_result(5)
    assert unknot.await_(done) == 5  # already done: no switch needed


@pytest.mark.unknot
def test_await_exception_propagates() -> None:
    async def fail() -> None:
        await asyncio.sleep(0)
        raise LookupError("async failure")

    with pytest.raises(LookupError, match="async failure"):
        unknot.await_(fail())


@pytest.mark.unknot
def test_await_other_fibers_run_meanwhile() -> None:
    log: list[str] = []

    def other() -> None:
        log.append("other fiber ran")

    unknot.spawn(other)
    unknot.await_(asyncio.sleep(0.01))
    assert log == ["other fiber ran"]


@pytest.mark.unknot
def test_await_many_concurrently_from_fibers(autojump_clock: MockClock) -> None:
    async def slow(i: int) -> int:
        await asyncio.sleep(10)
        return i

    with unknot.TaskGroup() as tg:
        fibers = [tg.spawn(unknot.await_, slow(i)) for i in range(100)]
    assert [f.result() for f in fibers] == list(range(100))
    assert unknot.current_time() == pytest.approx(10)


def test_await_outside_fiber() -> None:
    async def noop() -> None:
        pass

    coro = noop()
    try:
        with pytest.raises(unknot.NotInFiberError):
            unknot.await_(coro)
    finally:
        coro.close()


# -- await fiber from asyncio code ---------------------------------------------------------------


def test_await_fiber_on_hub_loop() -> None:
    def blocking(x: int) -> int:
        unknot.sleep(0.001)
        return x * 3

    async def main() -> tuple[int, bool]:
        f = unknot.spawn(blocking, 14)
        loop = asyncio.get_running_loop()
        return await f, isinstance(loop, unknot.HubEventLoop)

    assert run_on_hub_loop(main) == (42, True)


def test_await_fiber_exception_on_hub_loop() -> None:
    def fail() -> None:
        unknot.sleep(0)
        raise ArithmeticError("fiber failed")

    async def main() -> None:
        await unknot.spawn(fail)

    with pytest.raises(ArithmeticError, match="fiber failed"):
        run_on_hub_loop(main)


def test_await_finished_and_cancelled_fibers() -> None:
    async def main() -> None:
        f = unknot.spawn(lambda: "early")
        await asyncio.sleep(0.01)
        assert f.done()
        assert await f == "early"
        g = unknot.spawn(unknot.sleep, 100)
        await asyncio.sleep(0)
        g.cancel()
        with pytest.raises(asyncio.CancelledError):
            await g

    run_on_hub_loop(main)


def test_await_fiber_on_stock_asyncio_loop() -> None:
    """The slow path: fibers driven by callbacks on a loop that is not unknot's."""

    def blocking(a: socket.socket) -> tuple[bytes, bool]:
        unknot.sleep(0.01)
        unknot.wait_readable(a, timeout=10)  # add_reader under the hood
        return a.recv(100), unknot.current() is not None

    async def main() -> tuple[bytes, bool]:
        assert not isinstance(asyncio.get_running_loop(), unknot.HubEventLoop)
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            f = unknot.spawn(blocking, a)
            await asyncio.sleep(0.02)
            b.send(b"ping")
            return await f

    assert asyncio.run(main()) == (b"ping", True)


def test_stock_loop_sync_primitives_and_timeouts() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        q: unknot.Queue[int] = unknot.Queue()

        def consumer() -> None:
            log.append(f"got {q.get()}")
            try:
                q.get(timeout=0.01)
            except unknot.Empty:
                log.append("timed out")
            with unknot.move_on_after(0.01) as scope:
                unknot.Event().wait()
            log.append(f"moved on {scope.cancelled_caught}")

        def producer() -> None:
            unknot.sleep(0.01)
            q.put(1)

        fibers = [unknot.spawn(consumer), unknot.spawn(producer)]
        for f in fibers:
            await f
        return log

    assert asyncio.run(main()) == ["got 1", "timed out", "moved on True"]


def test_fiber_awaits_asyncio_on_stock_loop() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0.001)
        return 2 * x

    async def main() -> int:
        return await unknot.spawn(lambda: unknot.await_(double(21)))

    assert asyncio.run(main()) == 42


def test_await_fiber_of_another_loop() -> None:
    holder: list[unknot.Fiber] = []

    async def first() -> None:
        holder.append(unknot.spawn(unknot.sleep, 3600))
        await asyncio.sleep(0)

    async def second() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            await holder[0]

    with asyncio.Runner(loop_factory=unknot.new_event_loop) as r1:
        r1.run(first())
        with asyncio.Runner(loop_factory=unknot.new_event_loop) as r2:
            r2.run(second())
        holder[0].cancel()
        r1.run(asyncio.sleep(0.01))


# -- exchanging many messages --------------------------------------------------------------------

N_MESSAGES = 10_000


async def _exchange_messages() -> int:
    """An asyncio task and a fiber ping-pong N_MESSAGES messages through asyncio queues."""
    to_fiber: asyncio.Queue[int] = asyncio.Queue()
    to_task: asyncio.Queue[int] = asyncio.Queue()

    def fiber_side() -> int:
        n = 0
        while True:
            msg = unknot.await_(to_fiber.get())
            if msg < 0:
                return n
            n += 1
            unknot.await_(to_task.put(msg + 1))

    f = unknot.spawn(fiber_side)
    for i in range(N_MESSAGES):
        await to_fiber.put(i)
        assert await to_task.get() == i + 1
    await to_fiber.put(-1)
    return await f


def test_task_and_fiber_exchange_10000_messages_on_hub_loop() -> None:
    assert run_on_hub_loop(_exchange_messages) == N_MESSAGES


def test_task_and_fiber_exchange_10000_messages_on_stock_loop() -> None:
    assert asyncio.run(_exchange_messages()) == N_MESSAGES


@pytest.mark.unknot
def test_fiber_awaits_10000_tasks_and_task_awaits_10000_fibers() -> None:
    loop = asyncio.get_running_loop()

    async def echo(i: int) -> int:
        return i

    total = 0
    for i in range(N_MESSAGES):
        total += unknot.await_(loop.create_task(echo(i)))

    def fiber_echo(i: int) -> int:
        return i

    async def task_side() -> int:
        s = 0
        for i in range(N_MESSAGES):
            s += await unknot.spawn(fiber_echo, i)
        return s

    assert total == N_MESSAGES * (N_MESSAGES - 1) // 2
    assert unknot.await_(task_side()) == total


# -- cancellation across the bridge ------------------------------------------------------------


@pytest.mark.unknot
def test_cancelling_fiber_in_await_cancels_task() -> None:
    log: list[str] = []
    started = unknot.Event()

    async def long_task() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.append("task saw CancelledError")
            raise
        finally:
            await asyncio.sleep(0.001)  # async cleanup still works
            log.append("task finally")

    loop = asyncio.get_running_loop()
    task = loop.create_task(long_task())

    def fiber_side() -> None:
        try:
            unknot.await_(task)
        finally:
            log.append("fiber finally")

    f = unknot.spawn(fiber_side)
    started.wait()
    f.cancel()
    with pytest.raises(unknot.FiberCancelled):
        f.join()
    assert task.cancelled()
    # the fiber waits for the task to unwind before its own finally runs
    assert log == ["task saw CancelledError", "task finally", "fiber finally"]


@pytest.mark.unknot
def test_scope_timeout_around_await_cancels_coroutine(autojump_clock: MockClock) -> None:
    log: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(100)
        finally:
            log.append(f"coroutine finally at {asyncio.get_running_loop().time():.0f}")

    with unknot.move_on_after(5) as scope:
        unknot.await_(slow())
    assert scope.cancelled_caught
    assert log == ["coroutine finally at 5"]


@pytest.mark.unknot
def test_late_done_callback_of_cancelled_await_wakes_nothing() -> None:
    # The future completes (its done callback is scheduled) and the fiber is cancelled in the
    # same step: the late callback must not wake the fiber out of its next, unrelated wait.
    fut = asyncio.get_running_loop().create_future()
    lock = unknot.Lock()
    lock.acquire()  # held by this fiber throughout
    q: unknot.Queue[int] = unknot.Queue()
    scopes: list[unknot.CancelScope] = []
    out: list[object] = []

    def waiter() -> None:
        with unknot.CancelScope() as scope:
            scopes.append(scope)
            unknot.await_(fut)
        out.append(lock.acquire(timeout=0.05))
        with unknot.move_on_after(0.05):
            out.append(q.get())

    w = unknot.spawn(waiter)
    unknot.sleep(0.01)
    fut.set_result(42)
    scopes[0].cancel()
    w.join()
    assert out == [False]
    assert lock.locked()
    lock.release()


@pytest.mark.unknot
def test_await_returns_result_that_arrived_before_cancellation() -> None:
    aq: asyncio.Queue[str] = asyncio.Queue()
    returned: list[str] = []
    got: list[str] = []
    scopes: list[unknot.CancelScope] = []

    async def get() -> str:
        v = await aq.get()
        returned.append(v)
        return v

    def consumer() -> None:
        with unknot.CancelScope() as scope:
            scopes.append(scope)
            got.append(unknot.await_(get()))
            unknot.sleep(0)  # the cancellation stays in force: raised here
            got.append("not reached")
        assert scope.cancelled_caught

    c = unknot.spawn(consumer)
    unknot.sleep(0.01)
    aq.put_nowait("item-1")
    unknot.sleep(0)  # the task's step runs: the coroutine returns the item
    assert returned == ["item-1"]
    scopes[0].cancel()
    c.join()
    assert got == ["item-1"]


def test_cancelling_task_awaiting_fiber_cancels_fiber() -> None:
    log: list[str] = []

    def fiber_body() -> None:
        try:
            unknot.sleep(3600)
        finally:
            with unknot.CancelScope(shield=True):
                unknot.sleep(0.001)  # blocking cleanup still works
            log.append("fiber finally")

    async def awaiter(f: unknot.Fiber) -> None:
        try:
            await f
        finally:
            log.append("task finally")

    async def main() -> unknot.Fiber:
        f = unknot.spawn(fiber_body)
        task = asyncio.get_running_loop().create_task(awaiter(f))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return f

    f = run_on_hub_loop(main)
    assert f.cancelled()
    assert log == ["fiber finally", "task finally"]


def test_cancelling_task_awaiting_fiber_on_stock_loop() -> None:
    log: list[str] = []

    def fiber_body() -> None:
        try:
            unknot.Event().wait()
        finally:
            log.append("fiber finally")

    async def main() -> None:
        f = unknot.spawn(fiber_body)
        task = asyncio.ensure_future(f)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert f.cancelled()

    asyncio.run(main())
    assert log == ["fiber finally"]


def test_cancelling_fiber_in_await_on_stock_loop() -> None:
    log: list[str] = []

    async def long_task() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            log.append("task finally")

    def fiber_body() -> None:
        try:
            unknot.await_(long_task())
        finally:
            log.append("fiber finally")

    async def main() -> None:
        f = unknot.spawn(fiber_body)
        await asyncio.sleep(0.01)
        f.cancel()
        with pytest.raises(asyncio.CancelledError):
            await f

    asyncio.run(main())
    assert log == ["task finally", "fiber finally"]


def test_asyncio_wait_for_on_fiber() -> None:
    async def main() -> bool:
        f = unknot.spawn(unknot.sleep, 3600)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(f, 0.01)
        return f.cancelled()

    assert run_on_hub_loop(main) is True


# -- asyncio machinery on the hub loop, next to fibers -----------------------------------------


@pytest.mark.unknot
def test_call_soon_call_later_and_tasks(autojump_clock: MockClock) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, unknot.HubEventLoop)
    log: list[str] = []
    ev = unknot.Event()
    loop.call_soon(log.append, "call_soon")
    loop.call_later(0.02, lambda: (log.append("call_later"), ev.set()))

    async def task() -> None:
        await asyncio.sleep(0.01)
        log.append("task")

    loop.create_task(task())
    log.append("fiber")
    ev.wait()
    assert log == ["fiber", "call_soon", "task", "call_later"]


@pytest.mark.unknot
def test_call_later_follows_virtual_clock(autojump_clock: MockClock) -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    ev = unknot.Event()
    loop.call_later(50, lambda: (fired.append(loop.time()), ev.set()))
    ev.wait()
    assert fired == [pytest.approx(50)]
    assert unknot.current_time() == pytest.approx(50)


@pytest.mark.unknot
def test_add_reader_next_to_fibers() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        a.setblocking(False)
        c.setblocking(False)
        got: list[bytes] = []
        ev = unknot.Event()

        def on_readable() -> None:
            got.append(a.recv(100))
            loop.remove_reader(a)
            ev.set()

        loop.add_reader(a, on_readable)

        def fiber_reader() -> bytes:
            unknot.wait_readable(c, timeout=10)
            return c.recv(100)

        f = unknot.spawn(fiber_reader)
        unknot.sleep(0.01)
        b.send(b"for asyncio")
        d.send(b"for the fiber")
        assert ev.wait(timeout=10)
        assert got == [b"for asyncio"]
        assert f.join() == b"for the fiber"


@pytest.mark.unknot
def test_fiber_cannot_wait_on_fd_watched_by_asyncio() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    with a, b:
        loop.add_reader(a, lambda: None)
        try:
            with pytest.raises(RuntimeError, match="watched by the asyncio loop"):
                unknot.wait_readable(a, timeout=1)
        finally:
            loop.remove_reader(a)
        # and the other way round
        w = unknot.spawn(unknot.wait_readable, a, 10)
        unknot.sleep(0.01)
        with pytest.raises(RuntimeError, match="being waited on by a fiber"):
            loop.add_reader(a, lambda: None)
        w.cancel()
        with pytest.raises(unknot.FiberCancelled):
            w.join()
        loop.add_reader(a, lambda: None)  # free again
        loop.remove_reader(a)


@pytest.mark.unknot
def test_transports_server_and_client_next_to_fibers() -> None:
    ticks = 0
    stop = unknot.Event()

    def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            unknot.sleep(0.001)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(port: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = []
        for i in range(50):
            writer.write(b"hello %d\n" % i)
            await writer.drain()
            out.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return out

    unknot.spawn(ticker)
    server = unknot.await_(asyncio.start_server(handle, "127.0.0.1", 0))
    try:
        port = server.sockets[0].getsockname()[1]
        with unknot.TaskGroup() as tg:
            clients = [tg.spawn(unknot.await_, client(port)) for _ in range(3)]
    finally:
        server.close()
        unknot.await_(server.wait_closed())
    stop.set()
    for c in clients:
        assert c.result() == [b"HELLO %d\n" % i for i in range(50)]
    assert ticks > 0


def test_transports_from_coroutines_on_hub_loop() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    def fiber_client(port: int) -> bytes:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        with s:
            s.sendall(b"blocking client")
            s.setblocking(False)
            data = b""
            while len(data) < len(b"blocking client"):
                try:
                    chunk = s.recv(100)
                except BlockingIOError:
                    unknot.wait_readable(s, timeout=10)
                    continue
                if not chunk:
                    break
                data += chunk
            return data

    async def main() -> bytes:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await unknot.spawn(fiber_client, port)

    assert run_on_hub_loop(main) == b"blocking client"


@pytest.mark.unknot
def test_run_in_executor_on_hub_loop() -> None:
    import threading

    loop = asyncio.get_running_loop()
    me = threading.get_ident()
    assert unknot.await_(loop.run_in_executor(None, threading.get_ident)) != me


@pytest.mark.unknot
def test_signal_handler_via_loop() -> None:
    loop = asyncio.get_running_loop()
    ev = unknot.Event()
    received: list[int] = []

    def handler() -> None:
        received.append(signal.SIGUSR1)
        ev.set()

    loop.add_signal_handler(signal.SIGUSR1, handler)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert ev.wait(timeout=10)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert received == [signal.SIGUSR1]


@pytest.mark.unknot
def test_asyncio_blocking_call_from_coroutine_is_refused() -> None:
    async def misuse() -> None:
        unknot.sleep(1)

    with pytest.raises(unknot.NotInFiberError, match="asyncio code"):
        unknot.await_(misuse())


def test_asyncio_gather_fibers_and_tasks() -> None:
    def fiber_work(i: int) -> int:
        unknot.sleep(0.001 * i)
        return i

    async def task_work(i: int) -> int:
        await asyncio.sleep(0.001 * i)
        return -i

    async def main() -> list[int]:
        aws: list[Any] = [unknot.spawn(fiber_work, i) for i in range(5)]
        aws += [task_work(i) for i in range(5)]
        return await asyncio.gather(*aws)

    assert run_on_hub_loop(main) == [0, 1, 2, 3, 4, 0, -1, -2, -3, -4]


def test_runner_cancels_leftover_fibers_at_close() -> None:
    # asyncio.Runner (and asyncio.run) call the loop's shutdown_asyncgens on their way out: a
    # HubEventLoop cancels the fibers still running there and waits for them to unwind, as
    # unknot.run does (docs/asyncio.md, "Leftover fibers on asyncio's runners").
    log: list[str] = []

    def leftover(name: str) -> None:
        try:
            unknot.sleep(3600)
        finally:
            with unknot.CancelScope(shield=True):
                unknot.sleep(0.01)  # the loop still runs: it may block while unwinding
            log.append(f"{name} unwound")

    def parent() -> None:
        unknot.spawn(leftover, "grandchild")
        leftover("child")

    async def main() -> str:
        unknot.spawn(parent)
        await asyncio.sleep(0.01)
        return "returned"

    with asyncio.Runner(loop_factory=unknot.new_event_loop) as runner:
        assert runner.run(main()) == "returned"
        assert log == []
    assert sorted(log) == ["child unwound", "grandchild unwound"]
