"""The receiving half that both ends of a connection share: bytes in, events out, states kept.

``receive_data`` feeds the reader; ``next_events`` hands out the events of the peer's current
message, all that are parsed so far in one list (a server gets ``[RequestHead, EndOfMessage]``
for a simple request in one call), and moves the peer's state along the state machine as it
does. The peer's next message, even if its bytes are already parsed (pipelining), waits until
this side has finished its own message: until then ``next_events`` returns ``PAUSED``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from ..._native import mypyc_attr
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    Event,
    NeedData,
    Paused,
    RequestHead,
    ResponseHead,
)
from ._reader import Reader
from ._state import (
    CLIENT,
    CLOSED,
    DONE,
    ERROR,
    IDLE,
    SEND_RESPONSE,
    SERVER,
    ConnectionState,
    State,
)


@mypyc_attr(allow_interpreted_subclasses=True)
class Connection:
    """One end of an HTTP/1.1 connection, without I/O: ``ServerConnection`` or
    ``ClientConnection``. Feed it the bytes received, send the bytes it returns.

    ``receive_data(data)`` parses bytes received from the peer; ``receive_data(b"")`` says the
    peer closed its side (EOF); data after that is a ``LocalProtocolError``. (It is the
    reader's own method, stored on the connection: one call per ``recv``.)
    """

    __slots__ = ("_reader", "_state", "_our_role", "_their_role", "_request", "receive_data")

    _reader: Reader
    receive_data: Callable[[bytes | bytearray | memoryview], None]

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
        """All bytes received after a CONNECT request, left unparsed (this layer
        does not switch protocols: it is for whoever takes the connection over)."""
        return self._reader.trailing_data

    def release(self) -> None:
        """The connection is over: let go of the parser, the events not handed out and the
        error kept. The parser holds the reader's callbacks and the reader holds the parser,
        and the kept error's traceback holds frames that hold this connection: without this,
        each closed connection would be garbage only the cyclic garbage collector frees (a
        server closing thousands of connections a second would pay for it in long full
        collections). Afterwards nothing more is parsed: data received is refused
        (``LocalProtocolError``), and ``next_events`` hands out no more events. Calling it
        again does nothing."""
        reader = self._reader
        reader.stopped = reader.eof = True
        reader.ready = []
        reader.current = []
        reader.error = None
        reader.release_parser()

    def send_failed(self) -> None:
        """Tell the machine that sending failed (e.g. the socket broke): this side is in ERROR."""
        self._state.process_error(self._our_role)

    # -- receiving -------------------------------------------------------------------------------

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
            events = reader.ready.pop(0)
        elif reader.current:
            events = reader.current
            reader.current = []
        elif reader.error is None and their_state is not CLOSED:
            return NEED_DATA  # (the common case of _nothing_ready, inlined)
        else:
            nothing = self._nothing_ready(their_state)
            return nothing if nothing is NEED_DATA else [nothing]  # type: ignore[list-item]
        if len(events) == 2 and events[1] is END_OF_MESSAGE:
            head = events[0]
            head_type = type(head)
            # A whole message without body or trailers: one step (the hot path).
            if head_type is RequestHead:
                # INLINED-COPY-BEGIN(whole-request): ConnectionState.whole_request, the
                # common case (the general one goes through it).
                states = state.states
                if (
                    their_state is IDLE
                    and states[SERVER] is IDLE
                    and state.keep_alive
                    and head.keep_alive  # type: ignore[attr-defined]
                ):
                    states[CLIENT] = DONE
                    states[SERVER] = SEND_RESPONSE
                    state.client_waiting_for_continue = False
                # INLINED-COPY-END(whole-request)
                else:
                    try:
                        state.whole_request(head)  # type: ignore[arg-type]
                    except LocalProtocolError as exc:
                        self._refused(exc)
                self._request = head  # type: ignore[assignment]
                return events
            if head_type is ResponseHead:
                try:
                    state.process_message(self._their_role, head)  # type: ignore[arg-type]
                except LocalProtocolError as exc:
                    self._refused(exc)
                return events
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
                reader.ready.pop(0)
        elif reader.current:
            event = reader.current.pop(0)
        else:
            return self._nothing_ready(their_state)
        self._apply([event])
        return event

    def _nothing_ready(self, their_state: State) -> ConnectionClosed | NeedData:
        """No event parsed: raise the error that stopped parsing, repeat the end, or wait."""
        reader = self._reader
        if reader.error is not None:
            if their_state is not ERROR:
                self._state.process_error(self._their_role)
            raise reader.error
        if their_state is CLOSED:
            return ConnectionClosed()
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
        except LocalProtocolError as exc:
            self._refused(exc)

    def _refused(self, exc: LocalProtocolError) -> NoReturn:
        """The parser let through what the state machine refuses: the peer's error."""
        error = RemoteProtocolError(str(exc))
        self._reader.error = error
        self._state.process_error(self._their_role)
        raise error from None

    def _fail_locally(self, error: ProtocolError) -> NoReturn:
        """A message this side was sending is broken: this side is in ERROR."""
        self._state.process_error(self._our_role)
        raise error
