"""The connection state machine: the transition table, the state-triggered transitions, the
100-continue flag, and the hot-path shortcuts agreeing with the general path."""

from __future__ import annotations

import ast
import copy
import itertools
from pathlib import Path

import pytest

from unknot.http._protocol import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    LocalProtocolError,
    RequestHead,
    ResponseHead,
    _state,
)
from unknot.http._protocol._state import (
    CLIENT,
    CLOSED,
    DONE,
    ERROR,
    EVENT_TRANSITIONS,
    IDLE,
    MUST_CLOSE,
    SEND_BODY,
    SEND_RESPONSE,
    SERVER,
    ConnectionState,
    State,
)

ALL_STATES = [IDLE, SEND_RESPONSE, SEND_BODY, DONE, MUST_CLOSE, CLOSED, ERROR]
SAMPLE_EVENTS = {
    RequestHead: RequestHead(b"GET", b"/", []),
    ResponseHead: ResponseHead(200, []),
    InformationalResponse: InformationalResponse(100, []),
    Data: Data(b"x"),
    EndOfMessage: EndOfMessage(),
    ConnectionClosed: ConnectionClosed(),
}


def machine(client: State, server: State, keep_alive: bool = True) -> ConnectionState:
    state = ConnectionState()
    state.states[:] = [client, server]
    state.keep_alive = keep_alive
    return state


def snapshot(state: ConnectionState) -> tuple[object, ...]:
    return (*state.states, state.keep_alive, state.client_waiting_for_continue)


def test_the_module_documents_every_state() -> None:
    # (From the source: a module compiled by mypyc has no docstring.)
    doc = ast.get_docstring(ast.parse(Path(_state.__file__).with_name("_state.py").read_text()))
    assert doc
    for state in ALL_STATES:
        assert f"``{state.name}``" in doc


@pytest.mark.parametrize(
    ("role", "before", "event_type", "after"),
    [
        (role, before, event_type, after)
        for role in (CLIENT, SERVER)
        for before, moves in EVENT_TRANSITIONS[role].items()
        for event_type, after in moves.items()
    ],
)
def test_every_listed_transition(role: int, before: State, event_type: type, after: State) -> None:
    # The other side is mid-message, so no state-triggered transition interferes.
    other = SEND_BODY
    state = machine(*((before, other) if role == CLIENT else (other, before)))
    state.process_event(role, SAMPLE_EVENTS[event_type])
    assert state.states[role] is after


@pytest.mark.parametrize(
    ("role", "before", "event_type"),
    [
        (role, before, event_type)
        for role in (CLIENT, SERVER)
        for before in ALL_STATES
        for event_type in SAMPLE_EVENTS
        if event_type not in EVENT_TRANSITIONS[role].get(before, {})
    ],
)
def test_every_other_transition_is_refused(role: int, before: State, event_type: type) -> None:
    state = machine(*((before, SEND_BODY) if role == CLIENT else (SEND_BODY, before)))
    was = snapshot(state)
    with pytest.raises(LocalProtocolError):
        state.process_event(role, SAMPLE_EVENTS[event_type])
    assert snapshot(state) == was


def test_a_request_head_makes_an_idle_server_owe_a_response() -> None:
    state = ConnectionState()
    state.process_event(CLIENT, RequestHead(b"GET", b"/", []))
    assert state.states == [SEND_BODY, SEND_RESPONSE]


def test_a_full_cycle_returns_to_idle() -> None:
    state = ConnectionState()
    state.process_event(CLIENT, RequestHead(b"GET", b"/", []))
    state.process_event(CLIENT, EndOfMessage())
    assert state.states == [DONE, SEND_RESPONSE]
    state.process_event(SERVER, ResponseHead(200, []))
    state.process_event(SERVER, Data(b"x"))
    state.process_event(SERVER, EndOfMessage())
    assert state.states == [IDLE, IDLE]


def test_response_before_the_request_body_ends_waits_for_it() -> None:
    state = ConnectionState()
    state.process_event(CLIENT, RequestHead(b"POST", b"/", []))
    state.process_message(SERVER, ResponseHead(200, []))
    assert state.states == [SEND_BODY, DONE]
    state.process_event(CLIENT, EndOfMessage())
    assert state.states == [IDLE, IDLE]


@pytest.mark.parametrize("closing", ["request", "response"])
def test_no_keep_alive_makes_done_sides_close(closing: str) -> None:
    state = ConnectionState()
    state.process_message(CLIENT, RequestHead(b"GET", b"/", [], keep_alive=closing != "request"))
    state.process_message(SERVER, ResponseHead(200, [], keep_alive=closing != "response"))
    assert state.states == [MUST_CLOSE, MUST_CLOSE]
    assert not state.keep_alive


def test_response_without_request_closes() -> None:
    state = ConnectionState()
    state.process_message(SERVER, ResponseHead(400, []))
    assert state.states == [IDLE, MUST_CLOSE]


def test_peer_closing_ends_the_connection() -> None:
    state = ConnectionState()
    state.process_event(CLIENT, ConnectionClosed())
    assert state.states == [CLOSED, MUST_CLOSE]
    state = ConnectionState()
    state.process_event(SERVER, ConnectionClosed())
    assert state.states == [MUST_CLOSE, CLOSED]


def test_errors() -> None:
    state = ConnectionState()
    state.process_error(CLIENT)  # a bad request: the server may still answer it
    assert state.states == [ERROR, IDLE] and not state.keep_alive
    state.process_message(SERVER, ResponseHead(400, []))
    assert state.states == [ERROR, MUST_CLOSE]
    state = ConnectionState()
    state.process_error(SERVER)  # a bad response: the client can send nothing more
    assert state.states == [MUST_CLOSE, ERROR]
    state = ConnectionState()
    state.process_message(CLIENT, RequestHead(b"GET", b"/", []))
    state.process_error(SERVER)
    assert state.states == [MUST_CLOSE, ERROR]


def test_100_continue_flag() -> None:
    state = ConnectionState()
    state.process_event(CLIENT, RequestHead(b"PUT", b"/", [], expect_continue=True))
    assert state.client_waiting_for_continue
    state.process_event(SERVER, InformationalResponse(100, []))
    assert not state.client_waiting_for_continue
    state.process_event(CLIENT, Data(b"x"))
    state.process_event(CLIENT, EndOfMessage())
    state.process_message(SERVER, ResponseHead(200, []))
    assert state.states == [IDLE, IDLE]
    # Client data without waiting for the 100 clears it as well.
    state.process_event(CLIENT, RequestHead(b"PUT", b"/", [], expect_continue=True))
    state.process_event(CLIENT, Data(b"x"))
    assert not state.client_waiting_for_continue
    assert state.keep_alive


def test_final_response_while_the_client_waits_for_100_ends_keep_alive() -> None:
    state = ConnectionState()
    state.process_event(CLIENT, RequestHead(b"PUT", b"/", [], expect_continue=True))
    assert not state.response_may_keep_alive()
    state.process_message(SERVER, ResponseHead(417, []))
    assert not state.keep_alive
    assert state.states == [SEND_BODY, MUST_CLOSE]


def test_hot_path_shortcuts_agree_with_the_table() -> None:
    combinations = itertools.product(
        ALL_STATES, ALL_STATES, [True, False], [True, False], [True, False], [True, False]
    )
    checked = 0
    for client, server, keep_alive, waiting, head_keep_alive, expect in combinations:
        for shortcut, role, head in [
            (
                ConnectionState.whole_request,
                CLIENT,
                RequestHead(b"GET", b"/", [], b"1.1", head_keep_alive, expect),
            ),
            (
                ConnectionState.whole_response,
                SERVER,
                ResponseHead(200, [], keep_alive=head_keep_alive),
            ),
        ]:
            general = machine(client, server, keep_alive)
            general.client_waiting_for_continue = waiting
            fast = copy.deepcopy(general)
            try:
                general.process_message(role, head)  # type: ignore[arg-type]
            except LocalProtocolError:
                with pytest.raises(LocalProtocolError):
                    shortcut(fast, head)  # type: ignore[arg-type]
                continue
            shortcut(fast, head)  # type: ignore[arg-type]
            assert snapshot(fast) == snapshot(general), (client, server, keep_alive, waiting)
            checked += 1
    assert checked > 50  # many combinations are legal, not only the fast ones
