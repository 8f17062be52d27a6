"""Errors the domain raises and the HTTP layer turns into ``{"error": code, "message": ...}`` responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class DomainError(Exception):
    """A refusal the caller can act on: a stable machine-readable ``code``, a sentence, an HTTP status."""

    default_status: ClassVar[int] = 400

    def __init__(
        self, code: str, message: str, status: int | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else self.default_status
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, status={self.status})"


class NotFound(DomainError):
    """The resource does not exist, or belongs to another practice (never reveal which)."""

    default_status = 404


class Conflict(DomainError):
    """The request clashes with the current state of the resource."""

    default_status = 409


class Unprocessable(DomainError):
    """The request is well formed but breaks a domain rule."""

    default_status = 422


class Unauthorized(DomainError):
    """No credentials, or credentials that do not verify."""

    default_status = 401


class Forbidden(DomainError):
    """Verified credentials whose role may not do this."""

    default_status = 403
