"""The built-in webhook channel: signed deliveries, retried with back-off until the receiver answers 2xx,
failures counted in the metrics, and firing that never waits on a slow receiver; webhooks that cannot
reach inside the network (checked when set and at each connect), and secrets encrypted at rest.

The receiver listens on 127.0.0.1, so the delivery tests run with ``WEBHOOK_ALLOW_PRIVATE_NETWORKS``
(development only); the address tests run without it and steer the guard's resolver.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from cryptography.fernet import Fernet
from pymongo import AsyncMongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homework_reminder.webhook import SIGNATURE_HEADER, verify
from homework_reminder.webhook_secrets import SecretBox
from homework_shared.events import Channel, ReminderSent, ReminderWish
from tests.conftest import unique, wait_for
from tests.integration.reminder.conftest import T0, Deployment, at, bearer, counts, state_is

SECRET = "a-practice-secret-of-some-length"
WEBHOOK = ReminderWish(anchor="opens", offset_minutes=0, channels=[Channel.WEBHOOK, Channel.PUSH])
LOCAL_RECEIVER = {"environment": "development", "webhook_allow_private_networks": True}


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
    app = await d.start(webhook_base_delay_s=0.05, webhook_max_delay_s=0.2, **LOCAL_RECEIVER)
    store = d.store(app)
    async with d.http(app) as http:
        put = await http.put(
            f"/v1/practices/{d.practice}/webhook",
            json={"url": receiver.url, "secret": SECRET},
            headers=bearer("admin", "a1", d.practice),
        )
        assert put.status_code == 200, put.text
    stored = await store.webhook(d.practice)
    assert stored is not None
    assert "secret" not in stored
    assert SECRET not in str(stored)  # encrypted at rest
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
    app = await d.start(webhook_timeout_s=0.3, webhook_max_attempts=2, webhook_base_delay_s=0.05, **LOCAL_RECEIVER)
    store = d.store(app)
    await store.set_webhook(d.practice, receiver.url, SecretBox.from_settings(d.settings()).seal(SECRET), "a1", T0)
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


async def test_a_webhook_url_that_resolves_inside_the_network_is_refused_when_set(deployment: Deployment) -> None:
    d = deployment
    app = await d.start()
    answers = {"hooks.example.org": ["93.184.215.14"], "internal.example.org": ["93.184.215.14", "10.0.0.5"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    app.state.services.egress.resolve = resolver
    admin = bearer("admin", "a1", d.practice)
    path = f"/v1/practices/{d.practice}/webhook"
    async with d.http(app) as http:
        for url, why in [
            ("http://127.0.0.1:8002/hook", "loopback"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://[::ffff:10.0.0.1]/hook", "private"),
            ("http://[fd00:ec2::254]/", "unique-local"),
            ("http://0.0.0.0:9092/", "unspecified"),
            ("https://internal.example.org/hook", "10.0.0.5, which is private"),
        ]:
            refused = await http.put(path, json={"url": url, "secret": SECRET}, headers=admin)
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["error"] == "webhook_address_refused"
            assert refused.json()["message"].startswith("url: "), refused.text
            assert why in refused.json()["message"], refused.text
        assert await d.store(app).webhook(d.practice) is None
        public = await http.put(path, json={"url": "https://hooks.example.org/hook", "secret": SECRET}, headers=admin)
        assert public.status_code == 200, public.text


async def test_a_public_name_that_rebinds_to_a_private_address_is_refused_at_delivery_and_never_sent(
    deployment: Deployment, receiver: Receiver
) -> None:
    d = deployment
    app = await d.start(webhook_base_delay_s=0.05)
    store = d.store(app)
    answers = ["93.184.215.14"]  # public when the URL is set ...

    async def rebinding(host: str, port: int) -> list[str]:
        assert host == "hooks.rebind.example"
        return list(answers)

    app.state.services.egress.resolve = rebinding
    port = urlsplit(receiver.url).port
    async with d.http(app) as http:
        put = await http.put(
            f"/v1/practices/{d.practice}/webhook",
            json={"url": f"http://hooks.rebind.example:{port}/hook", "secret": SECRET},
            headers=bearer("admin", "a1", d.practice),
        )
        assert put.status_code == 200, put.text
    answers[:] = ["127.0.0.1"]  # ... and loopback, where the receiver listens, when the delivery connects
    await d.publish(d.created(reminders=[WEBHOOK]))
    await wait_for(counts(store.reminders, {"state": "pending"}, 5), message="scheduled")

    d.clock.set(T0 + at(10))
    await wait_for(counts(store.deliveries, {"state": "failed"}, 1), message="refused at connect")
    doc = await store.deliveries.find_one({})
    assert doc is not None
    assert doc["attempts"] == 1  # refused for good, not retried
    assert "127.0.0.1, which is loopback" in doc["last_error"]
    assert app.state.metrics_registry.get_sample_value("webhook_failures_total", {"reason": "blocked_address"}) == 1
    assert receiver.received == []


async def test_plaintext_and_old_key_secrets_keep_working_and_are_resealed_under_the_first_key(
    deployment: Deployment, receiver: Receiver
) -> None:
    d = deployment
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    legacy_practice = unique("practice")
    raw: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(d.infra.mongodb_uri)
    try:  # a webhook stored before secrets were encrypted
        legacy = {"_id": legacy_practice, "url": receiver.url, "secret": SECRET, "updated_at": T0, "updated_by": "a1"}
        await raw[d.database]["webhooks"].insert_one(legacy)
    finally:
        await raw.close()
    app = await d.start(webhook_secret_keys=f"{new},{old}", **LOCAL_RECEIVER)
    store = d.store(app)
    migrated = await store.webhook(legacy_practice)
    assert migrated is not None
    assert "secret" not in migrated  # encrypted at start
    assert SecretBox([new]).reveal(migrated) == SECRET

    # A secret encrypted under the old key (before the rotation) still signs deliveries.
    await store.set_webhook(d.practice, receiver.url, SecretBox([old]).seal(SECRET), "a1", T0)
    await d.publish(d.created(reminders=[WEBHOOK]))
    await wait_for(counts(store.reminders, {"state": "pending"}, 5), message="scheduled")
    d.clock.set(T0 + at(10))
    await wait_for(counts(store.deliveries, {"state": "delivered"}, 1), message="delivered")
    headers, body = receiver.received[0]
    assert verify(SECRET, headers[SIGNATURE_HEADER.lower()], body)

    # The rotate step a Kubernetes Job runs re-encrypts it under the new key, so the old key can go.
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "KAFKA_BOOTSTRAP_SERVERS": d.infra.kafka_bootstrap,
        "MONGODB_URI": d.infra.mongodb_uri,
        "MONGODB_DATABASE": d.database,
        "WEBHOOK_SECRET_KEYS": f"{new},{old}",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "homework_reminder.webhook_secrets", env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["encrypted=0", "rotated=1", "unreadable=0"]
    rotated = await store.webhook(d.practice)
    assert rotated is not None
    assert SecretBox([new]).reveal(rotated) == SECRET


async def _true(value: bool) -> bool:
    return value
