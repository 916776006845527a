"""paho-mqtt, unmodified, on a real Mosquitto: 50 subscribers each wait for their message.

Each fiber connects, subscribes to its own topic and runs paho's network loop (``loop()``,
which waits in ``select.select``) until its message arrives. A feeder fiber publishes the 50
messages 0.2 s after the last subscription was acknowledged, so every subscriber waits at least
0.2 s for the broker. Were ``loop()`` to block the thread, the feeder could never publish.
"""

from __future__ import annotations

import os
import time
from typing import Any

from drivers_support import Budget, require_module

import unknot


def test_subscribers_wait_concurrently(mqtt_addr: tuple[str, int], concurrently: Any) -> None:
    mqtt = require_module("paho.mqtt.client")
    prefix = f"unknot/test/{os.getpid()}"
    subscribed: list[int] = []
    all_subscribed = unknot.Event()
    budget = Budget(5)

    def new_client(name: str) -> Any:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}/{name}")
        client.connect(*mqtt_addr)
        return client

    def work(i: int) -> Any:
        client = new_client(f"sub-{i}")
        got: list[str] = []
        acked: list[int] = []
        client.on_message = lambda _c, _u, msg: got.append(msg.payload.decode())
        client.on_subscribe = lambda _c, _u, mid, _rc, _p: acked.append(mid)
        client.subscribe(f"{prefix}/{i}", qos=1)
        while not acked and not budget.expired():
            client.loop(timeout=budget.left())
        subscribed.append(i)
        if len(subscribed) == 50:
            all_subscribed.set()
        while not got and not budget.expired():
            client.loop(timeout=budget.left())
        client.disconnect()
        return got[0] if got else None

    def feeder() -> None:
        all_subscribed.wait(budget.left())
        time.sleep(0.2)
        client = new_client("publisher")
        infos = [client.publish(f"{prefix}/{i}", f"message-{i}", qos=1) for i in range(50)]
        while not all(info.is_published() for info in infos) and not budget.expired():
            client.loop(timeout=budget.left())
        client.disconnect()

    outcome = concurrently(work, background=feeder)
    assert outcome.results == [f"message-{i}" for i in range(50)]
