"""unknot.multiprocessing.connection and .queues mirror the stdlib modules; their `wait` is
cooperative without the patch. (What the patch installs from them: tests/patch/
test_patch_multiprocessing.py.)"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection as mc
import multiprocessing.queues as mq
import sys
import types

import pytest
from fiber_helpers import Ticker

import unknot
import unknot.multiprocessing.connection as uc
import unknot.multiprocessing.queues as uq

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX multiprocessing"),
]


@pytest.mark.parametrize(("std", "mirror", "overridden"), [(mc, uc, {"wait"}), (mq, uq, set())])
def test_names_mirror_the_stdlib(
    std: types.ModuleType, mirror: types.ModuleType, overridden: set[str]
) -> None:
    for name in dir(std):
        if not name.startswith("_"):
            assert hasattr(mirror, name), name
            if name not in overridden:
                assert getattr(mirror, name) is getattr(std, name), name
    assert mirror.__all__ == std.__all__


@pytest.mark.unknot
def test_wait_is_cooperative_without_the_patch() -> None:
    r, w = multiprocessing.Pipe(duplex=False)
    try:
        ticker = Ticker()

        def send_after_ticks() -> None:
            while ticker.count < 5:
                unknot.sleep(0.01)
            w.send_bytes(b"x")

        unknot.spawn(send_after_ticks)
        assert uc.wait([r], timeout=10) == [r]  # the stdlib's would block the hub: no send
        assert uc.wait([r], timeout=0) == [r]
        assert r.recv_bytes() == b"x"
        assert uc.wait([r], timeout=0.01) == []
        assert ticker.stop() >= 5
    finally:
        r.close()
        w.close()
