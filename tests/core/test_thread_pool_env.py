"""``UNKNOT_MAX_THREADS``: the size of the `to_thread` pool, and a clear error for a bad value."""

from __future__ import annotations

import pytest

from unknot._core._thread_pool import _max_threads


@pytest.mark.parametrize("value", ["abc", "2.5", "0", "-3", " "])
def test_a_bad_value_names_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("UNKNOT_MAX_THREADS", value)
    with pytest.raises(ValueError) as info:
        _max_threads()
    assert str(info.value) == (
        f"UNKNOT_MAX_THREADS must be a whole number, at least 1, not {value!r}"
    )


def test_a_good_value_is_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNKNOT_MAX_THREADS", "7")
    assert _max_threads() == 7
    monkeypatch.setenv("UNKNOT_MAX_THREADS", "")
    assert 5 <= _max_threads() <= 32  # the default: min(32, cpus + 4)
