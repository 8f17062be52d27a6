"""The three services' OpenAPI documents, built in-process from each app (nothing connects: what they serve)."""

from __future__ import annotations

import functools
from typing import Any

SERVICE_NAMES = ("assignment", "reminder", "insights")
METHODS = ("get", "put", "post", "delete", "patch")


@functools.cache
def openapi_document(service: str) -> dict[str, Any]:
    """``app.openapi()`` of ``service``, with settings that point nowhere (the app factory connects only on start)."""
    from homework_assignment import app as assignment_app
    from homework_assignment.config import AssignmentSettings
    from homework_insights import app as insights_app
    from homework_insights.config import InsightsSettings
    from homework_reminder import app as reminder_app
    from homework_reminder.config import ReminderSettings

    unused = {
        "environment": "development",
        "kafka_bootstrap_servers": "127.0.0.1:9",
        "mongodb_uri": "mongodb://127.0.0.1:9/",
    }
    apps: dict[str, Any] = {
        "assignment": lambda: assignment_app.create(AssignmentSettings(**unused)),
        "reminder": lambda: reminder_app.create(ReminderSettings(**unused)),
        "insights": lambda: insights_app.create(InsightsSettings(**unused)),
    }
    document: dict[str, Any] = apps[service]().openapi()
    return document


def documented_routes() -> list[tuple[str, str, str]]:
    """Every (service, METHOD, path) in the three documents, in document order."""
    return [
        (service, method.upper(), path)
        for service in SERVICE_NAMES
        for path, operations in openapi_document(service)["paths"].items()
        for method in operations
        if method in METHODS
    ]


def operation(service: str, method: str, path: str) -> dict[str, Any]:
    """The OpenAPI operation object of one route."""
    op: dict[str, Any] = openapi_document(service)["paths"][path][method.lower()]
    return op
