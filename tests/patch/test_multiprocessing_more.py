"""multiprocessing under `unknot.patch()`, continued (see test_multiprocessing_review.py):
``ForkAwareLocal`` registered for the fork once per object, not once per fiber; the stdlib's
sockets picklable by ``ForkingPickler`` after `unpatch` when ``multiprocessing.reduction`` was
imported while patched.

Each test runs a script in a fresh interpreter (patching is process-wide).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.patch.test_multiprocessing_review import run_script

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX multiprocessing"),
]


def test_fork_aware_local_is_registered_once_not_per_fiber(tmp_path: Path) -> None:
    # Formerly the stdlib's __init__, run in each fiber that used the local (threading.local
    # is fiber-local while patched), added a registry entry each time: 201 here.
    words = run_script(
        tmp_path,
        """
        import os, signal
        import unknot

        signal.alarm(40)
        unknot.patch()
        import multiprocessing.util as util

        def entries(obj):
            return sum(1 for (_, i, _) in list(util._afterfork_registry) if i == id(obj))

        tls = util.ForkAwareLocal()

        def use(n):
            tls.n = n               # (the fiber's own namespace: __init__ runs for it)
            unknot.sleep(0)
            assert tls.n == n

        def main():
            with unknot.TaskGroup() as tg:
                for n in range(200):
                    tg.spawn(use, n)
            print(entries(tls))
            tls.n = -1

            # Emptied in a forked child all the same (the forking fiber's namespace), when
            # multiprocessing runs its after-fork callbacks (as a forked Process does first).
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                util._run_after_forkers()
                os.write(w, b"empty" if "n" not in tls.__dict__ else b"kept")
                os._exit(0)
            os.close(w)
            os.waitpid(pid, 0)
            print(os.read(r, 10).decode(), tls.n)

        unknot.run(main)
        """,
    )
    assert words == ["1", "empty", "-1"]


def test_stdlib_socket_pickles_after_unpatch(tmp_path: Path) -> None:
    # Imported while patched, multiprocessing.reduction registered its socket reducer for
    # unknot's class only; formerly, after unpatch (ForkingPickler.__init__ the stdlib's again),
    # ``TypeError: cannot pickle 'socket' object``.
    words = run_script(
        tmp_path,
        """
        import signal
        import unknot

        signal.alarm(40)
        unknot.patch()
        import multiprocessing.reduction as reduction
        unknot.unpatch()

        import socket
        s = socket.socket()
        print(type(s) is socket.socket, socket.socket.__module__)
        data = reduction.ForkingPickler.dumps(s)
        s2 = reduction.ForkingPickler.loads(data)
        print(type(s2).__module__, s2.family == s.family, s2.fileno() != s.fileno())
        s2.close()
        s.close()
        """,
    )
    assert words == ["True", "socket", "socket", "True", "True"]
