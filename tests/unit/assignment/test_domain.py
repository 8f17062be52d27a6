"""The assignment rules: schedules, occurrence identity across DST, void and late, revisions, data per kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from homework_assignment.domain import (
    Assignment,
    AssignmentContent,
    AssignmentStatus,
    InvalidInput,
    OccurrenceStatus,
    Resolution,
    completion_data,
    once_schedule,
    record_completion,
    record_skip,
)
from homework_shared.errors import Conflict, NotFound, Unprocessable
from homework_shared.events.values import (
    Barrier,
    CompletionStatus,
    ExposureStep,
    HomeworkKind,
    OnceSchedule,
    RecurringSchedule,
    Resource,
)

T0 = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def daily(
    start: datetime = datetime(2026, 3, 21, 20, 0), count: int = 14, window: int = 120, zone: str = "Europe/Berlin"
) -> RecurringSchedule:
    return RecurringSchedule(timezone=zone, rrule="FREQ=DAILY", starts_at=start, count=count, window_minutes=window)


def content(**overrides: Any) -> AssignmentContent:
    fields: dict[str, Any] = {
        "kind": HomeworkKind.MOOD_LOG,
        "title": "Evening mood rating",
        "instructions": "Rate your mood.",
        "schedule": daily(),
    }
    fields.update(overrides)
    return AssignmentContent(**fields)


STEPS = [
    ExposureStep(number=1, description="Stand near the lift", expected_suds=30),
    ExposureStep(number=2, description="Ride one floor", expected_suds=60),
]


def assignment(now: datetime = T0, **overrides: Any) -> Assignment:
    return Assignment.create(
        id="asg-1", practice_id="p1", client_id="c1", therapist_id="t1", content=content(**overrides), now=now
    )


def problems(raised: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [field for field, _ in raised.value.problems]


def transition(a: Assignment, action: str) -> Assignment:
    if action == "end":
        return a.end(T0, "ended_by_therapist")
    result: Assignment = getattr(a, action)(T0)
    return result


def complete(a: Assignment, occurrence_id: str, now: datetime, **fields: Any) -> Resolution:
    args: dict[str, Any] = {
        "status": CompletionStatus.DONE,
        "percent": None,
        "quality_rating": None,
        "data": {"mood": 6},
        "note": None,
        "completed_at": None,
    }
    args.update(fields)
    return record_completion(a, occurrence_id, now, id="cmp-1", recorded_by="c1", **args)


# ---------------------------------------------------------------- schedules and content


class TestCreating:
    def test_an_assignment_ends_when_its_last_occurrence_closes(self) -> None:
        a = assignment()
        # 14 evenings from 21 March: the last, 3 April 20:00 CEST, closes at 22:00 CEST = 20:00 UTC.
        assert a.ends_at == utc(2026, 4, 3, 20, 0)
        assert a.status is AssignmentStatus.ACTIVE
        assert a.version == 1

    @pytest.mark.parametrize(
        ("schedule", "message"),
        [
            (
                RecurringSchedule(
                    timezone="UTC",
                    rrule="FREQ=FORTNIGHTLY",
                    starts_at=datetime(2026, 3, 21, 20),
                    count=3,
                    window_minutes=60,
                ),
                "RFC 5545",
            ),
            (
                RecurringSchedule(
                    timezone="UTC",
                    rrule="FREQ=DAILY;COUNT=3",
                    starts_at=datetime(2026, 3, 21, 20),
                    count=3,
                    window_minutes=60,
                ),
                "COUNT",
            ),
            (
                RecurringSchedule(
                    timezone="UTC",
                    rrule="FREQ=MINUTELY",
                    starts_at=datetime(2026, 3, 21, 20),
                    count=3,
                    window_minutes=1,
                ),
                "MINUTELY",
            ),
            (daily(window=25 * 60), "longer than the gap"),
            (daily(start=datetime(2026, 3, 21, 20, 0, 30)), "whole minute"),
        ],
    )
    def test_a_schedule_that_does_not_expand_is_refused_naming_the_schedule(self, schedule: Any, message: str) -> None:
        with pytest.raises(InvalidInput) as raised:
            assignment(schedule=schedule)
        assert problems(raised) == ["schedule"]
        assert message in raised.value.message

    def test_a_schedule_whose_every_occurrence_has_closed_is_refused(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            assignment(schedule=daily(start=datetime(2026, 3, 1, 20, 0), count=3))
        assert problems(raised) == ["schedule"]

    def test_an_exposure_needs_steps_numbered_from_one(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            assignment(kind=HomeworkKind.EXPOSURE)
        assert problems(raised) == ["steps"]
        with pytest.raises(InvalidInput) as raised:
            assignment(kind=HomeworkKind.EXPOSURE, steps=[STEPS[1]])
        assert "numbered 1..1" in raised.value.message
        assert assignment(kind=HomeworkKind.EXPOSURE, steps=STEPS).content.steps == STEPS

    def test_only_an_exposure_has_steps(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            assignment(steps=STEPS)
        assert problems(raised) == ["steps"]

    def test_resources_must_be_web_links(self) -> None:
        bad = Resource(title="x", url="javascript:alert(1)")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput) as raised:
            assignment(resources=[Resource(title="ok", url="https://example.org/a"), bad])  # type: ignore[arg-type]
        assert problems(raised) == ["resources.1.url"]

    def test_a_one_off_without_opening_opens_now_in_the_clients_zone_to_the_minute(self) -> None:
        s = once_schedule("America/New_York", None, datetime(2026, 3, 20, 18, 0), utc(2026, 3, 20, 8, 0, 42))
        assert s.opens_at == datetime(2026, 3, 20, 4, 0)
        with pytest.raises(InvalidInput) as raised:
            once_schedule("America/New_York", None, datetime(2026, 3, 20, 3, 0), T0)
        assert problems(raised) == ["schedule.due_at"]


# ---------------------------------------------------------------- occurrence identity


class TestOccurrences:
    def test_ids_keep_the_local_start_across_the_spring_dst_change(self) -> None:
        a = assignment()
        found = a.occurrences(utc(2026, 3, 27), utc(2026, 3, 31))
        assert [o.occurrence_id for o in found] == [f"asg-1@2026-03-{d}T20:00" for d in (27, 28, 29, 30)]
        # 20:00 CET is 19:00 UTC; from 29 March 20:00 CEST is 18:00 UTC.
        assert [o.opens_at.hour for o in found] == [19, 19, 18, 18]
        assert all(o.closes_at - o.opens_at == timedelta(hours=2) for o in found)

    def test_a_local_time_skipped_by_dst_opens_an_hour_later_and_keeps_its_id(self) -> None:
        a = assignment(schedule=daily(start=datetime(2026, 3, 27, 2, 30), count=4, window=60))
        occ = a.occurrence("asg-1@2026-03-29T02:30")
        assert occ is not None
        assert occ.opens_at == utc(2026, 3, 29, 1, 30)  # 03:30 CEST

    def test_a_local_time_repeated_by_dst_is_its_first_instant(self) -> None:
        a = assignment(now=utc(2026, 10, 20), schedule=daily(start=datetime(2026, 10, 24, 2, 30), count=3, window=30))
        occ = a.occurrence("asg-1@2026-10-25T02:30")
        assert occ is not None
        assert occ.opens_at == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, before the clocks go back
        assert occ.closes_at == utc(2026, 10, 25, 1, 0)

    @pytest.mark.parametrize(
        "occurrence_id",
        ["asg-1@2026-03-22T19:00", "asg-2@2026-03-22T20:00", "asg-1@2026-04-04T20:00", "asg-1", "asg-1@tomorrow", ""],
    )
    def test_an_id_the_schedule_does_not_have_is_no_occurrence(self, occurrence_id: str) -> None:
        assert assignment().occurrence(occurrence_id) is None

    def test_an_occurrence_closed_before_the_assignment_was_created_does_not_exist(self) -> None:
        created = utc(2026, 3, 22, 19, 30)  # during the 22 March window (19:00-21:00 UTC)
        a = assignment(now=created)
        assert a.occurrence("asg-1@2026-03-21T20:00") is None
        assert a.occurrence("asg-1@2026-03-22T20:00") is not None
        assert [o.occurrence_id for o in a.occurrences(None, utc(2026, 3, 23))] == ["asg-1@2026-03-22T20:00"]


# ---------------------------------------------------------------- status, void, revisions


class TestPausesAndEnds:
    def test_a_pause_voids_the_occurrence_open_then_and_those_opening_before_the_resume(self) -> None:
        a = assignment()
        paused = a.pause(utc(2026, 3, 22, 20, 0))  # inside the 22 March window
        resumed = paused.resume(utc(2026, 3, 24, 19, 30))  # inside the 24 March window
        assert resumed.status is AssignmentStatus.ACTIVE
        void = {o.occurrence_id: resumed.is_void(o) for o in resumed.occurrences(utc(2026, 3, 21), utc(2026, 3, 26))}
        assert void == {
            "asg-1@2026-03-21T20:00": False,
            "asg-1@2026-03-22T20:00": True,
            "asg-1@2026-03-23T20:00": True,
            "asg-1@2026-03-24T20:00": True,
            "asg-1@2026-03-25T20:00": False,
        }

    def test_while_paused_every_later_occurrence_is_void(self) -> None:
        paused = assignment().pause(utc(2026, 3, 22, 12, 0))
        later = paused.occurrence("asg-1@2026-04-02T20:00")
        assert later is not None
        assert paused.is_void(later)
        assert paused.status_of(later, None, utc(2026, 3, 22, 12, 0)) is OccurrenceStatus.VOID

    def test_cancelling_voids_the_open_occurrence_and_all_after_but_not_those_closed(self) -> None:
        cancelled = assignment().cancel(utc(2026, 3, 23, 19, 30))
        statuses = {
            o.occurrence_id.split("@")[1]: cancelled.status_of(o, None, utc(2026, 3, 26))
            for o in cancelled.occurrences(utc(2026, 3, 21), utc(2026, 3, 26))
        }
        assert statuses == {
            "2026-03-21T20:00": OccurrenceStatus.MISSED,
            "2026-03-22T20:00": OccurrenceStatus.MISSED,
            "2026-03-23T20:00": OccurrenceStatus.VOID,
            "2026-03-24T20:00": OccurrenceStatus.VOID,
            "2026-03-25T20:00": OccurrenceStatus.VOID,
        }

    @pytest.mark.parametrize(
        ("steps", "action", "current"),
        [
            (["pause"], "pause", "paused"),
            ([], "resume", "active"),
            (["cancel"], "resume", "cancelled"),
            (["cancel"], "end", "cancelled"),
            (["end"], "cancel", "ended"),
            (["end"], "pause", "ended"),
        ],
    )
    def test_an_invalid_transition_is_a_conflict_naming_the_current_status(
        self, steps: list[str], action: str, current: str
    ) -> None:
        a = assignment()
        for step in steps:
            a = transition(a, step)
        with pytest.raises(Conflict) as raised:
            transition(a, action)
        assert raised.value.code == "invalid_status_transition"
        assert current in raised.value.message

    def test_status_of_an_occurrence_follows_the_clock_and_its_resolution(self) -> None:
        a = assignment()
        occ = a.occurrence("asg-1@2026-03-21T20:00")
        assert occ is not None
        assert a.status_of(occ, None, utc(2026, 3, 21, 18, 59)) is OccurrenceStatus.UPCOMING
        assert a.status_of(occ, None, utc(2026, 3, 21, 19, 0)) is OccurrenceStatus.OPEN
        assert a.status_of(occ, None, utc(2026, 3, 21, 21, 0)) is OccurrenceStatus.MISSED
        done = complete(a, occ.occurrence_id, utc(2026, 3, 21, 19, 5))
        partial = complete(a, occ.occurrence_id, utc(2026, 3, 21, 19, 5), status=CompletionStatus.PARTIAL, percent=40)
        skip = record_skip(
            a,
            occ.occurrence_id,
            utc(2026, 3, 21, 19, 5),
            id="skp-1",
            recorded_by="c1",
            barrier=Barrier.FORGOT,
            barrier_text=None,
        )
        assert a.status_of(occ, done, utc(2026, 3, 22)) is OccurrenceStatus.DONE
        assert a.status_of(occ, partial, utc(2026, 3, 22)) is OccurrenceStatus.PARTIAL
        assert a.status_of(occ, skip, utc(2026, 3, 22)) is OccurrenceStatus.SKIPPED


class TestRevisions:
    def test_the_old_schedule_governs_what_opened_before_the_revision_the_new_one_the_rest(self) -> None:
        a = assignment()
        morning = daily(start=datetime(2026, 3, 21, 8, 0), count=20, window=60)
        revised, changed = a.revise({"schedule": morning}, utc(2026, 3, 23, 19, 30))
        assert changed == ["schedule"]
        assert revised.version == 2
        ids = [o.occurrence_id.split("@")[1] for o in revised.occurrences(utc(2026, 3, 22), utc(2026, 3, 25))]
        assert ids == ["2026-03-22T20:00", "2026-03-23T20:00", "2026-03-24T08:00"]
        assert revised.occurrence("asg-1@2026-03-23T08:00") is None  # opened before R under the new rule
        assert revised.occurrence("asg-1@2026-03-24T20:00") is None  # after R under the old rule
        assert revised.ends_at == utc(2026, 4, 9, 7, 0)  # 9 April 08:00 CEST (06:00 UTC) + 60 min

    def test_an_id_in_both_schedules_is_one_occurrence(self) -> None:
        a = assignment()
        longer_window = daily(window=180)
        revised, _ = a.revise({"schedule": longer_window}, utc(2026, 3, 23, 19, 30))
        found = [o.occurrence_id for o in revised.occurrences(utc(2026, 3, 23), utc(2026, 3, 25))]
        assert found == ["asg-1@2026-03-23T20:00", "asg-1@2026-03-24T20:00"]
        occ = revised.occurrence("asg-1@2026-03-23T20:00")
        assert occ is not None
        assert occ.closes_at - occ.opens_at == timedelta(minutes=120)  # opened before R: the old window

    def test_a_revision_that_changes_nothing_is_refused(self) -> None:
        a = assignment()
        with pytest.raises(Unprocessable) as raised:
            a.revise({"title": "Evening mood rating"}, T0)
        assert raised.value.code == "revision_changes_nothing"

    def test_a_schedule_without_a_future_occurrence_cannot_replace_the_current_one(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            assignment().revise({"schedule": daily(count=1)}, utc(2026, 3, 22))
        assert problems(raised) == ["schedule"]

    def test_a_cancelled_assignment_cannot_be_revised(self) -> None:
        with pytest.raises(Conflict) as raised:
            assignment().cancel(T0).revise({"title": "New"}, T0)
        assert raised.value.code == "assignment_not_active"


# ---------------------------------------------------------------- completions and skips


OPEN = utc(2026, 3, 21, 19, 30)
FIRST = "asg-1@2026-03-21T20:00"


class TestResolving:
    def test_a_completion_while_open_is_on_time(self) -> None:
        r = complete(assignment(), FIRST, OPEN, quality_rating=7)
        assert (r.late, r.percent, r.completed_at, r.quality_rating) == (False, 100, OPEN, 7)

    @pytest.mark.parametrize(
        ("occurrence_id", "now", "error", "code"),
        [
            ("asg-1@2026-03-21T21:00", OPEN, NotFound, "occurrence_not_found"),
            (FIRST, utc(2026, 3, 21, 18, 59), Conflict, "occurrence_not_open"),
            (FIRST, utc(2026, 3, 21, 21, 0), Conflict, "occurrence_closed"),
        ],
    )
    def test_a_completion_outside_the_rules_is_refused_by_name(
        self, occurrence_id: str, now: datetime, error: type[Exception], code: str
    ) -> None:
        with pytest.raises(error) as raised:
            complete(assignment(), occurrence_id, now)
        assert getattr(raised.value, "code", None) == code

    def test_late_completion_when_allowed_is_marked_late(self) -> None:
        r = complete(assignment(allow_late_completion=True), FIRST, utc(2026, 3, 25), completed_at=OPEN)
        assert r.late
        assert r.completed_at == OPEN

    def test_nothing_is_accepted_while_paused_nor_for_a_voided_occurrence(self) -> None:
        paused = assignment().pause(utc(2026, 3, 21, 19, 10))
        with pytest.raises(Conflict) as raised:
            complete(paused, FIRST, OPEN)
        assert raised.value.code == "assignment_not_active"
        with pytest.raises(Conflict) as raised:
            complete(paused.resume(utc(2026, 3, 21, 19, 20)), FIRST, OPEN)
        assert raised.value.code == "occurrence_void"

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"status": CompletionStatus.PARTIAL}, "percent"),
            ({"status": CompletionStatus.PARTIAL, "percent": 100}, "percent"),
            ({"status": CompletionStatus.DONE, "percent": 50}, "percent"),
            ({"completed_at": OPEN + timedelta(minutes=5)}, "completed_at"),
            ({"completed_at": utc(2026, 3, 21, 18, 0)}, "completed_at"),
            ({"data": None}, "data"),
            ({"data": {"mood": 11}}, "data.mood"),
            ({"data": {"kind": "reading", "pages": 3}}, "data.kind"),
            ({"data": {"mood": 5, "colour": "blue"}}, "data.colour"),
        ],
    )
    def test_bad_completion_fields_are_named(self, fields: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidInput) as raised:
            complete(assignment(), FIRST, OPEN, **fields)
        assert problems(raised) == [field]

    def test_a_completed_at_slightly_ahead_is_taken_as_now(self) -> None:
        assert complete(assignment(), FIRST, OPEN, completed_at=OPEN + timedelta(seconds=30)).completed_at == OPEN

    def test_a_skip_of_other_needs_its_text(self) -> None:
        with pytest.raises(InvalidInput) as raised:
            record_skip(assignment(), FIRST, OPEN, id="s", recorded_by="c1", barrier=Barrier.OTHER, barrier_text=None)
        assert problems(raised) == ["barrier_text"]
        skip = record_skip(
            assignment(), FIRST, OPEN, id="s", recorded_by="c1", barrier=Barrier.OTHER, barrier_text="Visitors"
        )
        assert skip.barrier is Barrier.OTHER


class TestDataPerKind:
    @pytest.mark.parametrize(
        ("kind", "data"),
        [
            (HomeworkKind.MOOD_LOG, {"mood": 4, "trigger": "argument"}),
            (HomeworkKind.THOUGHT_RECORD, {"emotion_intensity_before": 80, "emotion_intensity_after": 40}),
            (HomeworkKind.BEHAVIOURAL_ACTIVATION, {"activity": "walk", "pleasure": 6, "mastery": 4}),
            (
                HomeworkKind.EXPOSURE,
                {"step": 2, "suds_before": 40, "suds_peak": 70, "suds_after": 30, "duration_minutes": 20},
            ),
            (HomeworkKind.COMMUNICATION_PRACTICE, {"outcome_rating": 7}),
            (HomeworkKind.MINDFULNESS, {"minutes": 5}),
            (HomeworkKind.READING, {"pages": 12}),
            (HomeworkKind.CUSTOM, {"values": {"glasses of water": 6}}),
        ],
    )
    def test_each_kind_takes_its_own_data_with_the_kind_left_out(
        self, kind: HomeworkKind, data: dict[str, Any]
    ) -> None:
        model = completion_data(kind, data, STEPS)
        assert model is not None
        assert model.model_dump()["kind"] == kind.value

    def test_kinds_whose_data_is_all_optional_need_none(self) -> None:
        assert completion_data(HomeworkKind.READING, None, []) is None
        with pytest.raises(InvalidInput):
            completion_data(HomeworkKind.MINDFULNESS, None, [])

    def test_an_exposure_names_a_step_of_its_hierarchy(self) -> None:
        data = {"step": 3, "suds_before": 40, "suds_peak": 70, "suds_after": 30, "duration_minutes": 20}
        with pytest.raises(InvalidInput) as raised:
            completion_data(HomeworkKind.EXPOSURE, data, STEPS)
        assert problems(raised) == ["data.step"]

    def test_a_peak_below_the_other_suds_is_refused(self) -> None:
        data = {"step": 1, "suds_before": 40, "suds_peak": 30, "suds_after": 30, "duration_minutes": 20}
        with pytest.raises(InvalidInput) as raised:
            completion_data(HomeworkKind.EXPOSURE, data, STEPS)
        assert problems(raised) == ["data"]


def test_a_one_off_has_one_occurrence_named_by_its_opening() -> None:
    once = OnceSchedule(timezone="Asia/Tokyo", opens_at=datetime(2026, 3, 21, 9, 0), due_at=datetime(2026, 3, 22, 9, 0))
    a = assignment(schedule=once)
    assert [o.occurrence_id for o in a.occurrences(None, None)] == ["asg-1@2026-03-21T09:00"]
    assert a.ends_at == utc(2026, 3, 22, 0, 0)
