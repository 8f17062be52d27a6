"""Reading stored documents into models and events without spelling ``name=doc["name"]`` once per field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pick(doc: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The fields ``names`` of ``doc`` (each must be there), as keyword arguments for a model or an event."""
    return {name: doc[name] for name in names}
