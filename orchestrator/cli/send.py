"""``orchestrator send``: JSON lines in, msgpack events out."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from pydantic import ValidationError

from orchestrator.cli.options import Bootstrap, Prefix, settings
from orchestrator.cli.progress import progress_bar
from orchestrator.core.event import customer_key
from orchestrator.errors import CliError
from orchestrator.ingest import describe, timestamp_problem
from orchestrator.kafka.clients import ensure_topics, producer
from orchestrator.topics import EVENTS, TopicNames
from schemas.codec import content_type_header, encode_payload
from schemas.events import ChannelEvent


def send(
    source: Annotated[str, typer.Argument(help="File of JSON lines, or - for stdin.")] = "-",
    topic: Annotated[str, typer.Option("--topic", "-t", help="Channel (web) or full topic (events.web).")] = "web",
    validate: Annotated[bool, typer.Option(help="Check each event against the contract before sending.")] = True,
    raw: Annotated[bool, typer.Option(help="Send each line's bytes as they are (for testing the DLQ).")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Publish events, one JSON object per line, msgpack-encoded, keyed by customer."""
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    target = TopicNames(conf.topic_prefix).resolve(topic, EVENTS)
    with _open(source) as stream:
        lines = stream.readlines() if source != "-" else None
        client = producer(conf.kafka_bootstrap)
        ensure_topics(conf.kafka_bootstrap, [target], conf.partitions, replication=conf.replication_factor)
        sent, bad = 0, 0
        items = lines if lines is not None else _stdin_lines(stream)
        with progress_bar(f"sending to {target}", total=len(lines) if lines is not None else None) as advance:
            for number, line in enumerate(items, start=1):
                advance()
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    key, value = (None, line.rstrip("\n").encode()) if raw else prepare_line(line, validate)
                except CliError as exc:
                    bad += 1
                    typer.echo(f"orchestrator: line {number}: {exc}", err=True)
                    continue
                client.send(
                    target, key=key, value=value, headers=list(content_type_header("msgpack")) if not raw else []
                )
                sent += 1
        client.flush(timeout=30)
        client.close()
    typer.echo(f"sent {sent} event(s) to {target}" + (f"; {bad} line(s) refused" if bad else ""), err=True)
    if bad:
        raise typer.Exit(1)


def _open(source: str) -> TextIO:
    if source == "-":
        return sys.stdin
    path = Path(source)
    if not path.is_file():
        raise CliError(f"no such file: {source}")
    return path.open(encoding="utf-8")


def _stdin_lines(stream: TextIO) -> Iterator[str]:
    yield from stream


def prepare_line(line: str, validate: bool) -> tuple[bytes | None, bytes]:
    try:
        doc: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CliError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CliError("each line must be a JSON object")
    if validate:
        try:
            event = ChannelEvent.model_validate(doc)
        except ValidationError as exc:
            raise CliError(describe(exc)) from None
        if problem := timestamp_problem(event.ts):  # ingest would dead-letter it: say so here
            raise CliError(problem)
    key = _key_of(doc)
    return (key.encode() if key else None), encode_payload(doc)


def _key_of(doc: dict[str, Any]) -> str | None:
    ids = doc.get("identifiers")
    try:
        return customer_key(doc.get("customer_id"), ids if isinstance(ids, dict) else None)
    except ValueError:
        return None
