"""One hub per OS thread: two threads run their own hubs at once and call into each
other's with from_thread(loop=...)."""

from __future__ import annotations

import asyncio
import threading

import unknot


def test_each_thread_runs_its_own_hub() -> None:
    barrier = threading.Barrier(2, timeout=30)
    results: dict[str, object] = {}
    loops: dict[str, asyncio.AbstractEventLoop] = {}

    def main(name: str) -> tuple[int, int]:
        loops[name] = asyncio.get_running_loop()
        unknot.to_thread(barrier.wait)  # both hubs are running now
        assert len(unknot.lowlevel.running_hubs()) == 2
        if name == "a":  # a plain thread must say which hub it means
            errors: list[str] = []

            def plain() -> None:
                try:
                    unknot.from_thread(lambda: 0)
                except RuntimeError as e:
                    errors.append(str(e))

            t = threading.Thread(target=plain)
            t.start()
            unknot.to_thread(t.join, 30)
            assert "several hubs" in errors[0]
        # call into the other thread's hub
        other = loops["b" if name == "a" else "a"]
        other_thread = unknot.to_thread(unknot.from_thread, threading.get_ident, loop=other)
        q: unknot.Queue[int] = unknot.Queue()
        with unknot.TaskGroup() as tg:
            for i in range(100):
                tg.spawn(lambda i=i: (unknot.sleep(0.001 * (i % 5)), q.put(i)))
        unknot.to_thread(barrier.wait)  # keep both alive until both are done
        return q.qsize(), other_thread

    def thread_main(name: str) -> None:
        try:
            results[name] = (unknot.run(main, name), threading.get_ident())
        except BaseException as e:
            results[name] = e

    threads = [threading.Thread(target=thread_main, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    (qa, other_of_a), ident_a = results["a"]  # type: ignore[misc]
    (qb, other_of_b), ident_b = results["b"]  # type: ignore[misc]
    assert qa == qb == 100
    assert other_of_a == ident_b and other_of_b == ident_a
    assert loops["a"] is not loops["b"]
