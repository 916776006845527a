"""`serve_udp` and `UDPServer`: a plain blocking handler for each datagram.

``handler(data, addr)`` gets each datagram's bytes and its sender's address; what it returns,
unless None, is sent back to that address. For other replies (several, later, or to somebody
else) it calls `UDPServer.sendto`. By default each datagram is handled in a fiber of its own
(``mode="fiber-per-datagram"``, bounded by ``max_concurrent``); ``mode="loop"`` calls the
handler in the receiving fiber itself, one datagram after the other, for handlers that never
block long. Stopping is as for `unknot.TCPServer`: `stop` stops receiving, gives the running
handlers a grace period, cancels the rest, and closes the socket once they are gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from greenlet import GreenletExit

from . import socket as usocket
from ._sync import Event, Lock, Semaphore
from ._tcp import adopt_socket, check_handler, log_background_end, port_of, stop_grace
from .lowlevel import (
    Cancelled,
    CancelScope,
    Fiber,
    checkpoint_if_cancelled,
    current,
    move_on_after,
    run,
    spawn,
)

log = logging.getLogger("unknot.server")

#: ``handler(data, addr)``: returns the bytes to send back to ``addr``, or None.
DatagramHandler = Callable[[bytes, Any], Any]
Mode = Literal["fiber-per-datagram", "loop"]
MODES = ("fiber-per-datagram", "loop")


def _not_bound(sock: Any) -> str | None:
    address = sock.getsockname()
    if address in ("", b"", None) or (isinstance(address, tuple) and address[1] == 0):
        return "needs a bound socket: call sock.bind(address) first"
    return None


class UDPServer:
    """A UDP server that runs ``handler(data, addr)`` for each datagram it receives.

    The socket is bound when the server is created, so `address` and `port` are known at once
    (port 0 picks a free port); ``sock`` serves on an existing bound ``SOCK_DGRAM`` socket
    instead (a stdlib or an unknot one, taken over: the server closes it when it stops).
    ``max_datagram`` is the largest datagram received whole (longer ones are truncated, as
    ``recvfrom`` does). What a handler raises is logged (logger ``unknot.server``) and the
    server goes on, in both modes, as with `TCPServer`: an ``Exception``, and a `SystemExit` or
    `KeyboardInterrupt` too (except a `KeyboardInterrupt` in ``mode="loop"`` served by the root
    fiber: that may be Ctrl-C, which ends `serve_forever`). A handler that is not callable is a
    `TypeError` here. `serve_forever` receives in the calling fiber, `start` in a background fiber
    of the server's own; `stop`, or leaving a ``with`` block, ends either.
    """

    def __init__(
        self,
        handler: DatagramHandler,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        sock: Any = None,
        mode: Mode = "fiber-per-datagram",
        max_concurrent: int | None = None,
        max_datagram: int = 65535,
        reuse_port: bool = False,
    ) -> None:
        check_handler(handler)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if max_concurrent is not None:
            if mode == "loop":
                raise ValueError("max_concurrent is for mode='fiber-per-datagram'")
            if max_concurrent < 1:
                raise ValueError("max_concurrent must be at least 1")
        if max_datagram < 1:
            raise ValueError("max_datagram must be at least 1")
        self.handler = handler
        self.mode = mode
        self.max_datagram = max_datagram
        if sock is not None:
            if port:
                raise ValueError("UDPServer: pass sock or port, not both")
            self._sock = adopt_socket(sock, usocket.SOCK_DGRAM, "UDPServer", _not_bound)
        else:
            self._sock = _bind(host, port, reuse_port)
        self._address = self._sock.getsockname()
        self._slots = Semaphore(max_concurrent) if max_concurrent else None
        self._send_lock = Lock()  # one fiber at a time waits to send (the socket allows one)
        self._handlers: set[Fiber] = set()
        self._idle = Event()
        self._idle.set()
        self._serving: Fiber | None = None
        self._loop_done = Event()
        self._loop_done.set()
        self._receiving: CancelScope | None = None  # around the wait for a datagram
        self._inline: CancelScope | None = None  # around a handler running in mode="loop"
        self._stopping = False

    @property
    def address(self) -> Any:
        """The address the server receives on, e.g. ``("127.0.0.1", 40123)``."""
        return self._address

    @property
    def port(self) -> int:
        """The port the server receives on (the one picked for port 0)."""
        return port_of(self._address)

    @property
    def in_flight(self) -> int:
        """How many datagrams are being handled (in ``mode="loop"``: 0 or 1)."""
        return len(self._handlers) + (self._inline is not None)

    def sendto(self, data: Any, address: Any) -> int:
        """Send ``data`` to ``address`` from the server's socket (from any of its handlers).

        Waits (cooperatively) while the socket's send buffer is full; fibers sending at the
        same time take turns. Returns the number of bytes sent.
        """
        with self._send_lock:
            return self._sock.sendto(data, address)

    # -- receiving ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start receiving in a background fiber of the server's own and return at once.

        The fiber belongs to the server, not to the caller's scopes: `stop` (or leaving the
        server's ``with`` block) ends it. One still running when its hub's `unknot.run` ends is
        cancelled with the other leftover fibers: its handlers are cancelled, the socket closed.
        An error that ends the receive loop is logged.
        """
        if self._serving is not None:
            raise RuntimeError("the server is already serving")
        if self._stopping:
            raise RuntimeError("the server was stopped")
        f = spawn(self._serve, name=f"UDPServer-{self._address}")
        self._serving = f
        self._loop_done.clear()
        f.add_done_callback(self._background_done)

    def _background_done(self, f: Fiber) -> None:
        # (it may have been cancelled before it ran, its own ``finally`` never running)
        self._serving = None
        self._loop_done.set()
        if not self._stopping:  # ended by an error or a cancellation: nobody will call stop
            self._sock.close()
        log_background_end(f, self)

    def serve_forever(self) -> None:
        """Receive datagrams until `stop` is called (or the calling fiber is cancelled).

        If it ends any other way than by `stop` (cancelled, interrupted, or a receive error), it
        cancels the running handlers, waits for them to unwind and closes the socket before
        raising.
        """
        if self._serving is not None:
            raise RuntimeError("serve_forever() is already running")
        self._serving = current()
        self._loop_done.clear()
        self._serve()

    def _serve(self) -> None:
        try:
            while not self._stopping:
                got = self._receive()
                if got is None:
                    continue  # stop() interrupted the wait, or the peer's error was skipped
                data, addr = got
                if self.mode == "loop":
                    try:
                        with CancelScope() as self._inline:  # (cancelled by stop after grace)
                            self._handle(data, addr)
                    finally:
                        self._inline = None
                    continue
                f = spawn(self._handle, data, addr, name=f"datagram-{addr}")
                self._handlers.add(f)
                self._idle.clear()
                f.add_done_callback(self._handler_done)
        except BaseException:
            self._stopping = True
            with CancelScope(shield=True):
                self._cancel_handlers()
                self._idle.wait()
            self._sock.close()
            raise
        finally:
            self._serving = None
            self._loop_done.set()

    def _receive(self) -> tuple[bytes, Any] | None:
        """Wait for a handler slot and a datagram; None if `stop` interrupted the wait."""
        got: tuple[bytes, Any] | None = None
        acquired = False
        try:
            with CancelScope() as self._receiving:
                if self._slots is not None:
                    self._slots.acquire()
                    acquired = True
                got = self._sock.recvfrom(self.max_datagram)
        except ConnectionError as e:  # an ICMP error about an earlier send: routine for UDP
            log.debug("recvfrom() reported %s", e)
        finally:
            self._receiving = None
            if got is None and acquired:
                assert self._slots is not None
                self._slots.release()
        return got

    def _handle(self, data: bytes, addr: Any) -> None:
        try:
            reply = self.handler(data, addr)
            if reply is not None:
                self.sendto(reply, addr)
        except Exception:
            log.exception("handler for a datagram from %s failed", addr)
        except (Cancelled, GreenletExit):
            raise  # (stop() ending the handler, or its fiber cancelled: not a failure)
        except BaseException as e:
            # SystemExit, KeyboardInterrupt...: logged, and the server goes on, as with
            # `TCPServer` (a handler's fiber is one nobody waits for; `stop` the server). But a
            # KeyboardInterrupt in the root fiber, handling in the receive loop, may be Ctrl-C
            # (unknot raises it there): it ends the server as Ctrl-C ends a `TCPServer`.
            if isinstance(e, KeyboardInterrupt) and self.mode == "loop":
                me = current()
                if me is not None and me is me.hub.root:
                    raise
            log.error("handler for a datagram from %s failed", addr, exc_info=e)

    def _handler_done(self, f: Fiber) -> None:
        self._handlers.discard(f)
        if self._slots is not None:
            self._slots.release()
        if not self._handlers:
            self._idle.set()

    def _cancel_handlers(self) -> None:
        for f in list(self._handlers):
            f.cancel()
        if self._inline is not None:
            self._inline.cancel()

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> None:
        """Stop receiving, wait up to ``grace`` seconds for handlers to finish, cancel the rest.

        Returns when the receive loop has exited and every handler is gone; the socket is then
        closed. A negative ``grace`` waits without limit; NaN is a `ValueError`. Called from a
        handler, or from asyncio code outside fibers (a loop callback, a signal handler added
        with ``loop.add_signal_handler``), it runs in a new fiber and returns at once (neither
        can wait).
        """
        grace = stop_grace(grace)
        me = current()
        if me is None or me in self._handlers or me is self._serving:
            spawn(self.stop, grace, name="udp-server-stop")  # (no hub at all: NotInFiberError)
            return
        self._stopping = True
        if self._receiving is not None:
            self._receiving.cancel()
        with CancelScope(shield=True):
            with move_on_after(grace):
                self._loop_done.wait()
                self._idle.wait()
            self._cancel_handlers()
            self._loop_done.wait()
            self._idle.wait()
        self._sock.close()
        # The waits above are shielded (a stop must finish): a cancellation that came meanwhile
        # (a timeout around the stop) is raised now, for its scope to catch.
        checkpoint_if_cancelled()

    def __enter__(self) -> UDPServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace=10.0 if exc is None else 0)

    def __repr__(self) -> str:
        return f"<UDPServer {self._address} mode={self.mode} in_flight={self.in_flight}>"


def _bind(host: str | None, port: int, reuse_port: bool) -> usocket.socket:
    family = usocket.AF_INET6 if host and ":" in host else usocket.AF_INET
    sock = usocket.socket(family, usocket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(usocket.SOL_SOCKET, usocket.SO_REUSEPORT, 1)
        sock.bind((host or "", port))
    except BaseException:
        sock.close()
        raise
    return sock


def serve_udp(
    handler: DatagramHandler, host: str | None = "127.0.0.1", port: int = 0, **kwargs: Any
) -> None:
    """Serve UDP on ``host:port``, running ``handler(data, addr)`` for each datagram.

    Blocks, like `serve_tcp`: from a fiber it serves in that fiber (cancel the fiber to stop
    it); called outside any hub it starts one with `run`. Keyword arguments are those of
    `UDPServer` (``sock``, ``mode``, ``max_concurrent``, ``max_datagram``, ``reuse_port``).
    A handler that is not callable is a `TypeError` at once.
    """
    check_handler(handler)
    if current() is None:
        run(serve_udp, handler, host, port, **kwargs)
        return
    UDPServer(handler, host, port, **kwargs).serve_forever()  # cancelled: cancels the handlers
