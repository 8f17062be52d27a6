"""``python -m homework_insights``: serve the insights service until SIGTERM."""

from __future__ import annotations

from homework_insights.app import create
from homework_insights.config import InsightsSettings
from homework_shared.runner import serve
from homework_shared.settings import load_settings


def main() -> None:
    """Read the settings from the environment and serve."""
    settings = load_settings(InsightsSettings)
    serve(create(settings), settings)


if __name__ == "__main__":
    main()
