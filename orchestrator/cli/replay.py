"""``orchestrator replay``: what would these journeys have done with this history?"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.journeys import load_or_fail
from orchestrator.cli.options import duration_option, events_file, settings
from orchestrator.cli.progress import progress_bar
from orchestrator.core.commands import Command
from orchestrator.errors import CliError
from orchestrator.history import LineError, Parse, event_parser, parse_all, read_lines, replay_scanned, scan
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.replay import Replay, Summary, freeze_loaded
from orchestrator.replay_split import MAX_PROCESSES, default_processes, replay_split
from orchestrator.settings import CHANNEL_RULE
from schemas.events import is_channel_name


def replay(
    events: Annotated[
        Path,
        typer.Argument(help="JSON lines of ChannelEvents, any order (by ts; equal ts in file order); - reads stdin."),
    ],
    journeys: Annotated[
        Path | None, typer.Option("--journeys", "-j", help="Folder of journey files (none: --rules alone).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Commands and the summary as JSON lines.")] = False,
    rules: Annotated[bool, typer.Option(help="Also run the built-in reflex rules.")] = False,
    channel: Annotated[str, typer.Option(help="Channel for events that name none.")] = "replay",
    after: Annotated[str, typer.Option(help="Keep the clock running this long after the last event.")] = "0s",
    processes: Annotated[
        int,
        typer.Option(
            min=0,
            max=MAX_PROCESSES,
            help="Processes to split the customers over (at most one per event); 0: one per core for big histories.",
        ),
    ] = 0,
) -> None:
    """Replay history in event time through the journeys, without Kafka; print commands and a summary."""
    conf = settings()
    after_s = duration_option("--after", after)
    if not is_channel_name(channel):
        raise CliError(f"--channel {channel!r}: {CHANNEL_RULE}")
    policy = conf.policy() if rules else dataclasses.replace(conf.policy(), rules=frozenset())
    if journeys is None and not rules:
        raise CliError("nothing to replay with: give --journeys DIR, --rules, or both")
    engine = None
    if journeys is not None:
        engine = Engine(Catalogue.of(load_or_fail(journeys)), conf.max_active_journeys, conf.default_timezone)
    from_stdin = str(events) == "-"
    if not from_stdin:
        events_file(events)
    started = time.perf_counter()
    lines = read_lines(sys.stdin.buffer if from_stdin else events)
    try:
        parse = event_parser(channel, conf.limits())
        totals = _replay(lines, parse, lambda: Replay(policy, engine), processes, after_s, as_json)
    except LineError as exc:
        raise CliError(f"{'<stdin>' if from_stdin else events}:{exc.number}: {exc.reason}") from None
    elapsed = time.perf_counter() - started
    summary = totals.as_dict() | {"seconds": round(elapsed, 3)}
    if as_json:
        typer.echo(json.dumps({"summary": summary}, sort_keys=True))
    else:
        _print_summary(summary, elapsed)


def _replay(
    lines: list[bytes], parse: Parse, make_player: Callable[[], Replay], processes: int, after: float, as_json: bool
) -> Summary:
    """Print the commands in the order one process gives them; return the summary.

    Big histories are read and replayed by as many processes as there are cores (see
    orchestrator.history); small ones here."""
    render = _json if as_json else _text
    count = sum(1 for line in lines if line.strip())
    share_out = min(processes, count) if processes else default_processes(count)
    if share_out > 1:
        with progress_bar("reading", total=len(lines)) as advance:
            scanned = scan(lines, parse, share_out, advance)
        until = scanned.last_ts + after
        with progress_bar("replaying", total=len(scanned.line_index)) as advance:
            output, totals = replay_scanned(
                lines, parse, scanned, make_player, share_out, until, render=render, progress=advance
            )
            _write(output)
        return totals
    history = parse_all(lines, parse)
    freeze_loaded()  # this process replays and exits
    until = max((e.ts for e in history), default=0.0) + after
    with progress_bar("replaying", total=len(history)) as advance:
        output, totals = replay_split(history, make_player, 1, until=until, render=render, progress=advance)
        _write(output)
    return totals


def _write(output: Iterator[str], batch: int = 2_000) -> None:
    """Commands printed a batch at a time: the parent is the serial part of a big replay,
    and a write per line costs it about 5 us per command, a batched one under 1 us."""
    chunk: list[str] = []
    for line in output:
        chunk.append(line)
        if len(chunk) >= batch:
            typer.echo("\n".join(chunk))
            chunk = []
    if chunk:
        typer.echo("\n".join(chunk))


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
        ("of which after leaving (conversion_window)", "converted_after_exit"),
        ("commands", "commands"),
        ("held back", "held"),
        ("actions delayed to the end of quiet hours", "delayed"),
        ("exits", "exits"),
        ("still inside at the end (journey:version:step)", "inside"),
        ("entries refused (ORCH_MAX_ACTIVE_JOURNEYS)", "blocked"),
        ("condition errors (counted false; templates skip their action)", "condition_errors"),
    ):
        if summary[key]:
            err(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary[key].items())), err=True)
    for arm, seen in summary["variants"].items():  # an A/B test: each split arm, holdout included
        rate = f" ({seen['converted'] / seen['assigned']:.1%})" if seen["assigned"] else ""
        err(f"arm {arm}: {seen['assigned']} assigned, {seen['converted']} converted{rate}", err=True)
