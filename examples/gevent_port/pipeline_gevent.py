"""A producer and three consumers around a joinable queue, under one global timeout: gevent.

Compare pipeline_unknot.py. The producer puts 20 jobs into a bounded `JoinableQueue`; three
workers square them. Job 13 hangs, so `queue.join()` would wait forever: the global
`gevent.Timeout` gives up after 1 s, and the program reports what got done.
"""

import sys

import gevent
from gevent.queue import JoinableQueue

JOBS = 20
WORKERS = 3
STUCK_JOB = -1 if "--none-stuck" in sys.argv else 13  # --none-stuck: all finish
DEADLINE = 1.0


def produce(queue: JoinableQueue) -> None:
    for job in range(JOBS):
        queue.put(job)  # waits while the queue is full


def work(queue: JoinableQueue, results: dict[int, int]) -> None:
    while True:
        job = queue.get()
        try:
            gevent.sleep(3600 if job == STUCK_JOB else 0.01)  # stands for real work
            results[job] = job * job
        finally:
            queue.task_done()


def main() -> None:
    queue = JoinableQueue(maxsize=5)
    results: dict[int, int] = {}
    workers = [gevent.spawn(work, queue, results) for _ in range(WORKERS)]
    finished = False
    with gevent.Timeout(DEADLINE, False):  # False: leave the block quietly on timeout
        produce(queue)
        queue.join()
        finished = True
    gevent.killall(workers)  # they loop forever: kill them, timeout or not

    print(f"all jobs done: {finished}")
    print(f"done {len(results)} of {JOBS} jobs, sum of squares {sum(results.values())}")
    print(f"missing: {sorted(set(range(JOBS)) - set(results))}")


if __name__ == "__main__":
    main()
