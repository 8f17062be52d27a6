"""The insights service's own Prometheus metrics (the consumer, outbox and HTTP ones are shared)."""

from __future__ import annotations

from homework_shared.observability import ServiceMetrics


class InsightsMetrics:
    """Summaries generated and alerts raised (consumer lag, events applied and parked come from the shared consumer)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.summaries = metrics.counter("insights_summaries_generated_total", "Pre-session summaries generated")
        self.alerts = metrics.counter("insights_alerts_raised_total", "Adherence alerts raised (one per episode)")
