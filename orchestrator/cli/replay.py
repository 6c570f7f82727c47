"""``orchestrator replay``: what would these journeys have done with this history?"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from orchestrator.cli.journeys import load_or_fail
from orchestrator.cli.options import settings
from orchestrator.cli.progress import progress_bar
from orchestrator.core.commands import Command
from orchestrator.core.event import Event
from orchestrator.errors import CliError
from orchestrator.ingest import describe, to_event
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.durations import parse_duration
from orchestrator.journeys.engine import Engine
from orchestrator.replay import Replay
from orchestrator.replay_split import default_processes, replay_split
from schemas.events import ChannelEvent


def replay(
    events: Annotated[Path, typer.Argument(help="JSON lines of ChannelEvents, any order.")],
    journeys: Annotated[Path, typer.Option("--journeys", "-j", help="Folder of journey files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Commands and the summary as JSON lines.")] = False,
    rules: Annotated[bool, typer.Option(help="Also run the built-in reflex rules.")] = False,
    channel: Annotated[str, typer.Option(help="Channel for events that name none.")] = "replay",
    after: Annotated[str, typer.Option(help="Keep the clock running this long after the last event.")] = "0s",
    processes: Annotated[
        int, typer.Option(min=0, help="Processes to split the customers over; 0: one per core for big histories.")
    ] = 0,
) -> None:
    """Replay history in event time through the journeys, without Kafka; print commands and a summary."""
    conf = settings()
    policy = conf.policy() if rules else dataclasses.replace(conf.policy(), rules=frozenset())
    engine = Engine(Catalogue.of(load_or_fail(journeys)), conf.max_active_journeys, conf.default_timezone)
    history = _read(events, channel)
    last = max((e.ts for e in history), default=0.0)
    started = time.perf_counter()
    with progress_bar("replaying", total=len(history)) as advance:
        lines, totals = replay_split(
            history,
            lambda: Replay(policy, engine),
            processes or default_processes(len(history)),
            until=last + parse_duration(after),
            render=_json if as_json else _text,
            progress=advance,
        )
        for line in lines:
            typer.echo(line)
    elapsed = time.perf_counter() - started
    summary = totals.as_dict() | {"seconds": round(elapsed, 3)}
    if as_json:
        typer.echo(json.dumps({"summary": summary}, sort_keys=True))
    else:
        _print_summary(summary, elapsed)


def _read(path: Path, channel: str) -> list[Event]:
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    history = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                doc = ChannelEvent.model_validate_json(line)
            except ValidationError as exc:
                raise CliError(f"{path}:{number}: {describe(exc)}") from None
            history.append(to_event(doc, channel, received_at=doc.ts))
    return history


def _json(command: Command) -> str:
    return json.dumps(command.to_wire(), sort_keys=True)


def _text(command: Command) -> str:
    return _line(command.to_wire())


def _line(command: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(command["issued_at"]))
    return f"{when}  {command['channel']:<7} {command['action']:<18} {command['customer_id']:<14} {command['reason']}"


def _print_summary(summary: dict, elapsed: float) -> None:
    rate = summary["events"] / elapsed if elapsed else 0.0
    err = typer.echo
    err(
        f"\n{summary['events']} events ({summary['duplicates']} duplicates), {summary['customers']} customers, "
        f"{elapsed:.2f}s ({rate:,.0f} events/s)",
        err=True,
    )
    for title, key in (
        ("entries", "entries"),
        ("conversions", "conversions"),
        ("commands", "commands"),
        ("held back", "held"),
        ("exits", "exits"),
    ):
        if summary[key]:
            err(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary[key].items())), err=True)
