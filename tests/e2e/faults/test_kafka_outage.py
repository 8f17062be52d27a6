"""The Kafka broker stopped for 30 s while clients complete homework: the assignment API keeps accepting
writes, and once the broker is back everything is delivered without restarting any service.

Twice: stopped gracefully (SIGTERM: the broker flushes, hands over and closes its connections), and
SIGKILLed at a moment records are being produced (the topic's end offsets moving), so producers
hold unacknowledged batches and the broker's last log segments were never closed; it is started
again on the same data directory and must recover them. Both must count every accepted write once,
lose nothing and drain every outbox.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from statistics import median

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.e2e.faults import workload as wl
from tests.e2e.system import Deployment, deploy
from tests.infra import devstack

OUTAGE_S = 30.0


async def readiness(http: httpx.AsyncClient, d: Deployment) -> dict[str, int]:
    out = {}
    for name, proc in d.processes.items():
        try:
            out[name] = (await http.get(f"{proc.url}/readyz", timeout=5)).status_code
        except httpx.TransportError:
            out[name] = 0
    return out


async def records_in_flight(bootstrap: str, topic: str, timeout: float = 60) -> int:
    """Wait until ``topic``'s end offsets grow between two reads 0.2 s apart (records being produced now).

    Returns how many were produced between those two reads.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # aiokafka has no public metadata refresh
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert parts, f"no partitions for {topic}"
        deadline = time.monotonic() + timeout
        before = sum((await consumer.end_offsets(parts)).values())
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now = sum((await consumer.end_offsets(parts)).values())
            if now > before:
                return now - before
            before = now
        raise AssertionError(f"nothing was produced to {topic} for {timeout}s: no records in flight to kill")
    finally:
        await consumer.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill-with-records-in-flight"])
async def test_a_broker_stopped_for_30s_during_load_delays_delivery_but_loses_nothing(
    tmp_path: Path, sig: signal.Signals
) -> None:
    with (
        wl.own_stack(tmp_path / "stack") as (stack, infra),
        deploy(infra, tmp_path / "logs", speed=wl.SPEED, **wl.fault_env()) as d,
    ):
        pids = {name: proc.proc.pid for name, proc in d.processes.items() if proc.proc}
        async with httpx.AsyncClient() as http:
            work = await wl.build(
                http,
                d,
                clients=10,
                assignments_each=5,
                occurrences_each=14,
                reminded_clients=10,
                reminder_offsets=[60, 240, 420, 600, 780],
            )
            first_open = max(wl.real_seconds(work.completions[0].opens_at - d.clock.now()), 0.0)
            backlog = wl.Backlog()
            watcher = asyncio.create_task(wl.watch_backlog(infra.mongodb_uri, d, backlog))
            outage: dict[str, float] = {}

            async def stop_kafka_for_a_while() -> None:
                await asyncio.sleep(first_open + 12)  # when to inject the fault, not a wait for anything
                if sig == signal.SIGKILL:
                    outage["in_flight"] = await records_in_flight(infra.kafka_bootstrap, d.system_topics.assignment)
                outage["stopped"] = time.monotonic()
                await asyncio.to_thread(devstack.stop_pid, stack.pids["kafka-1"], sig=sig)
                outage["down"] = time.monotonic()
                await wl.wait_until(
                    lambda: _not_ready(http, d), 30, "readiness to report Kafka down on every service", 0.5
                )
                outage["readiness_false"] = time.monotonic()
                await asyncio.sleep(max(0.0, outage["down"] + OUTAGE_S - time.monotonic()))
                outage["restarting"] = time.monotonic()
                await asyncio.to_thread(devstack.restart_broker, stack, 1)
                outage["back"] = time.monotonic()

            load, _ = await asyncio.gather(wl.complete_all(http, d, work), stop_kafka_for_a_while())
            down, back = outage["down"], outage["back"]
            during = [r for r in load.results.values() if down <= r.answered_at <= back]
            during_attempts = [a for a in load.attempts() if down <= a.started <= back]
            flight = f"({outage['in_flight']} records produced in the 0.2 s before) " if "in_flight" in outage else ""
            context = (
                f"load: {load.describe()}; broker {sig.name} {flight}and down for "
                f"{outage['restarting'] - down:.0f}s and answering again {back - outage['restarting']:.0f}s after "
                f"its restart; {len(during)} completions answered meanwhile"
            )
            assert not load.refused(), f"refused: {list(load.refused().items())[:5]}; {context}"
            assert len(during) >= 50, f"the API did not keep accepting writes while Kafka was down; {context}"
            assert all(r.status == 201 for r in during), context
            assert all(a.status == 201 for a in during_attempts), (
                f"a write failed while only Kafka was down: "
                f"{[a for a in during_attempts if a.status != 201][:5]}; {context}"
            )
            peak = backlog.peak(down, back)
            assert peak > 0, f"nothing waited in an outbox while Kafka was down; {context}"

            drained = await wl.outboxes_drained(infra.mongodb_uri, d, timeout=180)
            settled = await wl.figures_settled(http, d, work, load, timeout=180)
            watcher.cancel()
            fired = await wl.every_reminder_fired(infra.kafka_bootstrap, d, work)
            assert dict(fired["ids"]) == wl.expected_sent_ids(work), context
            assert await wl.dead_letters(infra.kafka_bootstrap, d) == {"reminder": 0, "insights": 0}
            assert await wl.insights_done(http, d, work) == wl.accepted_by_client(work, load)
            restarted = {n: p.proc.pid for n, p in d.processes.items() if p.proc and p.alive()}
            assert restarted == pids, f"a service was restarted or died: {pids} -> {restarted}"
            assert await readiness(http, d) == dict.fromkeys(wl.SERVICES, 200)

            caught_up = backlog.first_at_most(0, back)
            latencies = [a.seconds for a in during_attempts]
            print(
                f"\n{context}; write latency while Kafka was down: median {median(latencies) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms; readiness false {outage['readiness_false'] - down:.1f}s "
                f"after the stop; outbox backlog peaked at {peak} records; after the broker was back the "
                f"backlog first reached 0 in "
                f"{(caught_up - back) if caught_up else float('nan'):.1f}s; outboxes drained and figures exact "
                f"{drained:.0f}s + {settled:.0f}s after the load ended"
            )


async def _not_ready(http: httpx.AsyncClient, d: Deployment) -> bool:
    return all(code == 503 for code in (await readiness(http, d)).values())
