"""The built-in webhook channel: signed deliveries, retried with back-off until the receiver answers 2xx,
failures counted in the metrics, and firing that never waits on a slow receiver."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homework_reminder.webhook import SIGNATURE_HEADER, verify
from homework_shared.events import Channel, ReminderSent, ReminderWish
from tests.conftest import wait_for
from tests.integration.reminder.conftest import T0, Deployment, at, bearer, counts, state_is

SECRET = "a-practice-secret-of-some-length"
WEBHOOK = ReminderWish(anchor="opens", offset_minutes=0, channels=[Channel.WEBHOOK, Channel.PUSH])


@dataclass
class Receiver:
    """A practice's webhook endpoint: answers with the queued statuses (then 200), optionally slowly."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = Receiver(url=f"http://127.0.0.1:{port}/hook")
    app = Starlette(routes=[Route("/hook", r.endpoint, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: _true(server.started), message="receiver started")
    try:
        yield r
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_reminder_on_the_webhook_channel_is_delivered_signed_and_retried_until_accepted(
    deployment: Deployment, receiver: Receiver
) -> None:
    d = deployment
    app = await d.start(webhook_base_delay_s=0.05, webhook_max_delay_s=0.2)
    store = d.store(app)
    async with d.http(app) as http:
        put = await http.put(
            f"/v1/practices/{d.practice}/webhook",
            json={"url": receiver.url, "secret": SECRET},
            headers=bearer("therapist", "t1", d.practice),
        )
        assert put.status_code == 200, put.text
    asg = d.created(reminders=[WEBHOOK])
    await d.publish(asg)
    await wait_for(counts(store.reminders, {"state": "pending"}, 5), message="scheduled")

    receiver.statuses = [500, 503]
    d.clock.set(T0 + at(10))
    await wait_for(counts(store.deliveries, {"state": "delivered"}, 1), message="delivered after two failures")

    assert len(receiver.received) == 3
    ids = {headers["x-homework-event-id"] for headers, _ in receiver.received}
    rid = f"{asg.assignment_id}@2026-05-01T20:00#opens+0"
    assert ids == {f"sent:{rid}@2026-05-01T18:00:00Z"}
    for headers, body in receiver.received:
        assert verify(SECRET, headers[SIGNATURE_HEADER.lower()], body)
        assert not verify("another-secret-entirely-000", headers[SIGNATURE_HEADER.lower()], body)
        assert headers["content-type"] == "application/cloudevents+json"
    event = json.loads(receiver.received[-1][1])
    assert event["type"] == ReminderSent.event_type
    assert event["data"]["reminder_id"] == rid
    assert event["data"]["channels"] == ["webhook", "push"]
    failures = app.state.metrics_registry.get_sample_value("webhook_failures_total", {"reason": "http_5xx"})
    assert failures == 2
    assert app.state.metrics_registry.get_sample_value("webhook_deliveries_total") == 1


async def test_firing_does_not_wait_on_a_slow_webhook_and_a_receiver_that_never_answers_fails_for_good(
    deployment: Deployment, receiver: Receiver
) -> None:
    d = deployment
    app = await d.start(webhook_timeout_s=0.3, webhook_max_attempts=2, webhook_base_delay_s=0.05)
    store = d.store(app)
    await store.set_webhook(d.practice, receiver.url, SECRET, "t1", d.clock.now())
    receiver.delay = 2.0
    await d.publish(d.created(reminders=[WEBHOOK]))
    await wait_for(counts(store.reminders, {"state": "pending"}, 5), message="scheduled")

    d.clock.set(T0 + at(10))
    await wait_for(counts(store.reminders, {"state": "fired"}, 1), timeout=2, message="fired without waiting")
    await wait_for(counts(store.deliveries, {"state": "failed"}, 1), message="given up after two timeouts")
    doc = await store.deliveries.find_one({})
    assert doc is not None
    assert doc["attempts"] == 2
    assert app.state.metrics_registry.get_sample_value("webhook_failures_total", {"reason": "connection"}) == 2
    assert await state_is(store.reminders, doc["reminder_id"], "fired")


async def _true(value: bool) -> bool:
    return value
