"""Cooperative TLS: a drop-in mirror of the stdlib `ssl` module.

Every name of the stdlib module is here. `SSLContext.wrap_socket` returns an `SSLSocket` whose
handshake, ``recv``/``read``/``send``/``write``/``sendall``/``sendfile``, ``makefile`` and
``unwrap`` suspend only the calling fiber. Outside fibers it blocks the thread like the stdlib's.
Certificate checks, errors, ``server_hostname``/SNI, ``suppress_ragged_eofs`` and the socket
timeout mean exactly what they mean in the stdlib: a timed-out call raises `TimeoutError` ("The
read operation timed out", "The write operation timed out", "The handshake operation timed
out", which the C module prefixes with its source line), and in non-blocking mode
(``settimeout(0)``) calls raise `SSLWantReadError` / `SSLWantWriteError`.

How: our `SSLSocket` derives from both the stdlib `ssl.SSLSocket` and the cooperative
`unknot.socket.socket`. The latter keeps the OS socket non-blocking and the C-level socket
timeout at zero (the timeout the user sets is only emulated), so the C `_ssl` object never blocks:
when OpenSSL needs the network it raises `SSLWantReadError` or `SSLWantWriteError`, having first
hit EAGAIN. The few stdlib methods that drive the C object (``read``, ``write``, ``send``,
``do_handshake``, ``unwrap``) are wrapped in one loop that, on those errors, waits for the socket
to become readable or writable (cooperatively in a fiber, with ``poll`` outside) and retries,
until the emulated timeout runs out. Everything else (``recv``, ``recv_into``, ``sendall``,
``sendfile``, ``makefile``, ``connect``, ``accept``, ``getpeercert``...) is the stdlib's own code,
which goes through those methods, or, once the socket is unwrapped, through the cooperative plain
socket. Closing the socket from another fiber wakes a waiting fiber with `OSError`.

Cancellation (`unknot.move_on_after`, `CancelScope`) interrupts a waiting call the way a timeout
does: a cancelled read leaves the connection usable; a cancelled write, as after a stdlib write
timeout, must be retried with the same data before other data is written.

`create_default_context`, `_create_unverified_context`, `get_server_certificate` (and, on Python
versions that still have it, the deprecated module-level `wrap_socket`) are the stdlib's own code
run against this module's names, so they create our `SSLContext` and connect cooperatively.
`SSLContext` objects made by the stdlib module can be used too: `wrap` wraps a socket in our
`SSLSocket` with any context.
"""

from __future__ import annotations

import os
import ssl as _stdlib
import time as _time
from ssl import *  # noqa: F403 - this module mirrors the whole stdlib module
from ssl import SSLWantReadError as _WantRead
from ssl import SSLWantWriteError as _WantWrite
from typing import TYPE_CHECKING, Any

from . import socket as _usocket
from ._mirror import rebind
from ._sockio import SocketState as _SocketState

# The stdlib module's private names too (`_create_default_https_context`, `_ASN1Object`...): other
# modules use some, and the stdlib functions rebound below look them up here.
for _name in dir(_stdlib):
    if _name.startswith("_") and not _name.startswith("__"):
        globals().setdefault(_name, getattr(_stdlib, _name))
del _name

# The stdlib module's socket names, as the cooperative versions.
socket = _usocket.socket
create_connection = _usocket.create_connection
_cede = _usocket._cede

# Messages of the TimeoutError raised when the socket timeout runs out, as the C module words
# them: (while waiting to read, while waiting to write), per operation.
_READ_TIMEOUT = ("The read operation timed out",) * 2
_WRITE_TIMEOUT = ("The write operation timed out",) * 2
_HANDSHAKE_TIMEOUT = ("The handshake operation timed out",) * 2
_SHUTDOWN_TIMEOUT = (_READ_TIMEOUT[0], _WRITE_TIMEOUT[0])

_NOT_GIVEN: Any = object()


class SSLSocket(_stdlib.SSLSocket, _usocket.socket):
    """A TLS socket (`ssl.SSLSocket`) whose blocking operations suspend only the calling fiber.

    Instances come from `SSLContext.wrap_socket` (or `wrap`). It is both an `ssl.SSLSocket` and
    an `unknot.socket.socket`; see the module docstring for how it works.
    """

    if TYPE_CHECKING:  # from unknot.socket.socket and the stdlib SSLSocket
        _state: _SocketState
        _connected: bool
        do_handshake_on_connect: bool
        suppress_ragged_eofs: bool

        def _wait(self, write: bool, deadline: float | None) -> None: ...
        def _check_connected(self) -> None: ...

    @classmethod
    def _create(
        cls,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        context: Any = None,
        session: Any = None,
    ) -> SSLSocket:
        # The stdlib's constructor, with the eager handshake moved here so that whatever
        # interrupts it (a timeout, an error, or a cancellation) closes the new socket.
        self = super()._create(  # type: ignore[misc]
            sock=sock,
            server_side=server_side,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            context=context,
            session=session,
        )
        # The stdlib's constructor adopts ``sock``'s fd, then detaches ``sock``, whose `detach`
        # makes the fd of a blocking socket blocking again (for the fd's next owner, as the
        # stdlib's): this socket is that next owner, and unknot's fds stay non-blocking.
        if self.fileno() >= 0:
            os.set_blocking(self.fileno(), False)
        self.do_handshake_on_connect = do_handshake_on_connect
        if do_handshake_on_connect and self._connected:
            try:
                if self._state.timeout == 0.0:
                    raise ValueError(
                        "do_handshake_on_connect should not be specified for non-blocking sockets"
                    )
                self.do_handshake()
            except BaseException:
                self.close()
                raise
        return self

    def _ssl_io(self, messages: tuple[str, str], timeout: Any, op: Any, *args: Any) -> Any:
        """Call ``op(*args)`` until it stops asking for the network; wait between tries.

        ``op`` is a stdlib method driving the C object: on `SSLWantReadError` (or
        `SSLWantWriteError`) wait until the socket is readable (writable) and call it again.
        The socket timeout bounds the whole call; it raises `TimeoutError` with the stdlib's
        message for the operation (``messages``: when waiting to read, to write).
        """
        if timeout is _NOT_GIVEN:
            timeout = self._state.timeout
        if timeout != 0.0:
            _usocket._entry_here()  # a cancellation point, and the fairness rule
        deadline: Any = _NOT_GIVEN
        while True:
            try:
                return op(*args)
            except _WantRead:
                if timeout == 0.0:
                    raise
                write = False
            except _WantWrite:
                if timeout == 0.0:
                    raise
                write = True
            if deadline is _NOT_GIVEN:
                deadline = None if timeout is None else _time.monotonic() + timeout
            try:
                self._wait(write, deadline)
            except TimeoutError:
                raise TimeoutError(messages[write]) from None

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """Read up to ``len`` bytes (into ``buffer`` if given); b'' (or 0) at EOF."""
        return self._ssl_io(_READ_TIMEOUT, _NOT_GIVEN, super().read, len, buffer)

    def write(self, data: Any) -> int:
        """Write ``data`` to the TLS channel; return the number of bytes written.

        As a plain client socket's send, a blocking write on the client side of the connection
        first lets the fibers already ready run.
        """
        if self._state.timeout != 0.0 and not self.server_side:
            _cede()
        return self._ssl_io(_WRITE_TIMEOUT, _NOT_GIVEN, super().write, data)

    def send(self, data: Any, flags: int = 0) -> int:
        """As `ssl.SSLSocket.send` (plain `send` once unwrapped), suspending only the fiber."""
        if self._sslobj is not None and self._state.timeout != 0.0 and not self.server_side:
            _cede()  # (once unwrapped, the plain socket's send decides itself)
        return self._ssl_io(_WRITE_TIMEOUT, _NOT_GIVEN, super().send, data, flags)

    def do_handshake(self, block: bool = False) -> None:
        """Perform the TLS handshake; ``block=True`` waits even in non-blocking mode."""
        self._check_connected()
        timeout = self._state.timeout
        if timeout == 0.0 and block:
            timeout = None
        self._ssl_io(_HANDSHAKE_TIMEOUT, timeout, self._handshake_once)

    def _handshake_once(self) -> None:
        sslobj = self._sslobj
        if sslobj is None:
            raise ValueError("Handshake on closed or unwrapped SSL socket.")
        sslobj.do_handshake()

    def unwrap(self) -> Any:
        """Shut TLS down (close_notify both ways) and return the socket, now plaintext."""
        return self._ssl_io(_SHUTDOWN_TIMEOUT, _NOT_GIVEN, super().unwrap)

    def accept(self) -> tuple[SSLSocket, Any]:
        """Wait for a connection; return it wrapped in a server-side `SSLSocket`, and its address.

        As the stdlib's, but wrapped by `wrap`: with a stdlib context (a listening socket given
        to `wrap`), the stdlib's ``context.wrap_socket`` would return a socket that blocks the
        thread, and its eager handshake would hold the hub (and the client, if it is a fiber of
        the same hub, forever).
        """
        newsock, addr = _usocket.socket.accept(self)
        tls = wrap(
            newsock,
            self.context,
            do_handshake_on_connect=self.do_handshake_on_connect,
            suppress_ragged_eofs=self.suppress_ragged_eofs,
            server_side=True,
        )
        return tls, addr

    def _real_connect(self, addr: Any, connect_ex: bool) -> Any:
        try:
            return super()._real_connect(addr, connect_ex)  # type: ignore[misc]
        except (OSError, ValueError):
            raise
        except BaseException:
            self._sslobj = None  # as the stdlib does after a timeout
            raise


class SSLContext(_stdlib.SSLContext):
    """An `ssl.SSLContext` whose `wrap_socket` returns a cooperative `SSLSocket`."""

    sslsocket_class = SSLSocket


def wrap(sock: Any, context: Any, **kwargs: Any) -> SSLSocket:
    """``context.wrap_socket(sock, **kwargs)``, but always returning a cooperative socket.

    ``context`` may be an `SSLContext` of this module or of the stdlib `ssl` module (whose own
    `wrap_socket` would return a socket that blocks the thread).
    """
    cls = getattr(context, "sslsocket_class", None)
    if isinstance(cls, type) and issubclass(cls, SSLSocket):
        return context.wrap_socket(sock, **kwargs)
    ours: Any = SSLSocket  # (mypy takes `SSLSocket` for the stdlib's, as it was defined first)
    return ours._create(sock=sock, context=context, **kwargs)


def _rebind(fn: Any) -> Any:
    """The stdlib function ``fn`` with this module's globals: same code, cooperative names."""
    return rebind(fn, globals(), __name__)


# The stdlib's own helpers, creating our SSLContext and connecting with our sockets.
create_default_context = _rebind(_stdlib.create_default_context)
_create_unverified_context = _rebind(_stdlib._create_unverified_context)
_create_default_https_context = create_default_context
_create_stdlib_context = _create_unverified_context
get_server_certificate = _rebind(_stdlib.get_server_certificate)
if hasattr(_stdlib, "wrap_socket"):  # removed in Python 3.12
    wrap_socket = _rebind(_stdlib.wrap_socket)
