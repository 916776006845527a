"""The protocol events and the connections' arguments behave alike in the pure and the compiled
build: hashing an event that contains itself raises RecursionError (the compiled build crashed
the process: its ``__hash__`` recursed in C without bound), and arguments of a wrong type (a
float status, a str method, an int for a bool...) are a TypeError in both builds (the compiled
build refused them at the call, the pure one took them).

Run the file with each build's interpreter; the crash checks run in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest

import unknot
from unknot.http._protocol import (
    IDLE,
    SEND_BODY,
    SEND_RESPONSE,
    ClientConnection,
    EndOfMessage,
    InformationalResponse,
    LocalProtocolError,
    RequestHead,
    ResponseHead,
    ServerConnection,
)

pytestmark = pytest.mark.timeout(60)

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
HOST = [(b"host", b"x")]


def _run(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter of this build; its output lines (a crash fails)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    assert lines[0] == str(unknot.compiled), "the subprocess runs another build"
    return lines[1:]


# -- 1. hashing an event that contains itself ----------------------------------------------------

_CYCLES = """
    import unknot
    from unknot.http._protocol import (
        EndOfMessage, Event, InformationalResponse, RequestHead, ResponseHead,
    )

    print(unknot.compiled)

    class Wrapper(Event):  # an interpreted subclass whose field holds an event itself
        FIELDS = ("inner",)
        __slots__ = FIELDS

        def __init__(self, inner):
            self.inner = inner

    def outcome(event):
        try:
            hash(event)
        except RecursionError:
            return "RecursionError"
        return "hashed"

    def cycles():
        headers = []
        yield ResponseHead(200, headers), headers
        headers = []
        yield InformationalResponse(103, headers), headers
        headers = []
        yield RequestHead(b"GET", b"/", headers), headers
        headers = []
        yield EndOfMessage(headers), headers

    for event, headers in cycles():
        headers.append(event)  # the event in its own header list
        print(type(event).__name__, outcome(event))
        headers[0] = (b"x", event)  # inside a pair
        print(type(event).__name__, outcome(event))

    a = Wrapper(None)
    b = Wrapper(a)
    a.inner = b
    print("Wrapper", outcome(a))

    # Deep nesting, no cycle: the same as a cycle, whatever the depth.
    deep = ResponseHead(200, [])
    for _ in range(100_000):
        deep = ResponseHead(200, [(b"x", deep)])
    print("deep", outcome(deep))

    # After all that, hashing still works, and equal events hash alike.
    one, two = RequestHead(b"GET", b"/", [(b"a", b"b")]), RequestHead(b"GET", b"/", [(b"a", b"b")])
    print("equal", hash(one) == hash(two) and hash(EndOfMessage()) == hash(EndOfMessage([])))
"""


def test_hashing_an_event_that_contains_itself_raises_recursion_error() -> None:
    lines = _run(_CYCLES)
    names = ["ResponseHead", "InformationalResponse", "RequestHead", "EndOfMessage"]
    expected = [f"{name} RecursionError" for name in names for _ in (1, 2)]
    expected += ["Wrapper RecursionError", "deep RecursionError", "equal True"]
    assert lines == expected


def test_hashing_nested_events_in_threads_keeps_working() -> None:
    # The depth guard is per thread: threads hashing at once do not add up (50 events deep,
    # 8 threads: 400 would be past the limit of 100).
    lines = _run(
        """
        import sys
        import threading
        import unknot
        from unknot.http._protocol import ResponseHead

        print(unknot.compiled)
        sys.setswitchinterval(1e-6)  # switch threads as often as can be
        nested = ResponseHead(200, [])
        for _ in range(50):
            nested = ResponseHead(200, [(b"x", nested)])
        errors = []

        def work():
            try:
                for _ in range(200):
                    hash(nested)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(len(errors))
        """
    )
    assert lines == ["0"]


# -- 2. argument types ---------------------------------------------------------------------------

_EVENT_REFUSED: list[tuple[str, Callable[[], Any]]] = [
    ("ResponseHead float status", lambda: ResponseHead(200.0, [])),  # type: ignore[arg-type]
    ("ResponseHead str status", lambda: ResponseHead("200", [])),  # type: ignore[arg-type]
    ("ResponseHead None status", lambda: ResponseHead(None, [])),  # type: ignore[arg-type]
    ("ResponseHead tuple headers", lambda: ResponseHead(200, ())),  # type: ignore[arg-type]
    ("ResponseHead None headers", lambda: ResponseHead(200, None)),  # type: ignore[arg-type]
    ("ResponseHead str reason", lambda: ResponseHead(200, [], "OK")),  # type: ignore[arg-type]
    (
        "ResponseHead bytearray reason",
        lambda: ResponseHead(200, [], bytearray(b"OK")),  # type: ignore[arg-type]
    ),
    (
        "ResponseHead str version",
        lambda: ResponseHead(200, [], b"", "1.1"),  # type: ignore[arg-type]
    ),
    (
        "ResponseHead int keep_alive",
        lambda: ResponseHead(200, [], b"", b"1.1", 1),  # type: ignore[arg-type]
    ),
    ("Informational float status", lambda: InformationalResponse(100.0, [])),  # type: ignore[arg-type]
    ("Informational tuple headers", lambda: InformationalResponse(100, ())),  # type: ignore[arg-type]
    ("Informational str reason", lambda: InformationalResponse(100, [], "x")),  # type: ignore[arg-type]
    (
        "Informational str version",
        lambda: InformationalResponse(100, [], b"", "1.1"),  # type: ignore[arg-type]
    ),
    ("RequestHead str method", lambda: RequestHead("GET", b"/", [])),  # type: ignore[arg-type]
    (
        "RequestHead bytearray method",
        lambda: RequestHead(bytearray(b"GET"), b"/", []),  # type: ignore[arg-type]
    ),
    (
        "RequestHead memoryview target",
        lambda: RequestHead(b"GET", memoryview(b"/"), []),  # type: ignore[arg-type]
    ),
    ("RequestHead str target", lambda: RequestHead(b"GET", "/", [])),  # type: ignore[arg-type]
    ("RequestHead tuple headers", lambda: RequestHead(b"GET", b"/", ())),  # type: ignore[arg-type]
    ("RequestHead None headers", lambda: RequestHead(b"GET", b"/", None)),  # type: ignore[arg-type]
    (
        "RequestHead str version",
        lambda: RequestHead(b"GET", b"/", [], "1.1"),  # type: ignore[arg-type]
    ),
    (
        "RequestHead int keep_alive",
        lambda: RequestHead(b"GET", b"/", [], b"1.1", 1),  # type: ignore[arg-type]
    ),
    (
        "RequestHead int expect_continue",
        lambda: RequestHead(b"GET", b"/", [], b"1.1", True, 0),  # type: ignore[arg-type]
    ),
    (
        "RequestHead None upgrade",
        lambda: RequestHead(b"GET", b"/", [], b"1.1", True, False, None),  # type: ignore[arg-type]
    ),
]


@pytest.mark.parametrize("make", [m for _, m in _EVENT_REFUSED], ids=[n for n, _ in _EVENT_REFUSED])
def test_events_refuse_arguments_of_a_wrong_type(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        make()


def test_events_take_their_types_and_subtypes() -> None:
    class Status(int):
        pass

    class Raw(bytes):
        pass

    class Pairs(list):  # type: ignore[type-arg]
        pass

    assert ResponseHead(HTTPStatus.OK, []).status == 200
    assert ResponseHead(True, [], b"", b"1.1", False).status == 1  # (a bool is an int)
    assert InformationalResponse(Status(103), Pairs(), Raw(b"Early"), Raw(b"1.1")).status == 103
    head = RequestHead(Raw(b"GET"), Raw(b"/"), Pairs([(b"a", b"b")]), b"1.0", False, True, True)
    assert (head.method, head.keep_alive, head.expect_continue, head.upgrade) == (
        b"GET",
        False,
        True,
        True,
    )
    assert EndOfMessage(((b"a", b"b"),)) == EndOfMessage([(b"a", b"b")])


def _answering() -> ServerConnection:
    """A server connection with a GET to answer."""
    conn = ServerConnection()
    conn.receive_data(GET)
    conn.next_events()
    assert conn.our_state is SEND_RESPONSE
    return conn


def _sending_body() -> ServerConnection:
    conn = _answering()
    conn.start_response(200, [(b"content-length", b"10")])
    assert conn.our_state is SEND_BODY
    return conn


_CALLS_REFUSED: list[tuple[str, Callable[[], Any]]] = [
    ("send_response float", lambda: _answering().send_response(200.0)),  # type: ignore[arg-type]
    ("send_response float 404", lambda: _answering().send_response(404.0)),  # type: ignore[arg-type]
    (
        "send_response float reason",
        lambda: _answering().send_response(200.0, reason=b"Fine"),  # type: ignore[arg-type]
    ),
    ("send_response float 1xx", lambda: _answering().send_response(150.0)),  # type: ignore[arg-type]
    ("send_response str", lambda: _answering().send_response("200")),  # type: ignore[arg-type]
    ("send_response None", lambda: _answering().send_response(None)),  # type: ignore[arg-type]
    ("start_response float", lambda: _answering().start_response(200.0)),  # type: ignore[arg-type]
    ("start_response str", lambda: _answering().start_response("200")),  # type: ignore[arg-type]
    (
        "send_informational float",
        lambda: _answering().send_informational(100.0),  # type: ignore[arg-type]
    ),
    ("data_sent float", lambda: _sending_body().data_sent(1.0)),  # type: ignore[arg-type]
    ("data_sent str", lambda: _sending_body().data_sent("1")),  # type: ignore[arg-type]
    ("data_sent None", lambda: _sending_body().data_sent(None)),  # type: ignore[arg-type]
    ("server send str", lambda: _answering().send("x")),  # type: ignore[arg-type]
    ("client send None", lambda: ClientConnection().send(None)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("call", [c for _, c in _CALLS_REFUSED], ids=[n for n, _ in _CALLS_REFUSED])
def test_connections_refuse_arguments_of_a_wrong_type(call: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        call()


def test_a_refused_status_changes_nothing() -> None:
    conn = _answering()
    for status in (200.0, 404.0, "200", 150.0):
        with pytest.raises(TypeError):
            conn.send_response(status)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            conn.start_response(status)  # type: ignore[arg-type]
        assert conn.our_state is SEND_RESPONSE
    for status in (99, 1000, 10**30, -200):
        with pytest.raises(LocalProtocolError):
            conn.send_response(status)
        assert conn.our_state is SEND_RESPONSE
    assert conn.send_response(HTTPStatus.NOT_FOUND).startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert conn.our_state is IDLE


def test_connections_take_int_subtypes() -> None:
    assert (
        _answering()
        .send_response(HTTPStatus.OK, reason=b"Fine")
        .startswith(b"HTTP/1.1 200 Fine\r\n")
    )
    assert _answering().start_response(HTTPStatus.CREATED).startswith(b"HTTP/1.1 201 Created")
    assert _answering().send_informational(HTTPStatus.CONTINUE) == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn = _sending_body()
    conn.data_sent(True)  # (a bool is an int)
    conn.data_sent(9)
    assert conn.end_response() == b""
    with pytest.raises(LocalProtocolError):  # a wrong event is still a protocol error
        _answering().send(RequestHead(b"GET", b"/", HOST))
    with pytest.raises(LocalProtocolError):
        ClientConnection().send(ResponseHead(200, []))
