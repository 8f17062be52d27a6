"""Each service's AsyncAPI document (FastStream-generated, with the event schemas) is committed up to date."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import asyncapi_docs  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", sorted(asyncapi_docs.SERVICES))
def test_the_committed_asyncapi_document_matches_the_service(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("MONGODB_URI", "mongodb://mongo:27017/?replicaSet=rs0")
    for name in ("TOPIC_PREFIX", "CONSUMER_GROUP"):
        monkeypatch.delenv(name, raising=False)
    doc = asyncapi_docs.document(asyncapi_docs.SERVICES[service], f"Homework {service} service")
    committed = json.loads((ROOT / "docs" / "asyncapi" / f"{service}.json").read_text())
    assert committed == json.loads(json.dumps(doc)), "run `make docs`"


@pytest.mark.parametrize("service", sorted(asyncapi_docs.SERVICES))
def test_every_channel_names_its_payload_schemas(service: str) -> None:
    doc = json.loads((ROOT / "docs" / "asyncapi" / f"{service}.json").read_text())
    published = [c for c in doc["channels"] if c.endswith(":publish") and "dead-letter" not in c]
    assert len(published) == 1
    for message in doc["components"]["messages"].values():
        if "dead-letter" in message.get("title", ""):
            continue
        refs = [alt["$ref"] for alt in message["payload"]["oneOf"]]
        assert refs
        assert all(ref.startswith("#/components/schemas/homework.") for ref in refs)
