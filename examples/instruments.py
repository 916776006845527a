"""Instruments: a hub's scheduling events, exported to logging, and to OpenTelemetry when its
API is installed (it is not a dependency of unknot). See docs/debugging.md, "Instruments".

    python examples/instruments.py
"""

import logging
from collections import Counter

import unknot
from unknot import lowlevel

log = logging.getLogger("example.fibers")


class LogInstrument(lowlevel.Instrument):
    """Every fiber event as a DEBUG log record, and a count of each kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def fiber_spawned(self, fiber: unknot.Fiber) -> None:
        self.counts["spawned"] += 1
        log.debug("spawned %s", fiber.name)

    def fiber_blocked(self, fiber: unknot.Fiber, waiting_on: str) -> None:
        self.counts["blocked"] += 1
        log.debug("%s waits on %s", fiber.name, waiting_on)

    def fiber_resumed(self, fiber: unknot.Fiber) -> None:
        self.counts["resumed"] += 1

    def fiber_done(self, fiber: unknot.Fiber) -> None:
        self.counts["done"] += 1
        log.debug("%s done", fiber.name)

    def pass_started(self) -> None:
        self.counts["passes"] += 1


def otel_instrument() -> lowlevel.Instrument | None:
    """A span per fiber, from spawn to done, with an event per wait; None without the API."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    tracer = trace.get_tracer("unknot")

    class OTelInstrument(lowlevel.Instrument):
        def __init__(self) -> None:
            self.spans: dict[unknot.Fiber, object] = {}

        def fiber_spawned(self, fiber: unknot.Fiber) -> None:
            self.spans[fiber] = tracer.start_span(f"fiber {fiber.name}")

        def fiber_blocked(self, fiber: unknot.Fiber, waiting_on: str) -> None:
            span = self.spans.get(fiber)
            if span is not None:
                span.add_event("blocked", {"unknot.waiting_on": waiting_on})  # type: ignore[attr-defined]

        def fiber_done(self, fiber: unknot.Fiber) -> None:
            span = self.spans.pop(fiber, None)
            if span is not None:
                span.end()  # type: ignore[attr-defined]

    return OTelInstrument()


def producer(q: unknot.Queue) -> None:
    for i in range(3):
        q.put(i)
        unknot.sleep(0.01)
    q.put(None)


def consumer(q: unknot.Queue) -> None:
    while q.get() is not None:
        pass


def main() -> None:
    logging_instrument = LogInstrument()
    lowlevel.add_instrument(logging_instrument)
    otel = otel_instrument()
    if otel is not None:
        lowlevel.add_instrument(otel)
    q: unknot.Queue = unknot.Queue(1)
    with unknot.TaskGroup() as tg:
        tg.spawn(producer, q, name="producer")
        tg.spawn(consumer, q, name="consumer")
    lowlevel.remove_instrument(logging_instrument)
    if otel is not None:
        lowlevel.remove_instrument(otel)
    print("OpenTelemetry:", "spans exported" if otel is not None else "not installed, skipped")
    c = logging_instrument.counts
    print(
        f"logging instrument saw: {c['spawned']} spawned, {c['blocked']} blocked, "
        f"{c['resumed']} resumed, {c['done']} done, {c['passes']} passes"
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    unknot.run(main)
