"""greenstalk, unmodified, on beanstalkd: 50 fibers each blocked in ``reserve``.

beanstalkd's reserve timeout counts whole seconds, so the 0.2 s wait comes from a feeder fiber
that puts each worker's job 0.2 s after the workers started waiting: the server holds every
``reserve`` until its job arrives. Were ``reserve`` to block the thread, the first worker would
hold it until the 5 s (shared by all workers) were up and the feeder could not run.
"""

from __future__ import annotations

import math
import time
from typing import Any

from drivers_support import Budget, require_module


def test_reserve_concurrently(beanstalkd_addr: tuple[str, int], concurrently: Any) -> None:
    greenstalk = require_module("greenstalk")
    budget = Budget(5)

    def work(i: int) -> Any:
        with greenstalk.Client(beanstalkd_addr, watch=f"tube-{i}") as client:
            job = client.reserve(timeout=math.ceil(budget.left()))
            client.delete(job)
            return job.body

    def feeder() -> None:
        time.sleep(0.2)
        with greenstalk.Client(beanstalkd_addr) as client:
            for i in range(50):
                client.use(f"tube-{i}")
                client.put(f"job-{i}")

    outcome = concurrently(work, background=feeder)
    assert outcome.results == [f"job-{i}" for i in range(50)]
