"""Seeing inside a running fiber program: the fiber dump, the blocking detector, loop
statistics, and the backdoor console (see docs/debugging.md).

A small job service runs: workers take jobs from a queue, a reporter waits for a lock that is
never released, and one job calls the unpatched ``time.sleep``, which blocks every fiber. The
blocking detector names that line; a client connected to the backdoor asks the live program
for ``stats()`` and ``dump()``; the program then dumps its fibers itself.

    python examples/debugging.py
"""

import socket as stdsocket
import sys
import time

import unknot
from unknot import backdoor


def worker(jobs: unknot.Queue, n: int) -> None:
    while True:
        job = jobs.get()
        if job == "legacy":
            time.sleep(0.3)  # a library call unknot cannot make cooperative: holds the loop
        else:
            unknot.sleep(0.01)


def reporter(lock: unknot.Lock) -> None:
    with lock:  # never released by main: this fiber waits forever
        pass


def console_client(address: tuple[str, int], commands: list[str]) -> str:
    """What a person would do with ``nc 127.0.0.1 PORT`` (a plain blocking client, run in a
    worker thread)."""
    with stdsocket.create_connection(address, timeout=10) as s:
        out = b""
        for command in [*commands, "exit()"]:
            while not out.endswith(b">>> "):
                out += s.recv(65536)
            s.sendall(command.encode() + b"\n")
            out += b"\n"
        return out.decode()


def on_blocked(report: unknot.BlockingReport) -> None:
    print(
        f"blocking detector: loop blocked {report.blocked_for:.2f} s by fiber {report.fiber!r} "
        f"at line {report.lineno}: {report.line}",
        flush=True,
    )


def main() -> None:
    jobs: unknot.Queue = unknot.Queue()
    lock = unknot.Lock()
    lock.acquire()
    with unknot.TaskGroup() as tg:
        for n in range(3):
            tg.spawn(worker, jobs, n, name=f"worker-{n}")
        tg.spawn(reporter, lock, name="reporter")
        for job in ["a", "b", "legacy", "c"]:
            jobs.put(job)
        unknot.sleep(0.5)

        with backdoor.serve(("127.0.0.1", 0)) as console:
            text = unknot.to_thread(console_client, console.address, ["stats()", "dump()"])
        for line in text.splitlines():
            if line.startswith("<LoopStats"):
                print("backdoor stats():", line)
            if line.startswith("fiber reporter"):
                print("backdoor dump():", line)

        print("--- the program's own dump ---")
        unknot.dump(sys.stdout)
        print("--- stats ---")
        print(unknot.stats())
        tg.cancel()


if __name__ == "__main__":
    unknot.start_monitor(threshold=0.1, callback=on_blocked)
    unknot.run(main)
