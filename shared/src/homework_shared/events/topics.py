"""Topic names, in one place: one stream per producing service and one dead-letter topic per consumer.

A prefix (``TOPIC_PREFIX``, default ``homework``) lets several deployments, or tests,
share one Kafka cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from homework_shared.events.base import Stream

STREAMS: tuple[Stream, ...] = ("assignment", "reminder", "insights")


@dataclass(frozen=True)
class Topics:
    """Every topic name of one deployment."""

    prefix: str = "homework"

    def stream(self, stream: Stream) -> str:
        """The topic a producing service publishes its events to, e.g. ``homework.assignment.events``."""
        return f"{self.prefix}.{stream}.events"

    @property
    def assignment(self) -> str:
        return self.stream("assignment")

    @property
    def reminder(self) -> str:
        return self.stream("reminder")

    @property
    def insights(self) -> str:
        return self.stream("insights")

    def dead_letter(self, consumer: str) -> str:
        """Where consumer ``consumer`` (its group) parks messages it cannot decode or apply."""
        return f"{self.prefix}.{consumer}.dead-letter"

    def all_streams(self) -> list[str]:
        return [self.stream(s) for s in STREAMS]
