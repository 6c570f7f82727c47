"""Retiring, reopening and removing journeys through the real broker and a real worker."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.kafka.clients import list_topics, producer
from orchestrator.kafka.tail import Record, follow
from orchestrator.topics import TopicNames
from tests.integration.conftest import BOOTSTRAP, REDIS_URL, running_worker
from tests.integration.harness import WorkerProcess, cli_env, event
from tests.integration.test_cli import run

WAIT_S = 10  # long enough to retire the journey while a customer waits in it, on a busy machine

SUNSET = f"""
id: sunset
version: 1
description: Browsed - a last nudge, from a journey on its way out
trigger:
  event: product_view
reentry: always
steps:
  - wait: {WAIT_S}s
  - action: {{channel: email, action: sunset_nudge, payload: {{product: '{{{{ trigger.properties.product }}}}'}}}}
"""

BEACON = """
id: beacon
version: {version}
description: Signed up - a hello at once (and a sign that the records before it are applied)
trigger:
  event: signup
reentry: always
steps:
  - action: {{channel: email, action: beacon_v{version}}}
"""

FLEETING = """
id: fleeting
version: 1
description: Searched - a long wait nobody finishes
trigger:
  event: search
steps:
  - wait: 1h
  - action: {channel: email, action: fleeting}
"""


@pytest.fixture(scope="module")
def journey_worker(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker that runs journeys only (no built-in rules), with a fast timer."""
    with running_worker(prefix, tmp_path_factory.mktemp("rworker"), ORCH_RULES="", ORCH_TIMER_INTERVAL_S="0.1") as w:
        yield w


def cli(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run("journeys", *args, env=cli_env(prefix, BOOTSTRAP, REDIS_URL))


def ok(prefix: str, *args: str) -> str:
    result = cli(prefix, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(prefix: str, *args: str) -> str:
    """The one-line error of a command that must fail."""
    result = cli(prefix, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def publish(prefix: str, folder: Path, **files: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    result = cli(prefix, "publish", str(folder))
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def until(what: str, holds: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not holds():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def loaded(worker: WorkerProcess) -> float:
    return worker.metric("orchestrator_journeys_loaded")


def entries(worker: WorkerProcess, journey: str) -> float:
    return worker.metric("orchestrator_journey_entries_total", journey=journey, version="1")


def statuses(prefix: str) -> dict[tuple[str, int], str]:
    """``journeys list --json``: (id, version) -> status; the text listing must agree."""
    return {key: status for key, (status, _) in listed(prefix).items()}


def listed(prefix: str) -> dict[tuple[str, int], tuple[str, str | None]]:
    """``journeys list --json``: (id, version) -> (status, retired_at); the text listing must agree."""
    rows = [json.loads(line) for line in ok(prefix, "list", "--json").splitlines()]
    found = {(row["id"], row["version"]): (row["status"], row["retired_at"]) for row in rows}
    text = ok(prefix, "list")
    for (jid, version), (status, since) in found.items():
        shown = f"{status} {since}" if since else status
        assert re.search(rf"^{jid} +v{version} +{re.escape(shown)} ", text, re.MULTILINE), text
    return found


def inside(prefix: str, journey: str, version: int) -> dict[str, int] | None:
    """``journeys list --json``: the version's customers inside by step, as the workers last counted them."""
    rows = [json.loads(line) for line in ok(prefix, "list", "--json").splitlines()]
    found = [row for row in rows if (row["id"], row["version"]) == (journey, version)]
    return found[0]["inside_by_step"] if found else None


def catalogue_records(prefix: str, count: int) -> list[Record]:
    topic = TopicNames(prefix).journeys
    records = []
    for record in follow(BOOTSTRAP, f"^{re.escape(topic)}$", from_beginning=True, deadline=time.monotonic() + 15):
        records.append(record)
        if len(records) == count:
            break
    return records


# --- a worker --------------------------------------------------------------------------------------------


def test_a_retired_journey_admits_nobody_new_while_a_customer_inside_still_gets_the_action(
    journey_worker: WorkerProcess, tmp_path: Path
) -> None:
    prefix = journey_worker.prefix
    publish(prefix, tmp_path / "sunset", sunset=SUNSET)
    until("the worker never loaded sunset", lambda: loaded(journey_worker) >= 1)
    entered_at = time.time()
    journey_worker.publish("web", event("a-1", "product_view", "ann", product="sku-lamp"))
    until("ann never entered sunset", lambda: entries(journey_worker, "sunset") >= 1)

    assert ok(prefix, "retire", "sunset").startswith("retired sunset (v1)")
    publish(prefix, tmp_path / "beacon1", beacon=BEACON.format(version=1))  # after the marker on the topic
    until("the worker never loaded beacon", lambda: loaded(journey_worker) >= 2)
    assert time.time() < entered_at + WAIT_S, "too slow: ann's wait was over before the retirement"
    journey_worker.publish(
        "web", event("b-1", "product_view", "bob", product="sku-tent"), event("b-2", "signup", "bob")
    )

    [bobs] = journey_worker.commands(1, customer="bob", timeout=20)  # after his product_view was decided
    [anns] = journey_worker.commands(1, customer="ann", timeout=WAIT_S + 20)

    assert bobs["action"] == "beacon_v1"
    assert entries(journey_worker, "sunset") == 1, "bob entered the retired journey"
    assert anns["action"] == "sunset_nudge" and anns["payload"] == {"product": "sku-lamp"}
    assert anns["issued_at"] >= entered_at + WAIT_S


def test_a_version_this_release_cannot_load_is_counted_listed_and_keeps_its_journey_closed(
    journey_worker: WorkerProcess, prefix: str
) -> None:
    """As when a newer release publishes a kind of step this one does not know (see the unit tests
    for what happens to the customers inside)."""
    future = BEACON.format(version=1).replace("beacon", "oracle") + "  - poll: {channel: app}\n"
    topic = TopicNames(prefix).journeys
    client = producer(BOOTSTRAP)
    client.send(topic, key=b"oracle:1", value=future.encode()).get(timeout=30)

    until("the worker counts it", lambda: journey_worker.metric("orchestrator_journeys_unloadable") == 1)
    assert statuses(prefix)[("oracle", 1)] == "unloadable"
    [row] = [json.loads(line) for line in ok(prefix, "list", "--json").splitlines() if '"oracle"' in line]
    assert "poll" in row["error"], row

    client.send(topic, key=b"oracle:1", value=None).get(timeout=30)
    client.close()
    until("the tombstone ends it", lambda: journey_worker.metric("orchestrator_journeys_unloadable") == 0)
    assert ("oracle", 1) not in statuses(prefix)


def test_a_reopened_journey_takes_newcomers_again(journey_worker: WorkerProcess, tmp_path: Path) -> None:
    prefix = journey_worker.prefix
    before = loaded(journey_worker)

    assert ok(prefix, "reopen", "sunset") == "reopened sunset: newcomers enter v1 again\n"
    publish(prefix, tmp_path / "beacon2", beacon=BEACON.format(version=2))
    until("the worker never loaded beacon v2", lambda: loaded(journey_worker) >= before + 1)
    journey_worker.publish("web", event("c-1", "product_view", "cy", product="sku-mug"))

    until("cy never entered the reopened journey", lambda: entries(journey_worker, "sunset") >= 2)


def test_remove_takes_a_version_away_and_its_customers_leave(journey_worker: WorkerProcess, tmp_path: Path) -> None:
    prefix = journey_worker.prefix
    before = loaded(journey_worker)
    publish(prefix, tmp_path / "fleeting", fleeting=FLEETING)
    until("the worker never loaded fleeting", lambda: loaded(journey_worker) >= before + 1)
    journey_worker.publish("web", event("d-1", "search", "dee", query="q"))
    until("dee never entered fleeting", lambda: entries(journey_worker, "fleeting") >= 1)
    until("list never showed dee inside fleeting", lambda: inside(prefix, "fleeting", 1) == {"step1": 1})
    assert re.search(r"^fleeting +v1 +active .*\n +1 customer inside now: step1 1$", ok(prefix, "list"), re.M)

    removal = ok(prefix, "remove", "fleeting", "1")
    assert removal.startswith("removed fleeting v1, its last version: the journey")
    assert "\n1 customer(s) were inside v1 as the workers counted them " in removal
    until("the worker never removed fleeting v1", lambda: loaded(journey_worker) == before)
    assert statuses(prefix)[("fleeting", 1)] == "unpublished", "dee is still inside: listed until dee leaves"
    journey_worker.publish("web", event("d-2", "page_view", "dee"))

    removed = {"journey": "fleeting", "version": "1", "reason": "version_removed"}
    until(
        "dee never left the removed version",
        lambda: journey_worker.metric("orchestrator_journey_exits_total", **removed) == 1,
    )
    # JSON alone while the figures change: statuses() also compares a text listing made a moment later
    until("list still shows the removed version", lambda: inside(prefix, "fleeting", 1) is None)
    assert "fleeting" not in {jid for jid, _ in statuses(prefix)}
    assert "retired" not in statuses(prefix).values(), "removing a version retires nothing"


# --- the command line -------------------------------------------------------------------------------------


def test_retire_list_reopen_and_publish_round_trip(prefix: str, tmp_path: Path) -> None:
    own = prefix + "cli."  # a catalogue of its own, removed with the module's prefix
    v1, v2, v3 = (BEACON.format(version=v) for v in (1, 2, 3))

    assert "beacon is not published" in refused(own, "retire", "beacon")
    assert ok(own, "list") == ""
    assert TopicNames(own).journeys not in list_topics(BOOTSTRAP), "reading must not create it (4 partitions)"
    publish(own, tmp_path / "two", beacon_v1=v1, beacon_v2=v2)
    assert statuses(own) == {("beacon", 2): "active", ("beacon", 1): "superseded"}
    assert "customers inside not shown: no worker has counted them yet" in cli(own, "list").stderr
    no_redis = run("journeys", "list", "--json", env=cli_env(own, BOOTSTRAP, "redis://127.0.0.1:1/0"))
    assert no_redis.returncode == 0, no_redis.stderr
    assert no_redis.stderr.startswith("note: customers inside not shown: cannot reach Redis at redis://127.0.0.1:1/0")
    assert [json.loads(line)["inside"] for line in no_redis.stdout.splitlines()] == [None, None]
    assert "beacon is not retired" in refused(own, "reopen", "beacon")

    assert ok(own, "retire", "beacon") == "retired beacon (v1, v2): nobody new enters; customers inside finish\n"
    assert "beacon is already retired" in refused(own, "retire", "beacon")
    assert statuses(own) == {("beacon", 2): "retired", ("beacon", 1): "retired"}
    assert "beacon stays retired" in publish(own, tmp_path / "two")  # nothing new: still retired
    assert statuses(own) == {("beacon", 2): "retired", ("beacon", 1): "retired"}

    assert ok(own, "reopen", "beacon") == "reopened beacon: newcomers enter v2 again\n"
    assert statuses(own) == {("beacon", 2): "active", ("beacon", 1): "superseded"}

    ok(own, "retire", "beacon")
    out = publish(own, tmp_path / "three", beacon_v3=v3)
    assert "reopen beacon\nnew   beacon v3\n" in out
    assert statuses(own) == {("beacon", 3): "active", ("beacon", 2): "superseded", ("beacon", 1): "superseded"}

    records = [(r.key, r.value) for r in catalogue_records(own, 7)]
    assert [key for key, _ in records] == [
        b"beacon:1",
        b"beacon:2",
        b"beacon:retired",
        b"beacon:retired",  # reopen: the tombstone
        b"beacon:retired",
        b"beacon:retired",  # publish of v3: the tombstone first
        b"beacon:3",
    ]
    marker = json.loads(records[2][1] or b"")
    assert list(marker) == ["retired_at"] and marker["retired_at"].endswith("+00:00")
    assert [value is None for _, value in records[3:6]] == [True, False, True]


def test_publish_refuses_changed_content_before_writing_anything(prefix: str, tmp_path: Path) -> None:
    """A refused publish is all or nothing: the new journey beside the changed versions stays unpublished."""
    own = prefix + "changed."
    v1, v2 = (BEACON.format(version=v) for v in (1, 2))
    publish(own, tmp_path / "two", beacon_v1=v1, beacon_v2=v2)
    folder = tmp_path / "changed"
    folder.mkdir()
    (folder / "aaa_new.yaml").write_text(v1.replace("id: beacon", "id: aaa_new"))
    for name, text in {"beacon_v1": v1, "beacon_v2": v2}.items():
        (folder / f"{name}.yaml").write_text(text.replace("a hello at once", "a hello, changed"))

    result = cli(own, "publish", str(folder))

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{folder / 'beacon_v1.yaml'}: beacon:1 is already published with other content; raise its version",
        f"{folder / 'beacon_v2.yaml'}: beacon:2 is already published with other content; raise its version",
        "orchestrator: error: 2 journey version(s) already published with other content; nothing was published",
    ]
    assert statuses(own) == {("beacon", 2): "active", ("beacon", 1): "superseded"}
    assert "same  beacon v1" in publish(own, tmp_path / "two"), "the same content is no conflict"


def test_list_shows_since_when_a_journey_is_retired(prefix: str, tmp_path: Path) -> None:
    own = prefix + "since."
    publish(own, tmp_path / "one", beacon=BEACON.format(version=1))
    before = datetime.now(UTC).replace(microsecond=0)

    ok(own, "retire", "beacon")

    [(status, since)] = listed(own).values()  # the text listing shows it too: "retired <time>"
    assert status == "retired" and since is not None
    assert before <= datetime.fromisoformat(since) <= datetime.now(UTC)
    client = producer(BOOTSTRAP)  # a marker written by hand, with no time in it
    client.send(TopicNames(own).journeys, key=b"beacon:retired", value=b"retired by hand").get(timeout=30)
    client.close()
    assert listed(own) == {("beacon", 1): ("retired", None)}
    ok(own, "reopen", "beacon")
    assert listed(own) == {("beacon", 1): ("active", None)}


def test_remove_takes_one_version_away_and_says_what_that_means(prefix: str, tmp_path: Path) -> None:
    own = prefix + "remove."
    inside = "customers inside v{} leave the journey at their next event or timer wake (reason version_removed)"

    assert "beacon is not published" in refused(own, "remove", "beacon", "1")
    publish(own, tmp_path / "two", beacon_v1=BEACON.format(version=1), beacon_v2=BEACON.format(version=2))
    assert "VERSION is a whole number as in 'list' (2 for v2), not 'v2'" in refused(own, "remove", "beacon", "v2")
    assert "beacon has no version 3 on" in refused(own, "remove", "beacon", "3")
    assert "; published: v1, v2\n" in refused(own, "remove", "beacon", "3")
    assert "nobody is not published" in refused(own, "remove", "nobody", "1")

    assert ok(own, "remove", "beacon", "2") == f"removed beacon v2, newcomers enter v1; {inside.format(2)}\n"
    assert statuses(own) == {("beacon", 1): "active"}
    assert refused(own, "remove", "beacon", "2").endswith("; published: v1\n")

    assert ok(own, "remove", "beacon", "1") == (
        f"removed beacon v1, its last version: the journey is gone entirely, no newcomers; {inside.format(1)}\n"
    )
    assert ok(own, "list") == ""
    assert "beacon is not published" in refused(own, "remove", "beacon", "1")
    records = [(r.key, r.value is None) for r in catalogue_records(own, 4)]
    assert records == [(b"beacon:1", False), (b"beacon:2", False), (b"beacon:2", True), (b"beacon:1", True)]
