"""``orchestrator send``: JSON lines in, msgpack events out."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from orchestrator.cli.options import Bootstrap, Prefix, events_file, settings
from orchestrator.cli.progress import progress_bar
from orchestrator.core.event import customer_key
from orchestrator.errors import CliError
from orchestrator.ingest import Limits, Rejection, content_problem, ingest
from orchestrator.kafka.clients import ensure_topics, producer
from orchestrator.topics import EVENTS, TopicNames
from schemas.codec import JSON, DecodeError, content_type_header, decode_payload, encode_payload


def send(
    source: Annotated[str, typer.Argument(help="File of JSON lines, or - for stdin.")] = "-",
    topic: Annotated[str, typer.Option("--topic", "-t", help="Channel (web) or topic (events.web, prefixed).")] = "web",
    validate: Annotated[
        bool, typer.Option(help="Refuse each line the worker's ingest would dead-letter (see README).")
    ] = True,
    raw: Annotated[
        bool, typer.Option(help="Send each line's bytes as they are, blank and # lines too (for testing the DLQ).")
    ] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Publish events, one JSON object per line, msgpack-encoded, keyed by customer."""
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    names = TopicNames(conf.topic_prefix)
    target = names.resolve(topic, EVENTS)
    if not names.is_events_topic(target):
        raise CliError(
            f"{target!r} is not an events topic: give a channel (web) or a topic {names.events('<channel>')}"
        )
    check = _Check(target, names, conf.limits()) if validate else None
    with _open(source) as stream:
        lines = stream.readlines() if source != "-" else None
        client = producer(conf.kafka_bootstrap)
        ensure_topics(conf.kafka_bootstrap, [target], conf.partitions, replication=conf.replication_factor)
        sent, bad = 0, 0
        items = lines if lines is not None else _stdin_lines(stream)
        with progress_bar(f"sending to {target}", total=len(lines) if lines is not None else None) as advance:
            for number, line in enumerate(items, start=1):
                advance()
                if not raw and (not line.strip() or line.lstrip().startswith(b"#")):
                    continue  # raw: every line is a record, a blank one an empty record
                try:
                    key, value = (None, line.rstrip(b"\n")) if raw else _prepare(line, check)
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


def _open(source: str) -> BinaryIO:
    """The lines as bytes, as the stream gets them: a line that is not UTF-8 is then one
    refused line, not the end of the command."""
    if source == "-":
        return sys.stdin.buffer
    return events_file(Path(source)).open("rb")


def _stdin_lines(stream: BinaryIO) -> Iterator[bytes]:
    yield from stream


@dataclass(frozen=True)
class _Check:
    """The worker's ingest, run on the bytes it would receive: whatever it would dead-letter
    (the contract, size, nesting, a time ahead of its clock or in the wrong unit) is refused
    here, with the same reason, instead of going out."""

    topic: str
    names: TopicNames
    limits: Limits

    def __call__(self, value: bytes) -> None:
        now = time.time()
        headers = content_type_header("msgpack")
        verdict = ingest(
            value, topic=self.topic, headers=headers, received_at=now, now=now, topics=self.names, limits=self.limits
        )
        if isinstance(verdict, Rejection):
            raise CliError(f"{verdict.reason}: {verdict.detail}")


def _prepare(line: bytes, check: _Check | None) -> tuple[bytes | None, bytes]:
    """The line's key and msgpack value; the line is read as the stream reads JSON (an
    integer beyond 64 bits is refused, as msgpack could not carry it)."""
    try:  # without its line end, so an error's position is the one the worker gives the same bytes
        doc: Any = decode_payload(line.rstrip(b"\r\n"), JSON)
    except DecodeError as exc:
        raise CliError(str(exc)) from None
    if not isinstance(doc, dict):
        raise CliError("each line must be a JSON object")
    try:
        value = encode_payload(doc)
    except (ValueError, OverflowError, TypeError) as exc:  # a lone surrogate (\ud800) in a string
        problem = content_problem(doc) if check is not None else None  # in the worker's words when checking
        raise CliError(f"invalid: {problem}" if problem else f"cannot be encoded as msgpack: {exc}") from None
    if check is not None:
        check(value)
    key = _key_of(doc)
    return (key.encode() if key else None), value


def _key_of(doc: dict[str, Any]) -> str | None:
    ids = doc.get("identifiers")
    try:
        return customer_key(doc.get("customer_id"), ids if isinstance(ids, dict) else None)
    except ValueError:
        return None
