"""``python -m homework_assignment``: serve the assignment service until SIGTERM."""

from __future__ import annotations

from homework_assignment.app import create
from homework_assignment.config import AssignmentSettings
from homework_shared.runner import serve
from homework_shared.settings import load_settings


def main() -> None:
    """Read the settings from the environment and serve."""
    settings = load_settings(AssignmentSettings)
    serve(create(settings), settings)


if __name__ == "__main__":
    main()
