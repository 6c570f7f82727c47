"""Write the JSON Schema files under ``schemas/json/`` from the models.

Run ``python -m schemas.generate`` (or ``make schemas``) after changing a model;
a test fails while the committed files differ from what this produces.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.commands import ActionCommand
from schemas.events import ChannelEvent

SCHEMA_DIR = Path(__file__).parent / "json"
MODELS: dict[str, type[BaseModel]] = {"channel_event": ChannelEvent, "action_command": ActionCommand}


def render(name: str) -> str:
    """The schema text for one model, stable so that diffs stay readable."""
    schema = MODELS[name].model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{name}.schema.json", **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name in MODELS:
        (SCHEMA_DIR / f"{name}.schema.json").write_text(render(name))
        print(f"wrote schemas/json/{name}.schema.json")


if __name__ == "__main__":
    main()
