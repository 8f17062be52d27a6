"""``python -m homework_reminder``: serve the reminder service (settings from the environment)."""

from __future__ import annotations

from homework_reminder.app import create
from homework_reminder.config import ReminderSettings
from homework_shared.runner import serve
from homework_shared.settings import load_settings


def main() -> None:
    settings = load_settings(ReminderSettings)
    serve(create(settings), settings)


if __name__ == "__main__":
    main()
