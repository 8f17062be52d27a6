"""Which failures the consumer retries for a bounded time (transient) and which it parks after a few attempts."""

from __future__ import annotations

import pytest
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from homework_shared.consumer import EventConsumer, RetryPolicy, is_transient


def test_transient_errors_are_told_from_permanent_ones() -> None:
    assert is_transient(OperationFailure("conflict", code=112))
    assert is_transient(OperationFailure("x", code=2, details={"errorLabels": ["TransientTransactionError"]}))
    assert is_transient(OperationFailure("operation exceeded time limit", code=50))
    assert is_transient(NetworkTimeout("timed out"))
    assert is_transient(ExecutionTimeout("maxTimeMS expired", code=50))
    assert is_transient(TimeoutError())
    assert is_transient(ServerSelectionTimeoutError("no primary"))
    assert is_transient(AutoReconnect("connection closed"))
    assert not is_transient(DuplicateKeyError("dup", code=11000))
    assert not is_transient(OperationFailure("bad update", code=9))
    assert not is_transient(ValueError("a bug"))


def test_the_transient_back_off_grows_exponentially_with_jitter_and_is_capped() -> None:
    consumer = EventConsumer.__new__(EventConsumer)
    consumer.retry = RetryPolicy(transient_base_delay=0.01, max_delay=5.0)
    for failures in range(40):
        step = min(5.0, 0.01 * 2**failures)
        for _ in range(20):
            assert step / 2 <= consumer.transient_delay(failures) <= step


def test_a_services_consumer_takes_its_retry_budget_from_consumer_transient_retry_s() -> None:
    from homework_reminder.app import create
    from homework_reminder.config import ReminderSettings

    unreachable = {"kafka_bootstrap_servers": "127.0.0.1:9", "mongodb_uri": "mongodb://127.0.0.1:9/"}
    default = ReminderSettings(environment="development", **unreachable)
    assert default.consumer_transient_retry_s == 600, "ten minutes unless set"
    app = create(ReminderSettings(environment="development", consumer_transient_retry_s=42, **unreachable))
    [consumer] = app.state.runtime.consumers
    assert consumer.retry.transient_retry_s == 42


def test_a_retry_budget_of_zero_or_less_is_refused() -> None:
    import pydantic

    from homework_reminder.config import ReminderSettings

    with pytest.raises(pydantic.ValidationError, match="consumer_transient_retry_s"):
        ReminderSettings(
            environment="development",
            kafka_bootstrap_servers="127.0.0.1:9",
            mongodb_uri="mongodb://127.0.0.1:9/",
            consumer_transient_retry_s=0,
        )
