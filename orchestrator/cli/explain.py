"""``orchestrator explain ID``: why a customer did or did not get a message."""

from __future__ import annotations

import json
from typing import Annotated, Any

import redis
import typer

from orchestrator.audit import explain_lines
from orchestrator.cli.options import Prefix, RedisUrl, settings
from orchestrator.decisionlog import newest_decisions
from orchestrator.errors import CliError, redis_failure
from orchestrator.identity.tokens import Hasher
from orchestrator.readmodel import resolve_key, spelling_hint

TIMEOUT_S = 3.0


def explain(
    customer_id: Annotated[
        str,
        typer.Argument(help="Customer id, an identifier as kind:value (e.g. email:a@b.c), or a profile key."),
    ],
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="How many of the newest decisions.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="The decision records as one JSON list.")] = False,
    prefix: Prefix = None,
    redis_url: RedisUrl = None,
) -> None:
    """Print a customer's recent decisions and their reasons, newest last (exit 1 when there are none)."""
    conf = settings(topic_prefix=prefix, redis_url=redis_url)
    try:
        records = _find(conf.redis_url, conf.topic_prefix, customer_id, limit, conf.hasher())
    except (redis.RedisError, OSError) as exc:
        raise redis_failure(conf.redis_url, exc) from exc
    if not records:
        raise CliError(f"no decisions recorded for {customer_id!r}{spelling_hint(customer_id)}")
    if as_json:
        typer.echo(json.dumps(records, indent=2, sort_keys=True))
    else:
        typer.echo("\n".join(explain_lines(records)))


def _find(url: str, prefix: str, text: str, limit: int, hasher: Hasher) -> list[dict[str, Any]]:
    """The decisions of the customer ``text`` names: through its alias, the profile
    that survived any merge; otherwise ``text`` as a key exactly as typed."""
    client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
    try:
        key = resolve_key(client, prefix, text, hasher) or text
        return newest_decisions(client, prefix, key, limit)
    finally:
        client.close()
