"""The published schemas match the models, and the compatibility rule catches breaking changes."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from check_jsonschema.formats.implementations import validate_rfc3339
from jsonschema import Draft202012Validator, FormatChecker

from homework_shared.events import (
    EVENT_CLASSES,
    AssignmentCreated,
    CompletionRecorded,
    HomeworkEvent,
    OccurrenceMissed,
    OccurrenceSkipped,
    encode,
    envelope,
)
from homework_shared.events.examples import EXAMPLES
from homework_shared.events.schemas import (
    LOCAL_TIME_CORRECTION,
    breaking_changes,
    check,
    corrections,
    revisions,
    schema_of,
    write,
)
from homework_shared.events.values import LOCAL_DATE_TIME_PATTERN

pytestmark = pytest.mark.unit
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"


def test_every_event_type_has_a_committed_schema_equal_to_its_model() -> None:
    assert check(SCHEMAS) == []


def test_the_check_fails_when_a_model_drifts_from_its_committed_schema(tmp_path: Path) -> None:
    assert write(tmp_path) == []
    path = tmp_path / CompletionRecorded.event_type / "r1.json"
    path.write_text(path.read_text().replace('"quality_rating"', '"quality_score"'))
    problems = check(tmp_path)
    assert any("differs from the committed schema" in p for p in problems)


def completion_schema() -> dict[str, Any]:
    return copy.deepcopy(schema_of(CompletionRecorded))


def test_removing_a_field_is_breaking() -> None:
    old, new = completion_schema(), completion_schema()
    del new["properties"]["quality_rating"]
    assert breaking_changes(old, new) == ["quality_rating: field removed"]


def test_making_an_optional_field_required_is_breaking() -> None:
    old, new = completion_schema(), completion_schema()
    new["required"].append("quality_rating")
    assert breaking_changes(old, new) == ["quality_rating: made required"]


def test_changing_a_type_is_breaking() -> None:
    old, new = completion_schema(), completion_schema()
    new["properties"]["percent"]["type"] = "number"
    assert breaking_changes(old, new) == ["percent: type changed from 'integer' to 'number'"]


def test_changing_a_nested_type_is_breaking() -> None:
    old, new = completion_schema(), completion_schema()
    new["$defs"]["ExposureData"]["properties"]["suds_peak"]["type"] = "string"
    problems = breaking_changes(old, new)
    assert len(problems) == 1
    assert "suds_peak: type changed" in problems[0]


def test_a_new_required_field_is_breaking_and_a_new_optional_field_is_not() -> None:
    old, new = completion_schema(), completion_schema()
    new["properties"]["mood_after"] = {"type": "integer"}
    assert breaking_changes(old, new) == []
    new["required"].append("mood_after")
    assert breaking_changes(old, new) == ["mood_after: new field is required"]


def test_write_refuses_a_breaking_change_and_keeps_the_history(tmp_path: Path) -> None:
    assert write(tmp_path) == []
    path = tmp_path / CompletionRecorded.event_type / "r1.json"
    text = path.read_text()
    # Pretend r1 had a field the model no longer has: the model now "removes" it.
    path.write_text(text.replace('"late": {', '"late_by_minutes": {"type": "integer"}, "late": {', 1))
    refused = write(tmp_path)
    assert len(refused) == 1
    assert "late_by_minutes: field removed" in refused[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["r1.json"]


def test_every_type_name_carries_a_major_version_and_is_unique() -> None:
    types = [cls.event_type for cls in EVENT_CLASSES]
    assert len(types) == len(set(types))
    assert all(t.startswith("homework.") and t.rsplit(".", 1)[1].startswith("v") for t in types)


# ---- the local wall time correction (revision 2) -------------------------------------------------


def strict_format_checker() -> FormatChecker:
    """jsonschema's format checker, with RFC 3339 ``date-time`` surely enforced.

    jsonschema checks ``date-time`` only when an RFC 3339 parser is installed; check-jsonschema's
    own implementation is, so a subscriber's strictest validator is what this test runs.
    """
    checker = FormatChecker()
    checker.checks("date-time")(validate_rfc3339)
    assert not checker.conforms("2026-03-29T20:00:00", "date-time"), "the checker must require an offset"
    return checker


def example_data(cls: type[HomeworkEvent]) -> dict[str, Any]:
    """An example event's data exactly as it goes on the wire (the Kafka record's value)."""
    record = encode(envelope(EXAMPLES[cls], source="/homework/assignment", time=datetime(2026, 3, 29, 18, tzinfo=UTC)))
    data: dict[str, Any] = json.loads(record.value)
    return data


def latest(event_type: str) -> dict[str, Any]:
    return revisions(SCHEMAS, event_type)[-1]


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.event_type)
def test_real_example_events_validate_against_the_latest_schema_with_formats_enforced(
    cls: type[HomeworkEvent],
) -> None:
    validator = Draft202012Validator(latest(cls.event_type), format_checker=strict_format_checker())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(example_data(cls))]
    assert errors == []


@pytest.mark.parametrize("cls", [CompletionRecorded, OccurrenceSkipped, OccurrenceMissed, AssignmentCreated])
def test_the_first_revision_refused_those_events_under_format_checking(cls: type[HomeworkEvent]) -> None:
    first = revisions(SCHEMAS, cls.event_type)[0]
    validator = Draft202012Validator(first, format_checker=strict_format_checker())
    errors = list(validator.iter_errors(example_data(cls)))
    assert errors, "r1 should have refused the local wall times"
    for error in errors:  # each refusal is a local wall time read as RFC 3339 (inside a oneOf: its context)
        reasons = [e.message for e in [error, *error.context] if e.validator == "format"]
        assert any("is not a 'date-time'" in r for r in reasons), error.message


def test_the_local_time_correction_is_a_revision_with_a_note_not_a_breaking_change() -> None:
    first, second = revisions(SCHEMAS, OccurrenceMissed.event_type)[:2]
    assert breaking_changes(first, second) == []
    assert corrections(first, second) == ["local_start: format", "local_start: pattern"]
    assert second["x-revision-note"] == LOCAL_TIME_CORRECTION
    assert second["properties"]["local_start"]["pattern"] == LOCAL_DATE_TIME_PATTERN
    assert "format" not in second["properties"]["local_start"]


def test_a_correction_without_its_note_is_refused(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path, dirs_exist_ok=True)
    path = tmp_path / OccurrenceMissed.event_type / "r2.json"
    schema = json.loads(path.read_text())
    del schema["x-revision-note"]
    path.write_text(json.dumps(schema))
    assert check(tmp_path) == [f"{OccurrenceMissed.event_type}: r2 corrects r1 without its note (x-revision-note)"]


def test_dropping_the_format_of_an_instant_is_still_breaking() -> None:
    old = copy.deepcopy(schema_of(OccurrenceMissed))
    new = copy.deepcopy(old)
    del new["properties"]["opens_at"]["format"]
    assert breaking_changes(old, new) == ["opens_at: format changed from 'date-time' to None"]
    assert corrections(old, new) == []


def test_write_adds_the_corrected_revision_with_its_note(tmp_path: Path) -> None:
    folder = tmp_path / OccurrenceMissed.event_type
    folder.mkdir()
    shutil.copy(SCHEMAS / OccurrenceMissed.event_type / "r1.json", folder / "r1.json")
    write(tmp_path)
    written = json.loads((folder / "r2.json").read_text())
    assert written["x-revision-note"] == LOCAL_TIME_CORRECTION
    assert check(tmp_path) == [p for p in check(tmp_path) if not p.startswith(OccurrenceMissed.event_type)]
