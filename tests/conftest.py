"""Fixtures shared by every test folder, and the session's fd-leak checks.

The folders mirror the package: ``core/`` (hub, fibers, cancellation, task groups, bridges,
threads), ``primitives/`` (Event, locks, Queue, Channel), ``mirrors/`` (the stdlib mirrors:
socket, ssl, select, selectors, time, os, subprocess), ``patch/`` (``unknot.patch()`` and the
hybrid locks), ``tcp/`` (TCPServer), ``drivers/`` (third-party drivers against real servers),
``docs/`` (README, docs and examples run as written).

No folder is a package (no ``__init__.py``), so a test module's basename must be unique across
``tests/``. Helper modules (``fiber_helpers``, ``drivers/drivers_support``) are imported by bare
name: the ``pythonpath`` option in pyproject.toml puts their folders on ``sys.path``, ahead of
the stdlib, which is one more reason for no ``__init__.py``: a package ``tests/http/`` would
shadow the stdlib's ``http``.
"""

from __future__ import annotations

import _thread
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from unknot._core._backends import BACKENDS

pytest_plugins = ["pytester"]

BACKEND_NAMES = sorted(BACKENDS)


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts a background job (`make test &`) with SIGINT ignored, and a subprocess
    # inherits that: a test's child Python would then never see the Ctrl-C the test sends it
    # (the docs' examples of Ctrl-C reaching the root fiber failed so). Tests run as in the
    # foreground: Ctrl-C raises KeyboardInterrupt here, and children start with the default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on each selector backend (the env var is read when the loop is created)."""
    monkeypatch.setenv("UNKNOT_SELECTOR", request.param)
    return request.param


@pytest.fixture
def no_foreign_threads() -> None:
    """Deadlock detection treats any live foreign thread as a possible waker: wait for strays.

    Fails fast (instead of hanging in a test that expects a DeadlockError) if a thread started
    by another test is still running: one `threading` lists (but the pool's workers and the
    blocking detector's), or one started with ``_thread.start_new_thread``, which `threading`
    lists only as a `threading._DummyThread` (once it has called into `threading`; and Python
    3.11 lists that even after the thread ended) or not at all. Such a thread cannot be joined:
    its end is polled, as the deadlock detector sees it (`_foreign_threads_alive`).
    """
    from unknot._core._deadlock import _foreign_threads_alive, _still_runs
    from unknot._core._monitor import monitor_thread_ident
    from unknot._core._thread_pool import pool_thread_idents

    deadline = time.monotonic() + 10
    while True:
        known = pool_thread_idents() | {monitor_thread_ident()}
        others = [
            t
            for t in threading.enumerate()
            if t is not threading.current_thread() and t.ident not in known and _still_runs(t)
        ]
        if not others and not _foreign_threads_alive():
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"stray threads alive, deadlock detection cannot work: {others}, "
                f"{_thread._count()} thread(s) started by the _thread module"
            )
        joinable = [t for t in others if not isinstance(t, threading._DummyThread)]
        if joinable:
            joinable[0].join(0.1)
        else:
            time.sleep(0.01)  # (a raw thread: nothing to wait on but its end)


@pytest.fixture
def restore_monitor() -> Iterator[None]:
    """For tests that start, stop or reconfigure the process-wide blocking detector: its
    settings are put back afterwards (under the pytest plugin it is on by default)."""
    from unknot._core import _monitor

    m = _monitor._monitor
    saved = m.explicit, m.threshold, m.callback
    yield
    explicit, threshold, callback = saved
    if threshold is None:
        m.stop()
    else:
        m.start(threshold, callback)
    m.explicit = explicit


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe ``(read_fd, write_fd)``, closed after the test (unless the test closed it)."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


# -- file descriptor leaks -----------------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """This process's open fds and what each refers to (``/proc/self/fd``)."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd os.listdir itself had open, closed by now
    return fds


def fds_opened_since(before: dict[int, str]) -> dict[int, str]:
    """Fds open now that were not open (to the same file) in ``before``."""
    gc.collect()  # objects already unreachable close their fds; a cycle is not a leak here
    return {fd: target for fd, target in open_fds().items() if before.get(fd) != target}


@pytest.fixture(scope="session", autouse=True)
def no_fd_leaks() -> Iterator[None]:
    """Fail the session if fds opened during it are still open at its end.

    Everything a test opens (sockets, pipes, event loops' epoll fds and self-pipes, files) must
    be closed by the end of the session. Compared by number and target, so a number closed and
    reused for something else counts too. Nothing is exempt: pytest, logging and unknot open no
    fds lazily on their own (unknot's thread pool and pytest's capture hold none after setup).
    """
    if not os.path.isdir("/proc/self/fd"):
        yield
        return
    before = open_fds()
    yield
    leaked = fds_opened_since(before)
    assert not leaked, (
        "fds opened during the test session (reported at its last test) and never closed: "
        + ", ".join(f"{fd} -> {target}" for fd, target in sorted(leaked.items()))
    )


#: Modules checked for fd leaks on their own too, so that a leak is pinned to its module.
FD_CHECKED_MODULES = {
    "test_socket",
    "test_tcp_server",
    "test_echo_example",
    "test_ssl",
    "test_subprocess",
    "test_select",
    "test_selectors",
    "test_time_os",
}


@pytest.fixture(scope="module", autouse=True)
def no_fd_leaks_in_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """For the I/O modules in FD_CHECKED_MODULES: no fd opened by the module survives it."""
    name = request.module.__name__.rpartition(".")[2]
    if name not in FD_CHECKED_MODULES or not os.path.isdir("/proc/self/fd"):
        yield
        return
    before = open_fds()
    yield
    leaked = fds_opened_since(before)
    assert not leaked, f"fds opened by {name} and never closed: " + ", ".join(
        f"{fd} -> {target}" for fd, target in sorted(leaked.items())
    )
