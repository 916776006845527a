"""A fiber's stack as users want to see it: their calls, without the core's wait machinery.

Shared by the fiber dump (`unknot._core._introspect`) and the deadlock report
(`unknot._core._deadlock`), which sit in different layers of the core; a leaf, importing no
other module of the core.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

CORE_DIR = os.path.dirname(os.path.abspath(__file__))
#: What the file names of the core's modules, and of unknot's, begin with (a separator ends
#: each: ``.../unknot_plugin/x.py`` is not unknot's).
CORE_PREFIX = CORE_DIR + os.sep
PACKAGE_PREFIX = os.path.dirname(CORE_DIR) + os.sep


def frames_of(frame: Any) -> list[Any]:
    """``frame`` and its callers, innermost first."""
    out: list[Any] = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    return out


def user_stack(frames: list[Any]) -> traceback.StackSummary:
    """``frames`` (innermost first) as a stack, outermost first, without the core's innermost
    frames (the wait machinery) and its outermost ones (``Fiber.run``)."""
    i = 0
    while i < len(frames) and frames[i].f_code.co_filename.startswith(CORE_PREFIX):
        i += 1
    j = len(frames)
    while j > i and frames[j - 1].f_code.co_filename.startswith(CORE_PREFIX):
        j -= 1  # Fiber.run
    kept = frames[i:j]
    kept.reverse()
    return traceback.StackSummary.extract(((f, f.f_lineno) for f in kept), lookup_lines=True)
