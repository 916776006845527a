"""Coverage-guided fuzzing of the HTTP protocol layer with atheris (libFuzzer).

    python fuzz/atheris_http.py --count 1000000

Each input's first byte picks a split point; the rest is fed to a `ServerConnection` as the
server would (whole, then in two pieces at the split), answering every request. Nothing but
the layer's ProtocolError may come out, and both feedings must agree. The request-smuggling
corpus and a few valid requests seed it. The layer's Python code is instrumented (llhttp, in C,
is not: libFuzzer sees the Python branches that follow its verdicts).

atheris installs from wheels on CPython 3.11 to 3.13 on Linux x86-64 (``make fuzz`` installs
it, or says it could not and skips this part).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "http")]

import atheris  # noqa: E402

with atheris.instrument_imports(include=["unknot.http._protocol"]):
    import unknot.http._protocol  # noqa: F401

from smuggling_corpus import CASES, SMUGGLED, protocol_outcome  # noqa: E402

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;e=f\r\nabc\r\n0\r\nT: t\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    request = data[1:]
    outcome = protocol_outcome(request)
    split = data[0] % (len(request) + 1)
    assert protocol_outcome(request, split) == outcome, (request, split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs to run")
    args, rest = parser.parse_known_args()
    seeds = tempfile.mkdtemp(prefix="unknot-atheris-")
    for i, seed in enumerate(SEEDS + [case.data + SMUGGLED for case in CASES]):
        Path(seeds, f"seed-{i}").write_bytes(b"\x07" + seed)
    argv = [
        sys.argv[0],
        f"-runs={args.count}",
        "-max_len=8192",
        "-print_final_stats=1",
        *rest,
        seeds,
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
