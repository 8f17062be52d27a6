"""Which parked records the replay re-publishes, and how ``--since`` is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from homework_shared.dlq_replay import Parked, decide, parse_since

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
STREAMS = {"homework.assignment.events"}


def parked(**headers: str) -> Parked:
    base = {"ce_id": "e-1", "dlq_consumer_group": "reminder", "dlq_original_topic": "homework.assignment.events"}
    return Parked(0, 7, b"client-1", b"{}", tuple((k, v.encode()) for k, v in (base | headers).items()))


def test_since_reads_spans_back_from_now_and_iso_instants_utc_by_default() -> None:
    assert parse_since("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("3d", NOW) == NOW - timedelta(days=3)
    assert parse_since("2026-12-01T10:00") == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2026-12-01T10:00+01:00") == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert parse_since("2026-12-01T10:00Z") == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="SINCE"):
        parse_since("last tuesday")


def test_a_record_of_the_group_under_the_limit_is_replayed_or_listed_in_a_dry_run() -> None:
    assert decide(parked(), group="reminder", streams=STREAMS, max_replays=3, dry_run=False) == "replayed"
    assert decide(parked(), group="reminder", streams=STREAMS, max_replays=3, dry_run=True) == "would_replay"


def test_a_record_replayed_max_replays_times_is_not_replayed_again() -> None:
    assert decide(parked(dlq_replay_count="3"), group="reminder", streams=STREAMS, max_replays=3, dry_run=False) == (
        "skipped_max_replays"
    )
    assert parked(dlq_replay_count="2").replays == 2
    assert parked(dlq_replay_count="junk").replays == 0


def test_a_record_is_never_sent_to_a_topic_outside_the_deployments_streams() -> None:
    rogue = parked(dlq_original_topic="homework.__consumer_offsets")
    assert decide(rogue, group="reminder", streams=STREAMS, max_replays=3, dry_run=False) == "skipped_foreign_topic"


def test_records_of_another_group_and_superseded_copies_are_skipped() -> None:
    other = parked(dlq_consumer_group="insights")
    assert decide(other, group="reminder", streams=STREAMS, max_replays=3, dry_run=False) == "skipped_other_group"
    old = parked()
    assert decide(old, group="reminder", streams=STREAMS, max_replays=3, dry_run=False, latest=False) == (
        "skipped_superseded"
    )


def test_the_replayed_headers_are_the_originals_without_the_dead_letter_ones() -> None:
    record = parked(dlq_reason="apply_failed", dlq_error="boom", traceparent="00-abc")
    assert dict(record.original_headers()) == {"ce_id": b"e-1", "traceparent": b"00-abc"}
    assert record.identity == "id:e-1"
