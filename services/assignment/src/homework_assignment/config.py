"""Settings of the assignment service (environment variables only)."""

from __future__ import annotations

from pydantic import Field, HttpUrl

from homework_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """The shared settings plus how often this replica looks for assignments whose schedule is over."""

    service_name: str = "assignment"
    mongodb_database: str = "homework_assignment"
    http_port: int = 8001
    # Real seconds between two sweeps that end assignments whose last occurrence has closed.
    end_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # Base URL of the reminder service: a client's data export gets its part from
    # GET {url}/v1/clients/{client_id}/export-part, forwarding the caller's bearer token.
    reminder_url: HttpUrl = HttpUrl("http://127.0.0.1:8002")
    # Base URL of the insights service, for its part of a client's data export (as REMINDER_URL).
    insights_url: HttpUrl = HttpUrl("http://127.0.0.1:8003")
    # Seconds the export waits for each part; a part not there by then fails the export (503), never a partial bundle.
    export_timeout_s: float = Field(default=30.0, gt=0, le=600)
