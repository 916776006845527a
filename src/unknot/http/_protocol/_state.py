"""The connection state machine: every state transition of the protocol layer is in this module.

A connection tracks two states, one per role: the client's (who sends requests) and the
server's (who sends responses). Each event sent or received moves its sender's state along
:data:`EVENT_TRANSITIONS`; then :meth:`ConnectionState._settle` applies the transitions that
follow from the pair of states. Both sides of a connection (``ServerConnection`` and
``ClientConnection``) run the same machine, from opposite ends.

States
------
``IDLE``
    Between messages: the client may send a request; the server waits for one (it may also
    send a response without one, e.g. a 400 for garbage or a 408 before closing).
``SEND_RESPONSE`` (server only)
    A request head arrived; the server owes a response. ``InformationalResponse`` events (1xx)
    keep it here; a ``ResponseHead`` moves it to ``SEND_BODY``.
``SEND_BODY``
    The head is sent; ``Data`` events follow, then ``EndOfMessage``.
``DONE``
    The message is complete. When both sides are ``DONE`` and the connection is keep-alive,
    both go back to ``IDLE`` at once: the next request/response cycle starts. (h11 waits for an
    explicit ``start_next_cycle()``; doing it here saves a call on every request.)
``MUST_CLOSE``
    The message is complete but the connection will not carry another one (``Connection:
    close``, HTTP/1.0 without keep-alive, a body delimited by the end of the connection, an
    Upgrade or CONNECT request, the peer closed or failed). The next step is to close.
``CLOSED``
    This side sent (or received) the end of the connection: ``ConnectionClosed``.
``ERROR``
    A protocol error happened on this side (``RemoteProtocolError`` from the peer's bytes, or
    ``LocalProtocolError`` from the caller); the connection cannot be used for messages anymore.
    A server whose client is in ``ERROR`` may still send an error response if its own state
    allows it (``IDLE`` or ``SEND_RESPONSE``), then it must close.

Keep-alive
----------
``keep_alive`` starts true and turns false, for good, when a request or response head says so
(``RequestHead.keep_alive`` / ``ResponseHead.keep_alive`` false), when the server answers
without a request, when a side closes or fails, and in the 100-continue case below. Then a
``DONE`` side becomes ``MUST_CLOSE``.

100-continue
------------
``client_waiting_for_continue`` is set by a ``RequestHead`` with ``expect_continue``: the client
may hold its body back until it sees a 100 (Continue). It is cleared when the server sends any
response (the server decides whether and when to send the 100: ``send_informational(100)``), and
when the client sends body data anyway. A *final* response sent while it is set means the
server did not want the body: the client may send it or not, so the connection cannot be reused
and ``keep_alive`` turns false.
"""

from __future__ import annotations

from typing import Final

from ._errors import LocalProtocolError
from ._events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    RequestHead,
    ResponseHead,
)


class State:
    """One state of a side of the connection (compare by identity: ``state is DONE``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


IDLE: Final = State("IDLE")
SEND_RESPONSE: Final = State("SEND_RESPONSE")
SEND_BODY: Final = State("SEND_BODY")
DONE: Final = State("DONE")
MUST_CLOSE: Final = State("MUST_CLOSE")
CLOSED: Final = State("CLOSED")
ERROR: Final = State("ERROR")

#: The roles, used as indexes into ``ConnectionState.states``.
CLIENT: Final = 0
SERVER: Final = 1
ROLE_NAMES: Final = ("client", "server")

_CLOSING: dict[type[Event], State] = {ConnectionClosed: CLOSED}

#: Event-triggered transitions: ``EVENT_TRANSITIONS[role][state][event type] -> new state``.
#: An event not listed for the sender's current state is a protocol error.
EVENT_TRANSITIONS: Final[tuple[dict[State, dict[type[Event], State]], ...]] = (
    {  # CLIENT
        IDLE: {RequestHead: SEND_BODY, ConnectionClosed: CLOSED},
        SEND_BODY: {Data: SEND_BODY, EndOfMessage: DONE},
        DONE: _CLOSING,
        MUST_CLOSE: _CLOSING,
        CLOSED: _CLOSING,
        ERROR: {},
    },
    {  # SERVER
        # A response from IDLE answers no request (an error response to garbage, a 408).
        IDLE: {ResponseHead: SEND_BODY, ConnectionClosed: CLOSED},
        SEND_RESPONSE: {InformationalResponse: SEND_RESPONSE, ResponseHead: SEND_BODY},
        SEND_BODY: {Data: SEND_BODY, EndOfMessage: DONE},
        DONE: _CLOSING,
        MUST_CLOSE: _CLOSING,
        CLOSED: _CLOSING,
        ERROR: {},
    },
)

# The one cross-role transition: a request head makes an idle server owe a response.
# (Applied in ConnectionState.process_event.)

#: State-triggered transitions, applied after every event (see ``_settle``), per role:
#: ``PAIR_TRANSITIONS[role][(other side's state, own state)] -> own new state``. When the peer
#: closed, an idle side can start no new message; a client also cannot after the server failed
#: (a server whose client failed stays IDLE so that it can still send an error response).
#: Keep-alive turning false (a DONE side must close) and the next cycle (both DONE -> both
#: IDLE) are the other state-triggered transitions; ``_settle`` applies them first.
PAIR_TRANSITIONS: Final[tuple[dict[tuple[State, State], State], ...]] = (
    {(CLOSED, IDLE): MUST_CLOSE, (ERROR, IDLE): MUST_CLOSE},  # CLIENT
    {(CLOSED, IDLE): MUST_CLOSE},  # SERVER
)


class ConnectionState:
    """Both sides' states of one connection, plus keep-alive and the 100-continue flag.

    Only :meth:`process_event`, :meth:`process_error` and :meth:`disable_keep_alive` change it.
    """

    __slots__ = ("states", "keep_alive", "client_waiting_for_continue")

    def __init__(self) -> None:
        #: ``states[CLIENT]`` and ``states[SERVER]``.
        self.states: list[State] = [IDLE, IDLE]
        self.keep_alive = True
        self.client_waiting_for_continue = False

    def process_event(self, role: int, event: Event) -> None:
        """Apply ``event``, sent by ``role``; a transition not in the table raises
        ``LocalProtocolError`` and changes nothing."""
        states = self.states
        event_type = type(event)
        new = EVENT_TRANSITIONS[role][states[role]].get(event_type)
        if new is None:
            raise LocalProtocolError(
                f"{ROLE_NAMES[role]} cannot send {event_type.__name__} in state {states[role]}"
            )
        if role == CLIENT:
            if event_type is RequestHead:
                assert isinstance(event, RequestHead)
                if states[SERVER] is IDLE:
                    states[SERVER] = SEND_RESPONSE
                if not event.keep_alive:
                    self.keep_alive = False
                self.client_waiting_for_continue = event.expect_continue
            elif event_type is not ConnectionClosed:
                self.client_waiting_for_continue = False
        elif event_type is ResponseHead:
            assert isinstance(event, ResponseHead)
            if not event.keep_alive or not self.response_may_keep_alive():
                self.keep_alive = False
            self.client_waiting_for_continue = False
        elif event_type is InformationalResponse:
            self.client_waiting_for_continue = False
        states[role] = new
        if new is DONE or new is CLOSED or not self.keep_alive:
            self._settle()

    def response_may_keep_alive(self) -> bool:
        """Whether the connection can stay open after the final response the server is about to
        send (the server asks before writing its Connection header)."""
        return (
            self.keep_alive
            and self.states[SERVER] is SEND_RESPONSE
            and not self.client_waiting_for_continue
        )

    def process_error(self, role: int) -> None:
        """``role`` broke the protocol: its state becomes ``ERROR`` for good."""
        self.states[role] = ERROR
        self.keep_alive = False
        self._settle()

    def disable_keep_alive(self) -> None:
        """No message after the current one: sides that are ``DONE`` now or later must close."""
        self.keep_alive = False
        self._settle()

    def _settle(self) -> None:
        states = self.states
        client, server = states
        if client is CLOSED or client is ERROR or server is CLOSED or server is ERROR:
            self.keep_alive = False
        if not self.keep_alive:
            if client is DONE:
                client = MUST_CLOSE
            if server is DONE:
                server = MUST_CLOSE
        elif client is DONE and server is DONE:
            client = server = IDLE  # the next request/response cycle
            self.client_waiting_for_continue = False
        server = PAIR_TRANSITIONS[SERVER].get((client, server), server)
        client = PAIR_TRANSITIONS[CLIENT].get((server, client), client)
        states[CLIENT] = client
        states[SERVER] = server
