"""The assignment service's own Prometheus metrics (the outbox and HTTP ones are shared)."""

from __future__ import annotations

from homework_shared.observability import ServiceMetrics

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class AssignmentMetrics:
    """Completions and skips recorded, their group-commit batch sizes, assignments ended by their schedule."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.resolutions = metrics.counter("homework_resolutions_total", "Completions and skips recorded", ["type"])
        self.resolution_batch_sizes = metrics.histogram(
            "resolution_batch_size",
            "Completions and skips written per transaction (group commit)",
            buckets=BATCH_SIZE_BUCKETS,
        )
        self.ended_by_schedule = metrics.counter(
            "assignments_ended_by_schedule_total", "Assignments ended because their schedule is over"
        )
