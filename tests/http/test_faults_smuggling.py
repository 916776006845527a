"""The request-smuggling corpus (smuggling_corpus.py): every case over the protocol layer,
whole and split at every byte, and over a live server; refused or answered exactly as correct
framing says, never a second answer for a smuggled request; no fd leaks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fault_helpers import no_logged_errors, open_fds, settled
from server_helpers import ServerThread
from smuggling_corpus import CASES, SMUGGLED, Case, check, live_outcome, protocol_outcome

from unknot.http import Request, Timeouts

pytestmark = pytest.mark.timeout(60)


def handler(request: Request) -> Any:
    body = request.body()
    return 200, {"x-path": request.path}, b"%d" % len(body)


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerThread]:
    with ServerThread(handler, timeouts=Timeouts(head=2, body=2)) as server:
        yield server


def test_the_corpus_is_large_and_named_uniquely() -> None:
    assert len(CASES) > 70
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_protocol_layer(case: Case) -> None:
    data = case.data + SMUGGLED
    outcome = protocol_outcome(data)
    check(case, outcome)
    for split in range(1, len(data)):
        assert protocol_outcome(data, split) == outcome, split


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_live_server(srv: ServerThread, case: Case) -> None:
    fds = open_fds()
    with no_logged_errors():
        check(case, live_outcome(srv.port, case.data + SMUGGLED))
        settled(srv, fds)
