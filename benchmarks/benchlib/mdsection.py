"""Replace one level-2 section of a Markdown file (BENCHMARKS.md), or append it."""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, title: str, section: str) -> None:
    """Put ``section`` (which starts with its own ``## {title}`` line) in place of the section of
    ``path`` titled ``title`` (up to the next level-2 header), or append it if there is none.
    A missing file is created with a ``# Benchmarks`` heading."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}[ \t]*\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    body = section.rstrip("\n") + "\n"
    if pattern.search(text):
        text = pattern.sub(lambda _m: body + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")
