"""An fd number reused after a socket's fd was closed behind the socket's back (``os.close``
of its ``fileno()``, or a C library closing it): the hub keeps that socket's persistent record
for the number, and waits on whatever takes the number next must still work (a pipe in
``select`` or ``wait_readable``, a pidfd in ``Popen.wait``, a new socket); on every backend.

On the edge-triggered epoll hub the kernel drops a closed file from the epoll set without
telling anyone, so the stale record looks registered: these waits used to never wake.
"""

from __future__ import annotations

import errno
import os
import sys

import pytest

import unknot
import unknot.os as unknot_os
from unknot import select as uselect
from unknot import socket as usocket
from unknot import subprocess as usubprocess


def _move_to(fd: int, newfd: int) -> int:
    """``newfd`` moved to the (free) number ``fd``, if the kernel did not give it that one."""
    if newfd != fd:
        os.dup2(newfd, fd, inheritable=False)
        os.close(newfd)
    return fd


def _send_later(sock: usocket.socket, data: bytes) -> None:
    def send() -> None:
        unknot.sleep(0.02)
        sock.send(data)

    unknot.spawn(send)


def _close_behind() -> tuple[usocket.socket, int]:
    """A socket whose fiber waited in ``recv`` (so that its record is armed), then whose fd was
    closed with ``os.close`` behind its back: ``(socket, its old fd number)``. The caller
    detaches it at the end (its fd is closed already: nothing else gets closed)."""
    a, b = usocket.socketpair()
    with b:
        _send_later(b, b"x")
        assert a.recv(1) == b"x"
        fd = a.fileno()
        os.close(fd)
    return a, fd


def _detach(sock: usocket.socket) -> None:
    # (After the fds that reused its number are closed: detach closes nothing, and its
    # set_blocking on the number fails quietly.)
    sock.detach()


@pytest.mark.unknot
def test_select_on_pipe_reusing_closed_socket_fd(backend: str) -> None:
    a, fd = _close_behind()
    r, w = os.pipe()
    r = _move_to(fd, r)
    try:

        def write() -> None:
            unknot.sleep(0.02)
            os.write(w, b"y")

        unknot.spawn(write)
        with unknot.fail_after(2):
            ready = uselect.select([r], [], [], 5)[0]
        assert ready == [r]
        # Again, now that the number's record is a pipe's (and again after the pipe's close).
        assert os.read(r, 1) == b"y"
        unknot.spawn(write)
        with unknot.fail_after(2):
            assert uselect.select([r], [], [], 5)[0] == [r]
    finally:
        os.close(r)
        os.close(w)
        _detach(a)


@pytest.mark.unknot
def test_wait_readable_in_fiber_on_pipe_reusing_closed_socket_fd(backend: str) -> None:
    a, fd = _close_behind()
    r, w = os.pipe()
    r = _move_to(fd, r)
    try:

        def reader() -> bytes:
            unknot.wait_readable(r)
            return os.read(r, 1)

        with unknot.fail_after(2):
            f = unknot.spawn(reader)
            unknot.sleep(0.02)
            os.write(w, b"y")
            assert f.join() == b"y"
    finally:
        os.close(r)
        os.close(w)
        _detach(a)


@pytest.mark.unknot
@pytest.mark.skipif(unknot_os._pidfd_open is None, reason="no pidfds here")
def test_popen_wait_whose_pidfd_reuses_closed_socket_fd(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, fd = _close_behind()
    real = unknot_os._pidfd_open
    assert real is not None
    taken: list[int] = []

    def pidfd_open(pid: int, flags: int = 0) -> int:
        pidfd = _move_to(fd, real(pid, flags))
        taken.append(pidfd)
        return pidfd

    monkeypatch.setattr(unknot_os, "_pidfd_open", pidfd_open)
    try:
        p = usubprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.1)"])
        with unknot.fail_after(10):
            assert p.wait() == 0  # (no timeout: it waited for ever)
        assert taken == [fd]
    finally:
        _detach(a)


@pytest.mark.unknot
def test_new_socket_reusing_fd_waited_on_with_select(backend: str) -> None:
    a, fd = _close_behind()
    c0, d = usocket.socketpair()
    c = usocket.socket(c0.family, c0.type, c0.proto, _move_to(fd, c0.detach()))
    try:
        _send_later(d, b"z")
        with unknot.fail_after(2):
            assert uselect.select([c], [], [], 5)[0] == [c]
            assert c.recv(1) == b"z"
            # Its own record (made at its first recv) waits as any socket's.
            _send_later(d, b"w")
            assert c.recv(1) == b"w"
    finally:
        c.close()
        d.close()
        _detach(a)


@pytest.mark.unknot
def test_new_socket_reusing_fd_while_old_fiber_waits(backend: str) -> None:
    """The old socket's fiber was waiting in ``recv`` when its fd was closed behind its back:
    the new socket on the number takes over (its recv in a fiber works), and the old fiber is
    woken with EBADF, as by a close."""
    if backend == "select":
        # (select(2) fails with EBADF for a closed fd in its sets, the whole loop with it, as
        # the stdlib's SelectSelector does for any closed fd left registered: not a reuse.)
        pytest.skip("select(2) cannot wait on a closed fd")
    a, b = usocket.socketpair()
    errors: list[int] = []

    def old_reader() -> None:
        try:
            a.recv(1)
        except OSError as e:
            errors.append(e.errno or 0)

    old = unknot.spawn(old_reader)
    unknot.sleep(0.01)  # parked in recv, its record armed
    fd = a.fileno()
    os.close(fd)
    b.close()
    unknot.sleep(0.01)
    c0, d = usocket.socketpair()
    c = usocket.socket(c0.family, c0.type, c0.proto, _move_to(fd, c0.detach()))
    try:
        with unknot.fail_after(2):

            def new_reader() -> bytes:
                return c.recv(1)

            f = unknot.spawn(new_reader)
            _send_later(d, b"n")
            assert f.join() == b"n"
            old.join()
        assert errors == [errno.EBADF]
    finally:
        c.close()
        d.close()
        _detach(a)


@pytest.mark.unknot
def test_select_on_live_socket_keeps_its_record(backend: str) -> None:
    """The check a raw wait makes on a socket's record leaves a live socket's record alone:
    select, then recv on the hot path, again and again; a dup'ed fd (``fromfd``) and a
    detached one keep working too."""
    a, b = usocket.socketpair()
    with a, b:
        _send_later(b, b"1")
        assert a.recv(1) == b"1"
        rec = a._state.rec
        assert rec is not None
        for i in range(3):
            _send_later(b, b"%d" % i)
            with unknot.fail_after(2):
                assert uselect.select([a], [], [], 5)[0] == [a]
                assert a.recv(1) == b"%d" % i
            assert a._state.rec is rec
        a2 = usocket.fromfd(a.fileno(), a.family, a.type)
        with a2:
            _send_later(b, b"d")
            with unknot.fail_after(2):
                assert uselect.select([a2], [], [], 5)[0] == [a2]
                assert a2.recv(1) == b"d"
                _send_later(b, b"e")
                assert a.recv(1) == b"e"
        fd = a.detach()
        a3 = usocket.socket(b.family, b.type, b.proto, fd)
        with a3:
            _send_later(b, b"f")
            with unknot.fail_after(2):
                assert uselect.select([a3], [], [], 5)[0] == [a3]
                assert a3.recv(1) == b"f"


@pytest.mark.unknot
def test_number_taken_by_asyncio_is_not_re_registered_for_the_fibers(backend: str) -> None:
    """The stale record's number now watched by asyncio (a pipe's ``add_reader``, which drops the
    idle record): a fiber's wait on it is refused, as on any fd asyncio watches, and asyncio's
    own registration is left as it was (level-triggered)."""
    import asyncio

    a, fd = _close_behind()
    r, w = os.pipe()
    r = _move_to(fd, r)
    loop = asyncio.get_running_loop()
    seen: list[bytes] = []
    loop.add_reader(r, lambda: seen.append(os.read(r, 1)))
    try:
        with unknot.fail_after(2), pytest.raises(RuntimeError):
            unknot.wait_readable(r)
        # Level-triggered, as asyncio asked: the reader reads one byte per call and is called
        # again while bytes are left (edge-triggered, one call would come for both bytes).
        os.write(w, b"12")
        with unknot.move_on_after(1):
            while len(seen) < 2:
                unknot.sleep(0.005)
        assert seen == [b"1", b"2"]
    finally:
        loop.remove_reader(r)
        os.close(r)
        os.close(w)
        _detach(a)
