"""``recvmsg_into`` and ``sendmsg`` take iterables, which the C methods consume at their first
try even when the syscall then says EAGAIN. A cooperative socket retries after the wait: with
the same iterator, now empty, it would receive into no buffer or send an empty message, and the
datagram (or the passed fd) would be lost. CPython's own test_socket caught this under the patch
(``RecvmsgIntoUDP6Test.testRecvmsgIntoGenerator``, flaky: it fails only when the datagram
arrives after the first try)."""

from __future__ import annotations

import array
import os
import socket as _stdlib

import pytest

import unknot
from unknot import socket

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not hasattr(_stdlib.socket, "sendmsg"), reason="needs sendmsg"),
]


def test_recvmsg_into_a_generator_of_buffers_after_a_wait() -> None:
    got = []

    def main() -> None:
        with (
            socket.socket(_stdlib.AF_INET, _stdlib.SOCK_DGRAM) as server,
            socket.socket(_stdlib.AF_INET, _stdlib.SOCK_DGRAM) as client,
        ):
            server.bind(("127.0.0.1", 0))

            def send_later() -> None:
                unknot.sleep(0.05)  # after the receiver's first try
                client.sendto(b"a datagram", server.getsockname())

            unknot.spawn(send_later)
            buf = bytearray(10)
            nbytes, ancdata, flags, addr = server.recvmsg_into(b for b in [buf])
            got.append((nbytes, bytes(buf), ancdata))

    unknot.run(main)
    assert got == [(10, b"a datagram", [])]


def test_sendmsg_of_generators_after_a_wait_sends_the_data_and_the_fd() -> None:
    got = []

    def main() -> None:
        a, b = socket.socketpair(_stdlib.AF_UNIX, _stdlib.SOCK_DGRAM)
        r, w = os.pipe()
        with a, b:
            queued = 0
            while True:  # fill b's queue: a's next send must wait
                try:
                    _stdlib.socket.send(a, b"filler", _stdlib.MSG_DONTWAIT)
                    queued += 1
                except BlockingIOError:
                    break

            def drain_later() -> None:
                unknot.sleep(0.05)  # after the sender's first try
                for _ in range(queued):
                    assert b.recv(100) == b"filler"
                msg, ancdata, _flags, _addr = b.recvmsg(100, _stdlib.CMSG_SPACE(4))
                fds = [
                    fd
                    for level, kind, data in ancdata
                    if (level, kind) == (_stdlib.SOL_SOCKET, _stdlib.SCM_RIGHTS)
                    for fd in array.array("i", data)
                ]
                got.append((msg, len(fds)))
                for fd in fds:
                    os.close(fd)

            drainer = unknot.spawn(drain_later)
            fds = array.array("i", [r])
            sent = a.sendmsg(
                (x for x in [b"the ", b"tail"]),
                (c for c in [(_stdlib.SOL_SOCKET, _stdlib.SCM_RIGHTS, fds)]),
            )
            got.append(sent)
            drainer.join()
        os.close(r)
        os.close(w)

    unknot.run(main)
    assert got == [8, (b"the tail", 1)]


def test_what_is_not_iterable_is_refused_by_the_c_method_in_its_own_words() -> None:
    def main() -> None:
        with socket.socket(_stdlib.AF_INET, _stdlib.SOCK_DGRAM) as s:
            with pytest.raises(TypeError, match="recvmsg_into"):
                s.recvmsg_into(42)
            with pytest.raises(TypeError, match="sendmsg"):
                s.sendmsg(42)

    unknot.run(main)
