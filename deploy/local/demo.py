"""`make demo`: a week of therapy homework played through the public APIs in about two minutes.

A therapist assigns a daily mood log, a graded exposure hierarchy and a reading; a simulated
client completes some occurrences, skips some with barriers and ignores others; reminders are
shown as they fire (read from the reminder event stream); at the end a pre-session summary is
generated, its HTML report saved, and the figures printed in a table.

Time is compressed: every service reads platform time from the same sped-up clock
(``CLOCK_SPEED``), so a 2-hour window lasts about a second. Against a running
``make run CLOCK_SPEED=7200`` the demo reads the system's addresses and clock from
``.devstack/run.json``; without one it starts the whole system itself and stops it afterwards.

The plan (``Plan``) says what the client does with each occurrence, so the expected figures
are known in advance: the end-to-end tests play the same scenario and compare exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaConsumer

from homework_shared.auth.mint import mint_token
from homework_shared.clock import Clock, ScaledClock
from homework_shared.events import EventDecodeError, OccurrenceMissed, ReminderSent, Topics, decode

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEV_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - development mode only
DEFAULT_SPEED = 7200.0


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Action:
    """What the simulated client does with one occurrence: complete, skip, or nothing (missed)."""

    kind: str  # "done" | "partial" | "skip" | "ignore"
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """A week of homework for one client, and what they do with every occurrence.

    The windows and how long after opening the client acts are parameters: at a high clock speed
    a test widens the windows so that a loaded machine still acts well inside them.
    """

    client_id: str
    practice_id: str
    therapist_id: str
    timezone: str
    first_day: date
    days: int = 7
    mood_window_minutes: int = 120
    exposure_window_minutes: int = 180
    act_after_minutes: int = 20

    def assignments(self) -> dict[str, dict[str, Any]]:
        d0 = self.first_day
        return {
            "mood": {
                "client_id": self.client_id,
                "kind": "mood_log",
                "title": "Daily mood log",
                "instructions": "Each evening, rate your mood from 0 to 10 and note what triggered it.",
                "rationale": "Seeing how mood moves with what happens helps us plan the next steps.",
                "schedule": {
                    "type": "recurring",
                    "timezone": self.timezone,
                    "rrule": "FREQ=DAILY",
                    "starts_at": f"{d0}T20:00:00",
                    "count": self.days,
                    "window_minutes": self.mood_window_minutes,
                },
                "target": {"times": 5, "per_days": 7},
                "reminders": [
                    {"anchor": "opens", "offset_minutes": 0, "channels": ["push"]},
                    {"anchor": "closes", "offset_minutes": -30, "channels": ["push", "sms"]},
                ],
            },
            "exposure": {
                "client_id": self.client_id,
                "kind": "exposure",
                "title": "Lift exposure",
                "instructions": "Work up the hierarchy; stay until your anxiety drops by half.",
                "rationale": "Staying with the fear until it falls teaches that the lift is safe.",
                "schedule": {
                    "type": "recurring",
                    "timezone": self.timezone,
                    "rrule": "FREQ=DAILY;INTERVAL=2",
                    "starts_at": f"{d0}T18:00:00",
                    "count": (self.days + 1) // 2,
                    "window_minutes": self.exposure_window_minutes,
                },
                "steps": [
                    {"number": 1, "description": "Stand by the lift for five minutes", "expected_suds": 30},
                    {"number": 2, "description": "Ride one floor with a friend", "expected_suds": 55},
                    {"number": 3, "description": "Ride alone to the top floor", "expected_suds": 80},
                ],
                "reminders": [{"anchor": "opens", "offset_minutes": 0, "channels": ["push"]}],
            },
            "reading": {
                "client_id": self.client_id,
                "kind": "reading",
                "title": "Read: Mind Over Mood, chapter 5",
                "instructions": "Read the chapter on automatic thoughts.",
                "schedule": {
                    "type": "once",
                    "timezone": self.timezone,
                    "opens_at": f"{d0}T09:00:00",
                    "due_at": f"{d0 + timedelta(days=2)}T21:00:00",
                },
                "reminders": [{"anchor": "opens", "offset_minutes": 0, "channels": ["email"]}],
            },
        }

    def action(self, name: str, index: int) -> Action:
        """What the client does with the ``index``-th occurrence (0-based) of assignment ``name``."""
        if name == "mood":
            moods = [3, 4, 4, 5, 6, 6, 7, 7, 8, 8, 8, 8, 9, 9]
            if index % 7 == 3:
                return Action("skip", {"barrier": "no_time"})
            if index % 7 == 6:
                return Action("ignore")
            return Action(
                "done", {"quality_rating": 6 + index % 3, "data": {"mood": moods[index % len(moods)], "intensity": 5}}
            )
        if name == "exposure":
            if index == 0:
                return Action(
                    "done",
                    {
                        "quality_rating": 7,
                        "data": {
                            "step": 1,
                            "suds_before": 60,
                            "suds_peak": 75,
                            "suds_after": 40,
                            "duration_minutes": 20,
                        },
                    },
                )
            if index in (1, 2):
                return Action("skip", {"barrier": "too_hard"})
            return Action(
                "partial",
                {
                    "percent": 50,
                    "quality_rating": 5,
                    "data": {"step": 1, "suds_before": 50, "suds_peak": 65, "suds_after": 30, "duration_minutes": 15},
                },
            )
        return Action("done", {"quality_rating": 8, "data": {"pages": 24}})

    def expected(self, occurrence_counts: dict[str, int]) -> dict[str, dict[str, float]]:
        """The exact figures the plan leads to, per assignment and overall."""
        out: dict[str, dict[str, float]] = {}
        totals = {"due": 0.0, "done": 0.0, "partial": 0.0, "skipped": 0.0, "missed": 0.0, "credit": 0.0}
        for name, count in occurrence_counts.items():
            f = {"due": float(count), "done": 0.0, "partial": 0.0, "skipped": 0.0, "missed": 0.0, "credit": 0.0}
            for i in range(count):
                a = self.action(name, i)
                if a.kind == "done":
                    f["done"] += 1
                    f["credit"] += 1
                elif a.kind == "partial":
                    f["partial"] += 1
                    f["credit"] += a.body["percent"] / 100
                elif a.kind == "skip":
                    f["skipped"] += 1
                else:
                    f["missed"] += 1
            f["adherence_pct"] = round(100 * f["credit"] / f["due"], 1)
            out[name] = f
            for k in totals:
                totals[k] += f[k]
        totals["adherence_pct"] = round(100 * totals["credit"] / totals["due"], 1)
        out["overall"] = totals
        return out


# ----------------------------------------------------------------------------- the system


@dataclass
class System:
    """Where the services are, and the clock they share."""

    assignment_url: str
    reminder_url: str
    insights_url: str
    kafka_bootstrap: str
    topic_prefix: str
    clock: Clock
    jwt_secret: str = DEV_SECRET


def token(system: System, role: str, sub: str, practice: str) -> str:
    return mint_token(sub=sub, role=role, practice_id=practice, key=system.jwt_secret, ttl_s=3600)


def local(instant: datetime, tz: str) -> str:
    return instant.astimezone(ZoneInfo(tz)).strftime("%a %d %b %H:%M")


@dataclass
class DemoResult:
    plan: Plan
    assignment_ids: dict[str, str]
    occurrences: dict[str, list[dict[str, Any]]]
    actions: list[tuple[str, str, str]]
    reminders: list[ReminderSent]
    missed: list[OccurrenceMissed]
    figures: dict[str, Any]
    summary: dict[str, Any]
    html_path: Path
    expected: dict[str, dict[str, float]]
    seconds: float


class Console:
    def __init__(self, enabled: bool, started: float) -> None:
        self.enabled = enabled
        self.started = started

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)


async def watch_events(
    system: System, plan: Plan, result: DemoResult, console: Console, joined: asyncio.Event | None = None
) -> None:
    """Show reminders (and missed occurrences) as the reminder service publishes them.

    ``joined`` is set once the watcher's position on every partition is fixed: from then on it sees every record.
    """
    topics = Topics(prefix=system.topic_prefix)
    consumer = AIOKafkaConsumer(
        topics.reminder, bootstrap_servers=system.kafka_bootstrap, auto_offset_reset="latest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolves the lazy seek now
        if joined is not None:
            joined.set()
        async for record in consumer:
            with contextlib.suppress(EventDecodeError):
                env = decode(record.headers, record.value)
                event = env.data
                if getattr(event, "client_id", None) != plan.client_id:
                    continue
                if isinstance(event, ReminderSent):
                    result.reminders.append(event)
                    console.say(
                        f"  reminder  {local(event.due_at, plan.timezone)}  {event.title} "
                        f"-> {', '.join(c.value for c in event.channels)}"
                    )
                elif isinstance(event, OccurrenceMissed):
                    result.missed.append(event)
                    console.say(f"  missed    {local(event.opens_at, plan.timezone)}  {event.occurrence_id}")
    finally:
        await consumer.stop()


async def wait_until(clock: Clock, instant: datetime) -> None:
    while True:
        left = (instant - clock.now()).total_seconds()
        if left <= 0:
            return
        await clock.sleep(min(left, 3600))


@dataclass
class Session:
    """One play of the plan: the system, the HTTP client, both callers' headers, and what happened so far."""

    system: System
    plan: Plan
    result: DemoResult
    http: httpx.AsyncClient
    say: Callable[[str], None]
    therapist: dict[str, str]
    client: dict[str, str]


Step = tuple[datetime, str, int, dict[str, Any]]
"""When the client acts, on which assignment (by plan name), which of its occurrences (index), and that occurrence."""


async def play(
    system: System, plan: Plan, out_dir: Path, *, console: bool = True, settle_timeout: float = 90.0
) -> DemoResult:
    """Play ``plan`` against ``system`` and return what happened, with the expected figures."""
    started = time.monotonic()
    result = DemoResult(plan, {}, {}, [], [], [], {}, {}, out_dir / "summary.html", {}, 0.0)
    joined = asyncio.Event()
    watcher = asyncio.create_task(watch_events(system, plan, result, Console(console, started), joined))
    # The watcher must be on the stream before the first reminder (waited for, not slept on).
    await asyncio.wait_for(joined.wait(), timeout=60)
    async with httpx.AsyncClient(timeout=30) as http:
        session = Session(
            system,
            plan,
            result,
            http,
            Console(console, started).say,
            therapist={"Authorization": f"Bearer {token(system, 'therapist', plan.therapist_id, plan.practice_id)}"},
            client={"Authorization": f"Bearer {token(system, 'client', plan.client_id, plan.practice_id)}"},
        )
        # List from the plan's first day: on a slow machine an occurrence may open while the
        # homework is being assigned; the client then acts on it at once.
        assigned_from = datetime.combine(plan.first_day, datetime.min.time(), ZoneInfo(plan.timezone))
        await assign_homework(session)
        for step in await client_schedule(session, assigned_from):
            await act(session, step)
        await summarise(session, out_dir, settle_timeout)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    result.seconds = time.monotonic() - started
    return result


async def assign_homework(s: Session) -> None:
    """The therapist assigns each of the plan's assignments."""
    s.say(
        f"therapist {s.plan.therapist_id} assigns homework to client {s.plan.client_id} ({s.plan.timezone}); "
        f"platform time {local(s.system.clock.now(), s.plan.timezone)}"
    )
    for name, body in s.plan.assignments().items():
        r = await s.http.post(f"{s.system.assignment_url}/v1/assignments", json=body, headers=s.therapist)
        r.raise_for_status()
        s.result.assignment_ids[name] = r.json()["id"]
        s.say(f"  assigned  {body['title']} ({body['kind']})")


async def client_schedule(s: Session, assigned_from: datetime) -> list[Step]:
    """The occurrences of every assignment (as the client lists them), in the order the client acts on them.

    Also fixes the expected figures, which depend on how many occurrences each assignment has.
    """
    far = (max(s.system.clock.now(), assigned_from) + timedelta(days=s.plan.days + 3)).isoformat()
    schedule: list[Step] = []
    for name, aid in s.result.assignment_ids.items():
        r = await s.http.get(
            f"{s.system.assignment_url}/v1/assignments/{aid}/occurrences",
            params={"from": assigned_from.isoformat(), "to": far},
            headers=s.client,
        )
        r.raise_for_status()
        occs = sorted(r.json()["items"], key=lambda o: o["opens_at"])
        s.result.occurrences[name] = occs
        for i, occ in enumerate(occs):
            opens = datetime.fromisoformat(occ["opens_at"])
            schedule.append((opens + timedelta(minutes=s.plan.act_after_minutes), name, i, occ))
    schedule.sort(key=lambda item: item[0])
    counts = {name: len(occs) for name, occs in s.result.occurrences.items()}
    s.result.expected = s.plan.expected(counts)
    s.say(
        f"  {sum(counts.values())} occurrences over {s.plan.days} days: "
        + ", ".join(f"{n} {c}" for n, c in counts.items())
    )
    return schedule


async def act(s: Session, step: Step) -> None:
    """At its time, the client completes, partly completes, skips or ignores one occurrence, as the plan says."""
    when, name, i, occ = step
    action = s.plan.action(name, i)
    await wait_until(s.system.clock, when)
    aid, oid = s.result.assignment_ids[name], occ["occurrence_id"]
    url = f"{s.system.assignment_url}/v1/assignments/{aid}/occurrences/{oid}"
    if action.kind == "ignore":
        s.result.actions.append((name, oid, "ignored"))
        s.say(f"  client    {local(when, s.plan.timezone)}  ignores {name}")
        return
    if action.kind == "skip":
        r = await s.http.post(f"{url}/skip", json=action.body, headers=s.client)
        label = f"skips {name} ({action.body['barrier']})"
    else:
        body = {"status": action.kind, **action.body}
        r = await s.http.post(f"{url}/completion", json=body, headers=s.client)
        label = f"{'does' if action.kind == 'done' else 'partly does'} {name}"
    if r.status_code != 201:
        raise RuntimeError(f"{label}: {r.status_code} {r.text}")
    s.result.actions.append((name, occ["occurrence_id"], action.kind))
    s.say(f"  client    {local(when, s.plan.timezone)}  {label}")


async def summarise(s: Session, out_dir: Path, settle_timeout: float) -> None:
    """Once every window has closed: the settled figures, the missed occurrences, a summary and its HTML report."""
    occurrences = [o for occs in s.result.occurrences.values() for o in occs]
    last_close = max(datetime.fromisoformat(o["closes_at"]) for o in occurrences)
    await wait_until(s.system.clock, last_close + timedelta(minutes=30))
    s.say("every window has closed; waiting for the figures to settle")
    s.result.figures = await settle(s.http, s.system, s.plan, s.result.expected, s.therapist, settle_timeout)
    await missed_reported(s.result, int(s.result.expected["overall"]["missed"]), settle_timeout)
    insights = s.system.insights_url
    r = await s.http.post(f"{insights}/v1/clients/{s.plan.client_id}/summaries", json={}, headers=s.therapist)
    r.raise_for_status()
    s.result.summary = r.json()
    page = await s.http.get(f"{insights}/v1/summaries/{s.result.summary['summary_id']}/html", headers=s.therapist)
    page.raise_for_status()
    out_dir.mkdir(parents=True, exist_ok=True)
    s.result.html_path = out_dir / f"summary-{s.result.summary['summary_id']}.html"
    s.result.html_path.write_text(page.text)


async def missed_reported(result: DemoResult, expected: int, timeout: float) -> None:
    """Wait (bounded) until the reminder service has reported every missed occurrence: after a grace period."""
    deadline = time.monotonic() + timeout
    while len(result.missed) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.25)


async def settle(
    http: httpx.AsyncClient,
    system: System,
    plan: Plan,
    expected: dict[str, dict[str, float]],
    headers: dict[str, str],
    timeout: float,
) -> dict[str, Any]:
    """The client's figures once every occurrence is accounted (or the last seen after ``timeout``)."""
    deadline = time.monotonic() + timeout
    figures: dict[str, Any] = {}
    want = expected["overall"]
    while time.monotonic() < deadline:
        r = await http.get(f"{system.insights_url}/v1/clients/{plan.client_id}/figures", headers=headers)
        if r.status_code == 200:
            figures = r.json()
            overall = figures.get("overall", {})
            if (
                overall.get("due") == want["due"]
                and overall.get("missed") == want["missed"]
                and overall.get("done") == want["done"]
                and overall.get("skipped") == want["skipped"]
            ):
                return figures
        await asyncio.sleep(0.5)
    return figures


def table(result: DemoResult) -> str:
    """The final table: per assignment and overall, what was due and what the client did."""
    figures = result.figures
    by_assignment = {a.get("assignment_id"): a for a in figures.get("assignments", [])}
    rows = [("assignment", "due", "done", "partial", "skipped", "missed", "adherence", "streak", "expected")]
    for name, aid in result.assignment_ids.items():
        f = by_assignment.get(aid, {})
        exp = result.expected.get(name, {})
        streak = f.get("streak", {})
        rows.append(
            (
                name,
                str(f.get("due")),
                str(f.get("done")),
                str(f.get("partial")),
                str(f.get("skipped")),
                str(f.get("missed")),
                f"{f.get('adherence_pct')}%",
                f"{streak.get('current')}/{streak.get('longest')}" if isinstance(streak, dict) else "-",
                f"{exp.get('adherence_pct')}%",
            )
        )
    o = figures.get("overall", {})
    rows.append(
        (
            "overall",
            str(o.get("due")),
            str(o.get("done")),
            str(o.get("partial")),
            str(o.get("skipped")),
            str(o.get("missed")),
            f"{o.get('adherence_pct')}%",
            "",
            f"{result.expected['overall']['adherence_pct']}%",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


@contextlib.asynccontextmanager
async def own_system(speed: float, logs: Path) -> AsyncIterator[System]:
    """Start the local stack and the three services with a sped-up clock; stop them afterwards."""
    import devstack
    from processes import launch, service_env

    root = Path(tempfile.mkdtemp(prefix="homework-demo-"))
    stack = devstack.up(root / "stack")
    now = datetime.now(UTC)
    prefix = f"demo{int(time.time())}"
    env = service_env(
        stack.env(),
        TOPIC_PREFIX=prefix,
        CLOCK_SPEED=str(speed),
        CLOCK_ORIGIN=now.isoformat(),
        CLOCK_REAL_ORIGIN=now.isoformat(),
        # The grace before an occurrence counts as missed is platform time: 60 s would be 8 ms of real
        # time at 7200x, less than a completion takes to reach the reminder service. Two real seconds.
        MISSED_GRACE_S=str(int(2 * speed)),
    )
    ports = {name: devstack.free_port() for name in ("assignment", "reminder", "insights")}
    procs = launch(list(ports), env, logs, ports)
    try:
        yield System(
            f"http://127.0.0.1:{ports['assignment']}",
            f"http://127.0.0.1:{ports['reminder']}",
            f"http://127.0.0.1:{ports['insights']}",
            stack.kafka_bootstrap,
            prefix,
            ScaledClock(speed, now, now),
        )
    finally:
        for p in procs:
            p.stop(timeout=30)
        devstack.down(root / "stack")


def system_from_run(run_json: Path) -> System | None:
    """The system a running `make run` describes in .devstack/run.json, if it runs with a sped-up clock."""
    if not run_json.exists():
        return None
    info = json.loads(run_json.read_text())
    try:
        os.kill(int(info.get("pid", 0)), 0)
    except (OSError, ValueError):
        return None  # a stale file: that `make run` is gone
    speed = float(info.get("clock_speed", 1))
    if speed == 1.0:
        print(
            "make run is running in real time; the demo needs `make run CLOCK_SPEED=7200`. "
            "Starting a separate system with a sped-up clock instead.",
            file=sys.stderr,
        )
        return None
    return System(
        info["urls"]["assignment"],
        info["urls"]["reminder"],
        info["urls"]["insights"],
        info["kafka_bootstrap"],
        info["topic_prefix"],
        ScaledClock(
            speed, datetime.fromisoformat(info["clock_origin"]), datetime.fromisoformat(info["clock_real_origin"])
        ),
    )


def new_plan(clock: Clock, tz: str = "Europe/Berlin", days: int = 7, suffix: str | None = None) -> Plan:
    tag = suffix or datetime.now(UTC).strftime("%H%M%S")
    first_day = (clock.now().astimezone(ZoneInfo(tz)) + timedelta(days=1)).date()
    return Plan(
        client_id=f"client-{tag}",
        practice_id="practice-demo",
        therapist_id="therapist-demo",
        timezone=tz,
        first_day=first_day,
        days=days,
    )


def report(result: DemoResult, say: Callable[[str], None] = print) -> None:
    say("")
    say(table(result))
    say("")
    say(f"reminders fired: {len(result.reminders)}; occurrences missed: {len(result.missed)}")
    flags = [f.get("code") for f in result.figures.get("flags", [])]
    say(f"flags: {', '.join(str(f) for f in flags) or 'none'}")
    say(f"pre-session summary {result.summary.get('summary_id')}: {result.html_path}")
    say(f"played in {result.seconds:.0f}s")


async def main_async(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    system = None if args.own else system_from_run(Path(args.run_json))
    if system is not None:
        plan = new_plan(system.clock, args.timezone, args.days)
        result = await play(system, plan, out)
        report(result)
        return 0
    async with own_system(args.speed, out / "logs") as own:
        plan = new_plan(own.clock, args.timezone, args.days)
        result = await play(own, plan, out)
    report(result)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-json", default=".devstack/run.json")
    parser.add_argument("--own", action="store_true", help="start a separate system even if make run is running")
    parser.add_argument("--speed", type=float, default=float(os.environ.get("DEMO_SPEED", DEFAULT_SPEED)))
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--timezone", default="Europe/Berlin")
    parser.add_argument("--out", default=".devstack/demo")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
