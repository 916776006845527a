"""``python -m unknot script.py [args]``: run an unmodified script patched, as the root fiber.

Also ``python -m unknot -m package.module [args]``. `unknot.patch` is applied before the script
(or anything it imports) is loaded, so even objects created at import time are cooperative.

A script written for unknot calls ``unknot.run(main)`` itself. Run this way it is already in
the root fiber of a running hub, so that call runs ``main`` right there, in the script's fiber,
and returns its result (cancelling, on the way out, the fibers ``main`` left running), instead
of refusing to start a loop inside a loop. Other nested uses of `unknot.run` are still refused.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

USAGE = "usage: python -m unknot [-m module | script.py] [args...]"


def run_script(path: str) -> Any:
    """Run the script at ``path`` as ``__main__`` (in the root fiber `main` starts)."""
    return runpy.run_path(path, run_name="__main__")


def run_module(name: str) -> Any:
    """Run the module ``name`` as ``__main__``, as ``python -m name`` would."""
    return runpy.run_module(name, run_name="__main__", alter_sys=True)


# `unknot.run` called from the root fiber of these functions runs its function in place
# (unknot._core._loop.HOSTS_RUN: the attribute's name is the contract between the two modules).
for _fn in (run_script, run_module):
    setattr(_fn, "__unknot_hosts_run__", True)  # noqa: B010 - a dunder attribute on a function
del _fn


def main(argv: list[str]) -> int:
    """Patch, then run the script or module named in ``argv`` as the root fiber."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    import unknot

    unknot.patch()
    if argv[0] == "-m":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        unknot.run(run_module, argv[1])
    else:
        sys.argv = argv
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        unknot.run(run_script, argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
