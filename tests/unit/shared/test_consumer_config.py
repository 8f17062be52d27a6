"""A consuming service's ``CONSUMER_*`` settings reach its consumer as one batching and one retry policy."""

from __future__ import annotations

from homework_shared.consumer import Batching, RetryPolicy


def test_each_service_consumer_is_batched_and_retried_as_its_settings_say() -> None:
    from homework_insights.app import create as create_insights
    from homework_insights.config import InsightsSettings
    from homework_reminder.app import create as create_reminder
    from homework_reminder.config import ReminderSettings

    unreachable = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}
    tuning = {
        "consumer_batch_size": 7,
        "consumer_concurrency": 3,
        "consumer_group_size": 5,
        "consumer_transient_retry_s": 42,
    }
    for create, settings in (
        (create_reminder, ReminderSettings(environment="development", **tuning, **unreachable)),
        (create_insights, InsightsSettings(environment="development", **tuning, **unreachable)),
    ):
        [consumer] = create(settings).state.runtime.consumers  # type: ignore[operator]
        assert consumer.batching == Batching(batch_size=7, concurrency=3, group_size=5), type(settings)
        assert consumer.retry == RetryPolicy(transient_retry_s=42), type(settings)
        assert consumer.group_limit == 5
