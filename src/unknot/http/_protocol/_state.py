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
    send a response without one, e.g. a 400 for garbage or a 408 before closing). Such a
    response ends the connection: a request received after it began is refused (a protocol
    error), never handed out.
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
    close``, HTTP/1.0 without keep-alive, a body delimited by the end of the connection, a
    CONNECT request, the peer closed or failed). The next step is to close.
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

    def __reduce__(self) -> str:
        return self.name  # a singleton: copies and pickles are the same object

    def __copy__(self) -> State:
        return self

    def __deepcopy__(self, memo: object) -> State:
        return self


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
        SEND_RESPONSE: {},  # (a server's state only)
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

# The one cross-role transition: a request head makes an idle server owe a response
# (IDLE -> SEND_RESPONSE; applied in ConnectionState.process_message). A request head while
# the server is past IDLE with keep-alive off (it answered without a request) is refused there.

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


def _refused(role: int, event_type: type, state: State) -> LocalProtocolError:
    return LocalProtocolError(f"{ROLE_NAMES[role]} cannot send {event_type.__name__} in {state}")


class ConnectionState:
    """Both sides' states of one connection, plus keep-alive and the 100-continue flag.

    Only :meth:`process_event`, :meth:`process_message` (and its two shortcuts for the server's
    hot path, :meth:`whole_request` and :meth:`whole_response`), :meth:`process_error` and
    :meth:`disable_keep_alive` change it.
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
        event_type = type(event)
        if event_type is RequestHead or event_type is ResponseHead:
            self.process_message(role, event, complete=False)  # type: ignore[arg-type]
            return
        states = self.states
        new = EVENT_TRANSITIONS[role][states[role]].get(event_type)
        if new is None:
            raise _refused(role, event_type, states[role])
        if event_type is ConnectionClosed:
            self.keep_alive = False
        else:  # Data, EndOfMessage, InformationalResponse: the 100 is no longer awaited
            self.client_waiting_for_continue = False
        states[role] = new
        if new is DONE or not self.keep_alive:
            self._settle()

    def process_message(
        self, role: int, head: RequestHead | ResponseHead, complete: bool = True
    ) -> None:
        """Apply ``head`` sent by ``role`` and, if ``complete``, its ``EndOfMessage`` too: a
        whole message in one step (the hot path of a server: a request without body, a response
        in one piece)."""
        states = self.states
        table = EVENT_TRANSITIONS[role]
        body_state = table[states[role]].get(type(head))
        if body_state is None:
            raise _refused(role, type(head), states[role])
        if role == CLIENT:
            if states[SERVER] is IDLE:
                states[SERVER] = SEND_RESPONSE  # the cross-role transition
            elif not self.keep_alive:
                # The server answered without a request (that turned keep-alive off): its
                # response ends the connection, and a request now could never be answered.
                raise LocalProtocolError(
                    f"client cannot send RequestHead with the server in {states[SERVER]}: "
                    "a response sent without a request ends the connection"
                )
            if not head.keep_alive:
                self.keep_alive = False
            waiting = head.expect_continue  # type: ignore[union-attr]
        else:
            if not (
                head.keep_alive
                and self.keep_alive
                and states[SERVER] is SEND_RESPONSE
                and not self.client_waiting_for_continue
            ):  # (response_may_keep_alive, inlined)
                self.keep_alive = False
            waiting = False
        if complete:
            states[role] = table[body_state][EndOfMessage]
            self.client_waiting_for_continue = False
            if self.keep_alive:  # _settle's common case, inlined
                if states[CLIENT] is DONE and states[SERVER] is DONE:
                    states[CLIENT] = states[SERVER] = IDLE
                return
        else:
            states[role] = body_state
            self.client_waiting_for_continue = waiting
            if self.keep_alive:
                return
        self._settle()

    # The server's hot path: the same as process_message for the most common case, in fewer
    # steps (tests check that both agree).

    def whole_request(self, head: RequestHead) -> None:
        """``process_message(CLIENT, head)``: a request without body received."""
        # INLINED-ORIGINAL(whole-request): its common case is copied into
        # Connection.next_events.
        states = self.states
        if (
            states[CLIENT] is IDLE
            and states[SERVER] is IDLE
            and self.keep_alive
            and head.keep_alive
        ):
            states[CLIENT] = DONE
            states[SERVER] = SEND_RESPONSE
            self.client_waiting_for_continue = False
        else:
            self.process_message(CLIENT, head)

    def whole_response(self, head: ResponseHead) -> None:
        """``process_message(SERVER, head)``: a response sent in one piece."""
        # INLINED-ORIGINAL(whole-response): its common case is copied into
        # ServerConnection.send_response.
        states = self.states
        if (
            states[SERVER] is SEND_RESPONSE
            and states[CLIENT] is DONE
            and self.keep_alive
            and head.keep_alive
            and not self.client_waiting_for_continue
        ):
            states[CLIENT] = states[SERVER] = IDLE  # the next cycle
        else:
            self.process_message(SERVER, head)

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
        if self.keep_alive:
            if states[CLIENT] is DONE and states[SERVER] is DONE:
                states[CLIENT] = states[SERVER] = IDLE  # the next request/response cycle
                self.client_waiting_for_continue = False
            return
        client, server = states
        if client is DONE:
            client = MUST_CLOSE
        if server is DONE:
            server = MUST_CLOSE
        server = PAIR_TRANSITIONS[SERVER].get((client, server), server)
        client = PAIR_TRANSITIONS[CLIENT].get((server, client), client)
        states[CLIENT] = client
        states[SERVER] = server
