"""The assignment service's own Prometheus metrics (the outbox and HTTP ones are shared)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from homework_shared.observability import ServiceMetrics

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class AssignmentMetrics:
    resolutions: Counter
    resolution_batch_sizes: Histogram
    ended_by_schedule: Counter

    @classmethod
    def on(cls, metrics: ServiceMetrics) -> AssignmentMetrics:
        """Create (once) the metrics on an app's registry."""
        return cls(
            resolutions=metrics.counter("homework_resolutions_total", "Completions and skips recorded", ["type"]),
            resolution_batch_sizes=metrics.histogram(
                "resolution_batch_size",
                "Completions and skips written per transaction (group commit)",
                buckets=BATCH_SIZE_BUCKETS,
            ),
            ended_by_schedule=metrics.counter(
                "assignments_ended_by_schedule_total", "Assignments ended because their schedule is over"
            ),
        )
