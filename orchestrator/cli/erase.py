"""``orchestrator erase ID``: remove a customer from every table, the identity graph and Redis.

The request travels as an ``erase`` event to the customer's partition, so it is
ordered with the customer's other events and carried out by the worker that
owns them. The command waits for the worker's audit record and prints it.
"""

from __future__ import annotations

import getpass
import json
import re
import time
import uuid
from dataclasses import replace
from typing import Annotated, Any

import msgpack
import typer

from orchestrator.cli.options import Bootstrap, Prefix, seconds_or_zero, settings
from orchestrator.core.event import Event
from orchestrator.errors import CliError
from orchestrator.identity.graph import ERASE, control
from orchestrator.identity.tokens import CUSTOMER_ID, Hasher, profile_key_for
from orchestrator.kafka.clients import ensure_topics, producer
from orchestrator.kafka.tail import follow
from orchestrator.topics import TopicNames

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,31}:.+$")


def erase(
    customer: Annotated[str, typer.Argument(help="Customer id, or an identifier as kind:value (email:a@b.com).")],
    suppress: Annotated[bool, typer.Option(help="Drop later events with these identifiers.")] = False,
    wait: Annotated[
        float,
        typer.Option(callback=seconds_or_zero, help="Seconds to wait for the worker's confirmation; 0 to not wait."),
    ] = 30.0,
    requested_by: Annotated[str | None, typer.Option(help="Who asked, for the audit record.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the audit record as JSON.")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Erase one customer everywhere the product keeps data, and print the audit record."""
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    names = TopicNames(conf.topic_prefix)
    key = routing_key(customer, conf.hasher())
    request = erase_request(key, suppress, requested_by or _user())
    replicas = conf.replication_factor
    retention = {"retention.ms": str(int(conf.topic_retention_s * 1000))}
    ensure_topics(conf.kafka_bootstrap, [names.customer_events], conf.partitions, retention, replicas)
    ensure_topics(conf.kafka_bootstrap, [names.audit], 1, replication=replicas)
    client = producer(conf.kafka_bootstrap)
    client.send(names.customer_events, key=key.encode(), value=msgpack.packb(request.to_wire(), use_bin_type=True))
    client.flush(timeout=30)
    client.close()
    if wait <= 0:
        typer.echo(f"erasure of {key} requested (request {request.event_id})")
        return
    record = _confirmation(conf.kafka_bootstrap, names.audit, request.event_id, wait)
    typer.echo(json.dumps(record, indent=2) if as_json else describe(record))


def routing_key(text: str, hasher: Hasher) -> str:
    """``c-42`` is a customer id; ``email:a@b.com`` an identifier, hashed as ingestion would."""
    text = text.strip()
    if not text:
        raise CliError("give a customer id or an identifier such as email:a@b.com")
    if text.startswith(f"{CUSTOMER_ID}:"):
        return profile_key_for(text)
    return profile_key_for(hasher.lookup_token(text)) if IDENTIFIER.match(text) else text


def erase_request(key: str, suppress: bool, requested_by: str) -> Event:
    """The same control event a channel's ``erase`` becomes, its id random: unique, and the one
    the audit record carries as ``request_id`` (the command waits for it; the worker writes the
    same one if it reads the request again). A control event's usual id names its key, and the
    key of an identifier is the raw address when no hash key is set: the audit record, kept
    for good, kept it."""
    request = control(ERASE, key, time.time(), "cli", suppress=suppress, requested_by=requested_by)
    return replace(request, event_id=f"{ERASE}:{uuid.uuid4().hex}")


def describe(record: dict[str, Any]) -> str:
    if not record.get("found"):
        return f"no profile for {record['customer']}: nothing to erase (request {record['request_id']} recorded)"
    kept = "; its identifiers are suppressed" if record.get("suppressed") else ""
    return (
        f"erased {record['customer']}: profile, {record['pointers_removed']} identifier pointer(s), "
        f"read model and timers removed{kept} (request {record['request_id']})"
    )


def _confirmation(bootstrap: str, topic: str, request_id: str, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    for message in follow(bootstrap, f"^{re.escape(topic)}$", from_beginning=True, deadline=deadline):
        try:
            record = json.loads(message.value or b"")
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("request_id") == request_id:
            return record
    raise CliError(f"erasure requested ({request_id}) but no worker confirmed it within {wait:.0f}s; is one running?")


def _user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
