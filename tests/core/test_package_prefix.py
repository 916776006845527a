"""unknot tells its own frames by their file's directory, separator included: a sibling package
whose name begins with "unknot" (``unknot_plugin``) is user code."""

from __future__ import annotations

import os
from typing import Any

import unknot
from unknot._core import _stacks

SIBLING = os.path.join(os.path.dirname(os.path.dirname(_stacks.CORE_DIR)), "unknot_plugin")
SIBLING_FILE = os.path.join(SIBLING, "mod.py")


def _from_sibling(source: str) -> dict[str, Any]:
    """Run ``source`` as if it were in ``unknot_plugin/mod.py``; its namespace."""
    namespace: dict[str, Any] = {"unknot": unknot}
    exec(compile(source, SIBLING_FILE, "exec"), namespace)
    return namespace


def test_a_fiber_spawned_from_a_sibling_package_names_it() -> None:
    plugin = _from_sibling(
        "def start():\n    return unknot.spawn(unknot.sleep, 0)\n"  # (line 2)
    )

    def main() -> Any:
        f = plugin["start"]()
        info = next(i for i in unknot.fibers() if i.fiber is f)
        f.join()
        return info.spawned_at

    filename, line, function = unknot.run(main)
    assert (filename, line, function) == (SIBLING_FILE, 2, "start")


def test_every_check_of_unknots_files_leaves_a_sibling_package_out() -> None:
    """The dump's owner labels (`_introspect`), the blocking detector's blamed line (`_monitor`)
    and the stacks' trimming (`_stacks`) test file names against these prefixes."""
    from unknot._core import _introspect, _monitor

    own = os.path.join(os.path.dirname(_stacks.CORE_DIR), "_sync.py")
    core = os.path.join(_stacks.CORE_DIR, "_hub.py")
    core_sibling = _stacks.CORE_DIR + "_extra" + os.sep + "x.py"
    for prefix in (_introspect._PACKAGE_DIR, _monitor._PACKAGE_DIR, _stacks.PACKAGE_PREFIX):
        assert own.startswith(prefix) and core.startswith(prefix)
        assert not SIBLING_FILE.startswith(prefix)
    assert core.startswith(_stacks.CORE_PREFIX)
    assert not core_sibling.startswith(_stacks.CORE_PREFIX)
