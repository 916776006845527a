"""Fixtures shared by the mirrors' test modules."""

from __future__ import annotations

import pytest
from fiber_helpers import Where

from unknot._core._backends import BACKENDS

WHERE = [f"fiber-{name}" for name in sorted(BACKENDS)] + ["thread"]


@pytest.fixture(params=WHERE)
def where(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Where:
    w = Where(request.param)
    if w.backend:
        monkeypatch.setenv("UNKNOT_SELECTOR", w.backend)
    return w
