"""``orchestrator explain ID``: why a customer did or did not get a message."""

from __future__ import annotations

import json
from typing import Annotated, Any

import redis
import typer

from orchestrator.audit import explain_lines
from orchestrator.cli.options import Prefix, RedisUrl, settings
from orchestrator.decisionlog import newest_decisions
from orchestrator.errors import CliError, Unreachable
from orchestrator.identity.tokens import CUSTOMER_ID, Hasher, profile_key_for

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
        raise Unreachable.service("Redis", conf.redis_url, exc) from exc
    if not records:
        raise CliError(f"no decisions recorded for {customer_id!r}")
    if as_json:
        typer.echo(json.dumps(records, indent=2, sort_keys=True))
    else:
        typer.echo("\n".join(explain_lines(records)))


def _find(url: str, prefix: str, text: str, limit: int, hasher: Hasher) -> list[dict[str, Any]]:
    """The decisions of the first candidate key that has any."""
    client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
    try:
        for key in candidate_keys(client, prefix, text, hasher):
            if records := newest_decisions(client, prefix, key, limit):
                return records
        return []
    finally:
        client.close()


def candidate_keys(client: redis.Redis, prefix: str, text: str, hasher: Hasher) -> list[str]:
    """Where the customer ``text`` names may be, best first.

    An identifier is normalised (and hashed, if the deployment hashes its kind) into
    the token state and Redis use; its alias names the canonical customer, which is
    the profile that survived any merge. Without an alias the token itself may name an
    anonymous profile, and last the text may be a profile key exactly as typed.
    """
    token = hasher.lookup_token(text) if ":" in text else f"{CUSTOMER_ID}:{text}"
    target = client.get(f"{prefix}alias:{token}")
    found = [target.decode()] if isinstance(target, bytes) else []
    return list(dict.fromkeys([*found, profile_key_for(token), text]))
