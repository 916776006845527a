"""`patch()` serialises a process pool's wake-up pipe: ``_ThreadWakeup.wakeup`` and ``close``
run under one lock. Without it (CPython before 3.12.8 and 3.13.1, gh-125451), the exit handler
``_python_exit`` can write to a pipe that a manager thread is closing, fail with EBADF, stop
before it has woken and joined the other pools' manager threads, and leave the interpreter
waiting for them for ever (a rare hang of test_interrupts.py's process-pool test)."""

from __future__ import annotations

import textwrap

from fiber_helpers import run_script

RACE = """
import threading, time
import unknot
unknot.patch()
import concurrent.futures.process as process

wakeup = process._ThreadWakeup()
send = wakeup._writer.send_bytes

def slow_send(data):  # the write begins, then takes a while: the close comes meanwhile
    time.sleep(0.2)
    send(data)

wakeup._writer.send_bytes = slow_send
closer = threading.Timer(0.05, wakeup.close)
closer.start()
try:
    wakeup.wakeup()
    print("woken")
except OSError as e:
    print("failed:", e)
closer.join()
print("closed", wakeup._closed, wakeup._writer.closed)
unknot.unpatch()
print(process._ThreadWakeup.wakeup.__qualname__)
"""


def test_a_wakeup_and_a_close_from_another_thread_do_not_interleave() -> None:
    assert run_script(textwrap.dedent(RACE)) == ["woken\nclosed True True\n_ThreadWakeup.wakeup"]
