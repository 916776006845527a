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

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def write(self, text: str) -> int:
        self._conn.sendall(text.replace("\n", "\r\n").encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


class _Reader:
    """A text stream that reads from the client (the console's stdin while a command runs:
    ``input()``, ``help()``, ``pdb``), line by line as from a terminal; ``""`` at the end of
    the client's input."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, console: _Console) -> None:
        self._console = console
        self._pending = ""  # read from the client, not yet returned (read(size))

    def _more(self) -> bool:
        line = self._console._read_line()
        self._pending += line
        return bool(line)

    def readline(self, size: int | None = -1) -> str:
        if not self._pending:
            self._more()
        end = self._pending.find("\n") + 1 or len(self._pending)
        if size is not None and 0 <= size < end:
            end = size
        line, self._pending = self._pending[:end], self._pending[end:]
        return line

    def read(self, size: int | None = -1) -> str:
        if size is None or size < 0:
            while self._more():
                pass
            size = len(self._pending)
        elif not self._pending:
            self._more()
        text, self._pending = self._pending[:size], self._pending[size:]
        return text

    def readlines(self, hint: int = -1) -> list[str]:
        lines: list[str] = []
        total = 0
        while hint is None or hint <= 0 or total < hint:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
        return lines

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False


class _Streams:
    """A session's streams while its command runs: ``stdout`` and ``stderr`` (one writer)
    and ``stdin``."""

    __slots__ = ("stdin", "stdout", "stderr")

    def __init__(self, writer: _Writer, reader: _Reader) -> None:
        self.stdout = self.stderr = writer
        self.stdin = reader


class _Routed:
    """Stands for ``sys.stdout``, ``sys.stderr`` or ``sys.stdin`` while backdoor commands run:
    what a session fiber running a command writes goes to its client (and what it reads comes
    from its client), what any other code does goes to the stream that was there (gevent's
    backdoor swaps the streams per greenlet the same way)."""

    def __init__(self, original: Any, name: str) -> None:
        self._original = original
        self._name = name  # which of the session's `_Streams`

    def _target(self) -> Any:
        streams = _clients.get(getcurrent())
        return getattr(streams, self._name) if streams is not None else self._original

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

    def readline(self, size: int | None = -1) -> str:
        line: str = self._target().readline(size)
        return line

    def __iter__(self) -> _Routed:
        return self

    def __next__(self) -> str:
        line: str = next(self._target())
        return line

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, buffer, read...
        return getattr(self._target(), name)


def _routed_displayhook(value: object) -> None:
    """``sys.displayhook`` while backdoor commands run: a session echoes its results to its
    client (with the default hook, whatever the program installed); others are unchanged."""
    if getcurrent() in _clients:
        sys.__displayhook__(value)  # (writes to sys.stdout, routed to the client)
    elif _saved is not None:
        _saved[2](value)


#: The session fibers running a command now -> the streams to and from their client.
_clients: dict[Any, _Streams] = {}
#: ``sys.stdout``, ``sys.stderr``, ``sys.displayhook``, ``sys.stdin`` before the first of
#: them began, and what was installed in their place; None while no command runs.
_saved: tuple[Any, Any, Any, Any] | None = None
_installed: tuple[Any, Any, Any, Any] | None = None
_routes_lock = threading.Lock()  # (hubs of several threads may serve backdoors)


def _route_to(streams: _Streams) -> None:
    """Send the current fiber's output to its client, and read its input from there, until
    `_unroute`."""
    global _saved, _installed
    with _routes_lock:
        if not _clients:
            _saved = (sys.stdout, sys.stderr, sys.displayhook, sys.stdin)
            _installed = (
                _Routed(sys.stdout, "stdout"),
                _Routed(sys.stderr, "stderr"),
                _routed_displayhook,
                _Routed(sys.stdin, "stdin"),
            )
            sys.stdout, sys.stderr, sys.displayhook, sys.stdin = _installed
        _clients[getcurrent()] = streams


def _unroute() -> None:
    """The current fiber's command ended; once none runs, put the streams back (each one that
    is still ours: one the program replaced meanwhile is left as it is)."""
    global _saved, _installed
    with _routes_lock:
        _clients.pop(getcurrent(), None)
        if _clients or _saved is None or _installed is None:
            return
        out, err, hook, stdin = _saved
        if sys.stdout is _installed[0]:
            sys.stdout = out
        if sys.stderr is _installed[1]:
            sys.stderr = err
        if sys.displayhook is _installed[2]:
            sys.displayhook = hook
        if sys.stdin is _installed[3]:
            sys.stdin = stdin
        _saved = _installed = None


class _Console(code.InteractiveConsole):
    def __init__(self, conn: Any, namespace: dict[str, Any]) -> None:
        super().__init__(namespace, filename="<backdoor>")
        self._conn = conn
        self._out = _Writer(conn)
        self._streams = _Streams(self._out, _Reader(self))
        self._received = b""  # from the client, not yet read as lines
        self._eof = False  # the client's input ended (or the session must end)
        self._flushed = False  # an unfinished statement was completed at the end of input

    def _read_line(self) -> str:
        """The client's next line, with its ``"\n"`` (without it: the last one, unterminated),
        or ``""`` at the end of its input. A line over `MAX_LINE` ends the input."""
        while b"\n" not in self._received and not self._eof:
            data = self._conn.recv(4096)
            if not data:
                self._eof = True
                break
            self._received += data
            if len(self._received) > MAX_LINE:
                self._out.write("\nline too long (over 1 MiB): closing the session\n")
                self._received = b""
                self._eof = True
        if b"\n" in self._received:
            line, _, self._received = self._received.partition(b"\n")
            line += b"\n"
        else:  # the end of input: what is left is its last line (unterminated)
            line, self._received = self._received, b""
        if line.endswith(b"\r\n"):
            line = line[:-2] + b"\n"
        return line.decode("utf-8", "replace")

    def raw_input(self, prompt: str = "") -> str:
        self.write(prompt)
        line = self._streams.stdin.readline()  # (after what a command left unread there)
        if not line:
            if self.buffer and not self._flushed:
                # An unfinished statement (a block) at the end of input: end it, as a blank
                # line would, so that it runs rather than being dropped.
                self._flushed = True
                return ""
            raise EOFError
        return line.rstrip("\n").rstrip("\r")

    def write(self, data: str) -> None:
        self._out.write(data)

    def runcode(self, code_obj: Any) -> None:
        # What this fiber prints while the code runs, and the results echoed, go to the client,
        # and what it reads (input()) comes from there; other fibers' output meanwhile (the
        # code may block) goes where it went.
        _route_to(self._streams)
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
        loopback = _ipv4_shorthand_is_loopback(host)
    if not loopback and not allow_remote:
        raise ValueError(
            f"backdoor refuses to listen on {host!r}: whoever connects can run any code in this "
            "process; use a loopback address or a Unix socket, or pass allow_remote=True"
        )


def _ipv4_shorthand_is_loopback(host: Any) -> bool:
    """Whether ``host`` is an IPv4 address in a shorthand form that ``bind`` accepts and
    `ipaddress` does not (``127.1``, ``0x7f.1``) naming a loopback address (127.0.0.0/8)."""
    try:
        return usocket.inet_aton(host)[0] == 127
    except (OSError, TypeError, ValueError):
        return False


def _remove_stale_socket(path: str) -> None:
    """Remove the socket file at ``path`` if nobody listens there any more (left by a run that
    ended without removing it); `OSError` (``EADDRINUSE``) if a server listens there, or may:
    it is not taken over."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # (nothing there, or not a socket: bind says what is wrong)
    except FileNotFoundError:
        return
    probe = usocket.socket(usocket.AF_UNIX, usocket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except FileNotFoundError:
        return  # removed meanwhile
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: nobody listens
        return
    except OSError as e:  # (a full backlog, a timeout, no permission...: perhaps alive)
        raise OSError(
            errno.EADDRINUSE,
            f"backdoor socket {path!r} exists and could not be checked ({e}): "
            "not replaced; remove it if no program listens there",
        ) from e
    finally:
        probe.close()
    raise OSError(
        errno.EADDRINUSE, f"a server listens on the backdoor socket {path!r}: not replaced"
    )


class BackdoorServer:
    """A running backdoor (see `serve`): its `address`; `stop` ends it and its sessions."""

    def __init__(
        self, address: Any, namespace: dict[str, Any], banner: str | None, allow_remote: bool
    ) -> None:
        _check_address(address, allow_remote)
        self._path: str | None = None
        self._inode: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        if isinstance(address, (str, bytes, os.PathLike)):
            path = os.fsdecode(address)
            # A name in Linux's abstract namespace (a leading NUL) has no file: nothing stale to
            # remove, no mode to set (any local user may connect), nothing to unlink at the end.
            abstract = path.startswith("\0")
            if not abstract:
                _remove_stale_socket(path)
            sock = usocket.socket(usocket.AF_UNIX, usocket.SOCK_STREAM)
            try:
                sock.bind(path)
                if not abstract:
                    os.chmod(path, 0o600)
                    st = os.stat(path)
                sock.listen(16)
            except BaseException:
                sock.close()
                raise
            if not abstract:
                self._path = path
                self._inode = (st.st_dev, st.st_ino)
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
        """Stop listening and end the open sessions. A Unix socket's file is removed if it is
        still this server's (not one another server has put at the same path since)."""
        self._server.stop(grace=0)
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(self._path)
                if (st.st_dev, st.st_ino) == self._inode:
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
    socket path (created mode 0600; a stale socket file there, one nobody listens on, is
    replaced; one where a server listens raises `OSError` ``EADDRINUSE``). A host that is not a
    loopback address raises `ValueError` unless ``allow_remote=True``. Each client gets its own
    console, running in a fiber of the calling fiber's hub, with ``dump``, ``stats``,
    ``fibers`` and ``unknot`` defined, plus ``locals`` (a fresh copy of the dict per client;
    the objects in it are shared). While a command runs, what it prints goes to its client and
    what it reads from ``sys.stdin`` (``input()``, ``help()``, ``pdb``) comes from its client;
    other fibers keep the program's streams. A last line the client sends without a newline
    before the end of its input still runs. Stop it with `BackdoorServer.stop` (or a ``with``
    block).
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
