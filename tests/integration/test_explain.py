"""``orchestrator explain``: decisions written to the real Redis by the writer, read back by the CLI.

Needs Redis only: this module replaces the package's Kafka-and-Redis check with a
Redis one, which still fails (never skips) when Redis is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.audit import decision_record
from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.state import CustomerState
from orchestrator.decisionlog import DecisionLogWriter, decisions_key, read_decisions
from orchestrator.identity.tokens import Hasher
from orchestrator.readmodel import ReadModelWriter, profile_key
from tests.integration.conftest import REDIS_URL
from tests.integration.harness import free_port

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")
HASH_KEY = "explain-test-key"


@pytest.fixture(scope="session", autouse=True)
def real_stack() -> None:
    """Redis only (overrides the package fixture that also wants Kafka); fail, never skip."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required for this test at {REDIS_URL}: {exc}; run 'make up'", pytrace=False)
    finally:
        client.close()


@pytest.fixture(scope="module")
def client(prefix: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    yield connection
    for key in connection.scan_iter(match=f"{prefix}*"):
        connection.delete(key)
    connection.close()


def story() -> list[dict[str, Any]]:
    """Three decisions for c-exp: an ad sent, an email opt-out, a purchase that stops the ad
    and whose upsell is held back for the opt-out."""
    steps = [
        ("w-1", "search", {"query": "tent"}),
        ("e-2", "consent", {"channel": "email", "granted": False}),
        ("s-3", "purchase", {"products": [{"id": "sku-1"}], "value": 89.0, "currency": "EUR"}),
    ]
    state: CustomerState | None = None
    records = []
    for i, (event_id, type, props) in enumerate(steps):
        event = Event(event_id, type, T0 + i, "c-exp", "web", T0 + i, "c-exp", properties=props)
        decision = decide(state, event, T0 + i)
        state = decision.state
        records.append(decision_record(event, decision, T0 + i))
    return records


def write(prefix: str, records: list[tuple[str, dict[str, Any]]], kept: int = 50) -> None:
    """Through the writer's own loop: stage, let it flush, stop it cleanly."""

    async def scenario() -> None:
        writer = DecisionLogWriter(REDIS_URL, prefix, kept=kept, interval_s=0.01)
        task = asyncio.create_task(writer.run())
        for customer_key, record in records:
            writer.stage(customer_key, record)
        for _ in range(500):
            await asyncio.sleep(0.01)
            if writer.pending == 0:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def explain(prefix: str, *args: str, redis_url: str = REDIS_URL, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    environment |= {"ORCH_REDIS_URL": redis_url, "ORCH_TOPIC_PREFIX": prefix, **env}
    return subprocess.run([ORCHESTRATOR, "explain", *args], capture_output=True, text=True, env=environment, timeout=60)


@pytest.fixture(scope="module")
def written(prefix: str, client: redis.Redis) -> list[dict[str, Any]]:
    records = story()
    write(prefix, [("c-exp", r) for r in records])
    return records


def test_the_writer_keeps_each_customer_s_newest_decisions_in_order(prefix: str, client: redis.Redis) -> None:
    write(prefix, [("c-trim", {"n": i}) for i in range(7)], kept=5)
    write(prefix, [("c-trim", {"n": 7})], kept=5)
    assert [r["n"] for r in read_decisions(REDIS_URL, prefix, "c-trim", limit=100)] == [3, 4, 5, 6, 7]
    assert [r["n"] for r in read_decisions(REDIS_URL, prefix, "c-trim", limit=2)] == [6, 7]
    assert client.llen(decisions_key(prefix, "c-trim")) == 5
    assert read_decisions(REDIS_URL, prefix, "nobody", limit=10) == []


def test_explain_prints_the_decisions_in_plain_language(prefix: str, written: list[dict[str, Any]]) -> None:
    result = explain(prefix, "c-exp")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2027-01-15 08:00:00 UTC  search on web (event w-1)",
        f"  sent remarketing_ad on ads: {written[0]['sent'][0]['reason']}",
        "2027-01-15 08:00:01 UTC  consent on web (event e-2)",
        "  nothing to send",
        "2027-01-15 08:00:02 UTC  purchase on web (event s-3)",
        "  sent remarketing_stop on ads: bought after remarketing for query:tent: stop those ads",
        "  held back upsell on email: the customer opted out of email",
    ]


def test_explain_shows_a_control_character_from_a_channel_escaped_so_each_line_is_its_own(prefix: str) -> None:
    event = Event("w-1\nFAKE\x1b[31m", "search", T0, "c-ctl", "web", T0, "c-ctl", properties={"query": "tent"})
    write(prefix, [("c-ctl", decision_record(event, decide(None, event, T0), T0))])

    result = explain(prefix, "c-ctl")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "2027-01-15 08:00:00 UTC  search on web (event w-1\\nFAKE\\x1b[31m)"
    assert "\x1b" not in result.stdout


def test_explain_json_gives_the_records_and_limit_keeps_the_newest(prefix: str, written: list[dict[str, Any]]) -> None:
    result = explain(prefix, "c-exp", "--json", "--limit", "2")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == written[1:]


def test_a_merged_profile_s_decisions_are_explained_in_the_order_they_were_decided(prefix: str) -> None:
    """The merged-away profile's list is appended to the survivor's whole: its oldest decision
    was printed last, after the survivor's newer ones, though ``--help`` says newest last."""

    def decided(at: float) -> dict[str, Any]:
        return {"event_ts": at, "decided_at": at, "event_type": "page_view", "channel": "web", "event_id": f"p-{at}"}

    async def scenario() -> None:
        writer = DecisionLogWriter(REDIS_URL, prefix, interval_s=0.01)
        for at in (T0 + 1, T0 + 3):
            writer.stage("c-survivor", decided(at))
        for at in (T0, T0 + 2):
            writer.stage("c-merged", decided(at))
        await writer.flush()
        writer.move("c-merged", "c-survivor")
        await stopped(writer)

    asyncio.run(scenario())
    every = explain(prefix, "c-survivor", "--json")
    newest = explain(prefix, "c-survivor", "--json", "--limit", "3")

    assert every.returncode == 0, every.stderr
    assert [r["decided_at"] for r in json.loads(every.stdout)] == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert [r["decided_at"] for r in json.loads(newest.stdout)] == [T0 + 1, T0 + 2, T0 + 3]


def test_an_event_decided_again_after_a_hand_over_is_explained_once(prefix: str) -> None:
    """The worker that takes a customer over decides again an event whose decision the one
    before it logged but had not committed: explain tells it once, as the later decision,
    the one the customer's state carries on from."""

    def decided(event_id: str, at: float, action: str) -> dict[str, Any]:
        return {
            "event_ts": T0,
            "decided_at": at,
            "event_type": "search",
            "channel": "web",
            "event_id": event_id,
            "sent": [{"action": action}],
        }

    write(
        prefix,
        [
            ("c-again", decided("h-1", T0, "first")),
            ("c-again", decided("h-2", T0 + 1, "next")),
            ("c-again", decided("h-1", T0 + 2, "again")),
        ],
    )
    result = explain(prefix, "c-again", "--json")

    assert result.returncode == 0, result.stderr
    assert [(r["event_id"], r["sent"]) for r in json.loads(result.stdout)] == [
        ("h-2", [{"action": "next"}]),
        ("h-1", [{"action": "again"}]),
    ]


def test_a_merge_keeps_the_newest_decisions_of_both_profiles_not_the_last_in_the_joined_list(
    prefix: str, client: redis.Redis
) -> None:
    """Three kept: the survivor decided at 1, 3 and 5, the merged-away profile at 0, 2 and 4
    (two of them also staged but not written when the merge came). Trimming the joined list by
    place kept the merged-away profile's three and none of the survivor's."""

    def decided(at: float) -> dict[str, Any]:
        return {"event_ts": at, "decided_at": at, "event_type": "page_view", "channel": "web", "event_id": f"k-{at}"}

    async def scenario() -> None:
        writer = DecisionLogWriter(REDIS_URL, prefix, kept=3, interval_s=0.01)
        for at in (T0 + 1, T0 + 3, T0 + 5):
            writer.stage("k-survivor", decided(at))
        writer.stage("k-merged", decided(T0))
        await writer.flush()
        for at in (T0 + 2, T0 + 4):
            writer.stage("k-merged", decided(at))
        writer.move("k-merged", "k-survivor")
        await stopped(writer)

    asyncio.run(scenario())

    stored = [json.loads(item)["decided_at"] for item in client.lrange(decisions_key(prefix, "k-survivor"), 0, -1)]
    assert stored == [T0 + 3, T0 + 4, T0 + 5]
    assert not client.exists(decisions_key(prefix, "k-merged"))


def test_explain_finds_a_customer_by_an_identifier_through_its_alias(
    prefix: str, client: redis.Redis, written: list[dict[str, Any]]
) -> None:
    client.set(f"{prefix}alias:email:ann@example.com", "c-exp")

    result = explain(prefix, "email:Ann@Example.COM", "--limit", "1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2027-01-15 08:00:02 UTC  purchase on web (event s-3)")


def test_explain_hashes_an_identifier_when_the_deployment_does(
    prefix: str, client: redis.Redis, written: list[dict[str, Any]]
) -> None:
    token = Hasher(key=HASH_KEY.encode()).token("phone", "+44 20 7946 0000")
    client.set(f"{prefix}alias:{token}", "c-exp")

    result = explain(prefix, "phone:+442079460000", "--json", ORCH_IDENTITY_HASH_KEY=HASH_KEY)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == written


def test_explain_takes_an_anonymous_profile_key_as_given(prefix: str) -> None:
    write(prefix, [("cookie:k-77", {"event_ts": T0, "event_type": "page_view", "channel": "web", "event_id": "p"})])

    result = explain(prefix, "cookie:k-77")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["2027-01-15 08:00:00 UTC  page_view on web (event p)", "  nothing to send"]


def test_explain_for_an_unknown_customer_is_one_line_and_exit_1(prefix: str) -> None:
    result = explain(prefix, "nobody")

    assert result.returncode == 1
    assert result.stderr == "orchestrator: error: no decisions recorded for 'nobody'\n"
    assert result.stdout == ""


def test_explain_for_an_unknown_id_with_a_colon_says_how_a_customer_id_is_written(prefix: str) -> None:
    """As 'orchestrator customer crm:77' does: bare, crm:77 is looked up as the identifier crm = 77."""
    result = explain(prefix, "crm:77")

    assert result.returncode == 1
    hint = "(if that is a customer id: customer_id:crm:77)"
    assert result.stderr == f"orchestrator: error: no decisions recorded for 'crm:77' {hint}\n"
    assert result.stdout == ""


def test_explain_without_redis_is_one_line_and_exit_2(prefix: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"

    result = explain(prefix, "c-exp", redis_url=dead)

    assert result.returncode == 2
    assert result.stderr.startswith("orchestrator: error: cannot reach Redis at ")
    assert result.stderr.count("\n") == 1


# -- an erasure waits until Redis has taken its deletes (agents.erasure.settle) ------------------


def test_an_erased_customer_s_decisions_and_profile_are_gone_once_the_writers_say_so(
    prefix: str, client: redis.Redis
) -> None:
    state = CustomerState(key="c-gone", customer_id="c-gone")

    async def scenario() -> tuple[bool, bool]:
        decisions = DecisionLogWriter(REDIS_URL, prefix, interval_s=0.01)
        profiles = ReadModelWriter(REDIS_URL, prefix, interval_s=0.01)
        decisions.stage("c-gone", story()[0])
        profiles.stage(state, T0, 0)
        await decisions.flush()
        await profiles.flush()
        decisions.forget(["c-gone"])
        profiles.forget(["c-gone"], [], 0)
        done = await decisions.written(), await profiles.written()
        await stopped(decisions, profiles)
        return done

    assert asyncio.run(scenario()) == (True, True)
    assert client.exists(decisions_key(prefix, "c-gone"), profile_key(prefix, "c-gone")) == 0


def test_while_redis_is_unreachable_the_writers_keep_an_erasure_s_deletes_and_say_so(prefix: str) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> tuple[bool, bool]:
        decisions = DecisionLogWriter(unreachable, prefix, interval_s=0.01)
        profiles = ReadModelWriter(unreachable, prefix, interval_s=0.01)
        decisions.forget(["c-gone"])
        profiles.forget(["c-gone"], [], 0)
        done = await decisions.written(), await profiles.written()
        again = await decisions.written(), await profiles.written()
        assert again == done  # kept, and tried again
        await stopped(decisions, profiles)
        return done

    assert asyncio.run(scenario()) == (False, False)


async def stopped(*writers: DecisionLogWriter | ReadModelWriter) -> None:
    """Run each writer's loop and stop it, as the worker does: a last flush, then close."""
    for writer in writers:
        task = asyncio.create_task(writer.run())
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
