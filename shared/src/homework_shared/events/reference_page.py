"""Renders ``docs/events.md``, the subscriber's view of the contract, from the models themselves.

``python -m homework_shared.events.reference_page docs/events.md`` (part of ``make docs``); a test
fails when the committed page differs from what the models say.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from homework_shared.events.envelope import without_free_text
from homework_shared.events.examples import EXAMPLES
from homework_shared.events.models import EVENT_CLASSES
from homework_shared.events.schemas import schema_of
from homework_shared.events.values import FREE_TEXT, LOCAL_TIME

EXAMPLE_SUBSCRIBER = Path("docs/examples/subscriber.py")

WHEN = {
    "homework.assignment.created.v1": "POST /v1/assignments",
    "homework.assignment.revised.v1": "POST /v1/assignments/{id}/revisions",
    "homework.assignment.paused.v1": "POST /v1/assignments/{id}/pause",
    "homework.assignment.resumed.v1": "POST /v1/assignments/{id}/resume",
    "homework.assignment.cancelled.v1": "POST /v1/assignments/{id}/cancel",
    "homework.assignment.ended.v1": "POST /v1/assignments/{id}/end, or when the last occurrence closes",
    "homework.completion.recorded.v1": "POST /v1/assignments/{id}/occurrences/{occurrence_id}/completion",
    "homework.occurrence.skipped.v1": "POST /v1/assignments/{id}/occurrences/{occurrence_id}/skip",
    "homework.reminder.scheduled.v1": "the reminder service plans a reminder (rolling 14-day horizon)",
    "homework.reminder.sent.v1": "a reminder falls due and fires (id: reminder id + due instant)",
    "homework.reminder.cancelled.v1": "completion, skip, pause, cancel, end or revision of the assignment",
    "homework.reminder.snoozed.v1": "POST /v1/reminders/{id}/snooze",
    "homework.occurrence.missed.v1": "an occurrence's window closes with neither completion nor skip",
    "homework.insight.summary_generated.v1": "POST /v1/clients/{client_id}/summaries",
    "homework.adherence.alert_raised.v1": "a flag's condition becomes true (once per episode)",
}

HEADER = """\
# Homework events: the subscriber's guide

Generated from the models in `shared/src/homework_shared/events/` by `make docs`; do not
edit by hand. The JSON Schemas of every published revision are in `shared/schemas/`.

## Envelope

Every event is a [CloudEvents 1.0](https://cloudevents.io) event in Kafka **binary content
mode**: the record's value is the event's data as JSON, its attributes are headers.

| header | meaning |
|---|---|
| `ce_specversion` | `1.0` |
| `ce_id` | unique id of the event. Delivery is at least once: **dedupe on it** |
| `ce_source` | `/homework/assignment`, `/homework/reminder` or `/homework/insights` |
| `ce_type` | the event type below, ending in its major version (`.v1`) |
| `ce_time` | when it happened (RFC 3339, UTC) |
| `ce_subject` | the most specific id it is about: occurrence, assignment, summary or alert |
| `ce_partitionkey` | the client id |
| `content-type` | `application/json` |
| `traceparent` | W3C trace context of the request that caused it, when there was one |

The **record key is the client id**: every event about one client is on one partition, in
the order it happened. Ids are pseudonymous; names and contact details never appear.

## Topics

| topic (default prefix `homework`) | producer | events |
|---|---|---|
| `homework.assignment.events` | assignment service | assignment and completion events |
| `homework.reminder.events` | reminder service | reminder and missed-occurrence events |
| `homework.insights.events` | insights service | summaries and alerts |
| `homework.<consumer group>.dead-letter` | any consumer | records that consumer could not decode or apply |

The prefix is the `TOPIC_PREFIX` setting. A parked record keeps its key, value and headers and
gains `dlq_reason`, `dlq_error`, `dlq_original_topic`, `dlq_original_partition`,
`dlq_original_offset`, `dlq_consumer_group` and `dlq_failed_at`. `dlq_reason` is a decode reason
(`invalid_json`, `unknown_type`, ...), `apply_failed` (the consumer's apply kept failing) or
`transient_exhausted` (timeouts, write conflicts or connection loss outlasted
`CONSUMER_TRANSIENT_RETRY_S`). A record put back by `make dlq-replay` (docs/deploy.md) carries its
original headers plus `dlq_replay_count` and `dlq_replayed_from`; subscribers may ignore both.

## Versions and compatibility

A type keeps its name while it changes compatibly: new revisions may only **add optional
fields**. Removing or renaming a field, changing its type or bounds, or making it required
publishes a new type (`...v2`), beside the old one for a while. Decode tolerantly: ignore
fields you do not know (`homework_shared.events.decode` does). `make schemas` enforces this.

A **correction** is a revision that describes the same values more truly, with a note
(`x-revision-note` in the schema) saying what was corrected. Revision 2 of the types that carry
local wall times (`local_start`, a schedule's `starts_at`, `until`, `opens_at`, `due_at`) is one:
revision 1 marked them `"format": "date-time"`, which means RFC 3339 with an offset, so a
validator enforcing formats refused them; they never carried an offset. Revision 2 describes them
by the pattern `YYYY-MM-DDTHH:MM[:SS[.ffffff]]` and `x-local-time: true`: read them as wall
time in the event's (or schedule's) `timezone`. Validate against the latest revision.

## Health data

Fields marked *free text* (notes, reflections, barrier text, thought-record fields) are
**left out** (absent) unless the producing service runs with `INCLUDE_FREE_TEXT=true`.
Instructions and rationale never leave the assignment service.

## Decoding errors

`homework_shared.events.decode(headers, value)` returns an `Envelope` whose `data` is the typed
model, or raises `EventDecodeError` with `reason` one of `missing_header`,
`unsupported_specversion`, `unknown_type`, `unsupported_version`, `invalid_json`,
`invalid_data` (the message names the fields at fault).
"""


def _type_of(node: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in node:
        parts = [_type_of(n, defs) for n in node["anyOf"] if n.get("type") != "null"]
        return " or ".join(parts) + (" or null" if any(n.get("type") == "null" for n in node["anyOf"]) else "")
    if "oneOf" in node:
        return " or ".join(_type_of(n, defs) for n in node["oneOf"])
    if "const" in node:
        return f"`{node['const']}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    t = node.get("type", "any")
    if t == "array":
        return f"list of {_type_of(node.get('items', {}), defs)}"
    if t == "string" and node.get(LOCAL_TIME):
        return "local date-time (no offset)"
    if t == "string" and node.get("format") == "date-time":
        return "instant (RFC 3339, UTC offset)"
    if t == "string" and node.get("format"):
        return f"string ({node['format']})"
    return str(t)


def _bounds(node: dict[str, Any]) -> str:
    for alt in node.get("anyOf", [node]):
        lo, hi = alt.get("minimum"), alt.get("maximum")
        if lo is not None or hi is not None:
            return f"{lo if lo is not None else ''}..{hi if hi is not None else ''}"
    return ""


def _is_free_text(node: dict[str, Any]) -> bool:
    return bool(node.get(FREE_TEXT) or any(alt.get(FREE_TEXT) for alt in node.get("anyOf", [])))


def render() -> str:
    out = [HEADER, "## Catalogue\n", "| type | topic | emitted when |", "|---|---|---|"]
    for cls in EVENT_CLASSES:
        out.append(
            f"| [`{cls.event_type}`](#{cls.event_type.replace('.', '')}) | `homework.{cls.stream}.events` "
            f"| {WHEN.get(cls.event_type, '')} |"
        )
    out.append("\nEvery event's key is its `client_id`; every event carries `client_id` and `practice_id`.\n")
    for cls in EVENT_CLASSES:
        schema = schema_of(cls)
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        out += [
            f"### {cls.event_type}\n",
            f"{cls.summary}\n",
            f"Emitted: {WHEN.get(cls.event_type, '')}.\n",
            "| field | type | required | notes |",
            "|---|---|---|---|",
        ]
        for name, node in schema["properties"].items():
            notes = ", ".join(x for x in (_bounds(node), "free text" if _is_free_text(node) else "") if x)
            out.append(f"| `{name}` | {_type_of(node, defs)} | {'yes' if name in required else ''} | {notes} |")
        example = without_free_text(EXAMPLES[cls]).model_dump(mode="json", exclude_none=True)
        out += ["\nExample value:\n", "```json", json.dumps(example, indent=2), "```\n"]
    out += ["## Value types\n"]
    seen: dict[str, dict[str, Any]] = {}
    for cls in EVENT_CLASSES:
        seen.update(schema_of(cls).get("$defs", {}))
    for name in sorted(seen):
        node = seen[name]
        if "properties" not in node:
            if "enum" in node:
                out.append(f"- **{name}**: one of {', '.join(f'`{v}`' for v in node['enum'])}")
            continue
        fields = ", ".join(
            f"`{f}` ({_type_of(n, seen)}{', ' + _bounds(n) if _bounds(n) else ''}"
            f"{', free text' if _is_free_text(n) else ''})"
            for f, n in node["properties"].items()
        )
        out.append(f"- **{name}**: {fields}")
    out += [
        "\n## A complete outside subscriber\n",
        "This program (`docs/examples/subscriber.py`) runs in the test suite against the real broker.\n",
        "```python",
        EXAMPLE_SUBSCRIBER.read_text().rstrip(),
        "```",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    target = Path(args[0] if args else "docs/events.md")
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
