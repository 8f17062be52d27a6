"""The published schemas match the models, and the compatibility rule catches breaking changes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from homework_shared.events import EVENT_CLASSES, CompletionRecorded
from homework_shared.events.schemas import breaking_changes, check, schema_of, write

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
