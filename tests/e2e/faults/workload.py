"""The load the fault tests put on the platform, and the checks they make once it has settled.

A workload is many clients, each with a few hourly assignments (late completion allowed) and,
for some, a one-off assignment whose reminders fall due while the load runs. The clock runs
``SPEED`` times real time, so an hourly occurrence opens every five real seconds: a few hundred
assignments give a steady stream of open occurrences. A simulated client completes each one
as it opens, through the public API, as a real client would: an ``Idempotency-Key`` per
occurrence, and the same request again after a connection error or a 5xx (a crash, an outage)
until it gets an answer that is not a server error.

The checks read what the platform made of it: the insights figures per client, the outbox of
every service's database, the events on the topics, the dead-letter topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient

from homework_shared.auth.mint import mint_token
from homework_shared.clock import Clock
from homework_shared.events import EventDecodeError, ReminderSent, Topics, decode
from homework_shared.events.envelope import Envelope
from homework_shared.events.values import RecurringSchedule
from homework_shared.schedule import occurrences, to_local, to_utc
from tests.conftest import unique
from tests.e2e.system import Deployment
from tests.infra import Infra, devstack

SPEED = 720.0
"""Platform seconds per real second: an hour of platform time every five real seconds."""

ZONE = "Europe/Berlin"
SERVICES = ("assignment", "reminder", "insights")


def platform(seconds: float) -> timedelta:
    """The platform time that passes in ``seconds`` of real time."""
    return timedelta(seconds=seconds * SPEED)


def real_seconds(span: timedelta) -> float:
    """The real seconds in which ``span`` of platform time passes."""
    return span.total_seconds() / SPEED


def fault_env(**extra: str) -> dict[str, str]:
    """Settings the fault tests give every service (each reads its own and ignores the others).

    A reminder lease of 10 real seconds (``LEASE_TTL_S`` is real time), so a killed replica's
    claims are taken over soon; no occurrence reported missed while the test runs
    (``MISSED_GRACE_S`` is platform time: an hour of real time here), since the load completes
    occurrences late when a service is down: that is allowed, and not what is tested.
    """
    env = {"LEASE_TTL_S": "10", "MISSED_GRACE_S": str(int(SPEED * 3600))}
    env.update(extra)
    return env


# ----------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Completion:
    """One occurrence the simulated client completes."""

    client_id: str
    assignment_id: str
    occurrence_id: str
    opens_at: datetime

    @property
    def path(self) -> str:
        return f"/v1/assignments/{self.assignment_id}/occurrences/{self.occurrence_id}/completion"


@dataclass
class Workload:
    """Who, what, and what is expected: the completions to make and the reminders that must fire."""

    practice_id: str
    therapist_id: str
    clients: list[str]
    completions: list[Completion] = field(default_factory=list)
    reminders: dict[str, datetime] = field(default_factory=dict)  # reminder id -> due instant
    assignment_ids: list[str] = field(default_factory=list)

    def token(self, role: str, sub: str) -> str:
        return mint_token(sub=sub, role=role, practice_id=self.practice_id, ttl_s=6 * 3600)

    def headers(self, role: str, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, sub)}"}


def hourly(client_id: str, starts_at: datetime, count: int) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "kind": "reading",
        "title": "Read ten pages",
        "instructions": "Read ten pages of the workbook and note one idea.",
        "schedule": {
            "type": "recurring",
            "timezone": ZONE,
            "rrule": "FREQ=HOURLY",
            "starts_at": starts_at.isoformat(timespec="minutes"),
            "count": count,
            "window_minutes": 50,
        },
        "allow_late_completion": True,
    }


def reminded_once(client_id: str, offsets_minutes: list[int], clock: Clock) -> dict[str, Any]:
    due = to_local(clock.now() + timedelta(days=7), ZONE).replace(second=0, microsecond=0)
    return {
        "client_id": client_id,
        "kind": "reading",
        "title": "Read the chapter on worry",
        "instructions": "Read the chapter and mark what sounds like you.",
        "schedule": {"type": "once", "timezone": ZONE, "due_at": due.isoformat(timespec="minutes")},
        "reminders": [{"anchor": "opens", "offset_minutes": m, "channels": ["push"]} for m in offsets_minutes],
    }


async def build(
    http: httpx.AsyncClient,
    d: Deployment,
    *,
    clients: int,
    assignments_each: int,
    occurrences_each: int,
    reminded_clients: int = 0,
    reminder_offsets: Iterable[int] = (),
    first_opening: timedelta = timedelta(hours=3),
) -> Workload:
    """Create the assignments through the API and work out every completion and reminder they lead to.

    Each hourly assignment has four times ``occurrences_each`` occurrences, so it is still
    running (late completions accepted) when a loaded machine makes the load fall far behind
    its schedule; an ended assignment would refuse them.
    """
    tag = unique("f")
    work = Workload(f"practice-{tag}", f"therapist-{tag}", [f"client-{tag}-{i}" for i in range(clients)])
    therapist = work.headers("therapist", work.therapist_id)
    url = d.processes["assignment"].url
    starts = to_local(d.clock.now() + first_opening, ZONE).replace(minute=0, second=0, microsecond=0)
    bodies = [hourly(c, starts, 4 * occurrences_each) for c in work.clients for _ in range(assignments_each)]
    offsets = list(reminder_offsets)
    reminded = [
        reminded_once(c, [o + 7 * i for o in offsets], d.clock) for i, c in enumerate(work.clients[:reminded_clients])
    ]
    created = await gather_limited([post_or_fail(http, f"{url}/v1/assignments", b, therapist) for b in bodies], 8)
    for a in created:
        work.assignment_ids.append(a["id"])
        schedule = RecurringSchedule.model_validate(a["schedule"])
        after = datetime.fromisoformat(a["created_at"])
        taken = [o for o in occurrences(a["id"], schedule) if o.closes_at > after][:occurrences_each]
        work.completions += [Completion(a["client_id"], a["id"], o.occurrence_id, o.opens_at) for o in taken]
    for a in await gather_limited([post_or_fail(http, f"{url}/v1/assignments", b, therapist) for b in reminded], 8):
        work.assignment_ids.append(a["id"])
        opens_local = datetime.fromisoformat(a["schedule"]["opens_at"])
        occurrence_id = f"{a['id']}@{opens_local:%Y-%m-%dT%H:%M}"
        for wish in a["reminders"]:
            rid = f"{occurrence_id}#opens{wish['offset_minutes']:+d}"
            work.reminders[rid] = to_utc(opens_local, ZONE) + timedelta(minutes=wish["offset_minutes"])
    work.completions.sort(key=lambda c: (c.opens_at, c.occurrence_id))
    return work


async def gather_limited(jobs: list[Awaitable[Any]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def post_or_fail(http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    key = unique("create")
    result = await post_retrying(http, url, body, {**headers, "Idempotency-Key": key}, deadline=time.monotonic() + 120)
    if result.status != 201:
        raise AssertionError(f"POST {url} -> {result.status}: {result.body}")
    return result.body


# ----------------------------------------------------------------------------- the simulated client


@dataclass
class Attempt:
    """One HTTP attempt: when it started (monotonic), how long it took, what came back."""

    started: float
    seconds: float
    status: int | None
    error: str | None = None


@dataclass
class Result:
    """The last answer a request got after its retries, and every attempt on the way."""

    status: int | None
    body: Any
    replayed: bool
    attempts: list[Attempt]
    answered_at: float = 0.0


async def post_retrying(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    deadline: float,
    timeout: float = 15.0,
) -> Result:
    """POST until the answer is not a server error or a dropped connection, or the deadline passes."""
    attempts: list[Attempt] = []
    delay = 0.2
    while True:
        started = time.monotonic()
        try:
            r = await http.post(url, json=body, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            attempts.append(Attempt(started, time.monotonic() - started, None, type(exc).__name__))
        else:
            error = None
            if r.status_code >= 500:
                with contextlib.suppress(ValueError, AttributeError):
                    error = r.json().get("error")
            attempts.append(Attempt(started, time.monotonic() - started, r.status_code, error))
            if r.status_code < 500:
                data = r.json() if r.content else None
                replayed = r.headers.get("Idempotent-Replayed") == "true"
                return Result(r.status_code, data, replayed, attempts, time.monotonic())
        if time.monotonic() + delay > deadline:
            last = attempts[-1]
            return Result(last.status, last.error, False, attempts, time.monotonic())
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 2.0)


@dataclass
class Load:
    """What the simulated client got for each completion, by occurrence id."""

    results: dict[str, Result] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    def accepted(self) -> set[str]:
        return {oid for oid, r in self.results.items() if r.status == 201}

    def refused(self) -> dict[str, tuple[int | None, Any]]:
        return {oid: (r.status, r.body) for oid, r in self.results.items() if r.status != 201}

    def attempts(self) -> list[Attempt]:
        return [a for r in self.results.values() for a in r.attempts]

    def describe(self) -> str:
        attempts = self.attempts()
        statuses = Counter(a.status if a.status is not None else a.error for a in attempts)
        replays = sum(1 for r in self.results.values() if r.replayed)
        took = self.finished - self.started
        return (
            f"{len(self.accepted())}/{len(self.results)} accepted in {took:.0f}s "
            f"({len(self.results) / max(took, 1e-9):.0f}/s), {len(attempts)} attempts {dict(statuses)}, "
            f"{replays} answered by a replay"
        )


async def complete_all(
    http: httpx.AsyncClient, d: Deployment, work: Workload, *, concurrency: int = 24, deadline_s: float = 600
) -> Load:
    """Complete every occurrence of ``work`` once it has opened, ``concurrency`` requests at a time."""
    load = Load(started=time.monotonic())
    deadline = load.started + deadline_s
    headers = {c: work.headers("client", c) for c in work.clients}
    queue: asyncio.Queue[Completion] = asyncio.Queue()
    for c in work.completions:
        queue.put_nowait(c)
    url = d.processes["assignment"].url
    margin = platform(0.2)

    async def worker() -> None:
        while True:
            try:
                c = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            wait = real_seconds(c.opens_at + margin - d.clock.now())
            if wait > 0:
                await asyncio.sleep(wait)
            body = {"status": "done", "quality_rating": 7, "data": {"pages": 10}}
            request_headers = {**headers[c.client_id], "Idempotency-Key": f"complete-{c.occurrence_id}"}
            load.results[c.occurrence_id] = await post_retrying(
                http, url + c.path, body, request_headers, deadline=deadline
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    load.finished = time.monotonic()
    return load


# ----------------------------------------------------------------------------- checks


async def insights_done(http: httpx.AsyncClient, d: Deployment, work: Workload) -> dict[str, int | None]:
    """Completions done per client, as the insights service counts them (None: not known to it yet)."""
    url = d.processes["insights"].url
    therapist = work.headers("therapist", work.therapist_id)

    async def one(client: str) -> int | None:
        with contextlib.suppress(httpx.TransportError):
            r = await http.get(f"{url}/v1/clients/{client}/figures", headers=therapist, timeout=30)
            if r.status_code == 200:
                return int(r.json()["overall"]["done"])
        return None

    counts = await gather_limited([one(c) for c in work.clients], 8)
    return dict(zip(work.clients, counts, strict=True))


def accepted_by_client(work: Workload, load: Load) -> dict[str, int]:
    accepted = load.accepted()
    counts = dict.fromkeys(work.clients, 0)
    for c in work.completions:
        if c.occurrence_id in accepted:
            counts[c.client_id] += 1
    return counts


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float, message: str, interval: float = 1.0
) -> tuple[Any, float]:
    """Poll ``check`` until truthy; returns (its value, seconds it took). Fails with the last value seen."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        with contextlib.suppress(httpx.TransportError):
            last = await check()
            if last:
                return last, time.monotonic() - started
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}; last: {last!r}")


async def figures_settled(http: httpx.AsyncClient, d: Deployment, work: Workload, load: Load, timeout: float) -> float:
    """Wait until the insights figures count every accepted completion once; returns how long it took."""
    want = accepted_by_client(work, load)

    seen: dict[str, int | None] = {}

    async def probe() -> bool:
        seen.update(await insights_done(http, d, work))
        return all(seen[c] == want[c] for c in work.clients)

    try:
        _, took = await wait_until(probe, timeout, "the insights figures to count every accepted completion")
    except AssertionError:
        off = {c: {"counted": seen.get(c), "accepted": want[c]} for c in work.clients if seen.get(c) != want[c]}
        raise AssertionError(
            f"insights figures do not match the accepted completions after {timeout:.0f}s "
            f"(counted {sum(v or 0 for v in seen.values())}, accepted {sum(want.values())}): {off}"
        ) from None
    return took


async def outbox_pending(mongodb_uri: str, d: Deployment) -> dict[str, int]:
    """Outbox records not yet sent, per service database."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        return {
            name: await client[d.database(name)]["outbox"].count_documents({"state": "pending"}) for name in SERVICES
        }
    finally:
        await client.close()


async def outboxes_drained(mongodb_uri: str, d: Deployment, timeout: float) -> float:
    """Wait until no service has an unsent outbox record; returns how long it took (names what is left if not)."""

    async def drained() -> bool:
        pending = await outbox_pending(mongodb_uri, d)
        return not any(pending.values())

    try:
        _, took = await wait_until(drained, timeout, "every outbox to drain")
    except AssertionError:
        left = await unsent(mongodb_uri, d)
        raise AssertionError(f"outbox records left unsent after {timeout:.0f}s: {left}") from None
    return took


async def unsent(mongodb_uri: str, d: Deployment) -> dict[str, list[tuple[str, str, Any]]]:
    """Per service: (id, type, created_at) of up to 5 unsent outbox records."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        out = {}
        for name in SERVICES:
            found = client[d.database(name)]["outbox"].find({"state": "pending"}).sort("seq", 1).limit(5)
            out[name] = [(r["_id"], r["type"], r["created_at"]) async for r in found]
        return out
    finally:
        await client.close()


async def read_topic(
    bootstrap: str, topic: str, partitions: int, timeout: float = 60
) -> list[tuple[Envelope[Any] | None, bytes]]:
    """Every record of ``topic`` from the beginning to its current end: (decoded event or None, raw value)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[Envelope[Any] | None, bytes]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(timeout):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(*tps, timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        try:
                            out.append((decode(record.headers, record.value), record.value or b""))
                        except EventDecodeError:
                            out.append((None, record.value or b""))
    finally:
        await consumer.stop()
    return out


def partitions(d: Deployment) -> int:
    return int(d.env.get("TOPIC_PARTITIONS", "3"))


async def reminders_fired(bootstrap: str, d: Deployment, work: Workload) -> dict[str, Any]:
    """What the reminder topic says about ``work``'s reminders: event ids per reminder, wire copies per id."""
    records = await read_topic(bootstrap, Topics(prefix=d.prefix).reminder, partitions(d))
    ids: dict[str, set[str]] = defaultdict(set)
    copies: Counter[str] = Counter()
    for env, _ in records:
        if env is not None and isinstance(env.data, ReminderSent) and env.data.reminder_id in work.reminders:
            ids[env.data.reminder_id].add(env.id)
            copies[env.id] += 1
    return {"ids": ids, "copies": copies}


async def dead_letters(bootstrap: str, d: Deployment) -> dict[str, int]:
    """Records parked on each consumer's dead-letter topic."""
    topics = Topics(prefix=d.prefix)
    return {g: len(await read_topic(bootstrap, topics.dead_letter(g), partitions(d))) for g in ("reminder", "insights")}


def sent_event_id(reminder_id: str, due_at: datetime) -> str:
    """The deterministic event id of the ``ReminderSent`` of one reminder falling due at ``due_at``."""
    return f"sent:{reminder_id}@{due_at.astimezone(UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')}"


def expected_sent_ids(work: Workload) -> dict[str, set[str]]:
    """Per reminder of ``work``: the one event id its ``ReminderSent`` must have."""
    return {rid: {sent_event_id(rid, due)} for rid, due in work.reminders.items()}


async def every_reminder_fired(bootstrap: str, d: Deployment, work: Workload, timeout: float = 120) -> dict[str, Any]:
    """Wait until the last reminder of ``work`` fell due and each is on the reminder topic; see ``reminders_fired``."""
    await asyncio.sleep(max(0.0, real_seconds(max(work.reminders.values()) - d.clock.now())))

    async def all_there() -> dict[str, Any] | None:
        seen = await reminders_fired(bootstrap, d, work)
        return seen if len(seen["ids"]) == len(work.reminders) else None

    try:
        fired, _ = await wait_until(all_there, timeout, "every reminder that fell due to be published", 2.0)
    except AssertionError:
        seen = await reminders_fired(bootstrap, d, work)
        missing = sorted(set(work.reminders) - set(seen["ids"]))
        raise AssertionError(
            f"{len(missing)} of {len(work.reminders)} reminders not published {timeout:.0f}s after the last fell "
            f"due: {missing[:5]}"
        ) from None
    return dict(fired)


@contextlib.contextmanager
def own_stack(root: Path, brokers: int = 1, *, mongo_killed: bool = False) -> Iterator[tuple[devstack.Stack, Infra]]:
    """A local stack of this test's own (its servers may be stopped), torn down afterwards.

    ``mongo_killed``: the test kills the MongoDB server, so it runs with a journal fsynced before each
    commit is acknowledged, as mongod's majority commit is (see ``devstack.start_mongo``); without it the
    killed server loses a few acknowledged writes and the test finds them missing.
    """
    stack = devstack.up(root, brokers=brokers, mongo_sync_on_commit=mongo_killed)
    try:
        yield stack, Infra(stack.kafka_bootstrap, stack.mongodb_uri, "local", stack=stack)
    finally:
        devstack.down(root)


@dataclass
class Backlog:
    """Unsent outbox records over time (monotonic instant, total over the services)."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def peak(self, since: float = 0.0, until: float = float("inf")) -> int:
        return max((n for t, n in self.samples if since <= t <= until), default=0)

    def first_at_most(self, limit: int, since: float) -> float | None:
        """When the backlog was first at most ``limit`` at or after ``since``."""
        return next((t for t, n in self.samples if t >= since and n <= limit), None)


async def watch_backlog(mongodb_uri: str, d: Deployment, backlog: Backlog, every: float = 0.5) -> None:
    """Sample the outbox backlog until cancelled (samples missed while MongoDB is down are skipped)."""
    while True:
        with contextlib.suppress(Exception):
            pending = await outbox_pending(mongodb_uri, d)
            backlog.samples.append((time.monotonic(), sum(pending.values())))
        await asyncio.sleep(every)
