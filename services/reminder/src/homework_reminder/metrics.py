"""The reminder service's own Prometheus metrics (the consumer, outbox and HTTP ones are shared)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from homework_shared.observability import ServiceMetrics

LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600)


@dataclass(frozen=True)
class ReminderMetrics:
    pending: Gauge
    fired: Counter
    lateness: Histogram
    cancelled: Counter
    leases_taken_over: Counter
    missed: Counter
    webhook_deliveries: Counter
    webhook_failures: Counter

    @classmethod
    def on(cls, metrics: ServiceMetrics) -> ReminderMetrics:
        """Create (once) the metrics on an app's registry."""
        return cls(
            pending=metrics.gauge("reminders_pending", "Reminders waiting to fire (counted periodically)"),
            fired=metrics.counter("reminders_fired_total", "Reminders fired by this replica"),
            lateness=metrics.histogram(
                "reminder_lateness_seconds", "Fired instant minus due instant", buckets=LATENESS_BUCKETS
            ),
            cancelled=metrics.counter("reminders_cancelled_total", "Reminders cancelled, by reason", ["reason"]),
            leases_taken_over=metrics.counter(
                "reminder_leases_taken_over_total", "Reminders claimed after another replica's lease expired"
            ),
            missed=metrics.counter("occurrences_missed_total", "Occurrences marked missed by this replica"),
            webhook_deliveries=metrics.counter("webhook_deliveries_total", "Webhook deliveries answered with 2xx"),
            webhook_failures=metrics.counter(
                "webhook_failures_total", "Failed webhook delivery attempts, by reason", ["reason"]
            ),
        )
