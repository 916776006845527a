"""Generated requests for the HTTP fuzzer, and what each must get.

A batch is some valid requests pipelined on one connection, then one last request of one kind:

``valid``      a well-formed request (Content-Length, chunked with extensions and trailers, or
               no body); it must be answered 200 with its own target and body.
``malformed``  a valid request broken in a way RFC 9112 forbids (bare CR or LF, obs-fold, NUL,
               a bad Content-Length, a bad chunk, a bad version, over a limit...); it must be
               refused (a 4xx, or a closed connection) and nothing after it answered.
``smuggle``    a random mix of Content-Length and (obfuscated) Transfer-Encoding headers over a
               body that holds a second request; that request must never be answered, and a
               mix with any Transfer-Encoding-like header or two Content-Lengths is refused.
``corpus``     a case of tests/http/smuggling_corpus.py.
``random``     a valid request mutated at random bytes, or random bytes: anything but a crash,
               a 500 or a malformed answer.

The generators take a `Choices`: `DrawChoices` draws through hypothesis (shrinkable examples),
`RandomChoices` from a ``random.Random`` (about 50 times faster, for volume: the fuzzer seeds it
from a hypothesis draw, so a failing batch is reproduced from its example).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import strategies as st
from smuggling_corpus import CASES, SMUGGLED, Case

T = TypeVar("T")

#: The statuses a request may be refused with.
REFUSALS = frozenset({400, 408, 413, 414, 431, 501, 505})


@dataclass
class Generated:
    kind: str
    data: bytes
    path: str = "/"
    body: bytes = b""
    #: ``malformed`` and ``smuggle``: the statuses it may be refused with; empty when it may
    #: also be accepted.
    refusals: frozenset[int] = frozenset()
    case: Case | None = None
    notes: list[str] = field(default_factory=list)


class Choices:
    """Where the generators' choices come from."""

    def choice(self, options: Sequence[T]) -> T:
        raise NotImplementedError

    def integer(self, low: int, high: int) -> int:
        raise NotImplementedError

    def text(self, alphabet: str, max_size: int) -> str:
        raise NotImplementedError

    def binary(self, size: int) -> bytes:
        raise NotImplementedError

    def shuffled(self, items: list[T]) -> list[T]:
        raise NotImplementedError


class DrawChoices(Choices):
    """Choices drawn through hypothesis (``st.data()``)."""

    def __init__(self, data: Any) -> None:
        self.draw = data.draw

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))  # type: ignore[no-any-return]

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))  # type: ignore[no-any-return]

    def text(self, alphabet: str, max_size: int) -> str:
        return self.draw(st.text(alphabet, max_size=max_size))  # type: ignore[no-any-return]

    def binary(self, size: int) -> bytes:
        return self.draw(st.binary(min_size=size, max_size=size))  # type: ignore[no-any-return]

    def shuffled(self, items: list[T]) -> list[T]:
        return self.draw(st.permutations(items))  # type: ignore[no-any-return]


class RandomChoices(Choices):
    """Choices from a seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def text(self, alphabet: str, max_size: int) -> str:
        return "".join(self.rng.choices(alphabet, k=self.rng.randint(0, max_size)))

    def binary(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def shuffled(self, items: list[T]) -> list[T]:
        items = list(items)
        self.rng.shuffle(items)
        return items


_TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
_PATH = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
_VALUE = "".join(map(chr, range(0x21, 0x7F))) + " \t"
_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
_EXTS = [b"", b"", b";a", b";a=b", b';name="quoted value"', b";x=1;y=2"]


def body_of(c: Choices) -> bytes:
    kind = c.integer(0, 3)
    if kind == 0:
        return b""
    if kind < 3:
        return c.binary(c.integer(1, 64))
    pattern = c.binary(c.integer(1, 16))  # a large body: a short pattern repeated
    size = c.integer(1000, 70000)
    return (pattern * (size // len(pattern) + 1))[:size]


def chunked(c: Choices, body: bytes) -> bytes:
    """``body`` in chunks of random sizes, maybe with extensions and trailers."""
    out = bytearray()
    pos = 0
    while pos < len(body):
        size = c.integer(1, len(body) - pos)
        hexsize = b"%x" % size
        if c.integer(0, 1):
            hexsize = hexsize.upper()
        out += hexsize + c.choice(_EXTS) + b"\r\n" + body[pos : pos + size] + b"\r\n"
        pos += size
    out += b"0" + c.choice(_EXTS) + b"\r\n"
    if c.integer(0, 4) == 0:
        out += b"X-Trailer: t\r\n"
    return bytes(out + b"\r\n")


def valid(c: Choices) -> Generated:
    method = c.choice(_METHODS)
    path = "/" + c.text(_PATH, 40)
    body = body_of(c) if method not in ("GET", "HEAD") else b""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: fuzz"]
    for _ in range(c.integer(0, 5)):
        value = c.text(_VALUE, 30).strip(" \t")
        lines.append(f"X-{c.text(_TOKEN, 10) or 'h'}: {value}".encode())
    framing = c.choice(["length", "chunked"]) if body else "none"
    payload = b""
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        payload = chunked(c, body)
    elif method in ("POST", "PUT") and c.integer(0, 1):
        lines.append(b"Content-Length: 0")
    head = b"\r\n".join([lines[0], *c.shuffled(lines[1:])]) + b"\r\n\r\n"
    return Generated("valid", head + payload, path=path, body=body)


# Breaks that RFC 9112 (and llhttp's strict mode) refuse: (name, function of the request
# bytes, statuses). Anchored on whole lines ("\r\nName:"), so that no header value matches.
Break = tuple[str, Callable[[bytes], bytes], frozenset[int]]


def _sub(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    return lambda data: data.replace(old, new, 1)


def _in_head(insert: bytes) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        end = data.index(b"\r\n")
        return data[:end] + b"\r\nX-Bad: a" + insert + b"b" + data[end:]

    return apply


def _chunk_lf(data: bytes) -> bytes:
    start = data.index(b"\r\n\r\n") + 4
    return data[:start] + data[start:].replace(b"\r\n", b"\n", 1)


_400 = frozenset({400})
_CODING = frozenset({400, 501})  # an unknown transfer coding: 501 today, 400 is the goal
BREAKS: list[Break] = [
    ("bare_lf_line", _sub(b"\r\nHost", b"\nHost"), _400),
    ("bare_cr_line", _sub(b"\r\nHost", b"\rHost"), _400),
    ("bare_cr_value", _in_head(b"\r"), _400),
    ("nul_value", _in_head(b"\x00"), _400),
    ("ctl_value", _in_head(b"\x01"), _400),
    ("del_value", _in_head(b"\x7f"), _400),
    ("obs_fold", _in_head(b"\r\n "), _400),
    ("obs_fold_tab", _in_head(b"\r\n\t"), _400),
    ("space_before_colon", _sub(b"\r\nHost:", b"\r\nHost :"), _400),
    ("no_host", _sub(b"\r\nHost: fuzz", b""), _400),
    ("two_hosts", _sub(b"\r\nHost: fuzz", b"\r\nHost: a\r\nHost: b"), _400),
    ("version_2", _sub(b" HTTP/1.1\r\n", b" HTTP/2.0\r\n"), frozenset({505})),
    ("version_junk", _sub(b" HTTP/1.1\r\n", b" HTTP/1.x\r\n"), _400),
    ("version_lower", _sub(b" HTTP/1.1\r\n", b" http/1.1\r\n"), _400),
    ("nul_target", _sub(b" HTTP/1.1\r\n", b"\x00 HTTP/1.1\r\n"), _400),
    ("space_target", _sub(b" HTTP/1.1\r\n", b" x HTTP/1.1\r\n"), _400),
    ("huge_target", _sub(b" HTTP/1.1\r\n", b"a" * 9000 + b" HTTP/1.1\r\n"), frozenset({414})),
    ("huge_header", _in_head(b"h" * 17000), frozenset({431})),
    (
        "many_headers",
        _sub(b"\r\nHost: fuzz", b"\r\nHost: fuzz" + b"\r\nX-M: m" * 101),
        frozenset({431}),
    ),
]
# Breaks of a Content-Length framing, and of a chunked one.
CL = b"\r\nContent-Length: "
TE = b"\r\nTransfer-Encoding: chunked"
LENGTH_BREAKS: list[Break] = [
    ("cl_and_te", _sub(CL, TE + CL), _400),
    ("cl_twice", _sub(CL, CL + b"0" + CL), _400),
    ("cl_sign", _sub(CL, CL + b"+"), _400),
    ("cl_letter", _sub(CL, CL + b"x"), _400),
    ("cl_comma", _sub(CL, CL + b"0,"), _400),
    ("cl_huge", _sub(CL, CL + b"99999999999999999999"), frozenset({400, 413})),
]
CHUNKED_BREAKS: list[Break] = [
    ("te_and_cl", _sub(TE, TE + CL + b"5"), _400),
    ("te_unknown", _sub(TE, b"\r\nTransfer-Encoding: gzip"), _CODING),
    ("te_not_last", _sub(TE, TE + b", gzip"), _CODING),
    ("te_twice", _sub(TE, TE + TE), _CODING),
    ("te_space_before_colon", _sub(TE, b"\r\nTransfer-Encoding : chunked"), _400),
    ("chunk_size_bad", _sub(b"\r\n\r\n", b"\r\n\r\nz"), _400),
    ("chunk_size_overflow", _sub(b"\r\n\r\n", b"\r\n\r\n1000000000000000"), _400),
    ("chunk_size_lf", _chunk_lf, _400),
]


def malformed(c: Choices) -> Generated:
    request = valid(c)
    breaks = list(BREAKS)
    if CL in request.data and not request.data.startswith(b"GET"):
        breaks += LENGTH_BREAKS
    if TE in request.data:
        breaks += CHUNKED_BREAKS
    name, apply, statuses = c.choice(breaks)
    data = apply(request.data)
    if data == request.data:  # (nothing to break in this one)
        return request
    return Generated("malformed", data, refusals=statuses, notes=[name])


# -- smuggling: random mixes of framing headers around a body holding another request ----------

_TE_NAMES = [
    b"Transfer-Encoding",
    b"transfer-encoding",
    b"TRANSFER-ENCODING",
    b"Transfer-Encoding ",
    b"Transfer-Encoding\t",
    b" Transfer-Encoding",
    b"Transfer-Encoding\x00",
    b"Transfer\x00Encoding",
    b"\tTransfer-Encoding",
]
_TE_VALUES = [
    b"chunked",
    b" chunked",
    b"\tchunked",
    b"chunked ",
    b"chunked\t",
    b"CHUNKED",
    b"xchunked",
    b"chunkedx",
    b"chunked, identity",
    b"identity, chunked",
    b"identity",
    b"gzip, chunked",
    b"chunked, chunked",
    b'"chunked"',
    b"chunked;q=1",
    b"ch unked",
    b"\x0bchunked",
    b"chunked\x00",
    b"chunked\r",
    b"",
    b"x\r\n chunked",
    b",chunked",
]
# The first Content-Length covers the whole body (taken alone, it makes SMUGGLED body); a
# second may say anything.
_CL_COVERING = [
    b"%d",
    b" %d",
    b"%d ",
    b"0%d",
    b"+%d",
    b"%d, %d",
    b"%d,%d",
    b"-%d",
    b"%d.0",
    b"0x%x",
    b"%d\x00",
]
_CL_ANY = [*_CL_COVERING, b"0", b"1", b"99999999999999999999"]
_CL_NAMES = [b"Content-Length", b"content-length", b"Content-Length ", b" Content-Length"]
_SEPARATORS = [b": ", b":", b":\t", b" : "]


def smuggle(c: Choices) -> Generated:
    body = b"0\r\n\r\n" + SMUGGLED
    n = len(body)
    lines: list[bytes] = []
    te = c.integer(0, 2)
    cl = c.integer(1, 2)  # (always one: without it, chunked framing would be right)
    for _ in range(te):
        lines.append(c.choice(_TE_NAMES) + c.choice(_SEPARATORS) + c.choice(_TE_VALUES))
    for i in range(cl):
        value = c.choice(_CL_COVERING if i == 0 else _CL_ANY)
        value = value % ((n,) * value.count(b"%")) if b"%" in value else value
        name = c.choice(_CL_NAMES if i == 0 else [*_CL_NAMES, b"Content_Length"])
        lines.append(name + c.choice(_SEPARATORS) + value)
    real_cls = sum(1 for line in lines if not line.startswith(b"Content_Length"))
    mangled = any(line[:1].isspace() or line.split(b":")[0][-1:].isspace() for line in lines)
    eol = c.choice([b"\r\n"] * 6 + [b"\n", b"\r"])
    data = b"POST / HTTP/1.1\r\nHost: fuzz\r\n" + eol.join(c.shuffled(lines)) + b"\r\n\r\n" + body
    # Refused for sure: any header that looks like Transfer-Encoding (a real one comes with a
    # Content-Length here; a mangled one is an invalid header), two Content-Lengths, a name
    # with whitespace around it, a bare CR or LF between the lines.
    must_refuse = te > 0 or real_cls > 1 or mangled or (len(lines) > 1 and eol != b"\r\n")
    return Generated("smuggle", data, refusals=REFUSALS if must_refuse else frozenset())


def corpus(c: Choices) -> Generated:
    case = c.choice(CASES)
    return Generated("corpus", case.data + SMUGGLED, case=case)


_BYTES = [0, 9, 10, 13, 32, 34, 44, 58, 59, 127, 255]


def random_bytes(c: Choices) -> Generated:
    if c.integer(0, 9) == 0:
        return Generated("random", c.binary(c.integer(1, 200)))
    data = bytearray(valid(c).data)
    for _ in range(c.integer(1, 4)):
        pos = c.integer(0, len(data))
        op = c.choice(["insert", "delete", "replace", "repeat"])
        byte = c.choice(_BYTES) if c.integer(0, 1) else c.integer(0, 255)
        if op == "insert":
            data[pos:pos] = bytes([byte])
        elif op == "delete":
            del data[pos : pos + c.integer(1, 8)]
        elif op == "replace" and pos < len(data):
            data[pos] = byte
        else:
            data[pos:pos] = data[pos : pos + c.integer(1, 16)]
    return Generated("random", bytes(data))


KINDS = [valid, malformed, smuggle, corpus, random_bytes]


def batch(c: Choices) -> list[Generated]:
    """Valid requests, then one of any kind (the answers are checked in order)."""
    return [*(valid(c) for _ in range(c.integer(0, 8))), c.choice(KINDS)(c)]
