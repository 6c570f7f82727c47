"""``orchestrator journeys validate|publish|list``: the journey catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from kafka import TopicPartition

from orchestrator.cli.options import Bootstrap, Prefix, settings
from orchestrator.errors import CliError
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.loader import Compiled, InvalidJourney, check_dir, check_migrations, compile_text
from orchestrator.journeys.model import Migration
from orchestrator.kafka.clients import COMPACTED, consumer, ensure_topics, producer
from orchestrator.topics import TopicNames

app = typer.Typer(help="Validate, publish and list journeys.", no_args_is_help=True)
Folder = Annotated[Path, typer.Argument(help="Folder of journey YAML files.")]


@app.command()
def validate(folder: Folder) -> None:
    """Check every journey file; print each error as file:line: message (exit 1 on any), and
    each warning as file:line: warning: message (warnings alone still exit 0)."""
    journeys = load_or_fail(folder)
    for journey in journeys:
        typer.echo(f"ok  {journey.id} v{journey.version}  {journey.definition.description}")
        if journey.definition.migrate:
            typer.echo(f"      {_migrates_in(journey)}")
    typer.echo(f"{len(journeys)} journey(s) valid", err=True)


@app.command()
def publish(folder: Folder, bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Validate, then publish to the compacted catalogue topic; workers pick it up live.

    A published version is immutable: to change a journey, raise its version.
    Customers already inside a journey finish on the version they entered, unless
    a newer version's migrate rule moves them; its old steps are checked against
    the versions in the folder and those already published.
    """
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    journeys = load_or_fail(folder)
    topic = TopicNames(conf.topic_prefix).journeys
    ensure_topics(conf.kafka_bootstrap, [topic], 1, COMPACTED, conf.replication_factor)
    published = _read_published(conf.kafka_bootstrap, topic)
    _check_against_published(journeys, published)
    client = producer(conf.kafka_bootstrap)
    fresh = 0
    for journey in journeys:
        key = f"{journey.id}:{journey.version}"
        if key in published:
            if published[key] != journey.source:
                raise CliError(f"{key} is already published with other content; raise its version")
            typer.echo(f"same  {journey.id} v{journey.version}")
            continue
        client.send(topic, key=key.encode(), value=journey.source.encode())
        typer.echo(f"new   {journey.id} v{journey.version}")
        fresh += 1
    client.flush(timeout=30)
    client.close()
    typer.echo(f"published {fresh} new journey version(s) to {topic}", err=True)


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per version.")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Published journeys: id, version, status (active, or superseded by a newer version)."""
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    topic = TopicNames(conf.topic_prefix).journeys
    catalogue = Catalogue.of(_compile_published(_read_published(conf.kafka_bootstrap, topic)))
    active = {(j.id, j.version) for j in catalogue.active()}
    for jid, versions in sorted(catalogue.versions.items()):
        for version, journey in sorted(versions.items(), reverse=True):
            status = "active" if (jid, version) in active else "superseded"
            moves_to = [j.version for j, _ in catalogue.migrations_from(jid, version)]
            row = {
                "id": jid,
                "version": version,
                "status": status,
                "description": journey.definition.description,
                "migrate": [_rule_json(rule) for rule in journey.definition.migrate],
                "migrates_to": moves_to,
            }
            if as_json:
                typer.echo(json.dumps(row))
                continue
            typer.echo(f"{jid:<28} v{version:<4} {status:<11} {row['description']}")
            if journey.definition.migrate:
                typer.echo(f"{'':<41}{_migrates_in(journey)}")
            if moves_to:
                to = ", ".join(f"v{v}" for v in moves_to)
                typer.echo(f"{'':<41}customers in flight here move to {to} where its rules say (see there)")


def _rule_json(rule: Migration) -> dict[str, object]:
    return {"from": rule.from_, "steps": dict(rule.steps), "otherwise": rule.otherwise}


def _migrates_in(journey: Compiled) -> str:
    """One line per journey: which versions its rules take customers from, and how."""
    parts = []
    for rule in journey.definition.migrate:
        source = "every older version" if rule.from_ == "all" else ", ".join(f"v{v}" for v in rule.from_)
        steps = ", ".join(f"{old} -> {new}" for old, new in rule.steps.items()) or "no steps mapped"
        others = "other steps exit" if rule.otherwise == "exit" else "other steps stay"
        parts.append(f"from {source}: {steps}; {others}")
    return "migrates customers in flight " + " | ".join(parts)


def _check_against_published(journeys: list[Compiled], published: dict[str, str]) -> None:
    """Migration rules against the older versions in the folder and on the topic: refuse
    old steps that none of them has, or that are not waits; note versions nobody knows."""
    if not any(j.definition.migrate for j in journeys):
        return
    ids = {j.id for j in journeys}
    here = {(j.id, j.version) for j in journeys}
    mine = {key: text for key, text in published.items() if key.partition(":")[0] in ids}
    others = [j for j in _compile_published(mine) if (j.id, j.version) not in here]
    errors, notes = check_migrations(journeys, [*journeys, *others])
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if errors:
        for error in errors:
            typer.echo(str(error), err=True)
        raise CliError(f"{len(errors)} error(s) in migration rules; nothing was published")


def load_or_fail(folder: Path) -> list[Compiled]:
    """The folder's journeys; each error and warning printed as file:line, in file order; a
    CliError if there is any error (warnings alone refuse nothing)."""
    checked = check_dir(folder)
    for problem in sorted([*checked.errors, *checked.warnings], key=lambda p: (p.file, p.line)):
        typer.echo(str(problem), err=True)
    if checked.errors:
        raise CliError(f"{len(checked.errors)} error(s) in {folder}")
    if not checked.journeys:
        raise CliError(f"no journey files (*.yaml) in {folder}")
    return checked.journeys


def _read_published(bootstrap: str, topic: str) -> dict[str, str]:
    """The catalogue topic from start to end: ``{"id:version": yaml text}``."""
    client = consumer(bootstrap, auto_offset_reset="earliest")
    try:
        tp = TopicPartition(topic, 0)
        if client.partitions_for_topic(topic) is None:
            return {}
        client.assign([tp])
        client.seek_to_beginning(tp)
        end = client.end_offsets([tp])[tp]
        found: dict[str, str] = {}
        while client.position(tp) < end:
            for records in client.poll(timeout_ms=1000).values():
                for r in records:
                    if r.value is None:
                        found.pop(r.key.decode(), None)
                    else:
                        found[r.key.decode()] = r.value.decode()
        return found
    finally:
        client.close()


def _compile_published(published: dict[str, str]) -> list[Compiled]:
    compiled = []
    for key, text in published.items():
        try:
            compiled.append(compile_text(text, key))
        except InvalidJourney as exc:
            typer.echo(f"orchestrator: skipping unreadable published journey {key}: {exc}", err=True)
    return compiled
