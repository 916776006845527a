"""`patch()` given one of gevent's ``patch_all`` keywords answers with unknot's equivalent."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import unknot

#: gevent.monkey.patch_all's keywords (gevent 26.9) that unknot.patch does not share, each with
#: words its message must contain.
GEVENT_ONLY = {
    "thread": ["threading=", "OS threads"],
    "os": ["unknot.os.waitpid", "unknot.subprocess"],
    "signal": ["add_signal_handler"],
    "aggressive": ["no equivalent", "select=True"],
    "Event": ["threading=", "threading.Event"],
    "sys": ["no equivalent"],
    "builtins": ["no equivalent"],
    "contextvars": ["no equivalent", "copy"],
    "contextvar": ["no equivalent", "copy"],  # (a common misspelling of gevent's name)
}
#: gevent's keywords that unknot.patch has too, with the same meaning.
SHARED = ["socket", "dns", "time", "select", "ssl", "subprocess", "queue"]
UNKNOT_GROUPS = [*SHARED, "threading"]


@pytest.fixture(autouse=True)
def nothing_left_patched() -> Iterator[None]:
    assert not unknot.is_patched()
    try:
        yield
    finally:
        unknot.unpatch()


@pytest.mark.parametrize("keyword", sorted(GEVENT_ONLY))
@pytest.mark.parametrize("value", [True, False])
def test_gevent_keyword_names_unknots_equivalent(keyword: str, value: bool) -> None:
    with pytest.raises(TypeError) as info:
        unknot.patch(**{keyword: value})
    message = str(info.value)
    assert message.startswith(f"patch() has no '{keyword}' keyword (that is gevent's): ")
    for words in GEVENT_ONLY[keyword]:
        assert words in message, (keyword, message)
    assert not unknot.is_patched()  # refused before patching anything


def test_an_unknown_keyword_is_the_usual_type_error() -> None:
    with pytest.raises(TypeError, match=re.escape("unexpected keyword argument 'sockets'")):
        unknot.patch(sockets=False)
    assert not unknot.is_patched()


def test_the_first_bad_keyword_is_reported_and_nothing_is_patched() -> None:
    with pytest.raises(TypeError, match="'thread'"):
        unknot.patch(socket=True, thread=True, os=False)
    assert not unknot.is_patched()


def test_shared_keywords_are_accepted_and_off_means_off() -> None:
    unknot.patch(**{name: False for name in UNKNOT_GROUPS}, drivers=False)
    assert not unknot.is_patched()


@pytest.mark.parametrize("keyword", SHARED)
def test_each_shared_keyword_patches_its_group_alone(keyword: str) -> None:
    others = {name: False for name in UNKNOT_GROUPS if name != keyword}
    unknot.patch(**others, drivers=False)
    assert unknot.is_patched(keyword)
    assert [name for name in UNKNOT_GROUPS if unknot.is_patched(name)] == [keyword]


def test_the_list_matches_gevents_own_signature() -> None:
    monkey = pytest.importorskip("gevent.monkey")
    gevent_names = {
        name
        for name, p in inspect.signature(monkey.patch_all).parameters.items()
        if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
    }
    unknot_names = set(inspect.signature(unknot.patch).parameters) - {"other"}
    assert gevent_names - unknot_names == set(GEVENT_ONLY) - {"contextvar"}
    assert gevent_names & unknot_names == set(SHARED)


def test_a_type_checker_rejects_a_misspelt_or_gevent_keyword(tmp_path: Path) -> None:
    """``**other`` is typed ``Never``: mypy flags ``patch(sockets=...)`` and gevent's keywords
    before the program runs, and accepts unknot's own."""
    api = pytest.importorskip("mypy.api")
    script = tmp_path / "uses_patch.py"
    script.write_text(
        "import unknot\n"
        "unknot.patch(sockets=False)\n"  # line 2: misspelt
        "unknot.patch(thread=False)\n"  # line 3: gevent's
        "unknot.patch(socket=False, threading=True, drivers=False)\n"  # line 4: fine
    )
    out, err, status = api.run(
        [str(script), "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"]
    )
    flagged = sorted(int(m) for m in re.findall(r"uses_patch\.py:(\d+): error", out))
    assert flagged == [2, 3], (out, err)
    assert '"sockets"' in out and '"thread"' in out and status == 1


@pytest.mark.parametrize("group", ["thread", "os", "signal"])
def test_is_patched_with_a_gevent_module_name_names_unknots_group(group: str) -> None:
    unknot.patch()  # everything: a wrong name must not answer False as if that were not patched
    with pytest.raises(ValueError) as info:
        unknot.is_patched(group)
    message = str(info.value)
    assert message.startswith(f"is_patched() has no group '{group}' (that is gevent's): ")
    assert GEVENT_ONLY[group][0] in message


@pytest.mark.parametrize("group", ["sockets", "", "Socket"])
def test_is_patched_with_an_unknown_group_lists_the_groups(group: str) -> None:
    unknot.patch()
    with pytest.raises(ValueError, match=f"has no group {group!r}; the groups are 'socket', "):
        unknot.is_patched(group)
    with pytest.raises(ValueError):  # whether patched or not
        unknot.unpatch()
        unknot.is_patched(group)


def test_is_patched_knows_every_group_and_drivers() -> None:
    unknot.patch(drivers=False)
    assert all(unknot.is_patched(name) for name in UNKNOT_GROUPS)
    assert not unknot.is_patched("drivers")
