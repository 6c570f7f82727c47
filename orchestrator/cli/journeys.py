"""``orchestrator journeys validate|publish|list|retire|reopen|remove``: the journey catalogue."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli.inside import counted_ago, coverage, inside_now, steps_line
from orchestrator.cli.options import Bootstrap, Prefix, RedisUrl, settings
from orchestrator.errors import CliError
from orchestrator.journeys.catalogue import Catalogue, parse_key, record_key
from orchestrator.journeys.inside import Inside
from orchestrator.journeys.loader import Compiled, InvalidJourney, check_dir, check_migrations
from orchestrator.journeys.model import Migration
from orchestrator.kafka.catalogue_topic import read_published, write_one, write_record
from orchestrator.kafka.clients import COMPACTED, ensure_topics, producer
from orchestrator.topics import TopicNames

app = typer.Typer(help="Validate, publish, list, retire, reopen and remove journeys.", no_args_is_help=True)
Folder = Annotated[Path, typer.Argument(help="Folder of journey YAML files.")]
JourneyId = Annotated[str, typer.Argument(help="The journey's id.", show_default=False)]
# A string, not an int: a bad one is then one line of ours, not a usage box.
Version = Annotated[str, typer.Argument(help="The version's number, as in 'list' (2 for v2).", show_default=False)]


@app.command()
def validate(folder: Folder) -> None:
    """Check every journey file; print each error as file:line: message (exit 1 on any), and
    each warning as file:line: warning: message (warnings alone still exit 0)."""
    journeys = load_or_fail(folder)
    for note in check_migrations(journeys, journeys)[1]:  # its errors are load_or_fail's already
        typer.echo(f"note: {note}", err=True)
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
    the versions in the folder and those already published. A new version of a
    retired journey reopens it.
    """
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    journeys = load_or_fail(folder)
    topic = TopicNames(conf.topic_prefix).journeys
    ensure_topics(conf.kafka_bootstrap, [topic], 1, COMPACTED, conf.replication_factor)
    published = read_published(conf.kafka_bootstrap, topic)
    _check_against_published(journeys, published)
    _refuse_changed_content(journeys, published)
    retired = {parsed[0] for parsed in map(parse_key, published) if parsed and parsed[1] is None}
    client = producer(conf.kafka_bootstrap)
    fresh = 0
    try:
        for journey in journeys:
            key = record_key(journey.id, journey.version)
            if key in published:  # the same content: _refuse_changed_content let nothing else through
                typer.echo(f"same  {journey.id} v{journey.version}")
                continue
            if journey.id in retired:  # the marker's tombstone first: one partition keeps them in order
                write_record(client, topic, record_key(journey.id), None)
                retired.discard(journey.id)
                typer.echo(f"reopen {journey.id}")
            client.send(topic, key=key.encode(), value=journey.source.encode())
            typer.echo(f"new   {journey.id} v{journey.version}")
            fresh += 1
        client.flush(timeout=30)
    finally:
        client.close()
    for jid in sorted(retired & {j.id for j in journeys}):
        typer.echo(
            f"note: {jid} stays retired; publish a new version or run 'orchestrator journeys reopen {jid}'", err=True
        )
    typer.echo(f"published {fresh} new journey version(s) to {topic}", err=True)


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per version.")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    redis_url: RedisUrl = None,
) -> None:
    """Published journeys: id, version, status (active, superseded, or retired: every version of a retired one),
    and how many customers are inside each version now, by step.

    A retired one shows the time its marker gives, so nobody has to read the topic to learn since when.

    The customers inside are counted exactly by the workers, which write the figures to Redis every few
    seconds; a version with customers inside that is not on the topic (a worker's own journeys folder,
    or a removed version whose customers have not left yet) is listed as unpublished.
    """
    _, _, records, catalogue = _published_catalogue(bootstrap, prefix)
    inside = inside_now(redis_url, prefix)
    elsewhere = _unpublished(catalogue, inside)
    for jid in sorted(catalogue.versions.keys() | catalogue.unloadable.keys() | elsewhere.keys()):
        versions = catalogue.versions.get(jid, {}).keys() | catalogue.unloadable.get(jid, {}).keys()
        since = marker_time(records.get(record_key(jid))) if jid in catalogue.retired else None
        for version in sorted(versions | elsewhere.get(jid, set()), reverse=True):
            _show(_row(catalogue, jid, version, since), inside, as_json)
    if inside is not None:
        typer.echo(coverage(inside, time.time()), err=True)


def _row(catalogue: Catalogue, jid: str, version: int, since: str | None) -> dict[str, Any]:
    if version in (unloadable := catalogue.unloadable.get(jid, {})):
        return _unloadable_row(jid, version, unloadable[version], since)
    journey = catalogue.versions.get(jid, {}).get(version)
    if journey is None:
        return _unpublished_row(jid, version)
    active = any(j.version == version for j in catalogue.active() if j.id == jid)
    status = "retired" if jid in catalogue.retired else "active" if active else "superseded"
    return _version_row(catalogue, journey, status, since)


def _unpublished(catalogue: Catalogue, inside: Inside | None) -> dict[str, set[int]]:
    """Versions with customers inside that the topic does not hold."""
    found: dict[str, set[int]] = {}
    if inside is None:
        return found
    for jid, version in inside.steps:
        published = version in catalogue.versions.get(jid, {}) or version in catalogue.unloadable.get(jid, {})
        if not published and inside.customers(jid, version):
            found.setdefault(jid, set()).add(version)
    return found


def _show(row: dict[str, Any], inside: Inside | None, as_json: bool) -> None:
    """A version's row with its customers inside: a JSON object, or its text lines."""
    jid, version, text = row["id"], row["version"], row.pop("text")
    if as_json:
        steps = dict(sorted(inside.steps.get((jid, version), {}).items())) if inside is not None else None
        total = inside.customers(jid, version) if inside is not None else None
        typer.echo(json.dumps(row | {"inside": total, "inside_by_step": steps}))
        return
    for line in text:
        typer.echo(line)
    if inside is not None and (where := steps_line(inside, jid, version)):
        typer.echo(f"{'':<41}{where}")


def _version_row(catalogue: Catalogue, journey: Compiled, status: str, since: str | None) -> dict[str, Any]:
    """A published version's JSON row, and under ``text`` its lines in the listing."""
    moves_to = [j.version for j, _ in catalogue.migrations_from(journey.id, journey.version)]
    row: dict[str, Any] = {
        "id": journey.id,
        "version": journey.version,
        "status": status,
        "retired_at": since,
        "description": journey.definition.description,
        "migrate": [_rule_json(rule) for rule in journey.definition.migrate],
        "migrates_to": moves_to,
    }
    shown = f"{status} {since}" if since else status
    text = [f"{journey.id:<28} v{journey.version:<4} {shown:<11} {row['description']}"]
    if journey.definition.migrate:
        text.append(f"{'':<41}{_migrates_in(journey)}")
    if moves_to:
        to = ", ".join(f"v{v}" for v in moves_to)
        text.append(f"{'':<41}customers in flight here move to {to} where its rules say (see there)")
    return row | {"text": text}


def _unloadable_row(jid: str, version: int, reason: str, since: str | None) -> dict[str, Any]:
    """A published version this release cannot load: workers of this release keep its customers
    waiting and let nobody new into the journey (see orchestrator.journeys.catalogue)."""
    row = {"id": jid, "version": version, "status": "unloadable", "retired_at": since, "error": reason}
    row |= {"description": None, "migrate": [], "migrates_to": []}
    return row | {"text": [f"{jid:<28} v{version:<4} {'unloadable':<11} this release cannot load it: {reason}"]}


def _unpublished_row(jid: str, version: int) -> dict[str, Any]:
    """Customers are inside a version the topic does not hold: workers loaded it from their own
    folder (``ORCH_JOURNEYS_DIR``), or it was removed and they leave at their next event or wake."""
    row = {"id": jid, "version": version, "status": "unpublished", "retired_at": None, "description": None}
    row |= {"migrate": [], "migrates_to": []}
    why = "not on the catalogue topic: a worker's own journeys folder, or removed (they leave at next event or wake)"
    return row | {"text": [f"{jid:<28} v{version:<4} {'unpublished':<11} {why}"]}


@app.command()
def retire(journey_id: JourneyId, bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Retire a journey: nobody new enters; customers inside finish the version they are on.

    Writes the marker ID:retired, which compaction keeps, to the catalogue topic.

    Publishing a new version, or 'orchestrator journeys reopen ID', opens it again.
    """
    servers, topic, _, catalogue = _published_catalogue(bootstrap, prefix)
    versions = sorted(catalogue.versions.get(journey_id, {}))
    if not versions:
        raise CliError(f"{journey_id} is not published on {topic}; nothing to retire")
    if journey_id in catalogue.retired:
        raise CliError(f"{journey_id} is already retired; 'orchestrator journeys reopen {journey_id}' opens it again")
    marker = json.dumps({"retired_at": datetime.now(UTC).isoformat(timespec="seconds")})
    write_one(servers, topic, record_key(journey_id), marker.encode())
    typer.echo(f"retired {journey_id} (v{', v'.join(map(str, versions))}): nobody new enters; customers inside finish")


@app.command()
def reopen(journey_id: JourneyId, bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Reopen a retired journey without a new version: newcomers enter its newest version again."""
    servers, topic, _, catalogue = _published_catalogue(bootstrap, prefix)
    if journey_id not in catalogue.retired:
        published = journey_id in catalogue.versions
        raise CliError(f"{journey_id} is not retired" if published else f"{journey_id} is not published on {topic}")
    write_one(servers, topic, record_key(journey_id), None)
    versions = catalogue.versions.get(journey_id)
    where = f"newcomers enter v{max(versions)} again" if versions else "no version is published"
    typer.echo(f"reopened {journey_id}: {where}")


@app.command()
def remove(
    journey_id: JourneyId,
    version: Version,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    redis_url: RedisUrl = None,
) -> None:
    """Remove one version: newcomers enter the newest one left; customers inside it move or leave the journey.

    Writes the tombstone for ID:VERSION to the catalogue topic, so compaction drops the version for good.

    Unlike retiring, which lets them finish, it ends the customers inside: for a version that must not run on.

    They leave at their next event or timer wake (reason version_removed) unless a migration rule takes them.

    Removing the last version removes the journey: nobody new enters.
    """
    number = _version_number(version)
    servers, topic, records, catalogue = _published_catalogue(bootstrap, prefix)
    on_topic = _versions_on_topic(records, journey_id)
    if not on_topic:
        raise CliError(f"{journey_id} is not published on {topic}; nothing to remove")
    keys = [key for key, v in on_topic.items() if v == number]
    if not keys:
        published = ", ".join(f"v{v}" for v in sorted(set(on_topic.values())))
        raise CliError(f"{journey_id} has no version {number} on {topic}; published: {published}")
    inside = inside_now(redis_url, prefix)
    for key in keys:  # one, unless a key was written by hand as 'id:02'
        write_one(servers, topic, key, None)
    typer.echo(removal_note(catalogue, journey_id, number))
    if inside is not None:
        count, now = inside.customers(journey_id, number), time.time()
        when = counted_ago(inside, now)
        typer.echo(f"{count:,} customer(s) were inside v{number} as the workers counted them {when} ago")
        typer.echo(coverage(inside, now), err=True)  # which partitions that leaves out, if any


def marker_time(marker: str | None) -> str | None:
    """The ISO time a retirement marker gives, as written; None if it gives none: workers only
    look at the marker's key, so an old or hand-written one may hold anything."""
    try:
        when = json.loads(marker or "")["retired_at"]
        datetime.fromisoformat(when)
    except (TypeError, ValueError, KeyError):
        return None
    return str(when)


def removal_note(catalogue: Catalogue, journey_id: str, version: int) -> str:
    """What removing ``version`` does, read off the catalogue from before: whom newcomers enter,
    and what the engine does with the customers inside, so nobody learns it from the exits."""
    left = sorted(set(catalogue.versions.get(journey_id, {})) - {version})
    if not left:
        newcomers = "its last version: the journey is gone entirely, no newcomers"
    elif journey_id in catalogue.retired:
        newcomers = f"still retired, no newcomers (v{', v'.join(map(str, left))} left)"
    else:
        newcomers = f"newcomers enter v{left[-1]}"
    inside = _removed_customers(catalogue, journey_id, version)
    return f"removed {journey_id} v{version}, {newcomers}; customers inside v{version} {inside}"


def _removed_customers(catalogue: Catalogue, journey_id: str, version: int) -> str:
    """The engine's treatment of customers on a removed version, when it next looks at them: a
    newer version's migration rule moves them, or ends them (reason migration) if it says
    ``otherwise: exit``; the rest leave (reason version_removed)."""
    when = "at their next event or timer wake"
    rules = catalogue.migrations_from(journey_id, version)
    if not rules:
        return f"leave the journey {when} (reason version_removed)"
    targets = ", ".join(f"v{j.version}" for j, _ in rules)
    reason = "migration" if any(rule.otherwise == "exit" for _, rule in rules) else "version_removed"
    return f"move {when} where a migration rule ({targets}) maps their step; the others leave (reason {reason})"


def _version_number(text: str) -> int:
    """VERSION as a number, read as a catalogue key's version is: ASCII digits only."""
    if not (text.isascii() and text.isdigit()):
        raise CliError(f"VERSION is a whole number as in 'list' (2 for v2), not {text!r}")
    return int(text)


def _versions_on_topic(records: dict[str, str], journey_id: str) -> dict[str, int]:
    """``{key: version}`` of the journey's versions on the topic, also those workers skip as
    unreadable: removing such a record is how to be rid of it."""
    parsed = {key: parse_key(key) for key in records}
    return {key: p[1] for key, p in parsed.items() if p and p[0] == journey_id and p[1] is not None}


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
    mine = {key: text for key, text in published.items() if key.rpartition(":")[0] in ids}
    known = _catalogue(mine).versions.values()
    others = [j for by_version in known for j in by_version.values() if (j.id, j.version) not in here]
    errors, notes = check_migrations(journeys, [*journeys, *others])
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if errors:
        for error in errors:
            typer.echo(str(error), err=True)
        raise CliError(f"{len(errors)} error(s) in migration rules; nothing was published")


def _refuse_changed_content(journeys: list[Compiled], published: dict[str, str]) -> None:
    """A published version is immutable: refuse the whole folder, each such version on its own
    line, before anything is written, so a refused publish leaves no new journey live beside it."""
    changed = [j for j in journeys if published.get(record_key(j.id, j.version), j.source) != j.source]
    for journey in changed:
        key = record_key(journey.id, journey.version)
        typer.echo(f"{journey.origin}: {key} is already published with other content; raise its version", err=True)
    if changed:
        raise CliError(f"{len(changed)} journey version(s) already published with other content; nothing was published")


def load_or_fail(folder: Path) -> list[Compiled]:
    """The folder's journeys; each error and warning printed as file:line, in file order; a
    CliError if there is any error (warnings alone refuse nothing). A folder: checks such as
    a migration's older versions look across files, so one file alone is not checked."""
    if folder.is_file():
        raise CliError(f"{folder} is a file, not a folder: give the folder of journey files that holds it")
    if not folder.is_dir():
        raise CliError(f"no such folder: {folder}")
    checked = check_dir(folder)
    for problem in sorted([*checked.errors, *checked.warnings], key=lambda p: (p.file, p.line)):
        typer.echo(str(problem), err=True)
    if checked.errors:
        raise CliError(f"{len(checked.errors)} error(s) in {folder}")
    if not checked.journeys:
        raise CliError(f"no journey files (*.yaml) in {folder}")
    return checked.journeys


def _published_catalogue(bootstrap: str | None, prefix: str | None) -> tuple[str, str, dict[str, str], Catalogue]:
    """``(bootstrap servers, catalogue topic, its records as read_published gives them, the catalogue on it)``."""
    conf = settings(kafka_bootstrap=bootstrap, topic_prefix=prefix)
    topic = TopicNames(conf.topic_prefix).journeys
    records = read_published(conf.kafka_bootstrap, topic)
    return conf.kafka_bootstrap, topic, records, _catalogue(records)


def _catalogue(published: dict[str, str]) -> Catalogue:
    """The catalogue a worker builds from these records; unreadable ones are noted and skipped."""
    catalogue = Catalogue()
    for key, text in published.items():
        try:
            catalogue.apply(key, text)
        except InvalidJourney as exc:
            typer.echo(f"orchestrator: this release cannot load published {key}: {exc}", err=True)
        except ValueError as exc:
            typer.echo(f"orchestrator: skipping unreadable published record {key}: {exc}", err=True)
    return catalogue
