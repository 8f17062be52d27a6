"""CloudEvents 1.0 in Kafka binary content mode: the event's data is the body, its attributes are headers.

Headers: ``ce_specversion`` (1.0), ``ce_id``, ``ce_source``, ``ce_type``, ``ce_time``
(RFC 3339), ``ce_subject``, ``ce_partitionkey`` (the client id, also the record key),
``content-type: application/json`` and, when known, the W3C ``traceparent``.

``decode`` turns a Kafka record back into an :class:`Envelope` holding the typed event, or
raises :class:`EventDecodeError`, the one error a subscriber has to handle.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from homework_shared.events.base import TOLERANT, HomeworkEvent
from homework_shared.events.models import EVENTS_BY_TYPE
from homework_shared.events.values import FREE_TEXT

E = TypeVar("E", bound=HomeworkEvent)

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
_TYPE_RE = re.compile(r"^(?P<base>[a-z0-9_.]+)\.v(?P<major>[0-9]+)$")

DecodeReason = Literal[
    "missing_header",
    "unsupported_specversion",
    "unknown_type",
    "unsupported_version",
    "invalid_json",
    "invalid_data",
]


class EventDecodeError(ValueError):
    """A Kafka record that is not a valid homework event.

    ``reason`` is one of: ``missing_header`` (a required ``ce_*`` header is absent),
    ``unsupported_specversion``, ``unknown_type`` (no such event type), ``unsupported_version``
    (a known event at a major version this code does not know), ``invalid_json``,
    ``invalid_data`` (a required field missing or a value of the wrong type; ``detail`` names
    the fields). ``event_type`` and ``event_id`` are set when the headers had them.
    """

    def __init__(
        self, reason: DecodeReason, detail: str, *, event_type: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DecodeReason = reason
        self.detail = detail
        self.event_type = event_type
        self.event_id = event_id


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """One event with its CloudEvents attributes."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: E
    traceparent: str | None = None

    @property
    def key(self) -> str:
        return self.data.client_id


@dataclass(frozen=True)
class KafkaRecord:
    """What goes to Kafka: key, value and headers, all bytes."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    def header_dict(self) -> dict[str, str]:
        return {k: v.decode() for k, v in self.headers}


def new_event_id() -> str:
    return str(uuid.uuid4())


def envelope(
    event: E, *, source: str, event_id: str | None = None, time: datetime | None = None, traceparent: str | None = None
) -> Envelope[E]:
    """Wrap an event with its attributes (a fresh id and the current time unless given)."""
    return Envelope(
        id=event_id or new_event_id(),
        source=source,
        type=event.event_type,
        time=time or datetime.now(UTC),
        subject=event.subject(),
        data=event,
        traceparent=traceparent,
    )


def encode(env: Envelope[Any]) -> KafkaRecord:
    """The Kafka record of an envelope, in binary content mode."""
    headers = [
        ("ce_specversion", SPECVERSION),
        ("ce_id", env.id),
        ("ce_source", env.source),
        ("ce_type", env.type),
        ("ce_time", env.time.astimezone(UTC).isoformat().replace("+00:00", "Z")),
        ("ce_subject", env.subject),
        ("ce_partitionkey", env.key),
        ("content-type", CONTENT_TYPE),
    ]
    if env.traceparent:
        headers.append(("traceparent", env.traceparent))
    return KafkaRecord(
        key=env.key.encode(),
        value=env.data.model_dump_json(exclude_none=True).encode(),
        headers=[(k, v.encode()) for k, v in headers],
    )


def _headers(raw: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    items = raw.items() if isinstance(raw, Mapping) else (raw or [])
    out: dict[str, str] = {}
    for k, v in items:
        out[k] = v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)
    return out


def model_for(event_type: str) -> type[HomeworkEvent]:
    """The model of an event type, or :class:`EventDecodeError` (unknown type or major version)."""
    model = EVENTS_BY_TYPE.get(event_type)
    if model is not None:
        return model
    m = _TYPE_RE.match(event_type)
    if m and any(t.startswith(m["base"] + ".v") for t in EVENTS_BY_TYPE):
        known = sorted(t for t in EVENTS_BY_TYPE if t.startswith(m["base"] + ".v"))
        raise EventDecodeError(
            "unsupported_version", f"{event_type} is not supported (known: {', '.join(known)})", event_type=event_type
        )
    raise EventDecodeError("unknown_type", f"no homework event type {event_type!r}", event_type=event_type)


def decode(headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None, value: bytes | None) -> Envelope[Any]:
    """Decode a Kafka record into its typed event; unknown fields are ignored (tolerant reader)."""
    h = _headers(headers)
    event_id, event_type = h.get("ce_id"), h.get("ce_type")
    for name in ("ce_specversion", "ce_id", "ce_source", "ce_type"):
        if not h.get(name):
            raise EventDecodeError(
                "missing_header", f"header {name} is missing", event_type=event_type, event_id=event_id
            )
    assert event_id is not None and event_type is not None  # noqa: PT018 - checked just above
    if h["ce_specversion"] != SPECVERSION:
        raise EventDecodeError(
            "unsupported_specversion",
            f"ce_specversion {h['ce_specversion']!r} is not 1.0",
            event_type=event_type,
            event_id=event_id,
        )
    model = model_for(event_type)
    try:
        payload = json.loads(value or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventDecodeError(
            "invalid_json", f"body is not JSON: {exc}", event_type=event_type, event_id=event_id
        ) from exc
    if not isinstance(payload, dict):
        raise EventDecodeError("invalid_json", "body is not a JSON object", event_type=event_type, event_id=event_id)
    try:
        data = model.model_validate(payload, context=TOLERANT)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}" for err in exc.errors()[:10]
        )
        raise EventDecodeError("invalid_data", problems, event_type=event_type, event_id=event_id) from exc
    try:
        time = datetime.fromisoformat(h["ce_time"].replace("Z", "+00:00")) if h.get("ce_time") else datetime.now(UTC)
    except ValueError as exc:
        raise EventDecodeError(
            "invalid_data", f"ce_time {h['ce_time']!r} is not RFC 3339", event_type=event_type, event_id=event_id
        ) from exc
    return Envelope(
        id=event_id,
        source=h["ce_source"],
        type=event_type,
        time=time,
        subject=h.get("ce_subject") or data.subject(),
        data=data,
        traceparent=h.get("traceparent"),
    )


def without_free_text(model: BaseModel) -> Any:
    """A copy of ``model`` with every free-text field (``x-free-text``) emptied, at every depth."""
    update: dict[str, Any] = {}
    free = _free_text_fields(type(model))
    for name in type(model).model_fields:
        value = getattr(model, name)
        if value is None:
            continue
        if name in free:
            update[name] = None
        elif isinstance(value, BaseModel):
            update[name] = without_free_text(value)
    return model.model_copy(update=update) if update else model


@functools.cache
def _free_text_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s free-text fields, found once per class.

    Reading every field's metadata on every event cost ~4% of the reminder service's CPU while it
    fired 10,000 reminders (py-spy, docs/benchmarks.md); the declarations never change at run time.
    """
    return frozenset(name for name, field in model.model_fields.items() if _is_free_text(field))


def _is_free_text(field: Any) -> bool:
    """True for a field declared ``FreeText`` (optional or not)."""
    extras = [field.json_schema_extra, *(getattr(m, "json_schema_extra", None) for m in field.metadata)]
    extras += [getattr(m, "json_schema_extra", None) for arg in get_args(field.annotation) for m in get_args(arg)[1:]]
    return any(isinstance(extra, dict) and extra.get(FREE_TEXT) for extra in extras)
