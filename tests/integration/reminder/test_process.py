"""A real replica process killed (SIGKILL) while it holds leases: another replica fires its reminders once the
leases expire, each exactly once. Also: ``python -m homework_reminder`` stops gracefully on SIGTERM."""

from __future__ import annotations

import importlib
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from homework_reminder.domain import Plan, PlannedReminder, Segment
from homework_reminder.reconciling import reminder_doc
from homework_reminder.store import Store
from homework_shared.clock import SystemClock
from homework_shared.events import HomeworkKind
from homework_shared.schedule import Occurrence
from tests.conftest import wait_for
from tests.infra import ROOT
from tests.integration.reminder.conftest import OPENS, Deployment, counts, daily_at_20_berlin

assert str(ROOT / "deploy" / "local") in sys.path  # tests.infra put it there
processes = importlib.import_module("processes")  # deploy/local/processes.py: the services as processes


def due_reminders(d: Deployment, n: int, due: datetime) -> list[dict[str, Any]]:
    """``n`` pending reminders of ``n`` one-off occurrences, due at ``due``, open for a day."""
    docs = []
    for i in range(n):
        plan = Plan(
            assignment_id=f"asg-{i}",
            client_id=f"client-{i % 50}",
            practice_id=d.practice,
            title="Evening mood rating",
            kind=HomeworkKind.MOOD_LOG,
            version=1,
            created_at=due - timedelta(days=1),
            segments=(Segment(None, daily_at_20_berlin(), (OPENS,)),),
        )
        occ = Occurrence(plan.assignment_id, datetime(2026, 5, 1, 20, 0), due, due + timedelta(days=1))
        planned = PlannedReminder(f"{occ.occurrence_id}#opens+0", occ, due, due, (OPENS.channels[0],), "Europe/Berlin")
        docs.append(reminder_doc(plan, planned, due))
    return docs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(d: Deployment, **extra: str) -> dict[str, str]:
    infra = {"KAFKA_BOOTSTRAP_SERVERS": d.infra.kafka_bootstrap, "MONGODB_URI": d.infra.mongodb_uri}
    return processes.service_env(
        infra,
        MONGODB_DATABASE=d.database,
        TOPIC_PREFIX=d.prefix,
        CONSUMER_GROUP=f"{d.prefix}-reminder",
        TOPIC_PARTITIONS="2",
        **extra,
    )


async def test_a_killed_replicas_leases_are_taken_over_and_each_reminder_fires_once(
    deployment: Deployment, tmp_path: Path, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    d = deployment
    n = 1000
    store = Store(mongo[d.database])
    await store.ensure_indexes()
    await store.reminders.insert_many(due_reminders(d, n, datetime.now(UTC) - timedelta(seconds=1)))
    victim = processes.ServiceProcess(
        "reminder",
        free_port(),
        process_env(d, REPLICA_ID="victim", LEASE_TTL_S="3", FIRE_BATCH_SIZE="100"),
        tmp_path / "victim.log",
    )
    victim.start()
    try:
        await wait_for(
            lambda: _positive(store.reminders.count_documents({"state": "claimed", "lease_owner": "victim"})),
            timeout=60,
            interval=0.005,
            message="the victim holds leases",
        )
    finally:
        victim.kill()
    stranded = await store.reminders.count_documents({"state": "claimed", "lease_owner": "victim"})
    assert stranded > 0, "killed between two batches; the victim held no lease"
    fired_by_victim = await store.reminders.count_documents({"state": "fired", "fired_by": "victim"})
    assert fired_by_victim < n

    survivor = await d.start(clock=SystemClock(), replica_id="survivor", lease_ttl_s=3)
    # Killed inside a firing transaction, the victim leaves it open: the reminders it wrote stay locked
    # until the server reaps it (transactionLifetimeLimitSeconds, 60 s by default), so allow for that.
    await wait_for(counts(store.reminders, {"state": "fired"}, n), timeout=180, message="every reminder fired")
    taken = survivor.state.reminder_metrics.leases_taken_over._value.get()
    # At least the victim's; also its own, when a claim that timed out on the locked reminders took them late.
    assert taken >= stranded
    assert await store.reminders.count_documents({"fires": {"$ne": 1}}) == 0
    assert await store.reminders.count_documents({"fired_by": "victim"}) == fired_by_victim
    sent = await store.db["outbox"].count_documents({"type": "homework.reminder.sent.v1"})
    assert sent == n


async def test_the_service_process_becomes_ready_and_stops_gracefully_on_sigterm(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    proc = processes.ServiceProcess("reminder", free_port(), process_env(d), tmp_path / "reminder.log")
    proc.start()
    try:
        proc.wait_ready(timeout=60)
    finally:
        code = proc.stop(timeout=30)
    assert code == 0
    lines = (tmp_path / "reminder.log").read_text().splitlines()
    assert any('"service": "reminder"' in line for line in lines)


async def _positive(value: Any) -> bool:
    return bool(await value > 0)
