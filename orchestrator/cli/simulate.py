"""``orchestrator simulate``: believable multi-channel traffic, live or as a history file."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, TextIO

import typer

from orchestrator.cli.main import stdout_to_nowhere
from orchestrator.cli.options import Bootstrap, Prefix, above_zero, duration_option, settings
from orchestrator.cli.progress import progress_bar
from orchestrator.errors import CliError
from orchestrator.kafka.clients import ensure_topics, producer
from orchestrator.simulator import Simulator
from orchestrator.topics import TopicNames
from schemas.codec import content_type_header, encode_payload

CHANNELS = ("web", "search", "ads", "email", "store", "app", "social")


def simulate(
    rate: Annotated[float, typer.Option(callback=above_zero, help="Journey steps per second.")] = 4.0,
    customers: Annotated[int, typer.Option(min=1, help="How many simulated people.")] = 100,
    duration: Annotated[float, typer.Option(min=0, help="Seconds to run; 0 runs until Ctrl-C.")] = 0.0,
    broken_every: Annotated[int, typer.Option(min=0, help="Every Nth record is malformed (0: never).")] = 25,
    seed: Annotated[int, typer.Option(help="Random seed, for repeatable traffic.")] = 7,
    output: Annotated[
        Path | None, typer.Option(help="Write a history file (JSON lines) instead; - writes standard output.")
    ] = None,
    count: Annotated[int, typer.Option(min=0, help="With --output: how many steps.")] = 10_000,
    span: Annotated[str, typer.Option(help="With --output: the history ends now and spans this long.")] = "30d",
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Publish simulated events from several channels until stopped, or write them to a file."""
    if output is not None:
        _write_history(output, Simulator(customers=customers, seed=seed), count, duration_option("--span", span))
        return
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    names = TopicNames(conf.topic_prefix)
    ensure_topics(
        conf.kafka_bootstrap, [names.events(c) for c in CHANNELS], conf.partitions, replication=conf.replication_factor
    )
    client = producer(conf.kafka_bootstrap)
    sim = Simulator(customers=customers, seed=seed, broken_every=broken_every)
    headers = content_type_header("msgpack")
    started = time.monotonic()
    sent = 0
    label = f"sending to {names.events('*')} (Ctrl-C stops)"
    try:
        with progress_bar(label, total=None) as advance:  # a live run has no end to measure against
            while not duration or time.monotonic() - started < duration:
                for out in sim.records(time.time()):
                    if out.raw is not None:
                        client.send(names.events(out.channel), value=out.raw)
                    elif out.event is not None:
                        key = str(out.event["customer_id"]).encode()
                        value = encode_payload(out.event)
                        client.send(names.events(out.channel), key=key, value=value, headers=list(headers))
                    sent += 1
                    advance()
                time.sleep(1.0 / rate)
    except KeyboardInterrupt:
        pass
    finally:
        client.flush(timeout=10)
        client.close()
        typer.echo(f"simulated {sent} record(s)", err=True)


def _write_history(path: Path, sim: Simulator, count: int, span: float) -> None:
    """``count`` steps spread evenly over ``span`` seconds ending now, in time order."""
    start = time.time() - span
    written = 0
    to_stdout = str(path) == "-"
    name = "standard output" if to_stdout else str(path)
    try:
        with _created(path) as out, progress_bar(f"writing {name}", total=count) as advance:
            for i in range(count):
                for record in sim.records(start + span * i / max(1, count)):
                    if record.event is not None:
                        out.write(json.dumps({**record.event, "channel": record.channel}) + "\n")
                        written += 1
                advance()
    except BrokenPipeError:  # the reader has all it wants (| head), as for any command's output
        stdout_to_nowhere()
        return
    except OSError as exc:  # a full disk
        raise CliError(f"cannot write {name}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {written} event(s) to {name}", err=True)


def _created(path: Path) -> TextIO:
    """The history file, opened for writing (``-``: standard output, left open); a folder that
    is missing (or a path that is one) is a one-line error before anything is simulated."""
    if str(path) == "-":
        return open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
