"""Recording a completion is one use case: the write, the Idempotency-Key replay, the 409 for a lost race, the count.

The group-commit transaction (``ResolutionWriter.record``) and the remembered-answer look-up are
replaced here; both run against the real server in tests/integration/assignment.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from homework_assignment import resolutions
from homework_assignment.resolutions import Clash, ResolutionRequest, ResolutionWriter
from homework_shared.auth import Principal, Role
from homework_shared.errors import DomainError
from homework_shared.idempotency import Fingerprinted, StoredResponse

pytestmark = pytest.mark.unit

CLIENT = Principal(sub="c-1", role=Role.CLIENT, practice_id="p-1")
KEY = Fingerprinted("k-1", "POST /v1/x abc")


class _Store:
    db: Any = None


def _writer(
    monkeypatch: pytest.MonkeyPatch, outcome: Any, stored: StoredResponse | None = None
) -> tuple[ResolutionWriter, Counter, list[Any]]:
    registry = CollectorRegistry()
    recorded = Counter("homework_resolutions_total", "Completions and skips recorded", ["type"], registry=registry)
    writer = ResolutionWriter(_Store(), None, None, recorded=recorded)  # type: ignore[arg-type]
    seen: list[Any] = []

    async def record(request: ResolutionRequest) -> Any:
        seen.append(request)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def replay_or_none(db: Any, caller: str, key: str, fingerprint: str) -> StoredResponse | None:
        seen.append((caller, key, fingerprint))
        return stored

    monkeypatch.setattr(writer, "record", record)
    monkeypatch.setattr(resolutions, "replay_or_none", replay_or_none)
    return writer, recorded, seen


def _count(recorded: Counter, kind: str) -> float:
    return recorded.labels(kind)._value.get()


async def test_a_recorded_completion_answers_201_not_marked_as_a_replay_and_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer, recorded, seen = _writer(monkeypatch, {"id": "cmp-1"})
    answer = await writer.record_resolution("completion", CLIENT, "a-1", "o-1", {"status": "done"}, KEY)
    assert answer == StoredResponse(201, {"id": "cmp-1"}, replayed=False)
    assert "Idempotent-Replayed" not in answer.to_response().headers
    assert _count(recorded, "completion") == 1
    request = seen[0]
    assert isinstance(request, ResolutionRequest)
    assert (request.assignment_id, request.occurrence_id, request.idempotency) == (
        "a-1",
        "o-1",
        ("k-1", KEY.fingerprint),
    )


async def test_a_retried_request_that_clashes_gets_the_first_answer_again_uncounted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = StoredResponse(201, {"id": "cmp-1"})
    writer, recorded, seen = _writer(monkeypatch, Clash("occurrence taken"), stored=first)
    answer = await writer.record_resolution("completion", CLIENT, "a-1", "o-1", {"status": "done"}, KEY)
    assert answer == first
    assert answer.to_response().headers["Idempotent-Replayed"] == "true"
    assert seen[1] == ("p-1|client|c-1", "k-1", KEY.fingerprint)
    assert _count(recorded, "completion") == 0


async def test_a_lost_race_without_a_stored_answer_is_409_occurrence_already_resolved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writer, recorded, _ = _writer(monkeypatch, Clash("occurrence taken"))
    with pytest.raises(DomainError) as raised:
        await writer.record_resolution("skip", CLIENT, "a-1", "o-1", {"barrier": "forgot"}, KEY)
    assert raised.value.status == 409
    assert raised.value.code == "occurrence_already_resolved"
    assert _count(recorded, "skip") == 0


async def test_a_rule_refusing_a_request_without_a_key_raises_the_rules_error(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = DomainError("assignment_paused", "paused")
    writer, _, seen = _writer(monkeypatch, refused)
    with pytest.raises(DomainError) as raised:
        await writer.record_resolution("completion", CLIENT, "a-1", "o-1", {"status": "done"}, None)
    assert raised.value is refused
    assert len(seen) == 1, "without a key there is no answer to look up"
