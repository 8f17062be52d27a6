"""Test helpers for the tests that wire a broker by hand instead of through ``Runtime``."""

from __future__ import annotations

from homework_shared.events.topics import Topics


def service_topics(topics: Topics, *, consumer_group: str | None) -> list[str]:
    """The topics a service needs: every event stream, and its own dead-letter topic if it consumes."""
    names = topics.all_streams()
    if consumer_group:
        names.append(topics.dead_letter(consumer_group))
    return names
