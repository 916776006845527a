"""`RequestBody`: a request's body, read from the connection only as the handler asks for it.

The server gives each request that has a body a `RequestBody` (``Request.read``, ``stream`` and
``body`` read through it). Bytes already received with the head are handed out first; then each
``read`` pulls just enough from the connection: at most one ``recv`` (64 KiB) beyond what
was asked is held, so an upload of any size streams through a handler in bounded memory.

Where the bytes come from is the connection's business (`BodyFeed`): it sends ``100 Continue``
before the first wait when the client asked for it, applies the body-read timeout and the size
limit. Errors are raised from ``read`` to the handler and remembered in `failure`, so that the
server answers them rightly if the handler lets them through: `TimeoutError` (the client
stopped sending: 408), `RemoteProtocolError` (a body over the size limit: 413; a malformed
chunked body: 400), `ConnectionError` (the client went away: nothing to answer).
"""

from __future__ import annotations

from typing import Protocol

from ._protocol import Data, EndOfMessage, Event

__all__ = ["BodyFeed", "RequestBody"]


class BodyFeed(Protocol):
    """The connection side of a body: the next body events, waiting for them if needed."""

    def next_body_events(self) -> list[Event]:
        """The next ``Data`` / ``EndOfMessage`` events (at least one), received as needed."""
        ...


class RequestBody:
    """The body of one request, read incrementally (a `BodySource` for `Request`).

    ``RequestBody(feed, events)``: ``events`` are the body events received with the head
    (possibly none), ``feed`` gives the rest.
    """

    __slots__ = ("_feed", "_buffer", "done", "failure", "received", "started")

    def __init__(self, feed: BodyFeed, events: list[Event]) -> None:
        self._feed = feed
        self._buffer = bytearray()
        #: The whole body has been received (``EndOfMessage`` seen).
        self.done = False
        #: The exception that stopped reading (raised again by every later ``read``).
        self.failure: BaseException | None = None
        #: Body bytes received so far.
        self.received = 0
        #: The handler has begun reading (`read` was called).
        self.started = False
        self._take(events)

    def _take(self, events: list[Event]) -> None:
        buffer = self._buffer
        for event in events:
            if isinstance(event, Data):
                data = event.data
                buffer += data
                self.received += len(data)
            elif isinstance(event, EndOfMessage):
                self.done = True

    def _pull(self) -> None:
        """Receive the next events into the buffer (errors recorded, then raised)."""
        if self.failure is not None:
            raise self.failure
        try:
            events = self._feed.next_body_events()
        except Exception as exc:
            self.failure = exc
            raise
        self._take(events)

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes of the body (all that is left if ``n`` < 0); ``b""`` at its end.

        Waits only while nothing is buffered: a positive ``n`` returns what is there, as a
        socket's ``recv`` does, so a handler copying the body through never holds it whole.
        """
        self.started = True
        buffer = self._buffer
        if n < 0:
            while not self.done:
                self._pull()
            data = bytes(buffer)
            buffer.clear()
            return data
        while not buffer and not self.done and n:
            self._pull()
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    def drain(self, limit: int | None) -> bool:
        """Receive and drop the rest of the body, up to ``limit`` more bytes (``None``: all of
        it, as long as the client sends it); whether it ended.

        The server calls it after the response, so that the next request is not parsed from
        body bytes; False (more than ``limit`` bytes left, or an error) means close instead.
        """
        self._buffer.clear()
        if self.failure is not None:
            return False
        start = self.received
        try:
            while not self.done:
                if limit is not None and self.received - start > limit:
                    return False
                self._pull()
                self._buffer.clear()
        except Exception:
            return False
        return True
