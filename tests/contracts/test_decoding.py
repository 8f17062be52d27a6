"""Decoding: typed round trips, tolerant of new fields, and one documented error for every bad input."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from homework_shared.events import (
    EVENT_CLASSES,
    AssignmentCreated,
    CompletionRecorded,
    EventDecodeError,
    OccurrenceSkipped,
    decode,
    encode,
    envelope,
    without_free_text,
)
from homework_shared.events.examples import EXAMPLES

pytestmark = pytest.mark.unit


def record_of(event: object) -> tuple[dict[str, bytes], bytes]:
    rec = encode(envelope(event, source="/test"))  # type: ignore[type-var]
    return dict(rec.headers), rec.value


def test_there_is_an_example_of_every_event_type() -> None:
    assert set(EXAMPLES) == set(EVENT_CLASSES)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.event_type)
def test_every_event_round_trips_through_its_cloudevents_record(cls: type) -> None:
    event = EXAMPLES[cls]
    rec = encode(envelope(event, source="/homework/test", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"))
    headers = rec.header_dict()
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == cls.event_type
    assert headers["content-type"] == "application/json"
    assert headers["ce_partitionkey"] == event.client_id
    assert rec.key == event.client_id.encode()
    assert headers["ce_time"].endswith("Z")
    env = decode(rec.headers, rec.value)
    assert env.data == event
    assert env.subject == event.subject()
    assert env.traceparent is not None


def test_a_subscriber_ignores_fields_it_does_not_know_at_any_depth() -> None:
    headers, value = record_of(EXAMPLES[CompletionRecorded])
    payload = json.loads(value)
    payload["mood_after"] = 5
    payload["data"]["heart_rate"] = 90
    env = decode(headers, json.dumps(payload).encode())
    assert env.data == EXAMPLES[CompletionRecorded]


def test_a_producer_cannot_invent_fields() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AssignmentCreated.model_validate({**EXAMPLES[AssignmentCreated].model_dump(), "surprise": 1})


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, v: ({k: x for k, x in h.items() if k != "ce_type"}, v), "missing_header"),
        (lambda h, v: ({k: x for k, x in h.items() if k != "ce_id"}, v), "missing_header"),
        (lambda h, v: ({**h, "ce_specversion": b"0.3"}, v), "unsupported_specversion"),
        (lambda h, v: ({**h, "ce_type": b"homework.assignment.teleported.v1"}, v), "unknown_type"),
        (lambda h, v: ({**h, "ce_type": b"homework.completion.recorded.v2"}, v), "unsupported_version"),
        (lambda h, v: (h, b"{not json"), "invalid_json"),
        (lambda h, v: (h, b"[1, 2]"), "invalid_json"),
        (
            lambda h, v: (h, json.dumps({k: x for k, x in json.loads(v).items() if k != "percent"}).encode()),
            "invalid_data",
        ),
        (lambda h, v: (h, json.dumps({**json.loads(v), "percent": "most"}).encode()), "invalid_data"),
    ],
    ids=[
        "no-type",
        "no-id",
        "specversion",
        "unknown-type",
        "v2",
        "not-json",
        "not-object",
        "missing-field",
        "wrong-type",
    ],
)
def test_every_kind_of_bad_record_raises_the_one_decode_error(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    headers, value = mutate(*record_of(EXAMPLES[CompletionRecorded]))
    with pytest.raises(EventDecodeError) as info:
        decode(headers, value)
    assert info.value.reason == reason
    assert str(info.value).startswith(reason)


def test_the_decode_error_names_the_field_at_fault() -> None:
    headers, value = record_of(EXAMPLES[CompletionRecorded])
    bad = json.loads(value)
    bad["data"]["suds_peak"] = 500
    with pytest.raises(EventDecodeError, match=r"data\.exposure\.suds_peak"):
        decode(headers, json.dumps(bad).encode())


def test_free_text_is_left_out_unless_allowed() -> None:
    completion = EXAMPLES[CompletionRecorded]
    assert isinstance(completion, CompletionRecorded)
    assert completion.note
    stripped = without_free_text(completion)
    assert stripped.note is None
    assert stripped.data == completion.data
    skipped = without_free_text(EXAMPLES[OccurrenceSkipped])
    assert skipped.barrier_text is None
    assert skipped.barrier == "too_hard"
