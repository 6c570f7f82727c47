"""The seeds' two core stories, end to end through Kafka, a worker and Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.integration.harness import WorkerProcess, as_json, cli_env, event


def test_a_searcher_who_leaves_gets_a_remarketing_ad_with_an_incentive(worker: WorkerProcess) -> None:
    worker.publish("search", event("a-1", "search", "alice", query="Trail Running Shoes"))

    [command] = worker.commands(1, customer="alice")

    assert command["channel"] == "ads"
    assert command["action"] == "remarketing_ad"
    assert command["payload"]["query"] == "trail running shoes"
    assert command["payload"]["incentive"]["percent"] > 0
    assert "searched for 'trail running shoes'" in command["reason"]
    assert command["expires_at"] > command["issued_at"]


def test_a_buyer_gets_upsell_and_the_remarketing_for_what_they_bought_stops(worker: WorkerProcess) -> None:
    worker.publish("web", event("b-1", "product_view", "bob", product="sku-tent"))
    worker.publish(
        "store", event("b-2", "purchase", "bob", products=[{"id": "sku-tent", "price": 349}], value=349, currency="EUR")
    )
    worker.publish("web", event("b-3", "product_view", "bob", product="sku-tent"))
    worker.publish("web", event("b-4", "product_view", "bob", product="sku-lamp"))

    commands = worker.commands(4, customer="bob")

    by_action = {c["action"]: c for c in commands}
    assert [c["action"] for c in commands if c["channel"] == "ads"].count("remarketing_ad") == 2
    assert by_action["remarketing_stop"]["payload"]["subjects"] == ["product:sku-tent"]
    assert by_action["upsell"]["channel"] == "email"
    assert by_action["upsell"]["payload"]["purchased"] == ["sku-tent"]
    ads_after_purchase = [c["payload"].get("product") for c in commands if c["action"] == "remarketing_ad"]
    assert ads_after_purchase == ["sku-tent", "sku-lamp"], "the bought tent is never remarketed again"


def test_a_second_purchase_gets_retention_not_upsell(worker: WorkerProcess) -> None:
    worker.publish("web", event("r-1", "purchase", "rita", product="sku-socks", value=19))
    worker.publish("app", event("r-2", "purchase", "rita", product="sku-pack", value=89))

    actions = [c["action"] for c in worker.commands(2, customer="rita")]

    assert actions == ["upsell", "retention"]


def test_a_redelivered_event_is_processed_once(worker: WorkerProcess) -> None:
    twice = event("d-1", "search", "dora", query="headlamp")
    worker.publish("search", twice, twice)
    worker.publish("search", event("d-2", "search", "dora", query="tent"))

    # One customer's commands on one topic keep their order: a second headlamp
    # ad would arrive before the tent ad.
    commands = worker.commands(2, customer="dora")

    assert [c["payload"]["query"] for c in commands] == ["headlamp", "tent"]
    assert worker.metric("orchestrator_events_duplicate_total") >= 1


def test_an_opt_out_of_ads_is_respected(worker: WorkerProcess) -> None:
    # Same topic as the view: events on different topics may overtake each other.
    worker.publish("web", event("o-1", "consent", "olga", channel="ads", granted=False))
    worker.publish("web", event("o-2", "product_view", "olga", product="sku-jacket"))
    worker.publish("web", event("o-3", "purchase", "olga", product="sku-jacket", value=179))

    # The upsell is decided after the view, so by then the view's ad was held back.
    [command] = worker.commands(1, customer="olga")

    assert command["action"] == "upsell"
    assert (
        worker.metric(
            "orchestrator_commands_suppressed_total", channel="ads", action="remarketing_ad", reason="no_consent"
        )
        >= 1
    )


def test_kcat_can_publish_a_json_event_whose_command_arrives(worker: WorkerProcess) -> None:
    doc = event("k-1", "product_view", "kim", product="sku-boots")
    subprocess.run(
        ["kcat", "-b", worker.bootstrap, "-P", "-t", worker.names.events("web"), "-k", "kim"],
        input=as_json(doc).encode(),
        check=True,
        timeout=30,
    )

    [command] = worker.commands(1, customer="kim")

    assert command["action"] == "remarketing_ad"
    assert command["payload"]["product"] == "sku-boots"


def test_the_customer_command_reads_the_profile_from_redis(worker: WorkerProcess) -> None:
    worker.publish("web", event("c-1", "add_to_cart", "carl", product="sku-pack", price=89.0))
    worker.commands(1, customer="carl")
    profile = _wait_for_profile(worker, "carl", lambda p: p.get("cart"))

    assert profile["cart"] == {"sku-pack": {"qty": 1, "price": 89.0}}
    assert profile["stage"] == "engaged"
    assert profile["channel_counts"] == {"web": 1}
    assert "seen_ids" not in profile


def test_the_customer_command_says_so_for_an_unknown_customer(worker: WorkerProcess) -> None:
    result = _customer_cli(worker, "nobody-at-all")

    assert result.returncode == 1
    assert result.stderr.strip() == "orchestrator: error: no customer 'nobody-at-all' in the read model"


def _customer_cli(worker: WorkerProcess, customer: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "customer", customer],
        env=cli_env(worker.prefix, worker.bootstrap, worker.redis_url),
        capture_output=True,
        text=True,
        timeout=30,
    )


def _wait_for_profile(worker: WorkerProcess, customer: str, ready: object, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = _customer_cli(worker, customer)
        if result.returncode == 0:
            profile = json.loads(result.stdout)
            if callable(ready) and ready(profile):
                return profile
        if time.monotonic() > deadline:
            raise AssertionError(f"no profile for {customer}: {result.stderr}")
        time.sleep(0.2)
