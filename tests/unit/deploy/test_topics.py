"""The topics the deployment creates up front are the ones the services use."""

from __future__ import annotations

import pytest

from homework_shared.events.topics import Topics
from homework_shared.topics_cli import CONSUMERS, topic_names
from tests.unit.deploy.files import SERVICES, settings_class


@pytest.mark.parametrize("service", SERVICES)
def test_the_topics_job_creates_the_dead_letter_topic_of_each_services_consumer_group(service: str) -> None:
    # A service consumes as the group named after it (Runtime.consume), parking failures in its dead-letter topic.
    group = settings_class(service).model_fields["service_name"].default
    assert group in CONSUMERS
    assert Topics("p").dead_letter(group) in topic_names("p")


def test_the_topics_job_creates_every_event_stream() -> None:
    assert set(Topics("p").all_streams()) <= set(topic_names("p"))
