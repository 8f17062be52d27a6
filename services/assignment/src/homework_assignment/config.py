"""Settings of the assignment service (environment variables only)."""

from __future__ import annotations

from pydantic import Field

from homework_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """The shared settings plus how often this replica looks for assignments whose schedule is over."""

    service_name: str = "assignment"
    mongodb_database: str = "homework_assignment"
    http_port: int = 8001
    # Real seconds between two sweeps that end assignments whose last occurrence has closed.
    end_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
