"""A Python console inside a running program, over a loopback or Unix socket (opt in).

``unknot.backdoor.serve()`` listens on a socket; each client that connects (``nc 127.0.0.1
PORT``, ``socat - UNIX-CONNECT:PATH``) gets an interactive console running in a fiber of the
program's own hub, so what it types sees the live program: ``dump()`` prints every fiber,
``stats()`` the hub's statistics. Anyone who can connect can run any code as the program, so it
listens on loopback or a Unix socket (mode 0600) only, unless told otherwise.
"""

from __future__ import annotations

import code
import contextlib
import errno
import ipaddress
import os
import stat
import sys
import threading
from typing import Any

from greenlet import getcurrent

from . import socket as usocket
from ._tcp import TCPServer

__all__ = ["BackdoorServer", "serve"]

#: The longest input line a session accepts; a longer one ends the session.
MAX_LINE = 1 << 20


class _Quit:
    """``exit``/``quit`` in the console: end this session (the builtins would close stdin)."""

    def __repr__(self) -> str:
        return "Use exit() or Ctrl-D (i.e. EOF) to leave the console"

    def __call__(self, code: Any = None) -> None:
        raise SystemExit(code)


class _Writer:
    """A text stream that sends to the client (the console's stdout and stderr)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def write(self, text: str) -> int:
        self._conn.sendall(text.replace("\n", "\r\n").encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Routed:
    """Stands for ``sys.stdout`` or ``sys.stderr`` while backdoor commands run: what a session
    fiber running a command writes goes to its client, what any other code writes goes to the
    stream that was there (gevent's backdoor swaps the streams per greenlet the same way)."""

    def __init__(self, original: Any) -> None:
        self._original = original

    def _target(self) -> Any:
        writer = _clients.get(getcurrent())
        return writer if writer is not None else self._original

    def write(self, text: str) -> int:
        target = self._target()
        if target is None:  # (no stream at all: pythonw)
            return len(text)
        written: int = target.write(text)
        return written

    def flush(self) -> None:
        target = self._target()
        if target is not None:
            target.flush()

    def isatty(self) -> bool:
        target = self._target()
        return bool(target is not None and target.isatty())

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer...
        return getattr(self._target(), name)


def _routed_displayhook(value: object) -> None:
    """``sys.displayhook`` while backdoor commands run: a session echoes its results to its
    client (with the default hook, whatever the program installed); others are unchanged."""
    if getcurrent() in _clients:
        sys.__displayhook__(value)  # (writes to sys.stdout, routed to the client)
    elif _saved is not None:
        _saved[2](value)


#: The session fibers running a command now -> the writer to their client.
_clients: dict[Any, _Writer] = {}
#: ``sys.stdout``, ``sys.stderr``, ``sys.displayhook`` before the first of them began, and
#: what was installed in their place; None while no command runs.
_saved: tuple[Any, Any, Any] | None = None
_installed: tuple[Any, Any, Any] | None = None
_routes_lock = threading.Lock()  # (hubs of several threads may serve backdoors)


def _route_to(writer: _Writer) -> None:
    """Send the current fiber's output to ``writer`` until `_unroute`."""
    global _saved, _installed
    with _routes_lock:
        if not _clients:
            _saved = (sys.stdout, sys.stderr, sys.displayhook)
            _installed = (_Routed(sys.stdout), _Routed(sys.stderr), _routed_displayhook)
            sys.stdout, sys.stderr, sys.displayhook = _installed
        _clients[getcurrent()] = writer


def _unroute() -> None:
    """The current fiber's command ended; once none runs, put the streams back (each one that
    is still ours: one the program replaced meanwhile is left as it is)."""
    global _saved, _installed
    with _routes_lock:
        _clients.pop(getcurrent(), None)
        if _clients or _saved is None or _installed is None:
            return
        out, err, hook = _saved
        if sys.stdout is _installed[0]:
            sys.stdout = out
        if sys.stderr is _installed[1]:
            sys.stderr = err
        if sys.displayhook is _installed[2]:
            sys.displayhook = hook
        _saved = _installed = None


class _Console(code.InteractiveConsole):
    def __init__(self, conn: Any, namespace: dict[str, Any]) -> None:
        super().__init__(namespace, filename="<backdoor>")
        self._conn = conn
        self._out = _Writer(conn)
        self._buffer = b""

    def raw_input(self, prompt: str = "") -> str:
        self.write(prompt)
        while b"\n" not in self._buffer:
            data = self._conn.recv(4096)
            if not data:
                raise EOFError
            self._buffer += data
            if len(self._buffer) > MAX_LINE:
                self.write("\nline too long (over 1 MiB): closing the session\n")
                raise EOFError
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def write(self, data: str) -> None:
        self._out.write(data)

    def runcode(self, code_obj: Any) -> None:
        # What this fiber prints while the code runs, and the results echoed, go to the client;
        # other fibers' output meanwhile (the code may block) goes where it went.
        _route_to(self._out)
        try:
            super().runcode(code_obj)
        finally:
            _unroute()


def _check_address(address: Any, allow_remote: bool) -> None:
    if isinstance(address, (str, bytes, os.PathLike)):
        return
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError(
            f"backdoor address must be (host, port) or a Unix socket path, got {address!r}"
        )
    host = address[0]
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(
            f"backdoor refuses to listen on {host!r}: whoever connects can run any code in this "
            "process; use a loopback address or a Unix socket, or pass allow_remote=True"
        )


class BackdoorServer:
    """A running backdoor (see `serve`): its `address`; `stop` ends it and its sessions."""

    def __init__(
        self, address: Any, namespace: dict[str, Any], banner: str | None, allow_remote: bool
    ) -> None:
        _check_address(address, allow_remote)
        self._path: str | None = None
        if isinstance(address, (str, bytes, os.PathLike)):
            path = os.fsdecode(address)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # a stale socket left by an earlier run
            sock = usocket.socket(usocket.AF_UNIX, usocket.SOCK_STREAM)
            try:
                sock.bind(path)
                os.chmod(path, 0o600)
                sock.listen(16)
            except BaseException:
                sock.close()
                raise
            self._path = path
        else:
            host, port = address[0], address[1]
            family = usocket.AF_INET6 if ":" in host else usocket.AF_INET
            sock = usocket.create_server((host, port), family=family, backlog=16)
        self._namespace = namespace
        self._banner = banner
        self._server = TCPServer(self._session, sock=sock, nodelay=False)
        self._server.start()

    @property
    def address(self) -> Any:
        """Where it listens: ``(host, port)`` or the Unix socket's path."""
        return self._path if self._path is not None else self._server.address

    def _session(self, conn: Any, _addr: Any) -> None:
        namespace = dict(self._namespace)
        console = _Console(conn, namespace)
        banner = self._banner
        if banner is None:
            banner = (
                f"unknot backdoor, Python {sys.version.split()[0]}, pid {os.getpid()}. "
                "dump(), stats(), fibers(); exit() or Ctrl-D leaves."
            )
        try:
            console.interact(banner=banner, exitmsg="")
        except SystemExit:
            pass
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.EBADF):
                raise

    def stop(self) -> None:
        """Stop listening and end the open sessions."""
        self._server.stop(grace=0)
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)

    def __enter__(self) -> BackdoorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<BackdoorServer {self.address!r}>"


def serve(
    address: Any = ("127.0.0.1", 0),
    locals: dict[str, Any] | None = None,  # noqa: A002 - the name code.InteractiveConsole uses
    *,
    banner: str | None = None,
    allow_remote: bool = False,
) -> BackdoorServer:
    """Serve an interactive Python console on ``address``, in the background; call from a fiber.

    ``address``: ``(host, port)`` (port 0 picks one: read `BackdoorServer.address`) or a Unix
    socket path (created mode 0600; a stale socket file there is replaced). A host that is not a
    loopback address raises `ValueError` unless ``allow_remote=True``. Each client gets its own
    console, running in a fiber of the calling fiber's hub, with ``dump``, ``stats``,
    ``fibers`` and ``unknot`` defined, plus ``locals`` (a fresh copy of the dict per client;
    the objects in it are shared). Stop it with `BackdoorServer.stop` (or a ``with`` block).
    """
    import unknot

    namespace: dict[str, Any] = {
        "__name__": "__backdoor__",
        "dump": unknot.dump,
        "stats": unknot.stats,
        "fibers": unknot.fibers,
        "unknot": unknot,
        "exit": _Quit(),
        "quit": _Quit(),
    }
    if locals:
        namespace.update(locals)
    return BackdoorServer(address, namespace, banner, allow_remote)
