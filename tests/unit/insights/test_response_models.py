"""The figures and summaries the API answers match their typed response models field by field."""

from __future__ import annotations

from datetime import timedelta

from fastapi.encoders import jsonable_encoder

from homework_insights.api import public
from homework_insights.models import ClientFigures, SummaryListItem, SummaryPublic
from homework_insights.summaries import build_summary
from tests.unit.insights.builders import CLIENT, PRACTICE
from tests.unit.insights.test_summaries import day, scenario


async def test_a_therapists_figures_validate_against_the_figures_model_with_flags_series_and_exposure() -> None:
    h, _, _ = await scenario()
    figures = ClientFigures.model_validate(jsonable_encoder(await h.figures(flags=True)))
    assert figures.flags, "the scenario raises flags; a model that drops them would hide them"
    exposure = next(a for a in figures.assignments if a.assignment_id == "asg-x")
    assert exposure.exposure_steps[0].attempts
    mood = next(a for a in figures.assignments if a.assignment_id == "asg-m")
    assert mood.series[0].points


async def test_a_clients_figures_validate_without_flags() -> None:
    h, _, _ = await scenario()
    figures = ClientFigures.model_validate(jsonable_encoder(await h.figures(flags=False)))
    assert figures.flags is None
    assert all(a.flags is None for a in figures.assignments)


async def test_a_summary_and_the_next_one_with_its_changes_validate_against_the_summary_model() -> None:
    h, mood, _ = await scenario()
    client = await h.store.client(PRACTICE, CLIENT)
    assert client is not None
    first = await build_summary(h.store, client, h.now)
    await h.store.insert_summary(first)
    h.now += timedelta(days=3)
    await h.apply(mood.mood(day(27), 8))
    second = SummaryPublic.model_validate(public(await build_summary(h.store, client, h.now)))
    assert second.changes is not None
    assert second.changes.previous_summary_id == first["_id"]
    assert SummaryPublic.model_validate(public(first)).changes is None
    SummaryListItem.model_validate({k: v for k, v in public(first).items() if k in SummaryListItem.model_fields})
