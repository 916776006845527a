"""``python -m unknot script.py [args]``: run an unmodified script patched, as the root fiber.

Also ``python -m unknot -m package.module [args]``. `unknot.patch` is applied before the script
(or anything it imports) is loaded, so even objects created at import time are cooperative.
"""

from __future__ import annotations

import os
import runpy
import sys

USAGE = "usage: python -m unknot [-m module | script.py] [args...]"


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
        unknot.run(runpy.run_module, argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        unknot.run(runpy.run_path, argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
