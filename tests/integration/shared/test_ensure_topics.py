"""Topic creation is idempotent, and a topic Kafka refuses is an error, not a silent success."""

from __future__ import annotations

import pytest

from homework_shared.kafka import ensure_topics
from tests.conftest import unique
from tests.infra import Infra


async def test_topics_are_created_once_and_a_refused_topic_raises(infra: Infra) -> None:
    name = unique("topic")
    settings = {"partitions": 2, "replication_factor": 1, "min_insync_replicas": 1, "retention_ms": 3_600_000}
    assert await ensure_topics(infra.kafka_bootstrap, [name], **settings) == [name]
    assert await ensure_topics(infra.kafka_bootstrap, [name], **settings) == []
    with pytest.raises(RuntimeError, match="refused to create topics"):
        await ensure_topics(infra.kafka_bootstrap, [unique("topic")], **{**settings, "replication_factor": 5})
