"""Settings of the assignment service (environment variables only)."""

from __future__ import annotations

from pydantic import Field, HttpUrl

from homework_shared.settings import ServiceSettings


class AssignmentSettings(ServiceSettings):
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
    # Days a client's data is kept after their last activity (their latest assignment change or
    # completion/skip) before the retention sweeper erases it; a practice may set its own
    # (PUT /v1/practices/{practice_id}/retention). Default 7 years (2557 days).
    client_retention_days: float = Field(default=2557.0, gt=0, le=36500)
    # Real seconds between two retention sweeps (one replica sweeps, holding a lease).
    retention_sweep_interval_s: float = Field(default=3600.0, gt=0, le=86400)
