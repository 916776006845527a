"""`unknot.patch()` keeps what the stdlib's own code and tests expect of the patched modules.

Each test runs a fresh interpreter (patching is process-wide). Found by running CPython's test
suites under the patch (``make conformance``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_patched(code: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_socket_helpers_look_up_the_socket_class_at_call_time() -> None:
    # socket.create_connection, create_server and getfqdn are the stdlib's own functions, which
    # find socket() and getaddrinfo() in the socket module when called: patched, those are
    # unknot's, and a test (or a mock) replacing socket.socket later is honoured too.
    out = run_patched("""
        import unknot
        unknot.patch()
        import socket

        class Mocked(socket.socket):
            def connect(self, address):
                raise TimeoutError("mocked connect")

        def main():
            with socket.create_server(("127.0.0.1", 0)) as listener:
                with socket.create_connection(listener.getsockname()) as sock:
                    kinds = [type(listener).__module__, type(sock).__module__]
            saved, socket.socket = socket.socket, Mocked
            try:
                socket.create_connection(("127.0.0.1", 9))
            except TimeoutError as e:
                kinds.append(str(e))
            finally:
                socket.socket = saved
            return kinds

        print(*unknot.run(main), sep=",")
    """)
    assert out.strip() == "unknot.socket,unknot.socket,mocked connect"


def test_subprocess_functions_look_up_popen_at_call_time() -> None:
    # subprocess.run, call... are the stdlib's own functions, which find Popen in the
    # subprocess module when called: patched, unknot's (cooperative in a fiber), and a mock
    # of subprocess.Popen installed later is honoured (CPython's test_subprocess does that).
    out = run_patched("""
        import sys
        import unknot
        unknot.patch()
        import subprocess

        made = []

        class Recording(subprocess.Popen):
            def __init__(self, *args, **kwargs):
                made.append(type(self).__mro__[1].__module__)
                super().__init__(*args, **kwargs)

        def main():
            fast = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True)
            saved, subprocess.Popen = subprocess.Popen, Recording
            try:
                rc = subprocess.call([sys.executable, "-c", "pass"])
            finally:
                subprocess.Popen = saved
            return fast.stdout.decode().strip(), rc, *made

        print(*unknot.run(main), sep=",")
    """)
    assert out.strip() == "1,0,unknot.subprocess"


def test_thread_join_from_a_fiber() -> None:
    # Joining a running thread from a fiber waits cooperatively; the joins the stdlib refuses
    # (the current thread, a thread not started) raise its RuntimeError at once, not hang.
    out = run_patched("""
        import threading, time
        import unknot
        unknot.patch()

        def main():
            log = []
            for t in (threading.current_thread(), threading.Thread(target=print)):
                try:
                    t.join(timeout=5)
                except RuntimeError as e:
                    log.append(str(e))
            worker = threading.Thread(target=time.sleep, args=(0.3,))
            worker.start()
            ticker = unknot.spawn(lambda: [unknot.sleep(0.01) for _ in range(10)])
            worker.join()
            log.append(f"ticker done: {ticker.done()}")
            return log

        print(*unknot.run(main), sep=",")
    """)
    assert out.strip() == (
        "cannot join current thread,cannot join thread before it is started,ticker done: True"
    )


def test_thread_join_cancelled_from_a_fiber_frees_its_worker() -> None:
    # A join from a fiber waits in a worker of unknot's pool. Cancelled, it frees the worker at
    # once (within unknot._patch._table.JOIN_SLICE), not when the thread ends: with a pool of 2,
    # ten abandoned joins of a long-lived thread used to hold both workers, and to_thread waited
    # for that thread. A timed join still times out, and a join of a thread that ends returns.
    out = run_patched("""
        import os, threading, time
        os.environ["UNKNOT_MAX_THREADS"] = "2"
        import unknot
        unknot.patch()

        def main():
            stop = threading.Event()
            long_lived = threading.Thread(target=stop.wait)
            long_lived.start()
            for i in range(10):
                with unknot.move_on_after(0.01):
                    long_lived.join()
            with unknot.move_on_after(2) as scope:
                unknot.to_thread(lambda: None)
            t0 = time.monotonic()
            long_lived.join(0.2)
            timed = 0.15 < time.monotonic() - t0 < 1.5 and long_lived.is_alive()
            stop.set()
            long_lived.join()
            return scope.cancelled_caught, timed, long_lived.is_alive()

        print(*unknot.run(main), sep=",")
    """)
    assert out.strip() == "False,True,False"


def test_threading_lock_and_rlock_keep_the_stdlib_interface() -> None:
    # threading.Lock is a class on Python 3.13 (annotations such as `Lock | None` are
    # evaluated at run time); threading.RLock(...) accepts arguments and, on 3.13, warns that
    # they are deprecated. Patched, both still hold and make unknot's hybrid locks.
    out = run_patched("""
        import sys, threading, warnings
        import unknot
        unknot.patch()
        from unknot._patch import _hybrid

        def f(lock: threading.Lock | None = None) -> None:
            pass

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plain, with_args = threading.RLock(), threading.RLock(1, a=2)
        print(type(threading.Lock()) is _hybrid.Lock, isinstance(threading.Lock(), threading.Lock),
              type(plain) is type(with_args) is _hybrid.RLock,
              [w.category.__name__ for w in caught] == (
                  ["DeprecationWarning"] if sys.version_info >= (3, 13) else []))
    """)
    assert out.split() == ["True", "True", "True", "True"]


# concurrent.futures.ProcessPoolExecutor: its futures wait on `threading` locks, which the patch
# makes cooperative; its `submit` runs in `lowlevel.run_to_finish` (a *lazy* row of the patch
# table: applied when the program imports ``concurrent.futures.process``, which `patch` itself
# does not import).


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("api", ["ProcessPoolExecutor", "multiprocessing.Pool"])
def test_fibers_wait_for_process_pool_results_without_blocking_the_hub(
    api: str, method: str
) -> None:
    # Two fibers wait 0.4 s each for a worker process: together, while a third keeps ticking.
    # (Both pools hand results over through threading's locks: an Event, a Condition.)
    out = run_patched(
        """
        import concurrent.futures, multiprocessing, os, sys, time
        import unknot
        unknot.patch()

        def main():
            ctx = multiprocessing.get_context(sys.argv[1])
            if sys.argv[2] == "ProcessPoolExecutor":
                pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx)
                call = lambda fn, *args: pool.submit(fn, *args).result()
            else:
                pool = ctx.Pool(2)
                call = lambda fn, *args: pool.apply_async(fn, args).get()
            with pool:
                pids = {call(os.getpid) for _ in range(4)}  # (workers started)
                mapped = list(pool.map(abs, [-1, -2]))
                # Until both workers are up (the pools start them on demand or slowly: a
                # "spawn" worker is a new interpreter, which a loaded machine may take longer
                # than a task to start): two short sleeps at once then overlap. Bounded.
                for _ in range(20):
                    t0 = time.monotonic()
                    for w in [unknot.spawn(call, time.sleep, 0.1) for _ in range(2)]:
                        w.join()
                    if time.monotonic() - t0 < 0.18:
                        break
                ticks = []

                def ticker():
                    while True:
                        ticks.append(time.monotonic())
                        unknot.sleep(0.02)

                t = unknot.spawn(ticker)
                start = time.monotonic()
                waiters = [unknot.spawn(call, time.sleep, 0.4) for _ in range(2)]
                results = [w.join() for w in waiters]
                elapsed = time.monotonic() - start
                t.cancel()
            during = sum(start <= x <= start + elapsed for x in ticks)
            ok = results == [None, None] and mapped == [1, 2]
            return os.getpid() not in pids, ok, elapsed, during

        ok_pids, ok_results, elapsed, during = unknot.run(main)
        print(ok_pids, ok_results, f"{elapsed:.3f}", during)
        """,
        method,
        api,
    ).split()
    ok_pids, ok_results, elapsed, during = out
    assert (ok_pids, ok_results) == ("True", "True")
    assert 0.38 < float(elapsed) < 0.75  # the two waits overlapped
    assert int(during) >= 8  # the hub ran the ticker meanwhile (about 20 ticks)


_SUBMIT_WRAPPED = """
import sys
import unknot

def wrapped():
    from concurrent.futures.process import ProcessPoolExecutor as P
    return P.submit.__module__.startswith("unknot.")
"""


def test_import_and_patch_load_no_module_they_do_not_use() -> None:
    # What each costs at every start of a patched program: importlib.abc loads
    # importlib.resources, pathlib, tempfile and shutil (about a fifth of unknot's own import
    # time); concurrent.futures.process loads multiprocessing (its row of the patch table is
    # lazy).
    heavy = ["importlib.abc", "importlib.resources", "pathlib", "multiprocessing"]
    out = run_patched(f"""
        import sys
        import unknot
        unknot.patch()
        print(*[m for m in {heavy!r} if m in sys.modules])
    """)
    assert out.split() == []


def test_patch_does_not_import_the_process_pool_and_wraps_its_submit_once_imported() -> None:
    out = run_patched(
        _SUBMIT_WRAPPED
        + """
unknot.patch()
print("concurrent.futures.process" in sys.modules, "multiprocessing" in sys.modules)
print(bool(wrapped()))
unknot.unpatch()
print(bool(wrapped()))
unknot.patch()
print(bool(wrapped()))  # (imported before this patch: applied at once)
unknot.unpatch()
unknot.patch(threading=False)
print(bool(wrapped()))
"""
    ).split()
    assert out == ["False", "False", "True", "False", "True", "False"]


def test_a_process_pool_imported_after_unpatch_keeps_the_stdlib_submit() -> None:
    out = run_patched(
        _SUBMIT_WRAPPED
        + """
unknot.patch()
unknot.unpatch()
print(bool(wrapped()))
"""
    ).split()
    assert out == ["False"]


def test_pool_submit_passes_any_keyword_to_the_callable() -> None:
    # submit(fn, /, *args, **kwargs) hands every keyword to fn, one named "fn" included; the
    # patched submit passed them on to run_to_finish(fn, *args, **kwargs), where "fn" collided
    # with its own parameter (TypeError: got multiple values for argument 'fn').
    out = run_patched("""
        import concurrent.futures
        import unknot
        unknot.patch()

        def main():
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                return pool.submit(lambda fn, args: (fn, args), fn=1, args=2).result()

        print(*unknot.run(main))
    """)
    assert out.split() == ["1", "2"]


def test_multiprocessing_pipes_and_managers_work_under_the_patch() -> None:
    # multiprocessing.Pipe() makes its connections from a socketpair: under the patch, unknot
    # sockets, whose fds unknot keeps non-blocking. The stdlib's detach() hands over the fd of
    # a blocking socket blocking; unknot's left it non-blocking, and Connection.recv() (os.read)
    # failed with BlockingIOError when no data was there yet, which broke Manager() too.
    out = run_patched("""
        import unknot
        unknot.patch()
        import multiprocessing, os, socket, threading

        a, b = multiprocessing.Pipe()
        threading.Timer(0.1, b.send, ("late",)).start()
        got = [a.recv(), os.get_blocking(a.fileno())]

        s = socket.socket()
        timed = socket.socket()
        timed.settimeout(5)
        fds = [s.detach(), timed.detach()]
        got += [os.get_blocking(fds[0]), os.get_blocking(fds[1])]
        for fd in fds:
            os.close(fd)

        with multiprocessing.Manager() as manager:
            d = manager.dict()
            d["a"] = 1
            got.append(dict(d))
        print(got)
    """)
    # The stdlib's fd of a socket with a timeout is non-blocking too.
    assert out.strip() == "['late', True, True, False, {'a': 1}]"


def test_a_cancelled_create_connection_closes_its_socket_under_the_patch() -> None:
    # The stdlib's create_connection closes its socket on OSError only: a cancellation in the
    # connect left it to the garbage collector (a ResourceWarning, the fd open meanwhile). The
    # patch wraps the stdlib's function (its code keeps finding the patched names, and a later
    # mock of socket.socket still applies).
    out = run_patched("""
        import unknot
        unknot.patch()
        import gc, os, socket, time, warnings

        listener = socket.socket()   # a full accept queue: a further connect hangs
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(listener.getsockname())
            fillers.append(c)
        time.sleep(0.05)

        def main():
            before = len(os.listdir("/proc/self/fd"))
            with unknot.move_on_after(0.1) as scope:
                socket.create_connection(listener.getsockname())
            return scope.cancelled_caught, len(os.listdir("/proc/self/fd")) - before

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            cancelled, leaked = unknot.run(main)
            gc.collect()
        print(cancelled, leaked, [str(w.message) for w in caught])
        print(socket.create_connection.__wrapped__.__module__)
    """)
    assert out.splitlines() == ["True 0 []", "socket"]
