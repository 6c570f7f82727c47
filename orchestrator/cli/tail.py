"""``orchestrator tail``: watch commands flow, one readable line each."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from orchestrator.cli.options import Bootstrap, Prefix, seconds_or_zero, settings
from orchestrator.errors import CliError
from orchestrator.kafka.tail import Record, follow
from orchestrator.printable import printable
from orchestrator.topics import ACTIONS, TopicNames
from schemas.codec import DecodeError, content_type_of, decode_payload

COLOURS = {"remarketing_ad": "yellow", "remarketing_stop": "red", "upsell": "green", "retention": "cyan"}


def tail(
    topics: Annotated[list[str] | None, typer.Argument(help="Channels (ads) or actions.* topics; default: all")] = None,
    pattern: Annotated[str | None, typer.Option(help="Regular expression of topics to follow instead.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's commands.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. remarketing_ad.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest command, not the newest.")] = False,
    max_count: Annotated[int | None, typer.Option("--max", min=1, help="Exit 0 after this many commands.")] = None,
    timeout: Annotated[
        float | None, typer.Option(callback=seconds_or_zero, help="Give up after this many seconds (0: never).")
    ] = None,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Follow action topics. With --max and --timeout, exits 3 if fewer arrived in time."""
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    regex = _pattern(TopicNames(conf.topic_prefix), topics, pattern)
    deadline = time.monotonic() + timeout if timeout else None
    console = terminal()
    shown, columns = 0, Columns()
    note = lambda text: print(f"orchestrator: {text}", file=sys.stderr, flush=True)  # noqa: E731
    for record in follow(conf.kafka_bootstrap, regex, from_beginning=from_beginning, deadline=deadline, warn=note):
        command = _decode(record)
        if command is None or not _wanted(command, customer, action):
            continue
        _print(console, command, as_json, columns)
        shown += 1
        if max_count is not None and shown >= max_count:
            return
    if max_count is not None:
        print(f"orchestrator: timed out after {timeout:g}s with {shown} of {max_count} commands", file=sys.stderr)
        raise typer.Exit(3)


def terminal(file: IO[str] | None = None) -> Console:
    """Where tail prints: what was sent, as sent. Rich would turn a reason's "query:tent: stop"
    into a tent emoji and colour numbers; both are off."""
    return Console(highlight=False, soft_wrap=True, emoji=False, file=file)


def _pattern(names: TopicNames, topics: list[str] | None, pattern: str | None) -> str:
    if pattern and topics:
        raise CliError("give topics or --pattern, not both")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise CliError(f"bad --pattern: {exc}") from None
        return pattern
    if not topics:
        return names.actions_pattern
    return "^(" + "|".join(re.escape(_topic(names, t)) for t in topics) + ")$"


def _topic(names: TopicNames, name: str) -> str:
    """The actions topic ``name`` stands for, refused here when it is none of this deployment's
    (behind its prefix, as ``send`` wants its events topics): else tail would wait for Kafka
    (up to 30 s), then follow it for ever and show nothing. --pattern follows any topic."""
    topic = names.resolve(name, ACTIONS)
    if not names.is_actions_topic(topic):
        wanted = names.actions("<channel>")
        raise CliError(f"{topic!r} is not an actions topic: give a channel (ads) or a topic {wanted}")
    return topic


def _decode(record: Record) -> dict[str, Any] | None:
    try:
        doc = decode_payload(record.value or b"", content_type_of(record.headers))
    except DecodeError as exc:
        print(f"orchestrator: skipped {record.topic}[{record.partition}]@{record.offset}: {exc}", file=sys.stderr)
        return None
    return doc if isinstance(doc, dict) else None


def _wanted(command: dict[str, Any], customer: str | None, action: str | None) -> bool:
    return (customer is None or command.get("customer_id") == customer) and (
        action is None or command.get("action") == action
    )


def _print(console: Console, command: dict[str, Any], as_json: bool, columns: Columns) -> None:
    if as_json:
        sys.stdout.write(json.dumps(command, sort_keys=True) + "\n")
        sys.stdout.flush()
        return
    console.print(columns.line(command))


class Columns:
    """One readable line per command, in columns wide enough for what has been seen.

    Each column starts as wide as the usual values (the simulator's customer ids are
    ``sim-3f9a1c-0041``, 15 characters) and widens to the widest value shown so far, up to
    a limit, so a long id lines up the lines after it instead of pushing its reason along.
    """

    START = {"channel": 7, "action": 17, "customer_id": 16}
    MOST = 40  # a value wider than this (ids may be 128 characters) overflows its own line only

    def __init__(self) -> None:
        self.width = dict(self.START)

    def line(self, command: dict[str, Any]) -> str:
        """The line as rich markup: time, channel, action (coloured), customer, reason; a control
        character in a value is shown escaped, so one command is always one line."""
        when = datetime.fromtimestamp(float(command.get("issued_at", 0))).strftime("%H:%M:%S")
        channel, name, customer = (self._fit(field, str(command.get(field))) for field in self.START)
        colour = COLOURS.get(str(command.get("action")), "magenta")
        reason = escape(printable(str(command.get("reason"))))
        return f"{when}  {channel} [{colour}]{name}[/] {customer} {reason}"

    def _fit(self, field: str, text: str) -> str:
        """``text`` padded to its column, control characters written as escapes first so the column
        is as wide as what is shown (markup escaped after padding: it is not shown either)."""
        shown = printable(text)
        self.width[field] = max(self.width[field], min(len(shown), self.MOST))
        return escape(shown.ljust(self.width[field]))
