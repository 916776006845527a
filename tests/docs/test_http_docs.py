"""docs/reference.md documents every name of `unknot.http`, and the HTTP tutorial is linked.

Each name of ``unknot.http.__all__`` must appear in the reference's HTTP section, either in a
heading as ``unknot.http.Name`` (in backticks) or in one of the section's ``**Names:**`` lists
(as ``Name`` in backticks), so that a name added to the package cannot go undocumented. The
main names must also have a runnable example (a ```python block) in their entry; the blocks
themselves are run by test_docs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import unknot.http

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
SECTION_HEADING = "## HTTP: `unknot.http`"

#: The names whose reference entry must include a runnable example.
WITH_EXAMPLES = [
    "serve",
    "HTTPServer",
    "App",
    "Request",
    "Response",
    "StaticFiles",
    "Client",
    "get",
    "Timeout",
    "HTTPError",
    "FileBody",
    "ServerConnection",
]


def http_section() -> str:
    """The text of the reference's HTTP section, from its heading to the next ``## ``."""
    text = REFERENCE.read_text()
    start = text.find("\n" + SECTION_HEADING + "\n")
    assert start >= 0, f"docs/reference.md: no {SECTION_HEADING!r} section"
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _outside_code(section: str) -> str:
    return re.sub(r"^```.*?^```", "", section, flags=re.S | re.M)


def documented_names(section: str) -> set[str]:
    """Names in backticks in the section's headings (``unknot.http.X``) and names lists."""
    names: set[str] = set()
    prose = _outside_code(section)
    for heading in re.findall(r"^#{3,} (.*)$", prose, re.M):
        names.update(re.findall(r"`unknot\.http\.(\w+)`", heading))
    for names_list in re.findall(r"^\*\*Names:\*\*(.*?)(?:\n\n|\Z)", prose, re.M | re.S):
        names.update(re.findall(r"`(\w+)`", names_list))
    return names


def entry(section: str, name: str) -> str:
    """The entry whose heading names ``unknot.http.<name>``, up to the next heading."""
    parts = re.split(r"^(?=### )", section, flags=re.M)
    for part in parts:
        first_line = part.split("\n", 1)[0]
        if re.search(rf"`unknot\.http\.{re.escape(name)}`", first_line):
            return part
    raise AssertionError(f"docs/reference.md: no heading for unknot.http.{name}")


@pytest.mark.parametrize("name", unknot.http.__all__)
def test_every_public_name_is_in_the_reference(name: str) -> None:
    assert name in documented_names(http_section()), (
        f"docs/reference.md: unknot.http.{name} is neither in a heading of the HTTP section "
        "nor in one of its **Names:** lists"
    )


def test_the_module_has_an_entry() -> None:
    assert re.search(r"^### `unknot\.http`$", http_section(), re.M)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_main_names_have_a_runnable_example(name: str) -> None:
    text = entry(http_section(), name)
    assert "```python\n" in text, f"unknot.http.{name}: no runnable example in its entry"
    assert "<!-- no-run -->" not in text, f"unknot.http.{name}: its example is not run"


def test_names_lists_hold_only_public_names() -> None:
    """A names list cannot document a name the package does not export (a typo, a rename)."""
    unknown = documented_names(http_section()) - set(unknot.http.__all__)
    assert not unknown, f"docs/reference.md documents names unknot.http lacks: {unknown}"


def test_the_tutorial_chapter_is_linked_from_the_index() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    assert "(tutorial/04-http.md)" in index
    assert (ROOT / "docs" / "tutorial" / "04-http.md").exists()
