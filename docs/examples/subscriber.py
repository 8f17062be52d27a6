"""An outside subscriber: read the homework event streams and decode every record into its typed model.

Needs only the contract package and a Kafka client:  pip install "homework-shared[kafka]"
Run:  python subscriber.py localhost:9092 my-notification-sender
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from homework_shared.events import (
    CompletionRecorded,
    Envelope,
    EventDecodeError,
    OccurrenceMissed,
    ReminderSent,
    Topics,
    decode,
)


async def print_event(env: Envelope[Any]) -> None:
    """Act on a few event types; every other type is still decoded, typed and valid."""
    event = env.data
    if isinstance(event, ReminderSent):
        print(f"remind {event.client_id} via {[c.value for c in event.channels]}: {event.title}")
    elif isinstance(event, CompletionRecorded):
        print(f"{event.client_id} did {event.occurrence_id} ({event.status.value}, {event.percent}%)")
    elif isinstance(event, OccurrenceMissed):
        print(f"{event.client_id} missed {event.occurrence_id}")
    else:
        print(f"{env.type} about {env.subject}")


async def consume(
    bootstrap: str,
    group: str,
    handle: Callable[[Envelope[Any]], Awaitable[None]] = print_event,
    *,
    topics: Topics | None = None,
    stop_after: int | None = None,
) -> None:
    """Consume every stream as ``group``; commit only after ``handle`` returns (at-least-once).

    Delivery is at least once, so ``handle`` should be idempotent on ``env.id`` (the
    CloudEvents id): a redelivered event has the same id.
    """
    topics = topics or Topics()
    consumer = AIOKafkaConsumer(
        *topics.all_streams(),
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    handled = 0
    try:
        async for record in consumer:
            try:
                env = decode(record.headers, record.value)
            except EventDecodeError as exc:
                # One error type for every bad record; exc.reason says which kind.
                print(f"skipping {record.topic}/{record.partition}@{record.offset}: {exc}", file=sys.stderr)
            else:
                await handle(env)
            await consumer.commit()
            handled += 1
            if stop_after is not None and handled >= stop_after:
                return
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(consume(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "example-subscriber"))
