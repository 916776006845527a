"""The patched `threading.local` (and `_thread._local`) accepts what the C `_thread._local`
accepts. Each test runs in a fresh interpreter (patching is process-wide)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout.split()


CODE = """
    import unknot
    if PATCHED:
        unknot.patch()
    import _thread
    import threading

    class Slotted(threading.local):
        __slots__ = ("__dict__", "shared")  # the C _thread._local accepts this

    class Old(_thread._local):
        __slots__ = ("__dict__",)

    def main():
        data = Slotted()
        data.shared = "one value"  # a slot: one value, whoever set it
        data.mine = "root"

        def other():
            data.mine = "other"
            return sorted(vars(data)), data.mine, data.shared

        seen = unknot.spawn(other).join()
        old = Old()
        old.x = 1
        return *seen, data.mine, sorted(data.__dict__), old.__dict__ == {"x": 1}

    print(*unknot.run(main), threading.local is _thread._local)
"""


def test_a_subclass_may_list_dict_in_its_slots() -> None:
    unpatched = run(CODE.replace("PATCHED", "False"))
    patched = run(CODE.replace("PATCHED", "True"))
    # Unpatched, fibers of one thread share the namespace; patched, each fiber has its own.
    assert unpatched == ["['mine']", "other", "one", "value", "other", "['mine']", "True", "True"]
    assert patched == ["['mine']", "other", "one", "value", "root", "['mine']", "True", "True"]
