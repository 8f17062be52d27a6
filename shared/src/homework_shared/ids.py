"""Ids as the HTTP API accepts them: a maximum length and an allowed character set, for paths and bodies.

One definition for every service, so an id that one service accepts is one that the others and
the events (``events.values.Id``, the same pattern) accept too: letters, digits and ``. _ : @ -``,
starting with a letter or digit, at most 200 characters. Occurrence ids join an assignment id and
a local time (``asg-...@2026-03-21T19:00``), hence 260; reminder ids add ``#`` and a signed offset
(``...#start-15``), hence ``#`` and ``+`` and 300. Anything else is a 422 naming the field, before
a store sees it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\-]*$"
"""The characters of an id: the same pattern as ``homework_shared.events.values.Id``."""
REMINDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\-#+]*$"
MAX_ID_LENGTH = 200
MAX_OCCURRENCE_ID_LENGTH = 260
MAX_REMINDER_ID_LENGTH = 300

_ID = "letters, digits and . _ : @ -, starting with a letter or digit"

BodyId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description=_ID)]
"""An id in a request body (a client id, an assignment id)."""
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description=_ID)]
"""An id in a path: a client, practice or assignment id."""
QueryId = Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description=_ID)]
"""An id in a query string."""
OccurrenceIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_OCCURRENCE_ID_LENGTH,
        pattern=ID_PATTERN,
        description="`<assignment id>@<local start>`, e.g. `asg-0006123456789a1b2c3@2026-03-21T19:00`",
    ),
]
ReminderIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_REMINDER_ID_LENGTH,
        pattern=REMINDER_ID_PATTERN,
        description="`<occurrence id>#<anchor><offset>`; send `#` percent-encoded (`%23`)",
    ),
]
