"""``orchestrator customer ID``: a customer's profile from the Redis read model."""

from __future__ import annotations

import json
from typing import Annotated

import redis
import typer

from orchestrator.cli.options import Prefix, RedisUrl, settings
from orchestrator.errors import CliError, redis_failure
from orchestrator.readmodel import not_found, read_profile


def customer(
    customer_id: Annotated[str, typer.Argument(help="Customer id, or kind:value for an anonymous profile.")],
    prefix: Prefix = None,
    redis_url: RedisUrl = None,
) -> None:
    """Print one customer's state as JSON (exit 1 when unknown)."""
    conf = settings(topic_prefix=prefix, redis_url=redis_url)
    try:
        doc = read_profile(conf.redis_url, conf.topic_prefix, customer_id, hasher=conf.hasher())
    except (redis.RedisError, OSError) as exc:
        raise redis_failure(conf.redis_url, exc) from exc
    if doc is None:
        raise CliError(not_found(customer_id))
    typer.echo(json.dumps(doc, indent=2, sort_keys=True))
