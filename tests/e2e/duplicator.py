"""Every record of some topics delivered twice: a consumer that republishes each record once more.

The copy has the same key, value and headers and goes to the same partition, right behind the
original (and after whatever came in between), as a producer retry or a consumer replay would
deliver it. The copies themselves are recognised by their offsets and not copied again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


@dataclass
class Duplicator:
    """Copies every record of ``topics`` once, from the beginning, until stopped."""

    bootstrap: str
    topics: list[str]
    copied: Counter[str] = field(default_factory=Counter)
    _copies: set[tuple[str, int, int]] = field(default_factory=set)
    _done: dict[TopicPartition, int] = field(default_factory=dict)
    _parts: list[TopicPartition] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
        await self._consumer.start()
        await self._producer.start()
        await self._consumer._client.force_metadata_update()  # aiokafka has no public metadata refresh
        self._parts = [
            TopicPartition(t, p) for t in self.topics for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]
        assert self._parts, f"no partitions for {self.topics}"
        self._consumer.assign(self._parts)
        await self._consumer.seek_to_beginning(*self._parts)
        self._task = asyncio.create_task(self._copy_forever(), name="duplicator")

    async def _copy_forever(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in batch.items():
                for r in records:
                    if (r.topic, r.partition, r.offset) not in self._copies:
                        sent = await self._producer.send_and_wait(
                            r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers)
                        )
                        self._copies.add((sent.topic, sent.partition, sent.offset))
                        self.copied[r.topic] += 1
                    self._done[tp] = r.offset + 1

    async def caught_up(self, timeout: float = 60) -> None:
        """Wait until every record now on the topics has been copied (or is a copy)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self._task is not None
            if self._task.done():
                self._task.result()  # raises what stopped it
            ends = await self._consumer.end_offsets(self._parts)
            if all(self._done.get(tp, 0) >= ends[tp] for tp in self._parts):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the duplicator did not catch up within {timeout}s")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
        await self._producer.stop()
