"""pika's BlockingConnection, unmodified, on a real RabbitMQ: 50 fibers each wait for a message.

The 0.2 s wait happens in the broker: each fiber publishes into its own delay queue whose
messages expire after 200 ms (``x-message-ttl``) and are then dead-lettered into the fiber's
reply queue, which it consumes. pika blocks in its own I/O loop (``select.poll``), which the
patch makes cooperative.
"""

from __future__ import annotations

from typing import Any

from drivers_support import require_module


def test_consume_dead_lettered_messages(rabbitmq_addr: tuple[str, int], concurrently: Any) -> None:
    pika = require_module("pika")
    params = pika.ConnectionParameters(
        host=rabbitmq_addr[0],
        port=rabbitmq_addr[1],
        credentials=pika.PlainCredentials("guest", "guest"),
    )

    def work(i: int) -> Any:
        connection = pika.BlockingConnection(params)
        try:
            channel = connection.channel()
            reply = channel.queue_declare("", exclusive=True).method.queue
            delay = channel.queue_declare(
                "",
                exclusive=True,
                arguments={
                    "x-message-ttl": 200,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": reply,
                },
            ).method.queue
            channel.basic_publish("", delay, f"message-{i}".encode())
            for _method, _props, body in channel.consume(
                reply, auto_ack=True, inactivity_timeout=5
            ):
                channel.cancel()
                return body and body.decode()
        finally:
            connection.close()

    outcome = concurrently(work)
    assert outcome.results == [f"message-{i}" for i in range(50)]
