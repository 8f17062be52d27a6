"""`make docs`: write each service's AsyncAPI document to docs/asyncapi/<service>.json (and .yaml-free JSON only).

Builds every service's app without connecting to anything (the apps connect in their
lifespan only) and asks its runtime for the document FastStream generates, completed
with the published event schemas.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

SERVICES = {"assignment": "homework_assignment", "reminder": "homework_reminder", "insights": "homework_insights"}


def document(module: str, title: str) -> dict[str, object]:
    """The AsyncAPI document of one service, built offline."""
    app = importlib.import_module(f"{module}.app").create()
    runtime = app.state.runtime
    doc: dict[str, object] = runtime.asyncapi(title)
    return doc


def main(argv: list[str]) -> int:
    target = Path(argv[0] if argv else "docs/asyncapi")
    target.mkdir(parents=True, exist_ok=True)
    # Placeholders: building an app connects to nothing, but settings require the addresses.
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    os.environ.setdefault("MONGODB_URI", "mongodb://mongo:27017/?replicaSet=rs0")
    for name, module in SERVICES.items():
        try:
            importlib.import_module(f"{module}.app")
        except ModuleNotFoundError:
            print(f"skipping {name}: not built yet", file=sys.stderr)
            continue
        doc = document(module, f"Homework {name} service")
        path = target / f"{name}.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
