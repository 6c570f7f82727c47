"""Options shared by several commands; each overrides the ``ORCH_*`` setting of its name."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from orchestrator.errors import CliError
from orchestrator.redact import scrubbed, userinfo_password
from orchestrator.settings import Settings

Bootstrap = Annotated[
    str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers (env ORCH_KAFKA_BOOTSTRAP).")
]
Prefix = Annotated[str | None, typer.Option("--prefix", help="Topic prefix (env ORCH_TOPIC_PREFIX).")]
RedisUrl = Annotated[str | None, typer.Option("--redis-url", help="Redis URL (env ORCH_REDIS_URL).")]


def settings(**overrides: Any) -> Settings:
    """Environment settings with the command-line overrides that were given. A command that
    takes ``redis_url`` (given or not) gets it checked too, from the option or the environment."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        conf = Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise CliError(f"bad setting {'.'.join(map(str, first['loc']))}: {message}") from None
    if "redis_url" in overrides:
        _check_redis_url(conf.redis_url)
    return conf


def _check_redis_url(url: str) -> None:
    """Redis's own reading of the URL (scheme, port), which it otherwise does only when
    connecting, with an exception that is no one line. Imported here: only commands that
    use Redis pay for importing it. No message quotes the URL's password."""
    from redis.connection import parse_url

    if any(mark in (userinfo_password(url) or "") for mark in "/?#"):
        # urllib ends the address there: it would read part of the password as the host or port,
        # connect there, and quote it in its errors. An '@' in the query (?client_name=a@b) reads
        # the same way, and is refused too rather than guessed at: a guess wrong would print a password.
        raise CliError(
            "bad setting redis_url: an '@' after a '/', '?' or '#' (in a password, or in the query): "
            "percent-encode them (%2F, %3F, %23, %40)"
        )
    try:
        host = parse_url(url).get("host")
    except ValueError as exc:
        raise CliError(f"bad setting redis_url: {scrubbed(str(exc), url)}") from None
    if host is not None:
        _check_host_name(host)


def _check_host_name(host: str) -> None:
    """A name the resolver cannot be given (a label over 63 characters, an empty one) fails
    the connection with a UnicodeError, which is none of the errors a command reports."""
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise CliError(f"bad setting redis_url: {host!r} is no host name ({exc.__cause__ or exc})") from None


def above_zero(value: float) -> float:
    """An option's callback for a rate or the like, refused up front (a usage error) when zero
    or negative, rather than failing later in a division or a sleep."""
    if not value > 0:  # NaN too
        raise typer.BadParameter(f"must be above 0, not {value:g}")
    return value


def seconds_or_zero(value: float | None) -> float | None:
    """An option's callback for a wait in seconds: zero or more and finite, refused up front (a
    usage error); NaN passed click's range check, and ``erase --wait nan`` erased, then failed."""
    if value is not None and not (0 <= value < math.inf):
        raise typer.BadParameter(f"must be 0 or more seconds, not {value:g}")
    return value


def duration_option(option: str, text: str) -> float:
    """Seconds in a duration option (``--after 7d``); a bad one is a one-line CLI error."""
    from orchestrator.journeys.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from None


def events_file(path: Path) -> Path:
    """A file of JSON lines to read: any that can be read (a pipe such as ``<(zcat h.gz)``, a
    FIFO, /dev/stdin too), but not a folder, and one that is there."""
    if path.is_dir():
        raise CliError(f"{path} is a directory, not a file of JSON lines")
    if not path.exists():
        raise CliError(f"no such file: {path}")
    return path
