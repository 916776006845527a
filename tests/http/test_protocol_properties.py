"""Property tests of the sans-I/O HTTP layer (hypothesis).

1. Any valid request, and several pipelined, split at arbitrary byte boundaries, parses to the
   same events as unsplit, and to what was generated.
2. Random bytes, and mutated valid messages, never make either side raise anything but the
   layer's own ProtocolError.
3. What the writer frames, the reader parses back: server response -> client, client request ->
   server.

``UNKNOT_HYPOTHESIS_EXAMPLES`` raises the example count (e.g. 20000 for a fuzzing run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unknot.http._protocol import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    ProtocolError,
    RequestHead,
    ResponseHead,
    ServerConnection,
)

SETTINGS = settings(
    max_examples=int(os.environ.get("UNKNOT_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- generating valid messages --------------------------------------------------------------------

methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
_VALUE_CHARS = "".join(map(chr, range(0x21, 0x7F))) + " \t\x80\xe9\xff"


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


targets = st.text("abcXYZ019-._~!$&'()*+,;=:@/?%", max_size=30).map(lambda t: b"/" + _latin1(t))
# Names that mean nothing to the framing (x-...), values with tabs and obs-text but no CTL.
names = st.text(_TOKEN_CHARS, min_size=1, max_size=12).map(lambda t: b"X-" + _latin1(t))
values = st.text(_VALUE_CHARS, max_size=20).map(lambda t: _latin1(t.lstrip(" \t")))
headers = st.lists(st.tuples(names, values), max_size=6)
bodies = st.binary(max_size=300)


@dataclass
class GeneratedRequest:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunked: bool
    chunk_sizes: list[int] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def wire(self) -> bytes:
        """Serialized by hand (not by the layer's writer)."""
        lines = [b"%s %s HTTP/1.1" % (self.method, self.target), b"Host: example.com"]
        lines += [b"%s: %s" % pair for pair in self.headers]
        if self.chunked:
            lines.append(b"Transfer-Encoding: chunked")
        else:
            lines.append(b"Content-Length: %d" % len(self.body))
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        if not self.chunked:
            return head + self.body
        parts, rest = [], self.body
        for size in self.chunk_sizes:
            if not rest:
                break
            piece, rest = rest[: max(size, 1)], rest[max(size, 1) :]
            parts.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        if rest:
            parts.append(b"%X;ext=1\r\n%s\r\n" % (len(rest), rest))
        trailers = b"".join(b"%s: %s\r\n" % pair for pair in self.trailers)
        return head + b"".join(parts) + b"0\r\n" + trailers + b"\r\n"


@st.composite
def requests(draw: st.DrawFn) -> GeneratedRequest:
    chunked = draw(st.booleans())
    return GeneratedRequest(
        method=draw(methods),
        target=draw(targets),
        headers=draw(headers),
        body=draw(bodies),
        chunked=chunked,
        chunk_sizes=draw(st.lists(st.integers(1, 100), max_size=5)) if chunked else [],
        trailers=draw(st.lists(st.tuples(names, values), max_size=3)) if chunked else [],
    )


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def merged(events: list[Event]) -> list[Event]:
    """Consecutive Data events joined (their boundaries depend on how bytes arrived)."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        elif not (isinstance(event, Data) and not event.data):
            out.append(event)
    return out


def serve(pieces: list[bytes], eof: bool = False) -> list[Event]:
    """A server fed ``pieces``, answering each request as soon as it is complete."""
    conn = ServerConnection()
    events: list[Event] = []

    def pump() -> None:
        while True:
            batch = conn.next_events()
            if batch is NEED_DATA:
                return
            if batch is PAUSED:
                conn.send_response(200, [(b"content-type", b"text/plain")], b"ok")
                continue
            assert isinstance(batch, list) and batch
            events.extend(batch)
            if isinstance(batch[0], ConnectionClosed):
                return

    for piece in pieces:
        conn.receive_data(piece)
        pump()
    if eof:
        conn.receive_data(b"")
        pump()
    return events


def expected_events(request: GeneratedRequest) -> Iterator[object]:
    yield (
        request.method,
        request.target,
        [(b"host", b"example.com")] + [(name.lower(), value) for name, value in request.headers],
    )
    if request.body:
        yield Data(request.body)
    yield EndOfMessage([(name.lower(), value) for name, value in request.trailers])


def summary(events: list[Event]) -> list[object]:
    """Events in the form of ``expected_events`` (framing headers left out of heads)."""
    out: list[object] = []
    for event in events:
        if isinstance(event, RequestHead):
            fields = [
                pair
                for pair in event.headers
                if pair[0] not in (b"content-length", b"transfer-encoding")
            ]
            out.append((event.method, event.target, fields))
        else:
            out.append(event)
    return out


# -- 1. split anywhere, same events ---------------------------------------------------------------


@SETTINGS
@given(request=requests(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_request_split_anywhere_parses_the_same(request: GeneratedRequest, cuts: list[int]) -> None:
    wire = request.wire()
    whole = merged(serve([wire]))
    assert summary(whole) == list(expected_events(request))
    assert merged(serve(split(wire, cuts))) == whole


@SETTINGS
@given(
    batch=st.lists(requests(), min_size=2, max_size=4),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_pipelined_requests_split_anywhere_parse_the_same(
    batch: list[GeneratedRequest], cuts: list[int]
) -> None:
    wire = b"".join(request.wire() for request in batch)
    whole = merged(serve([wire], eof=True))
    expected: list[object] = [e for request in batch for e in expected_events(request)]
    assert summary(whole) == [*expected, ConnectionClosed()]
    assert merged(serve(split(wire, cuts), eof=True)) == whole


@SETTINGS
@given(cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_byte_by_byte_and_anywhere_for_a_fixed_tricky_request(cuts: list[int]) -> None:
    wire = (
        b"\r\nPOST /x?y=%20 HTTP/1.1\r\nHost: h\r\nX-Tab: a\tb \r\nX-Empty:\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"1;a=b;c\r\nA\r\n10\r\n0123456789abcdef\r\n0\r\nT-1: x\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    whole = merged(serve([wire], eof=True))
    assert [type(e) for e in whole] == [
        RequestHead,
        Data,
        EndOfMessage,
        RequestHead,
        EndOfMessage,
        ConnectionClosed,
    ]
    assert merged(serve(split(wire, cuts), eof=True)) == whole
    assert merged(serve([wire[i : i + 1] for i in range(len(wire))], eof=True)) == whole


# -- 2. garbage raises only ProtocolError ---------------------------------------------------------


def survives(pieces: list[bytes]) -> None:
    """Feeding ``pieces`` then EOF to a server ends in events or a ProtocolError, nothing else."""
    try:
        serve(pieces, eof=True)
    except ProtocolError:
        pass


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(requests()).wire())
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@SETTINGS
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_random_bytes_raise_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    survives(split(data, cuts))


@SETTINGS
@given(data=mutated(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_mutated_requests_raise_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    survives(split(data, cuts))


@SETTINGS
@given(
    prefix=st.sampled_from([b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"]),
    data=st.binary(max_size=400),
    method=st.sampled_from([b"GET", b"HEAD"]),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_random_responses_raise_only_protocol_errors(
    prefix: bytes, data: bytes, method: bytes, cuts: list[int]
) -> None:
    conn = ClientConnection()
    conn.send_request(method, b"/", [(b"host", b"h")])
    try:
        for piece in [*split(prefix + data, cuts), b""]:
            conn.receive_data(piece)
            while isinstance(events := conn.next_events(), list):
                if isinstance(events[0], ConnectionClosed):
                    break
    except ProtocolError:
        pass


# -- 3. round trips -------------------------------------------------------------------------------

statuses = st.sampled_from([200, 201, 202, 204, 206, 301, 304, 400, 404, 418, 500, 503, 599])


@SETTINGS
@given(
    method=st.sampled_from([b"GET", b"HEAD", b"POST"]),
    status=statuses,
    fields=headers,
    body=bodies,
    mode=st.sampled_from(["whole", "length", "chunked"]),
    pieces=st.lists(st.integers(1, 50), max_size=6),
    trailers=st.lists(st.tuples(names, values), max_size=2),
    interim=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_server_response_is_parsed_back_by_the_client(
    method: bytes,
    status: int,
    fields: list[tuple[bytes, bytes]],
    body: bytes,
    mode: str,
    pieces: list[int],
    trailers: list[tuple[bytes, bytes]],
    interim: bool,
    cuts: list[int],
) -> None:
    client, server = ClientConnection(), ServerConnection()
    server.receive_data(client.send_request(method, b"/", [(b"host", b"h")]))
    assert isinstance(server.next_events(), list)
    bodiless = method == b"HEAD" or status in (204, 304)
    if status in (204, 304):
        body = b""
    wire = server.send_informational(103, [(b"link", b"</a>")]) if interim else b""
    if mode == "whole":
        wire += server.send_response(status, fields, body)
    else:
        length = len(body) if mode == "length" and status != 204 else None
        wire += server.start_response(status, fields, content_length=length)
        rest = body
        for size in pieces:
            wire += server.send_data(rest[:size])
            rest = rest[size:]
        wire += server.send_data(rest)
        wire += server.end_response(trailers if mode == "chunked" and not bodiless else None)
    for piece in split(wire, cuts):
        client.receive_data(piece)
    events = []
    while isinstance(batch := client.next_events(), list):
        events.extend(batch)
    if interim:
        assert events.pop(0) == InformationalResponse(103, [(b"link", b"</a>")], b"Early Hints")
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert head.status == status and head.keep_alive
    assert [pair for pair in head.headers if pair[0].startswith(b"x-")] == [
        (name.lower(), value) for name, value in fields
    ]
    assert b"".join(e.data for e in events if isinstance(e, Data)) == (b"" if bodiless else body)
    expected_trailers = trailers if mode == "chunked" and not bodiless else []
    assert events[-1] == EndOfMessage([(n.lower(), v) for n, v in expected_trailers])
    assert client.our_state is client.their_state is server.our_state  # all IDLE again


@SETTINGS
@given(
    request=requests(),
    streamed=st.booleans(),
    pieces=st.lists(st.integers(1, 50), max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_client_request_is_parsed_back_by_the_server(
    request: GeneratedRequest, streamed: bool, pieces: list[int], cuts: list[int]
) -> None:
    client = ClientConnection()
    fields = [(b"host", b"example.com"), *request.headers]
    if not streamed:
        wire = client.send_request(request.method, request.target, fields, request.body)
    else:
        length = None if request.chunked else len(request.body)
        wire = client.start_request(request.method, request.target, fields, length)
        rest = request.body
        for size in pieces:
            wire += client.send_data(rest[:size])
            rest = rest[size:]
        wire += client.send_data(rest)
        wire += client.end_request(request.trailers if request.chunked else None)
    events = merged(serve(split(wire, cuts)))
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target) == (request.method, request.target)
    framing = (b"content-length", b"transfer-encoding")
    assert [pair for pair in head.headers if pair[0] not in framing] == [
        (name.lower(), value) for name, value in fields
    ]
    assert b"".join(e.data for e in events if isinstance(e, Data)) == request.body
    trailers = request.trailers if streamed and request.chunked else []
    assert events[-1] == EndOfMessage([(n.lower(), v) for n, v in trailers])
