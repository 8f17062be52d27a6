"""Published JSON Schemas of the events, kept as an append-only history, and the compatibility rule.

``shared/schemas/<event type>/r<N>.json`` holds every published revision of a type; the
highest is the current one. ``python -m homework_shared.events.schemas write`` (``make
schemas``) adds a revision when a model changed, and refuses a change that would break a
subscriber. ``check`` fails when the models and the committed schemas differ.

The rule (full compatibility, checked against every earlier revision): fields already
published keep their name, their type, their bounds and whether they are required; a new
revision may only add optional fields. Anything else needs a new major type (``...v2``).

One kind of change is a *correction*, not a break: a schema that described the values wrongly
while the values themselves never changed. A correction is published as a new revision that
carries a note (``x-revision-note``) saying what was corrected; ``check`` refuses a correction
without one. The corrections known here (``CORRECTIONS``):

* local wall times (``x-local-time``) were published as ``"format": "date-time"``, which JSON
  Schema defines as RFC 3339, offset required; they never carry one, so a validator enforcing
  formats refused every event with one. Revision 2 describes them with a pattern instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from homework_shared.events.base import HomeworkEvent
from homework_shared.events.models import EVENT_CLASSES
from homework_shared.events.values import LOCAL_DATE_TIME_PATTERN, LOCAL_TIME

DEFAULT_DIR = Path("shared/schemas")
NOTE = "x-revision-note"
LOCAL_TIME_CORRECTION = (
    'Correction: local wall times (x-local-time) were described as "format": "date-time", but they '
    "carry no offset and RFC 3339 requires one, so a validator enforcing formats refused them. "
    "They are now described by a pattern (ISO 8601 date and time without offset). The values "
    "sent never changed."
)
CORRECTIONS = {LOCAL_TIME_CORRECTION}
"""The notes a correcting revision may carry; each names a change ``breaking_changes`` lets through."""


def schema_of(cls: type[HomeworkEvent]) -> dict[str, Any]:
    """The published JSON Schema of an event's data (unknown properties allowed: tolerant readers)."""
    schema = cls.model_json_schema(mode="serialization")
    schema = dict(_open_objects(schema))
    schema["$id"] = f"https://homework.example/schemas/{cls.event_type}.json"
    schema["title"] = cls.event_type
    schema["description"] = cls.summary or (cls.__doc__ or "").strip()
    schema["x-stream"] = cls.stream
    return schema


def _open_objects(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _open_objects(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_open_objects(v) for v in node]
    return node


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every local ``$ref`` (the event schemas are not recursive)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            return _resolve(target, defs)
        return {
            k: _resolve(v, defs)
            for k, v in node.items()
            if k not in ("$defs", "title", "description", "examples", "default")
        }
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``new`` would break a subscriber of ``old`` (empty when compatible; corrections are not breaks)."""
    return _compare(_resolve(old, old.get("$defs", {})), _resolve(new, new.get("$defs", {})), "", [])


def corrections(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Where ``new`` corrects ``old`` (``CORRECTIONS``); such a revision must carry its note."""
    found: list[str] = []
    _compare(_resolve(old, old.get("$defs", {})), _resolve(new, new.get("$defs", {})), "", found)
    return found


def _is_local_time_correction(key: str, old_node: dict[str, Any], new_node: dict[str, Any]) -> bool:
    """A local wall time's ``format: date-time`` replaced by the local date-time pattern."""
    if not (old_node.get(LOCAL_TIME) and new_node.get(LOCAL_TIME)):
        return False
    if key == "format":
        return old_node.get("format") == "date-time" and "format" not in new_node
    if key == "pattern":
        return "pattern" not in old_node and new_node.get("pattern") == LOCAL_DATE_TIME_PATTERN
    return False


def _compare(old: Any, new: Any, path: str, fixes: list[str]) -> list[str]:
    where = path or "(root)"
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"{where}: changed from {old!r} to {new!r}"]
    problems: list[str] = []
    if "properties" in old or "properties" in new:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
        for name, old_field in old_props.items():
            here = f"{path}.{name}" if path else name
            if name not in new_props:
                problems.append(f"{here}: field removed")
                continue
            if (name in old_req) != (name in new_req):
                state = "required" if name in new_req else "optional"
                problems.append(f"{here}: made {state}")
            problems += _compare(old_field, new_props[name], here, fixes)
        for name in new_props.keys() - old_props.keys():
            if name in new_req:
                problems.append(f"{path + '.' if path else ''}{name}: new field is required")
        rest_old = {k: v for k, v in old.items() if k not in ("properties", "required")}
        rest_new = {k: v for k, v in new.items() if k not in ("properties", "required")}
        return problems + _compare_keys(rest_old, rest_new, path, fixes)
    return _compare_keys(old, new, path, fixes)


def _compare_keys(old: dict[str, Any], new: dict[str, Any], path: str, fixes: list[str]) -> list[str]:
    problems: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        if key.startswith("x-") or key in ("$id",):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, list) and isinstance(b, list) and key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if len(a) != len(b):
                problems.append(f"{path or '(root)'}: {key} changed from {len(a)} to {len(b)} alternatives")
            else:
                for i, (x, y) in enumerate(zip(a, b, strict=True)):
                    problems += _compare(x, y, f"{path}[{key} {i}]", fixes)
        elif isinstance(a, dict) and isinstance(b, dict):
            problems += _compare(a, b, f"{path}[{key}]" if key != "items" else f"{path}[]", fixes)
        elif a != b and _is_local_time_correction(key, old, new):
            fixes.append(f"{path or '(root)'}: {key}")
        elif a != b:
            problems.append(f"{path or '(root)'}: {key} changed from {a!r} to {b!r}")
    return problems


def revisions(folder: Path, event_type: str) -> list[dict[str, Any]]:
    """Every published revision of a type, oldest first."""
    tdir = folder / event_type
    files = sorted(tdir.glob("r*.json"), key=lambda p: int(p.stem[1:])) if tdir.exists() else []
    return [json.loads(p.read_text()) for p in files]


def check(folder: Path) -> list[str]:
    """Problems between the models and the committed schemas: drift or breaking history."""
    problems: list[str] = []
    for cls in EVENT_CLASSES:
        history = revisions(folder, cls.event_type)
        if not history:
            problems.append(f"{cls.event_type}: no published schema (run `make schemas`)")
            continue
        for i, older in enumerate(history):
            for j, newer in enumerate(history[i + 1 :], start=i + 1):
                for p in breaking_changes(older, newer):
                    problems.append(f"{cls.event_type}: r{j + 1} breaks r{i + 1}: {p}")
                if j == i + 1 and corrections(older, newer) and newer.get(NOTE) not in CORRECTIONS:
                    problems.append(f"{cls.event_type}: r{j + 1} corrects r{i + 1} without its note ({NOTE})")
        if _without_note(history[-1]) != schema_of(cls):
            problems.append(
                f"{cls.event_type}: the model differs from the committed schema r{len(history)} (run `make schemas`)"
            )
    return problems


def write(folder: Path) -> list[str]:
    """Add a revision for every type whose model changed compatibly; report the refused ones."""
    refused: list[str] = []
    for cls in EVENT_CLASSES:
        current = schema_of(cls)
        history = revisions(folder, cls.event_type)
        if history and _without_note(history[-1]) == current:
            continue
        problems = [p for old in history for p in breaking_changes(old, current)]
        if problems:
            refused.append(
                f"{cls.event_type}: breaking change, publish a new major type instead:\n  - "
                + "\n  - ".join(sorted(set(problems)))
            )
            continue
        if history and corrections(history[-1], current):
            current = {**current, NOTE: LOCAL_TIME_CORRECTION}
        tdir = folder / cls.event_type
        tdir.mkdir(parents=True, exist_ok=True)
        path = tdir / f"r{len(history) + 1}.json"
        path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return refused


def _without_note(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != NOTE}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish or check the event JSON Schemas.")
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    problems = write(args.dir) if args.command == "write" else check(args.dir)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
