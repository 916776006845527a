"""The receiving half that both ends of a connection share: bytes in, events out, states kept.

``receive_data`` feeds the reader; ``next_events`` hands out the events of the peer's current
message, all that are parsed so far in one list (a server gets ``[RequestHead, EndOfMessage]``
for a simple request in one call), and moves the peer's state along the state machine as it
does. The peer's next message, even if its bytes are already parsed (pipelining), waits until
this side has finished its own message: until then ``next_events`` returns ``PAUSED``.
"""

from __future__ import annotations

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    Event,
    NeedData,
    Paused,
    RequestHead,
)
from ._reader import Reader
from ._state import CLOSED, DONE, ERROR, ConnectionState, State


class Connection:
    """One end of an HTTP/1.1 connection, without I/O: ``ServerConnection`` or
    ``ClientConnection``. Feed it the bytes received, send the bytes it returns."""

    __slots__ = ("_reader", "_state", "_our_role", "_their_role", "_request")

    _reader: Reader

    def __init__(self, our_role: int) -> None:
        self._state = ConnectionState()
        self._our_role = our_role
        self._their_role = 1 - our_role
        #: The request being answered (server side): the last RequestHead handed out.
        self._request: RequestHead | None = None

    # -- state -----------------------------------------------------------------------------------

    @property
    def our_state(self) -> State:
        """This side's state (``IDLE``, ``SEND_RESPONSE``, ``SEND_BODY``, ``DONE``...)."""
        return self._state.states[self._our_role]

    @property
    def their_state(self) -> State:
        """The peer's state, as far as the events handed out so far tell."""
        return self._state.states[self._their_role]

    @property
    def keep_alive(self) -> bool:
        """False once the connection is known to end after the current messages."""
        return self._state.keep_alive

    @property
    def trailing_data(self) -> bytes:
        """Bytes that followed an Upgrade or CONNECT request, left unparsed."""
        return self._reader.trailing_data

    def send_failed(self) -> None:
        """Tell the machine that sending failed (e.g. the socket broke): this side is in ERROR."""
        self._state.process_error(self._our_role)

    # -- receiving -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Parse bytes received from the peer; ``b""`` means the peer closed its side (EOF)."""
        reader = self._reader
        if data:
            if reader.eof:
                raise LocalProtocolError("data received after the end of the input")
            reader.feed(data)
        else:
            reader.feed_eof()

    def next_events(self) -> list[Event] | NeedData | Paused:
        """The events of the peer's current message parsed so far, as one list.

        ``NEED_DATA`` when nothing is parsed yet; ``PAUSED`` when the peer's message is complete
        and this side has not finished its own. Raises the ``RemoteProtocolError`` that stopped
        parsing once the events before it have been handed out (then again on every call).
        """
        state = self._state
        their_state = state.states[self._their_role]
        if their_state is DONE:
            return PAUSED
        reader = self._reader
        if reader.ready:
            events = reader.ready.popleft()
        elif reader.current:
            events = reader.current
            reader.current = []
        else:
            return self._nothing_ready(their_state)
        self._apply(events)
        return events

    def next_event(self) -> Event | NeedData | Paused:
        """One event at a time (as h11 does); ``next_events`` is cheaper."""
        state = self._state
        their_state = state.states[self._their_role]
        if their_state is DONE:
            return PAUSED
        reader = self._reader
        if reader.ready:
            events = reader.ready[0]
            event = events.pop(0)
            if not events:
                reader.ready.popleft()
        elif reader.current:
            event = reader.current.pop(0)
        else:
            result = self._nothing_ready(their_state)
            return result if not isinstance(result, list) else result[0]
        self._apply([event])
        return event

    def _nothing_ready(self, their_state: State) -> list[Event] | NeedData:
        reader = self._reader
        if reader.error is not None:
            if their_state is not ERROR:
                self._state.process_error(self._their_role)
            raise reader.error
        if their_state is CLOSED:
            return [ConnectionClosed()]
        return NEED_DATA

    def _apply(self, events: list[Event]) -> None:
        """Move the peer's state along with the events handed out."""
        state = self._state
        role = self._their_role
        try:
            for event in events:
                event_type = type(event)
                if event_type is not Data:
                    state.process_event(role, event)
                    if event_type is RequestHead:
                        self._request = event  # type: ignore[assignment]
                elif state.client_waiting_for_continue:
                    state.process_event(role, event)
        except LocalProtocolError as exc:  # the parser let through what the machine refuses
            error = RemoteProtocolError(str(exc))
            self._reader.error = error
            state.process_error(role)
            raise error from None

    def _fail_locally(self, error: ProtocolError) -> None:
        """A message this side was sending is broken: this side is in ERROR."""
        self._state.process_error(self._our_role)
        raise error
