"""Opaque page cursors: the last key of a page, URL-safe base64 without padding, for every service's lists."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable


class InvalidCursor(ValueError):
    """A cursor this platform did not give out; each service answers it with its own 422."""


def encode_cursor(key: str | None) -> str | None:
    """The cursor for the last key of a page; None (no next page) for no key."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=") if key else None


def decode_cursor(cursor: str) -> str:
    """The key ``cursor`` stands for; ``InvalidCursor`` if it is not one of ours."""
    try:
        key = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        key = ""
    if not key:
        raise InvalidCursor(cursor)
    return key


def decode_query_cursor(cursor: str | None, refusal: Callable[[], Exception]) -> str | None:
    """The key a ``?cursor=`` stands for (None without one); raises ``refusal()``, the service's 422, if not ours."""
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except InvalidCursor:
        raise refusal() from None
