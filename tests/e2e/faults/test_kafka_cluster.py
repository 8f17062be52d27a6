"""A three-broker Kafka cluster (replication factor 3, ``min.insync.replicas=2``): one broker SIGKILLed
while clients complete homework loses nothing; the services ride it out, and the broker rejoins."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from homework_shared.events import Topics
from tests.e2e.faults import workload as wl
from tests.e2e.system import Deployment, deploy
from tests.infra import devstack


async def leader_of_assignment_partition_0(bootstrap: str, d: Deployment) -> int:
    """The node leading partition 0 of the assignment topic: killing it forces a leader election."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topic = Topics(prefix=d.prefix).assignment
        (described,) = await admin.describe_topics([topic])
        for p in described["partitions"]:
            if p["partition"] == 0:
                return int(p["leader"])
        raise AssertionError(f"no partition 0 in {described}")
    finally:
        await admin.close()


async def replication_of(bootstrap: str, d: Deployment) -> dict[str, set[int]]:
    """Replica counts of every partition of the deployment's stream topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = Topics(prefix=d.prefix).all_streams()
        return {t["topic"]: {len(p["replicas"]) for p in t["partitions"]} for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


@pytest.mark.timeout(600)
async def test_one_broker_of_three_killed_during_load_loses_nothing(tmp_path: Path) -> None:
    with (
        wl.own_stack(tmp_path / "stack", brokers=3) as (stack, infra),
        deploy(
            infra,
            tmp_path / "logs",
            speed=wl.SPEED,
            **wl.fault_env(TOPIC_REPLICATION_FACTOR="3", TOPIC_MIN_INSYNC_REPLICAS="2"),
        ) as d,
    ):
        replicas = await replication_of(infra.kafka_bootstrap, d)
        assert replicas == {topic: {3} for topic in Topics(prefix=d.prefix).all_streams()}
        async with httpx.AsyncClient() as http:
            work = await wl.build(
                http,
                d,
                clients=10,
                assignments_each=5,
                occurrences_each=12,
                reminded_clients=10,
                reminder_offsets=[60, 240, 420, 600],
            )
            first_open = max(wl.real_seconds(work.completions[0].opens_at - d.clock.now()), 0.0)
            victim = await leader_of_assignment_partition_0(infra.kafka_bootstrap, d)
            events: dict[str, float] = {}

            async def kill_one_broker() -> None:
                await asyncio.sleep(first_open + 15)
                events["killed"] = time.monotonic()
                await asyncio.to_thread(devstack.stop_pid, stack.pids[f"kafka-{victim}"], sig=signal.SIGKILL)
                await asyncio.sleep(20)
                await asyncio.to_thread(devstack.restart_broker, stack, victim)
                events["rejoined"] = time.monotonic()

            load, _ = await asyncio.gather(wl.complete_all(http, d, work), kill_one_broker())
            killed = events["killed"]
            context = f"load: {load.describe()}; broker {victim} (leader of assignment partition 0) SIGKILLed"
            assert not load.refused(), f"refused: {list(load.refused().items())[:5]}; {context}"
            failed = [a for a in load.attempts() if a.status != 201]
            assert not failed, f"writes failed with a broker down: {failed[:5]}; {context}"

            drained = await wl.outboxes_drained(infra.mongodb_uri, d, timeout=180)
            settled = await wl.figures_settled(http, d, work, load, timeout=180)
            fired = await wl.every_reminder_fired(infra.kafka_bootstrap, d, work)
            assert dict(fired["ids"]) == wl.expected_sent_ids(work), context
            assert await wl.dead_letters(infra.kafka_bootstrap, d) == {"reminder": 0, "insights": 0}
            assert await wl.insights_done(http, d, work) == wl.accepted_by_client(work, load)
            assert all(p.alive() for p in d.processes.values()), "a service died with one broker down"
            print(
                f"\n{context} {killed - load.started:.0f}s into the load, restarted "
                f"{events['rejoined'] - killed:.0f}s later; outboxes drained {drained:.0f}s and figures exact "
                f"{drained + settled:.0f}s after the load ended"
            )
