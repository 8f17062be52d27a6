"""The base of every contract model: frozen, strict for producers, tolerant for consumers."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

Stream = Literal["assignment", "reminder", "insights"]

TOLERANT = {"tolerant": True}
"""Validation context for consumers: unknown fields are dropped instead of rejected."""


class ContractModel(BaseModel):
    """A frozen model that rejects unknown fields, unless validated with the ``TOLERANT`` context.

    Our producers build events from Python and must not invent fields (``extra="forbid"``).
    A subscriber decodes with ``context=TOLERANT`` so a producer can add an optional field
    without breaking it. The context reaches nested models, so the rule holds at every level.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_fields_when_tolerant(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and isinstance(info.context, dict) and info.context.get("tolerant"):
            known = {name for name in cls.model_fields} | {
                f.alias for f in cls.model_fields.values() if f.alias is not None
            }
            return {k: v for k, v in data.items() if k in known}
        return data


class HomeworkEvent(ContractModel):
    """An event of the public stream. Subclasses set ``event_type`` and ``stream``.

    Every event is about one client: ``client_id`` is the Kafka record key, so all events
    about one client keep their order. ``practice_id`` is the tenant.
    """

    event_type: ClassVar[str]
    stream: ClassVar[Stream]
    summary: ClassVar[str] = ""

    client_id: str
    practice_id: str

    def subject(self) -> str:
        """The CloudEvents subject: the most specific id the event is about."""
        for name in ("occurrence_id", "assignment_id", "summary_id", "alert_id"):
            value = getattr(self, name, None)
            if isinstance(value, str):
                return value
        return self.client_id
