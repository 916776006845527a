"""`unknot._nbio` (src/unknot/_nbio.c) agrees with os.read and os.write.

The compiled build's TCP sockets read and write through `unknot._nbio`: os.read and os.write
written again in C, keeping the GIL and (for reads up to 64 KiB) reading into one shared buffer.
Each scenario here runs through both and compares what comes back: the bytes or the count, or
the exception's type and errno. Where the extension is not installed (the pure-Python dev
install) it is compiled from its source for these tests; without a C compiler they skip (and
fail under CI=true); in a compiled install it must be there.
"""

from __future__ import annotations

import errno
import importlib.machinery
import importlib.util
import os
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fiber_helpers import fill

import unknot

pytestmark = pytest.mark.timeout(60)

SOURCE = Path(__file__).resolve().parents[2] / "src" / "unknot" / "_nbio.c"
BUFFER = 65536  # READ_BUFFER in _nbio.c


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _compile(tmp: Path) -> ModuleType:
    """Build _nbio.c with the compiler Python was built with, and load it."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    target = tmp / ("_nbio" + importlib.machinery.EXTENSION_SUFFIXES[0])
    argv = [
        *cc,
        "-shared",
        "-fPIC",
        "-O2",
        "-I",
        sysconfig.get_paths()["include"],
        str(SOURCE),
        "-o",
        str(target),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except OSError as exc:
        reason = f"no C compiler to build _nbio.c ({exc})"
        if _in_ci():
            pytest.fail(f"CI=true, so this must not be skipped: {reason}", pytrace=False)
        pytest.skip(reason)
    assert done.returncode == 0, done.stderr
    spec = importlib.util.spec_from_file_location("unknot._nbio", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nbio(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    try:
        from unknot import _nbio
    except ImportError:
        assert not unknot.compiled, "a compiled install must have unknot._nbio"
        return _compile(tmp_path_factory.mktemp("nbio"))
    return _nbio


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What a call gives: ("ok", value) or ("raise", (type, errno))."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome being compared
        return ("raise", (type(exc), getattr(exc, "errno", None)))


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _refill(sender: socket.socket, data: bytes) -> None:
    sender.setblocking(True)
    sender.sendall(data)
    sender.setblocking(False)
    time.sleep(0.05)  # loopback delivers at once; this only makes it certain


@pytest.mark.parametrize(
    ("available", "length"),
    [
        (1024, 65536),  # a short read, the echo benchmark's shape
        (1024, 1024),
        (1024, 100),  # less than is there: the rest stays for the next read
        (70000, BUFFER),  # exactly the shared buffer's size
        (70000, BUFFER + 1),  # past it: the os.read way (allocate, shrink)
        (150000, 200000),
        (10, 0),
    ],
)
def test_read_returns_what_os_read_returns(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket], available: int, length: int
) -> None:
    a, b = tcp_pair
    payload = os.urandom(available)
    results = []
    for read in (os.read, nbio.read):
        _refill(a, payload)
        got = b""
        first = read(b.fileno(), length)
        got += first
        # What the first call left is the same for both: drain it with os.read.
        while True:
            try:
                more = os.read(b.fileno(), 1 << 20)
            except BlockingIOError:
                break
            got += more
        assert got == payload
        results.append(first)
    if length:
        assert 0 < len(results[1]) <= length
    if available <= 50000:
        # All of it is in the receive buffer at once: both read the same bytes. (How much of
        # a larger payload one read finds depends on the kernel's buffer sizes at that moment.)
        assert results[0] == results[1]


def test_a_short_read_after_a_long_one_returns_only_its_own_bytes(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    # The shared buffer still holds the first read's bytes: the second must not show them.
    a, b = tcp_pair
    _refill(a, b"x" * 5000)
    assert nbio.read(b.fileno(), BUFFER) == b"x" * 5000
    _refill(a, b"yz")
    assert nbio.read(b.fileno(), BUFFER) == b"yz"


def test_read_at_end_of_file_and_when_nothing_is_ready(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = tcp_pair
    for length in (1024, BUFFER + 1):
        empty = [outcome(r, b.fileno(), length) for r in (os.read, nbio.read)]
        assert empty[0] == empty[1] == ("raise", (BlockingIOError, errno.EAGAIN))
    a.shutdown(socket.SHUT_WR)
    time.sleep(0.05)
    for length in (1024, BUFFER + 1):
        assert nbio.read(b.fileno(), length) == os.read(b.fileno(), length) == b""


@pytest.mark.parametrize(
    "args",
    [
        (-1, 10),  # EBADF
        ("fd", 10),  # TypeError
        (0, 1.5),  # TypeError
        (2**40, 10),  # OverflowError
        (0, 2**70),  # OverflowError
        (0, -1),  # EINVAL
    ],
)
def test_read_rejects_what_os_read_rejects(nbio: ModuleType, args: tuple[Any, Any]) -> None:
    theirs, ours = outcome(os.read, *args), outcome(nbio.read, *args)
    assert theirs[0] == "raise"
    assert ours == theirs


def test_read_on_a_closed_fd(nbio: ModuleType) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert outcome(nbio.read, r, 10) == outcome(os.read, r, 10) == ("raise", (OSError, errno.EBADF))
    assert outcome(nbio.read, r, BUFFER + 10) == ("raise", (OSError, errno.EBADF))


def test_argument_counts(nbio: ModuleType) -> None:
    for fn in (nbio.read, nbio.write):
        for args in ((), (1,), (1, 2, 3)):
            assert outcome(fn, *args)[1][0] is TypeError
    with pytest.raises(TypeError):
        nbio.read(fd=1, length=2)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_write_sends_what_os_write_sends(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket], kind: type
) -> None:
    a, b = tcp_pair
    payload = os.urandom(3000)
    for write in (os.write, nbio.write):
        assert write(a.fileno(), kind(payload)) == len(payload)
        time.sleep(0.05)
        assert os.read(b.fileno(), 1 << 20) == payload


def test_write_when_the_buffer_is_full_and_to_a_closed_peer(
    nbio: ModuleType, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = tcp_pair
    chunk = b"z" * 65536
    fill(a.fileno())  # the send and the receive buffers
    full = [outcome(w, a.fileno(), chunk) for w in (os.write, nbio.write)]
    assert full[0] == full[1] == ("raise", (BlockingIOError, errno.EAGAIN))
    b.close()
    time.sleep(0.05)
    broken = [outcome(w, a.fileno(), b"after") for w in (os.write, nbio.write)]
    # The reset peer: ECONNRESET first (its unread data), then EPIPE.
    assert broken[0][0] == broken[1][0] == "raise"
    again = [outcome(w, a.fileno(), b"again") for w in (os.write, nbio.write)]
    assert again[0] == again[1] == ("raise", (BrokenPipeError, errno.EPIPE))


@pytest.mark.parametrize("args", [(-1, b"x"), ("fd", b"x"), (1, "text"), (1, 12), (2**40, b"")])
def test_write_rejects_what_os_write_rejects(nbio: ModuleType, args: tuple[Any, Any]) -> None:
    theirs, ours = outcome(os.write, *args), outcome(nbio.write, *args)
    assert theirs[0] == "raise"
    assert ours == theirs


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.parametrize("length", [10, BUFFER + 10])
@pytest.mark.parametrize("handler_raises", [False, True])
def test_a_signal_during_the_syscall_runs_its_handler_then_retries_or_raises(
    nbio: ModuleType, length: int, handler_raises: bool
) -> None:
    # PEP 475, as os.read: EINTR runs the handlers; the read goes on unless one raised. The
    # read blocks (a blocking pipe, which unknot's own fds never are) until a child writes.
    class Stop(Exception):
        pass

    for read in (os.read, nbio.read):
        r, w = os.pipe()
        seen: list[int] = []

        def handler(signum: int, frame: object, seen: list[int] = seen) -> None:
            seen.append(signum)
            if handler_raises:
                raise Stop

        old = signal.signal(signal.SIGALRM, handler)
        child = subprocess.Popen(
            [sys.executable, "-c", "import os, time; time.sleep(0.5); os.write(1, b'late')"],
            stdout=w,
        )
        os.close(w)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            if handler_raises:
                with pytest.raises(Stop):
                    read(r, length)
            else:
                assert read(r, length) == b"late"
            assert seen == [signal.SIGALRM]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            child.wait(timeout=10)
            os.close(r)


def test_write_retries_after_a_signal(nbio: ModuleType) -> None:
    # A write blocked on a full blocking pipe, a signal, then a child drains the pipe.
    r, w = os.pipe()
    os.set_blocking(w, False)
    fill(w, size=4096)
    os.set_blocking(w, True)
    seen: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; time.sleep(0.5)\nwhile os.read(0, 65536): pass",
        ],
        stdin=r,
    )
    os.close(r)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        assert nbio.write(w, b"after the signal") == len(b"after the signal")
        assert seen == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(w)
        child.wait(timeout=10)


def test_the_sockets_use_it_exactly_in_the_compiled_build() -> None:
    from unknot import _sockio

    if unknot.compiled:
        from unknot import _nbio

        assert (_sockio._os_read, _sockio._os_write) == (_nbio.read, _nbio.write)
    else:
        assert (_sockio._os_read, _sockio._os_write) == (os.read, os.write)
