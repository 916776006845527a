"""Child processes for benchmarks: pinned to one CPU, bounded in time, never left behind.

Every child runs in its own session (so the harness can signal its whole process group) and, on
Linux, asks the kernel to SIGKILL it if the harness dies (``PR_SET_PDEATHSIG``), which covers the
one case ``finally`` cannot: the harness being SIGKILLed. ``install_exit_signals`` turns SIGTERM
and SIGHUP into ``SystemExit`` so that cleanup code runs for them as it does for Ctrl-C.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_live: set[Child] = set()


def _die_with_parent() -> None:
    """Run in the child between fork and exec: be killed when the harness goes away."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` prefixed with ``taskset -c CPU``, or unchanged when ``cpu`` is None."""
    if cpu is None:
        return list(argv)
    if shutil.which("taskset") is None:
        raise RuntimeError("taskset is not installed (util-linux); use --no-pin to run unpinned")
    return ["taskset", "-c", str(cpu), *argv]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Child:
    """A long-running child (a server) that is stopped for certain, by ``stop`` or at exit."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _live.add(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self, limit: int = 4000) -> str:
        """What the child wrote to stderr so far (its last ``limit`` characters)."""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        return text[-limit:].strip()

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it is still there after
        ``grace`` seconds. Safe to call twice."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(grace)
        _live.discard(self)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stderr.close()


def wait_for_port(host: str, port: int, child: Child, timeout: float = 15.0) -> None:
    """Return once ``host:port`` accepts a connection. Raise ``ChildExited`` if the child dies
    first and ``TimeoutError`` if ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise ChildExited(child.proc.returncode, child.stderr_text())
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s")
        time.sleep(0.05)


class ChildExited(RuntimeError):
    """A child process ended while it was expected to keep running."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"exited with status {returncode}: {stderr or '(no stderr)'}")
        self.returncode = returncode
        self.stderr = stderr


def run(
    argv: Sequence[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a child to completion (in ``env``, default this process's environment), capturing
    its output; kill it if ``timeout`` passes or the harness is interrupted
    (``subprocess.TimeoutExpired`` is then raised as usual)."""
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_die_with_parent,
    )


def _stop_all() -> None:
    for child in list(_live):
        child.stop(grace=1.0)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_exit_signals() -> None:
    """Make SIGTERM and SIGHUP unwind the stack like Ctrl-C does, so ``finally`` blocks run."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


atexit.register(_stop_all)
