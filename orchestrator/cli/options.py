"""Options shared by several commands; each overrides the ``ORCH_*`` setting of its name."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

from orchestrator.errors import CliError
from orchestrator.settings import Settings

Bootstrap = Annotated[
    str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers (env ORCH_KAFKA_BOOTSTRAP).")
]
Prefix = Annotated[str | None, typer.Option("--prefix", help="Topic prefix (env ORCH_TOPIC_PREFIX).")]
RedisUrl = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (env ORCH_REDIS_URL).")]


def settings(**overrides: Any) -> Settings:
    """Environment settings with the command-line overrides that were given."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise CliError(f"bad setting {'.'.join(map(str, first['loc']))}: {message}") from None


def duration_option(option: str, text: str) -> float:
    """Seconds in a duration option (``--after 7d``); a bad one is a one-line CLI error."""
    from orchestrator.journeys.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from None
