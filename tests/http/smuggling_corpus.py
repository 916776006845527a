"""A request-smuggling corpus: requests whose framing a server and a proxy could read two ways.

Each `Case` is sent on a connection of its own, followed by `SMUGGLED` (a second request that
must never be answered unless correct framing puts it after the first), then the client's side
is shut down. ``expect`` is either ``REFUSE`` (one 4xx answer, in ``statuses``, then the
connection closes) or the paths the server must answer, in order, by correct HTTP/1.1 framing
(RFC 9112). Used by tests/http/test_faults_smuggling.py and the fuzz driver (fuzz/).
"""

from __future__ import annotations

from dataclasses import dataclass

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
REFUSE = "refuse"
BAD = frozenset({400})
BAD_OR_CODING = BAD  # an unknown transfer coding is 400 too (it was 501 before)


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: str | tuple[str, ...]
    statuses: frozenset[int] = BAD


def _post(headers: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    return b"POST / HTTP/" + version + b"\r\nHost: x\r\n" + headers + b"\r\n" + body


def _cl(n: int | bytes) -> bytes:
    value = n if isinstance(n, bytes) else b"%d" % n
    return b"Content-Length: " + value + b"\r\n"


_CHUNKED_END = b"0\r\n\r\n"
_UPGRADE = b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AA\r\n"
_INNER = b"GET /inner HTTP/1.1\r\nHost: x\r\n\r\n"
# The body if read as chunked ends before SMUGGLED; read by a Content-Length covering it all,
# SMUGGLED is body. A server that picks either alone answers differently from its neighbour.
_TE_BODY = _CHUNKED_END + SMUGGLED
_N = len(_TE_BODY)

TE_OBFUSCATIONS: list[tuple[str, bytes, frozenset[int]]] = [
    ("te_space_before_colon", b"Transfer-Encoding : chunked\r\n", BAD),
    ("te_tab_before_colon", b"Transfer-Encoding\t: chunked\r\n", BAD),
    ("te_chunked_identity", b"Transfer-Encoding: chunked, identity\r\n", BAD_OR_CODING),
    (
        "te_identity_chunked_twice",
        b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        BAD_OR_CODING,
    ),
    ("te_tab_value", b"Transfer-Encoding:\tchunked\r\n", BAD),
    ("te_xchunked", b"Transfer-Encoding: xchunked\r\n", BAD_OR_CODING),
    ("te_chunkedx", b"Transfer-Encoding: chunkedx\r\n", BAD_OR_CODING),
    ("te_upper", b"TRANSFER-ENCODING: CHUNKED\r\n", BAD),
    ("te_vtab", b"Transfer-Encoding:\x0bchunked\r\n", BAD),
    ("te_nul_value", b"Transfer-Encoding: chunked\x00\r\n", BAD),
    ("te_nul_name", b"Transfer-Encoding\x00: chunked\r\n", BAD),
    ("te_obs_fold", b"Transfer-Encoding: x\r\n chunked\r\n", BAD_OR_CODING),
    ("te_leading_space_line", b"X: y\r\n Transfer-Encoding: chunked\r\n", BAD),
    ("te_bare_lf_before", b"X: y\nTransfer-Encoding: chunked\r\n", BAD),
    ("te_bare_cr_before", b"X: y\rTransfer-Encoding: chunked\r\n", BAD),
    ("te_quoted", b'Transfer-Encoding: "chunked"\r\n', BAD_OR_CODING),
    ("te_comma_first", b"Transfer-Encoding: , chunked\r\n", BAD_OR_CODING),
    ("te_twice", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", BAD_OR_CODING),
    ("te_empty", b"Transfer-Encoding: \r\n", BAD_OR_CODING),
]


def _cases() -> list[Case]:
    cases = [
        Case("cl_te", _post(_cl(_N) + b"Transfer-Encoding: chunked\r\n", _TE_BODY), REFUSE),
        Case("te_cl", _post(b"Transfer-Encoding: chunked\r\n" + _cl(_N), _TE_BODY), REFUSE),
        Case("cl_cl_differ", _post(_cl(0) + _cl(len(SMUGGLED)), SMUGGLED), REFUSE),
        Case("cl_cl_differ_rev", _post(_cl(len(SMUGGLED)) + _cl(0), SMUGGLED), REFUSE),
        Case("cl_cl_same", _post(_cl(3) + _cl(3), b"abc"), REFUSE),
        Case("cl_list", _post(_cl(b"3, 3"), b"abc"), REFUSE),
        Case("cl_plus", _post(_cl(b"+3"), b"abc"), REFUSE),
        Case("cl_minus", _post(_cl(b"-3"), b"abc"), REFUSE),
        Case("cl_hex", _post(_cl(b"0x3"), b"abc"), REFUSE),
        Case("cl_overflow", _post(_cl(b"9" * 30), b"abc"), REFUSE),
        Case("cl_space_before_colon", _post(b"Content-Length : 3\r\n", b"abc"), REFUSE),
        Case("cl_letters", _post(_cl(b"3a"), b"abc"), REFUSE),
        Case(
            "cl_underscore_name",
            _post(b"Content_Length: 0\r\n" + _cl(len(SMUGGLED)), SMUGGLED),
            ("/", "/smuggled"),
        ),
        Case(
            "get_with_body",
            b"GET / HTTP/1.1\r\nHost: x\r\n" + _cl(len(SMUGGLED)) + b"\r\n" + SMUGGLED,
            ("/", "/smuggled"),
        ),
        Case(
            "te_chunked_plain",
            _post(b"Transfer-Encoding: chunked\r\n", _CHUNKED_END),
            ("/", "/smuggled"),
        ),
        Case(
            "te_tab_only",
            _post(b"Transfer-Encoding:\tchunked\r\n", _CHUNKED_END),
            ("/", "/smuggled"),
        ),
        Case(
            "te_http10_keep_alive",
            _post(
                b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n", _CHUNKED_END, b"1.0"
            ),
            ("/",),
        ),
        Case(
            "chunk_ext",
            _post(b"Transfer-Encoding: chunked\r\n", b'3;a=b;c="d e"\r\nabc\r\n0;z\r\n\r\n'),
            ("/", "/smuggled"),
        ),
        Case(
            "chunk_ext_nul",
            _post(b"Transfer-Encoding: chunked\r\n", b"3;a\x00\r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_ext_bare_cr",
            _post(b"Transfer-Encoding: chunked\r\n", b"3;a\rb\r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_ext_bare_lf",
            _post(b"Transfer-Encoding: chunked\r\n", b"3;a\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_size_lf",
            _post(b"Transfer-Encoding: chunked\r\n", b"3\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_data_lf",
            _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_data_cr",
            _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_data_long",
            _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_size_overflow",
            _post(b"Transfer-Encoding: chunked\r\n", b"10000000000000003\r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_size_huge",
            _post(b"Transfer-Encoding: chunked\r\n", b"f" * 40 + b"\r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_size_leading_zeros",
            _post(b"Transfer-Encoding: chunked\r\n", b"0" * 30 + b"3\r\nabc\r\n0\r\n\r\n"),
            ("/", "/smuggled"),
        ),
        Case(
            "chunk_size_space",
            _post(b"Transfer-Encoding: chunked\r\n", b"3 \r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_size_negative",
            _post(b"Transfer-Encoding: chunked\r\n", b"-3\r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_size_0x",
            _post(b"Transfer-Encoding: chunked\r\n", b"0x3\r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "chunk_size_empty",
            _post(b"Transfer-Encoding: chunked\r\n", b"\r\nabc\r\n0\r\n\r\n"),
            REFUSE,
        ),
        Case(
            "trailer_content_length",
            _post(b"Transfer-Encoding: chunked\r\n", b"0\r\nContent-Length: 5\r\n\r\n"),
            REFUSE,
        ),
        Case("head_bare_lf", b"GET / HTTP/1.1\nHost: x\n\n", REFUSE),
        Case("head_bare_cr", b"GET / HTTP/1.1\rHost: x\r\n\r\n", REFUSE),
        Case("value_bare_cr", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", REFUSE),
        Case("value_nul", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", REFUSE),
        Case("target_nul", b"GET /a\x00 HTTP/1.1\r\nHost: x\r\n\r\n", REFUSE),
        Case("obs_fold", b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", REFUSE),
        Case("two_hosts", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", REFUSE),
        Case("no_host", b"GET / HTTP/1.1\r\n\r\n", REFUSE),
        # Upgrade is ignored (the server does not switch protocols): a plain request, whose
        # body llhttp skips (it would read it as the next request; here, one that must never
        # be answered: /inner).
        Case("upgrade_no_body", _post(_UPGRADE, b""), ("/", "/smuggled")),
        Case("upgrade_cl_body", _post(_UPGRADE + _cl(len(_INNER)), _INNER), ("/", "/smuggled")),
        Case(
            "upgrade_chunked_body",
            _post(
                _UPGRADE + b"Transfer-Encoding: chunked\r\n",
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(_INNER), _INNER),
            ),
            ("/", "/smuggled"),
        ),
        Case(
            "upgrade_cl_covers_smuggled",  # SMUGGLED is the end of the body
            _post(_UPGRADE + _cl(len(_INNER) + len(SMUGGLED)), _INNER),
            ("/",),
        ),
        Case(
            "upgrade_te_and_cl",
            _post(_UPGRADE + b"Transfer-Encoding: chunked\r\n" + _cl(3), b"0\r\n\r\n"),
            REFUSE,
        ),
        Case("upgrade_http10_body", _post(_UPGRADE + _cl(len(_INNER)), _INNER, b"1.0"), ("/",)),
        Case(
            "connect_with_body",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n" + _cl(2) + b"\r\nab",
            REFUSE,
        ),
    ]
    for name, header, statuses in TE_OBFUSCATIONS:
        cases.append(Case(name + "_with_cl", _post(header + _cl(_N), _TE_BODY), REFUSE, statuses))
        cases.append(Case(name + "_cl_first", _post(_cl(_N) + header, _TE_BODY), REFUSE, statuses))
    return cases


CASES = _cases()


# -- running a request: over the protocol layer, over a live server ------------------------------


@dataclass
class Outcome:
    """What came of some request bytes: the targets (paths) of the requests read and answered,
    in order, and the status of the refusal that ended the connection, if one did."""

    paths: list[str]
    refused: int | None = None


def protocol_outcome(data: bytes, split: int | None = None) -> Outcome:
    """Feed ``data`` (then EOF) to a `ServerConnection` as the server would, answering each
    request with 200; ``split``: feed it in two pieces at that offset. Only the layer's own
    ProtocolError may come out (anything else propagates, and fails the caller)."""
    from unknot.http._protocol import (
        NEED_DATA,
        ConnectionClosed,
        EndOfMessage,
        ProtocolError,
        RequestHead,
        ServerConnection,
    )

    conn = ServerConnection()
    pieces = [data] if split is None else [data[:split], data[split:]]
    pieces = [piece for piece in pieces if piece] + [b""]  # (b"" is the EOF)
    outcome = Outcome([])
    try:
        while True:
            events = conn.next_events()
            if events is NEED_DATA:
                if not pieces:
                    return outcome
                conn.receive_data(pieces.pop(0))
                continue
            assert isinstance(events, list), events
            for event in events:
                if isinstance(event, RequestHead):
                    outcome.paths.append(event.target.decode("latin-1"))
                elif isinstance(event, ConnectionClosed):
                    return outcome
                elif isinstance(event, EndOfMessage):
                    conn.send_response(200, [], b"ok")
                    if not conn.keep_alive:
                        return outcome
    except ProtocolError as exc:
        outcome.refused = exc.status_hint
        return outcome


def parse_responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The responses in ``data`` (1xx skipped), each (status, headers, body); they must carry a
    Content-Length (the server's do for bytes bodies) and be well formed."""
    responses = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].split(b"\r\n")
        version, status, _ = lines[0].split(b" ", 2)
        assert version == b"HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        body = data[end + 4 : end + 4 + length]
        assert len(body) == length, "a truncated response"
        pos = end + 4 + length
        if int(status) >= 200:
            responses.append((int(status), headers, body))
    return responses


def live_outcome(port: int, data: bytes, timeout: float = 10.0) -> Outcome:
    """Send ``data`` to a server on 127.0.0.1:``port`` whose handler answers with an
    ``x-path`` header, shut our side down, read until it closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # refused and closed before all was sent: what it answered tells
        received = bytearray()
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    outcome = Outcome([])
    for status, headers, _ in parse_responses(bytes(received)):
        if outcome.refused is not None:
            raise AssertionError(f"a response after a refusal: {bytes(received)!r}")
        if status == 200:
            outcome.paths.append(headers[b"x-path"].decode("latin-1"))
        else:
            outcome.refused = status
    return outcome


def check(case: Case, outcome: Outcome) -> None:
    """The outcome is what ``case`` expects: never an answer to ``/smuggled`` it should not get."""
    if case.expect == REFUSE:
        assert outcome.refused in case.statuses, (case.name, outcome)
        assert "/smuggled" not in outcome.paths, (case.name, outcome)
    else:
        assert outcome.refused is None, (case.name, outcome)
        assert tuple(outcome.paths) == case.expect, (case.name, outcome)
