"""A producer and three consumers around a joinable queue, under one global timeout: unknot.

Ported from pipeline_gevent.py. `unknot.Queue` is joinable itself (`task_done`/`join`); the
workers live in a `TaskGroup`, so they cannot outlive `main`; the timeout is a scope,
`unknot.move_on_after`, whose `cancelled_caught` says whether it fired. When it fires it
cancels everything inside it, the stuck worker included; without it, `queue.shutdown()` ends
the workers' loops.
"""

import sys

import unknot

JOBS = 20
WORKERS = 3
STUCK_JOB = -1 if "--none-stuck" in sys.argv else 13  # --none-stuck: all finish
DEADLINE = 1.0


def produce(queue: unknot.Queue[int]) -> None:
    for job in range(JOBS):
        queue.put(job)  # waits while the queue is full


def work(queue: unknot.Queue[int], results: dict[int, int]) -> None:
    for job in queue:  # gets until the queue is shut down and empty
        try:
            unknot.sleep(3600 if job == STUCK_JOB else 0.01)  # stands for real work
            results[job] = job * job
        finally:
            queue.task_done()


def main() -> None:
    queue: unknot.Queue[int] = unknot.Queue(maxsize=5)
    results: dict[int, int] = {}
    with unknot.move_on_after(DEADLINE) as deadline:
        with unknot.TaskGroup() as workers:
            for _ in range(WORKERS):
                workers.spawn(work, queue, results)
            produce(queue)
            queue.join()
            queue.shutdown()  # the workers' loops end; the group waits for them

    print(f"all jobs done: {not deadline.cancelled_caught}")
    print(f"done {len(results)} of {JOBS} jobs, sum of squares {sum(results.values())}")
    print(f"missing: {sorted(set(range(JOBS)) - set(results))}")


if __name__ == "__main__":
    unknot.run(main)
