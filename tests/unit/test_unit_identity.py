"""Identity resolution as pure functions: links, merges, races, conflicts, erasure."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from stories import T0, identified_event

from orchestrator.cli.erase import erase_request, routing_key
from orchestrator.core.decide import WAKE
from orchestrator.core.event import Event, customer_key
from orchestrator.core.policy import Policy
from orchestrator.core.state import MAX_IDENTIFIER_KINDS, MAX_KINDS, CustomerState
from orchestrator.identity import records
from orchestrator.identity.graph import ERASE, LINK, MAX_HOPS, MERGE_IN, Context, handle
from orchestrator.identity.local import LocalGraph
from orchestrator.identity.merge import merge_consent, merge_states, survivor_order
from orchestrator.identity.tokens import PLAIN, Hasher, tokens_of
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import compile_text, load_dir

_ids = itertools.count()


def ev(type: str, at: float = 0.0, customer_id: str | None = None, **ids: Any) -> Event:
    props = ids.pop("props", None)
    return identified_event(f"e-{next(_ids)}", type, at, customer_id, props, **ids)


@pytest.fixture
def graph() -> LocalGraph:
    return LocalGraph(Context(Policy(rules=frozenset()), engine=None))


def browse(graph: LocalGraph, n: int, start: float = 0.0, **ids: str) -> None:
    for i in range(n):
        graph.submit(ev("page_view", start + i, **ids), T0 + start + i)


def test_anonymous_browsing_then_login_merges_into_the_known_profile(graph: LocalGraph) -> None:
    browse(graph, 3, cookie="ck-1")
    graph.submit(ev("add_to_cart", 5, cookie="ck-1", props={"product": "p-1", "price": 10}), T0 + 5)
    graph.submit(ev("identify", 10, customer_id="c-1", cookie="ck-1"), T0 + 10)
    merged = graph.profile("c-1")
    assert merged is not None
    assert merged.events == 5
    assert merged.type_counts == {"page_view": 3, "add_to_cart": 1, "identify": 1}
    assert "p-1" in merged.cart
    assert merged.identifiers == {"cookie": "ck-1"}
    assert graph.record("cookie:ck-1") == records.Forward("c-1")
    assert "cookie:ck-1" in merged.aliases


def test_later_events_with_any_identifier_land_on_the_merged_profile(graph: LocalGraph) -> None:
    browse(graph, 2, cookie="ck-1")
    graph.submit(ev("identify", 3, customer_id="c-1", cookie="ck-1", email="a@x"), T0 + 3)
    browse(graph, 2, start=10, cookie="ck-1")
    browse(graph, 1, start=20, email="a@x")
    merged = graph.profile("c-1")
    assert merged is not None and merged.events == 6
    assert graph.record("email:a@x") == records.Forward("c-1")
    assert graph.profile("cookie:ck-1") is merged or graph.profile("cookie:ck-1") == merged


def test_an_identifier_seen_first_in_the_login_routes_later_events(graph: LocalGraph) -> None:
    graph.submit(ev("identify", 0, customer_id="c-1", device="d-9"), T0)
    browse(graph, 2, start=5, device="d-9")
    merged = graph.profile("c-1")
    assert merged is not None and merged.events == 3
    assert graph.table.get("device:d-9", b"").startswith(records.FORWARD)


def test_two_known_profiles_merge_into_the_older_and_keep_everything(graph: LocalGraph) -> None:
    graph.submit(ev("purchase", 0, customer_id="c-old", email="a@x", props={"value": 10.0}), T0)
    graph.submit(ev("purchase", 50, customer_id="c-new", props={"value": 5.0}), T0 + 50)
    graph.submit(ev("identify", 60, customer_id="c-new", email="a@x"), T0 + 60)
    survivor = graph.profile("c-new")
    assert survivor is not None and survivor.key == "c-old"
    assert survivor.purchases == 2 and survivor.revenue == 15.0
    assert survivor.events == 3
    assert graph.record("c-new") == records.Forward("c-old")


def test_events_racing_the_merge_are_forwarded_not_lost(graph: LocalGraph) -> None:
    browse(graph, 2, cookie="ck-1")
    graph.queue.append(ev("identify", 3, customer_id="c-1", cookie="ck-1"))
    graph.step(T0 + 3)  # identify decided at c-1; a link to cookie:ck-1 is queued
    graph.queue.append(ev("page_view", 4, cookie="ck-1"))  # in flight before the link arrives
    graph.step(T0 + 4)  # the link: cookie profile moves out and becomes a pointer
    graph.queue.append(ev("page_view", 5, cookie="ck-1"))  # arrives after the move, before merge-in
    graph.drain(T0 + 6)
    merged = graph.profile("c-1")
    assert merged is not None
    assert merged.events == 5  # 2 before, identify, 2 racing: none lost, none twice
    assert len({i for i in merged.seen_ids if not i.startswith(MERGE_IN)}) == 5  # and the hand-over's own id


def test_a_redelivered_event_after_a_merge_is_still_a_duplicate(graph: LocalGraph) -> None:
    first = ev("page_view", 0, cookie="ck-1")
    graph.submit(first, T0)
    graph.submit(ev("identify", 1, customer_id="c-1", cookie="ck-1"), T0 + 1)
    graph.submit(first, T0 + 2)  # at-least-once delivery sends it again to the old key
    merged = graph.profile("c-1")
    assert merged is not None and merged.events == 2


def test_only_identify_merges_existing_profiles(graph: LocalGraph) -> None:
    browse(graph, 2, cookie="shared")
    graph.submit(ev("page_view", 5, customer_id="c-1", cookie="shared"), T0 + 5)
    assert isinstance(graph.record("cookie:shared"), records.Profile)
    assert graph.profile("c-1").events == 1  # type: ignore[union-attr]
    counted = [effects.counted for _, effects in graph.seen]
    assert "conflict" in counted


def test_opt_out_wins_over_opt_in_in_a_merge(graph: LocalGraph) -> None:
    graph.submit(ev("consent", 0, cookie="ck-1", props={"channel": "email", "granted": False}), T0)
    graph.submit(ev("consent", 1, customer_id="c-1", props={"channel": "email", "granted": True}), T0 + 1)
    graph.submit(ev("identify", 2, customer_id="c-1", cookie="ck-1"), T0 + 2)
    assert graph.profile("c-1").consent["email"] is False  # type: ignore[union-attr]


def test_merge_consent_rules() -> None:
    assert merge_consent({"email": True}, {"email": False}) == {"email": False}
    assert merge_consent({"email": True}, {}) == {"email": True}
    assert merge_consent({"*": False}, {"sms": True}) == {"*": False, "sms": False}  # a no to every channel
    assert merge_consent({"*": True}, {"sms": False}) == {"*": True, "sms": False}
    assert merge_consent({"*": True, "sms": False}, {"*": False, "sms": True}) == {"*": False, "sms": False}
    assert list(merge_consent({"*": False, "sms": True}, {})) == ["*", "sms"]  # the yes still after the no


def test_survivor_order_prefers_stable_kinds_then_age() -> None:
    assert survivor_order("c-1", 100.0) < survivor_order("cookie:x", 1.0)
    assert survivor_order("email:a", 5.0) < survivor_order("email:b", 6.0)
    assert survivor_order("c-2", 1.0) < survivor_order("c-1", 2.0)


def test_merge_keeps_counts_and_bounds() -> None:
    a = CustomerState(key="c-1", events=2, type_counts={"x": 2}, seen_ids=["1", "2"], created_at=T0)
    b = CustomerState(key="cookie:z", events=3, type_counts={"x": 1, "y": 2}, seen_ids=["2", "3"], created_at=T0 - 5)
    merged = merge_states(a, b, recent_most=20, dedupe_most=3)
    assert merged.key == "c-1" and merged.events == 5
    assert merged.type_counts == {"x": 3, "y": 2}
    assert sorted(merged.seen_ids) == ["1", "2", "3"]
    assert merged.created_at == T0 - 5
    assert "cookie:z" in merged.aliases


def test_a_merge_keeps_each_product_s_latest_removal_from_the_cart_bounded() -> None:
    """A late add_to_cart on the merged profile is kept out by a removal on either side."""
    a = CustomerState(key="c-1", removed_from_cart={"sku-1": T0 + 5, "sku-2": T0})
    b = CustomerState(key="cookie:z", removed_from_cart={"sku-1": T0 + 1, "sku-3": T0 + 9})
    merged = merge_states(a, b, recent_most=20, dedupe_most=3)
    assert merged.removed_from_cart == {"sku-2": T0, "sku-1": T0 + 5, "sku-3": T0 + 9}

    many = CustomerState(key="cookie:y", removed_from_cart={f"sku-{i}": T0 + i for i in range(60)})
    assert list(merge_states(a, many, recent_most=20, dedupe_most=3).removed_from_cart) == [
        f"sku-{i}" for i in range(10, 60)
    ]  # the latest removals


def line(price: float = 10.0) -> dict[str, float]:
    return {"qty": 1, "price": price}


def test_a_merge_drops_a_cart_line_the_other_profile_took_out_or_bought_after_it_was_added() -> None:
    """As one profile would have it: what either side took out or bought after the other put
    it in the cart is gone; an add after the other's removal or purchase stays."""
    a = CustomerState(
        key="c-1",
        cart={"sku-1": line(), "sku-2": line(), "sku-3": line()},
        cart_added={"sku-1": T0 + 10, "sku-2": T0 + 10, "sku-3": T0 + 10},
    )
    b = CustomerState(
        key="cookie:z",
        removed_from_cart={"sku-1": T0 + 20, "sku-3": T0 + 5},
        purchased={"sku-2": T0 + 30},
        cart={"sku-4": line()},
        cart_added={"sku-4": T0 + 40},
    )
    for winner, loser in ((a, b), (b, a)):
        merged = merge_states(winner, loser, recent_most=20, dedupe_most=3)
        assert sorted(merged.cart) == ["sku-3", "sku-4"]  # sku-3 was taken out before it was added
        assert merged.cart_added == {"sku-3": T0 + 10, "sku-4": T0 + 40}


def test_a_merge_keeps_a_cart_line_stored_without_the_time_it_was_added() -> None:
    old = CustomerState(key="c-1", cart={"sku-1": line()})  # stored before lines had a time
    other = CustomerState(key="cookie:z", removed_from_cart={"sku-1": T0})
    merged = merge_states(old, other, recent_most=20, dedupe_most=3)
    assert merged.cart == {"sku-1": line()} and merged.cart_added == {}


def test_a_merge_keeps_the_later_add_of_a_line_in_both_carts() -> None:
    a = CustomerState(key="c-1", cart={"sku-1": line(12.0)}, cart_added={"sku-1": T0 + 50})
    b = CustomerState(
        key="cookie:z", cart={"sku-1": line()}, cart_added={"sku-1": T0 + 5}, removed_from_cart={"sku-1": T0 + 20}
    )
    merged = merge_states(a, b, recent_most=20, dedupe_most=3)
    assert merged.cart == {"sku-1": line(12.0)} and merged.cart_added == {"sku-1": T0 + 50}


def test_a_merge_keeps_the_state_bounded() -> None:
    many = {f"t{i}": i + 1 for i in range(60)}
    a = CustomerState(key="c-1", type_counts=many, channel_counts=many, last_touch={k: 1.0 for k in many})
    b = CustomerState(
        key="cookie:z",
        type_counts={f"u{i}": 1 for i in range(60)} | {"purchase": 1},
        identifiers={f"k{i}": "x" for i in range(40)},
        consent={f"c{i}": False for i in range(70)},
    )
    merged = merge_states(a, b, recent_most=20, dedupe_most=3)
    assert len(merged.type_counts) == MAX_KINDS and merged.type_counts["purchase"] == 1
    assert len(merged.channel_counts) == 60 and len(merged.identifiers) == MAX_IDENTIFIER_KINDS
    assert merged.consent == {"*": False}


def test_erasure_removes_profile_and_pointers(graph: LocalGraph) -> None:
    browse(graph, 2, cookie="ck-1")
    graph.submit(ev("identify", 3, customer_id="c-1", cookie="ck-1", email="a@x"), T0 + 3)
    graph.submit(ev(ERASE, 4, email="a@x"), T0 + 4)
    assert only_erasures(graph.table) == {"c-1", "cookie:ck-1", "email:a@x"}
    assert graph.audits and graph.audits[0]["customer"] == "c-1" and graph.audits[0]["found"]
    browse(graph, 1, start=10, cookie="ck-1")  # a later event starts afresh
    fresh = graph.profile("cookie:ck-1")
    assert fresh is not None and fresh.events == 1


def only_erasures(table: dict[str, bytes]) -> set[str]:
    """The keys whose erasure ``table`` remembers, when that is all it holds: ``c-1`` and the
    like are tried against the digests it keeps (it holds no key as it is)."""
    assert all(key.startswith(records.ERASED_KEY) for key in table), sorted(table)
    assert all(isinstance(records.decode(value), records.Erased) for value in table.values())
    candidates = ["c-1", "nobody", "cookie:ck-1", "email:a@x", "c-2", "cookie:ck-2"]
    return {key for key in candidates if records.erased_key(key) in table}


def test_an_event_dated_before_an_erasure_and_read_after_it_does_not_bring_the_customer_back(
    graph: LocalGraph,
) -> None:
    """A channel event forwarded again after a restart, or a late batch: dropped, at the
    profile's key and at any of its identifiers'; one dated after the erasure starts afresh."""
    graph.submit(ev("identify", 3, customer_id="c-1", cookie="ck-1"), T0 + 3)
    graph.submit(ev(ERASE, 4, customer_id="c-1"), T0 + 4)

    late = [ev("identify", 3, customer_id="c-1", cookie="ck-1"), ev("page_view", 3.5, cookie="ck-1")]
    for event in late:
        graph.submit(event, T0 + 20)
    assert [effects.counted for _, effects in graph.seen[-2:]] == ["dropped_erased", "dropped_erased"]
    assert only_erasures(graph.table) == {"c-1", "cookie:ck-1"} and not graph.commands

    graph.submit(ev("page_view", 30, customer_id="c-1"), T0 + 30)
    fresh = graph.profile("c-1")
    assert fresh is not None and fresh.events == 1


def test_the_graphs_own_events_at_an_erased_key_go_on_as_if_nothing_were_there() -> None:
    """A link dated before the erasure makes a pointer: it is the graph keeping itself right
    (another profile claiming the identifier), not the erased customer's data."""
    ctx = Context(Policy(), None)
    link = Event("l-1", LINK, T0, "cookie:ck-1", "", T0, properties={"target": "c-2"})
    effects = handle("cookie:ck-1", records.Erased(T0 + 5), link, T0 + 10, ctx)
    assert effects.record == records.Forward("c-2") and effects.counted == "linked"
    wake = Event("w-1", WAKE, T0, "c-1", "", T0)
    assert handle("c-1", records.Erased(T0 + 5), wake, T0 + 10, ctx).counted == "stale_wake"


def test_an_erased_keys_mark_survives_the_table(graph: LocalGraph) -> None:
    assert records.decode(records.erased_mark(T0 + 0.25)) == records.Erased(T0 + 0.25)
    assert records.erased_key_bytes(b"c-1") == records.erased_key("c-1").encode("utf-8", "surrogateescape")
    assert records.erased_key_bytes(b"c-1").startswith(b"\xc1")  # never valid UTF-8: no channel's key


def test_the_erasure_audit_record_holds_no_raw_identifier_without_a_hash_key(graph: LocalGraph) -> None:
    """``orchestrator erase email:Alice@Example.com`` with no hash key set: the request id named
    the profile key, the raw address, and so did ``customer``, in a record kept for good."""
    browse(graph, 2, email="alice@example.com")  # an anonymous profile, keyed by the address
    request = erase_request(routing_key("email:Alice@Example.com", PLAIN), suppress=True, requested_by="cli:ops")
    graph.submit(request, T0 + 5)
    [audit] = graph.audits
    assert audit["found"] and audit["request_id"] == request.event_id
    assert audit["customer"] == PLAIN.pseudonym("email:alice@example.com")
    assert "alice" not in json.dumps(audit).lower()


def test_an_erase_request_id_is_unique_and_names_no_key() -> None:
    """The command waits for the audit record with its request's id, so each must be its own."""
    ids = {erase_request("email:alice@example.com", False, "cli").event_id for _ in range(3)}
    assert len(ids) == 3 and not [i for i in ids if "alice" in i]


def test_a_pseudonym_hides_only_raw_identifiers_of_hashed_kinds() -> None:
    keyed = Hasher(key=b"k")
    hashed = keyed.token("email", "alice@example.com")
    assert keyed.pseudonym(hashed) == hashed  # a keyed hash already: the profile key itself
    assert PLAIN.pseudonym("c-42") == "c-42" and PLAIN.pseudonym("cookie:ck-1") == "cookie:ck-1"
    digest = PLAIN.pseudonym("email:alice@example.com")
    assert digest.startswith("email:") and "alice" not in digest
    assert digest == PLAIN.pseudonym("email:alice@example.com") != PLAIN.pseudonym("email:bob@example.com")


def test_erasure_with_suppression_drops_later_events(graph: LocalGraph) -> None:
    graph.submit(ev("identify", 0, customer_id="c-1", email="a@x"), T0)
    graph.submit(ev(ERASE, 1, customer_id="c-1", props={"suppress": True}), T0 + 1)
    browse(graph, 2, start=5, email="a@x")
    browse(graph, 1, start=9, customer_id="c-1")
    assert all(isinstance(graph.record(k), records.Suppressed) for k in graph.table)
    assert set(graph.table) == {"c-1", "email:a@x"}
    assert [e.counted for _, e in graph.seen].count("dropped_suppressed") == 3


def test_erasing_an_unknown_customer_is_recorded_as_not_found(graph: LocalGraph) -> None:
    graph.submit(ev(ERASE, 0, customer_id="nobody"), T0)
    assert graph.audits[0]["found"] is False and only_erasures(graph.table) == {"nobody"}


def test_an_erasure_read_again_after_a_crash_clears_the_read_model_again() -> None:
    """The table already forgot the profile; the read model's deletes may have died with the worker."""
    ctx = Context(Policy(), None)
    effects = handle("c-1", records.Missing(), ev(ERASE, 0, customer_id="c-1"), T0, ctx)
    assert effects.forget == ["c-1"] and effects.audit is not None and effects.audit["found"] is False


def test_a_merge_read_again_after_a_crash_removes_the_loser_from_the_read_model_again(graph: LocalGraph) -> None:
    """The table has the pointer; the read model's delete and the decision log's move may have
    died with the worker, and no later event would redo them."""
    browse(graph, 2, cookie="ck-1")
    graph.submit(ev("identify", 5, customer_id="c-1", cookie="ck-1"), T0 + 5)
    [merged_out] = [e for _, e in graph.seen if e.counted == "merged_out"]
    assert merged_out.forget == ["cookie:ck-1"] and merged_out.moved_to == "c-1"
    [read_again] = [sent for _, e in graph.seen for sent in e.sends if sent.type == LINK]
    effects = handle("cookie:ck-1", graph.record("cookie:ck-1"), read_again, T0 + 6, graph.ctx)
    assert effects.counted == "merge_read_again" and effects.record is None and not effects.sends
    assert effects.forget == ["cookie:ck-1"] and effects.moved_to == "c-1"


def test_an_event_read_again_after_a_crash_writes_its_profile_to_the_read_model_again(graph: LocalGraph) -> None:
    event = ev("page_view", 0, customer_id="c-1")
    graph.submit(event, T0)
    effects = handle("c-1", graph.record("c-1"), event, T0 + 1, graph.ctx)
    assert effects.counted == "duplicate" and effects.record is None
    assert effects.restage == graph.profile("c-1")


def test_a_hand_over_read_again_writes_the_merged_profile_to_the_read_model_again(graph: LocalGraph) -> None:
    browse(graph, 1, cookie="ck-1")
    graph.submit(ev("identify", 5, customer_id="c-1", cookie="ck-1"), T0 + 5)
    [hand_over] = [e.sends[0] for _, e in graph.seen if e.counted == "merged_out"]
    effects = handle("c-1", graph.record("c-1"), hand_over, T0 + 6, graph.ctx)
    assert effects.counted == "duplicate" and effects.record is None
    assert effects.restage == graph.profile("c-1") and effects.restage.events == 2


def test_a_pointer_loop_is_dropped_not_spun() -> None:
    ctx = Context(Policy(), None)
    event = ev("page_view", 0, cookie="ck")
    looped = Event(**{**event.to_wire(), "hops": MAX_HOPS})
    effects = handle("cookie:ck", records.Forward("c-1"), looped, T0, ctx)
    assert effects.counted == "dropped_loop" and not effects.sends


def test_record_bytes_round_trip() -> None:
    for record in (records.Forward("c-1"), records.Suppressed(), records.Profile(CustomerState(key="k"))):
        assert records.decode(records.encode(record)) == record
    assert records.decode(None) == records.Missing()
    assert records.encode(records.Missing()) is None


def test_hashed_identifiers_never_keep_the_raw_value() -> None:
    hasher = Hasher(key=b"secret")
    ids = hasher.identifiers({"email": " Alice@Example.COM ", "cookie": "ck-1"})
    assert "alice" not in ids["email"].lower() and ids["cookie"] == "ck-1"
    assert hasher.lookup_token("email:alice@example.com") == f"email:{ids['email']}"
    assert Hasher(key=b"other").identifiers({"email": "alice@example.com"})["email"] != ids["email"]


def test_tokens_put_the_most_stable_identifier_first() -> None:
    assert tokens_of(None, {"cookie": "c", "email": "e"}) == ["email:e", "cookie:c"]
    assert customer_key(None, {"zz": "1", "cookie": "c"}) == "cookie:c"
    with pytest.raises(ValueError):
        customer_key(None, {})


def _racing_merge(graph: LocalGraph, *last: Event) -> None:
    """An ad runs on an anonymous profile; the customer logs in and ``last`` reaches the
    known profile before the anonymous one has moved in (the stream's race; replay never
    has it, as it finishes each merge before the next event)."""
    graph.submit(ev("product_view", 0, cookie="ck-1", email="a@x", props={"product": "sku-9"}), T0)
    graph.queue.append(ev("identify", 1, customer_id="c-alice", email="a@x"))
    graph.step(T0 + 1)  # a link to the email's key is queued; the merge has not happened
    graph.queue.extend(last)
    graph.drain(T0 + 2)


@pytest.mark.parametrize(
    ("last", "stopped"),
    [
        (ev("purchase", 2, customer_id="c-alice", props={"product": "sku-9", "value": 30.0}), "bought"),
        (ev("consent", 2, customer_id="c-alice", props={"channel": "ads", "granted": False}), "withdrew consent"),
    ],
)
def test_an_ad_running_on_a_profile_merged_in_after_a_purchase_or_opt_out_is_stopped(last: Event, stopped: str) -> None:
    graph = LocalGraph(Context(Policy(), engine=None))
    _racing_merge(graph, last)
    assert graph.commands[0].action == "remarketing_ad"
    stops = [c for c in graph.commands if c.action == "remarketing_stop"]
    assert len(stops) == 1 and stopped in stops[0].reason
    assert stops[0].payload == {"subjects": ["product:sku-9"]} and stops[0].customer_id == "c-alice"
    merged = graph.profile("c-alice")
    assert merged is not None and merged.remarketed == {}


def test_a_merge_with_nothing_to_answer_stops_nothing() -> None:
    graph = LocalGraph(Context(Policy(), engine=None))
    _racing_merge(graph, ev("page_view", 2, customer_id="c-alice"))
    assert "remarketing_stop" not in [c.action for c in graph.commands]
    merged = graph.profile("c-alice")
    assert merged is not None and list(merged.remarketed) == ["product:sku-9"]


def _browse_journey_graph() -> LocalGraph:
    journeys, errors = load_dir(Path(__file__).resolve().parents[2] / "journeys")
    assert not errors
    browse_journey = [j for j in journeys if j.id == "remarketing_after_browse"]
    return LocalGraph(Context(Policy(rules=frozenset()), engine=Engine(Catalogue.of(browse_journey))))


def _outcomes(graph: LocalGraph) -> list[tuple[str, str, str]]:
    decisions = [effects.decision for _, effects in graph.seen if effects.decision]
    return [(o.kind, o.journey, o.reason) for d in decisions for o in d.outcomes]


def test_a_journey_on_a_profile_merged_in_after_its_goal_ends_converted_at_the_merge() -> None:
    """The anonymous profile's journey waits a day for its ad; the purchase, its goal, reached
    the known profile first. The merge ends the journey as the purchase would have: converted,
    as of the purchase, its wait gone."""
    graph = _browse_journey_graph()
    _racing_merge(graph, ev("purchase", 2, customer_id="c-alice", props={"product": "sku-9", "value": 30.0}))
    merged = graph.profile("c-alice")
    assert merged is not None and merged.journeys == {} and merged.next_wake() is None
    journey = "remarketing_after_browse"
    assert _outcomes(graph) == [("enter", journey, ""), ("convert", journey, ""), ("exit", journey, "goal")]
    assert merged.journey_log[journey]["conversions"] == 1
    assert merged.journey_log[journey]["last_exit"] == T0 + 2  # the purchase's time, not the merge's
    assert graph.commands == []


def test_a_merge_ends_a_journey_decided_late_on_a_goal_dated_between_its_trigger_and_its_entry() -> None:
    """The view reached its worker ten seconds late, after the purchase the known profile
    had seen five seconds after the view. On one profile the view would enter and end at
    once (the late-trigger rule); the merge judges it the same way, by the trigger's time,
    not by when the journey was entered."""
    graph = _browse_journey_graph()
    bought = ev("purchase", 5, customer_id="c-alice", props={"product": "sku-9", "value": 30.0})
    graph.submit(bought, T0 + 5)
    graph.submit(ev("product_view", 0, cookie="ck-1", email="a@x", props={"product": "sku-9"}), T0 + 10)
    graph.queue.append(ev("identify", 11, customer_id="c-alice", email="a@x"))
    graph.drain(T0 + 12)
    merged = graph.profile("c-alice")
    journey = "remarketing_after_browse"
    assert merged is not None and merged.journeys == {} and merged.next_wake() is None
    assert _outcomes(graph) == [("enter", journey, ""), ("convert", journey, ""), ("exit", journey, "goal")]
    assert merged.journey_log[journey]["last_exit"] == T0 + 5  # the purchase's time
    assert graph.commands == []


def test_a_goal_older_than_the_merged_in_journey_does_not_end_it() -> None:
    """A purchase made before the journey began was not its goal."""
    graph = _browse_journey_graph()
    graph.submit(ev("purchase", -5, customer_id="c-alice", props={"product": "sku-1", "value": 3.0}), T0 - 5)
    _racing_merge(graph, ev("page_view", 2, customer_id="c-alice"))
    merged = graph.profile("c-alice")
    assert merged is not None and "remarketing_after_browse" in merged.journeys


def test_a_journey_ad_for_what_a_profile_merged_in_later_bought_is_held_back() -> None:
    """When the purchase has left the known profile's recent events before the merge (here
    twenty page views later), the merge cannot see it as the journey's goal; the journey goes
    on, and its ad for the bought product is held back when its wait ends."""
    graph = _browse_journey_graph()
    purchase = ev("purchase", 2, customer_id="c-alice", props={"product": "sku-9", "value": 30.0})
    _racing_merge(graph, purchase, *(ev("page_view", 3 + i, customer_id="c-alice") for i in range(20)))
    merged = graph.profile("c-alice")
    assert merged is not None and "remarketing_after_browse" in merged.journeys

    wake = merged.next_wake()
    assert wake is not None
    graph.submit(Event("timer", WAKE, wake, "c-alice", "timer", wake), wake)

    assert [c.action for c in graph.commands] == []
    held = [h for _, effects in graph.seen if effects.decision for h in effects.decision.held]
    assert [(h.command.action, h.reason) for h in held] == [("remarketing_ad", "already_converted")]


def _graph_with(definition: str) -> LocalGraph:
    journey = compile_text(dedent(definition), "j.yaml")
    return LocalGraph(Context(Policy(rules=frozenset()), engine=Engine(Catalogue.of([journey]))))


def test_a_wait_for_ten_o_clock_on_a_profile_merged_in_follows_the_known_profile_s_time_zone() -> None:
    """The anonymous visitor signed up before anyone knew where they live: 10:00 UTC. The
    login merges them into a profile that gave New York: 10:00 in New York."""
    graph = _graph_with(
        """\
        id: morning
        version: 1
        trigger: {event: signup}
        steps:
          - wait: {until: "10:00"}
          - action: {channel: email, action: good_morning}
        """
    )
    graph.submit(ev("preferences", 0, customer_id="c-alice", props={"timezone": "America/New_York"}), T0)
    graph.submit(ev("signup", 1, cookie="ck-1"), T0 + 1)
    assert (graph.profile("cookie:ck-1") or CustomerState(key="")).next_wake() == T0 + 2 * 3600  # 10:00 UTC
    graph.submit(ev("identify", 2, customer_id="c-alice", cookie="ck-1"), T0 + 2)
    merged = graph.profile("c-alice")
    assert merged is not None and "morning" in merged.journeys
    assert merged.next_wake() == T0 + 7 * 3600  # 10:00 in New York, UTC-5 in January


CHASE = """\
    id: chase
    version: 1
    trigger: {event: product_view}
    goal: {event: purchase, when: "event.properties.product == trigger.properties.product"}
    exit_on:
      - {event: consent, channel: [web]}
    steps:
      - wait: 1d
      - action: {channel: ads, action: remarketing_ad, payload: {product: "{{ trigger.properties.product }}"}}
    """


@pytest.mark.parametrize(
    ("last", "ending"),
    [
        (ev("purchase", 2, customer_id="c-alice", props={"product": "sku-9"}), [("convert", ""), ("exit", "goal")]),
        (ev("purchase", 2, customer_id="c-alice", props={"product": "sku-1"}), []),
        (
            ev("consent", 2, customer_id="c-alice", props={"channel": "email", "granted": True}),
            [("exit", "exit_on:consent")],
        ),
    ],
    ids=["goal-condition-holds", "goal-condition-fails", "exit-on"],
)
def test_a_merge_ends_a_journey_on_the_other_profiles_goal_or_exit_by_its_conditions(
    last: Event, ending: list[tuple[str, str]]
) -> None:
    """A goal's condition is judged on what the other profile kept of the event (its product
    here); a condition it cannot judge does not hold, and is not counted as an error."""
    graph = _graph_with(CHASE)
    _racing_merge(graph, last)
    assert [(kind, reason) for kind, _, reason in _outcomes(graph)] == [("enter", ""), *ending]
    merged = graph.profile("c-alice")
    assert merged is not None and ("chase" in merged.journeys) == (not ending)


def test_a_merge_credits_a_goal_the_other_profile_reached_within_the_conversion_window() -> None:
    """The anonymous profile's journey showed its ad and ended; two days later the customer
    buys on their account, then logs in on the anonymous device: within the journey's
    seven-day window, so the purchase is its conversion (``after_exit``), as it would have
    been on one profile."""
    day = 86400.0
    graph = _browse_journey_graph()
    view = ev("product_view", 0, cookie="ck-1", email="a@x", props={"product": "sku-9"})
    graph.submit(view, T0)
    graph.submit(Event("timer", WAKE, T0 + day, view.customer_key, "timer", T0 + day), T0 + day)
    assert [c.action for c in graph.commands] == ["remarketing_ad"]
    graph.submit(ev("purchase", 2 * day, customer_id="c-alice", props={"product": "sku-1"}), T0 + 2 * day)
    graph.submit(ev("identify", 3 * day, customer_id="c-alice", email="a@x"), T0 + 3 * day)

    journey = "remarketing_after_browse"
    assert _outcomes(graph) == [
        ("enter", journey, ""),
        ("exit", journey, "completed"),
        ("convert", journey, "after_exit"),
    ]
    merged = graph.profile("c-alice")
    assert merged is not None and merged.journey_log[journey]["conversions"] == 1
    assert "after" not in merged.journey_log[journey]


# -- customer ids with a colon ------------------------------------------------


def test_a_customer_id_that_reads_like_an_identifier_has_a_key_of_its_own(graph: LocalGraph) -> None:
    """``customer_id: cookie:zz`` once had the key of ``identifiers: {cookie: zz}``: the two
    shared one profile though nothing said they were one person."""
    graph.submit(ev("purchase", 0, customer_id="cookie:zz", props={"value": 5.0}), T0)
    browse(graph, 2, start=1, cookie="zz")
    known = graph.profile("customer_id:cookie:zz")
    anonymous = graph.profile("cookie:zz")
    assert known is not None and anonymous is not None and known is not anonymous
    assert (known.customer_id, known.events, known.purchases) == ("cookie:zz", 1, 1)
    assert (anonymous.customer_id, anonymous.events) == (None, 2)


def test_customer_ids_with_and_without_a_colon_and_identifiers_never_share_a_key() -> None:
    assert customer_key("c-1", None) == "c-1"
    assert customer_key("crm:1", None) == "customer_id:crm:1"
    assert customer_key(None, {"crm": "1"}) == "crm:1"
    assert customer_key(None, {"customer_id": "crm:1"}) == customer_key("crm:1", None)
    assert customer_key("customer_id:5", None) == "customer_id:customer_id:5" != customer_key("5", None)


def test_an_identify_still_joins_a_colon_customer_id_to_its_identifier(graph: LocalGraph) -> None:
    browse(graph, 2, cookie="zz")
    graph.submit(ev("identify", 3, customer_id="cookie:zz", cookie="zz"), T0 + 3)
    merged = graph.profile("customer_id:cookie:zz")
    assert merged is not None and merged.events == 3
    assert graph.record("cookie:zz") == records.Forward("customer_id:cookie:zz")


def _legacy(graph: LocalGraph, key: str, customer_id: str | None, events: int) -> None:
    """A profile as an older version kept it, under the bare customer id."""
    state = CustomerState(key=key, customer_id=customer_id, events=events, created_at=T0 - 100)
    encoded = records.encode(records.Profile(state))
    assert encoded is not None
    graph.table[key] = encoded


def test_a_profile_kept_under_a_bare_colon_id_moves_to_its_key_with_the_next_event(graph: LocalGraph) -> None:
    _legacy(graph, "crm:42", "crm:42", events=7)
    graph.submit(ev("page_view", 0, customer_id="crm:42"), T0)
    moved = graph.profile("customer_id:crm:42")
    assert moved is not None and moved.events == 8 and "crm:42" in moved.aliases
    assert graph.record("crm:42") == records.Forward("customer_id:crm:42")
    graph.submit(ev("page_view", 1, customer_id="crm:42"), T0 + 1)
    assert graph.profile("customer_id:crm:42").events == 9  # type: ignore[union-attr]


def test_an_identifier_profile_under_the_bare_id_is_not_adopted(graph: LocalGraph) -> None:
    _legacy(graph, "crm:42", None, events=3)  # identifiers: {crm: "42"}, no customer id
    graph.submit(ev("page_view", 0, customer_id="crm:42"), T0)
    assert graph.profile("customer_id:crm:42").events == 1  # type: ignore[union-attr]
    assert graph.profile("crm:42").events == 3  # type: ignore[union-attr]


def test_a_legacy_profile_merged_since_takes_the_new_key_in(graph: LocalGraph) -> None:
    """An older version's ``identify`` moved customer ``crm:42`` into ``c-1``: the id's new
    key follows it there, and the older profile survives as in any merge."""
    _legacy(graph, "crm:42", "crm:42", events=2)
    graph.submit(ev("identify", 0, customer_id="c-1", crm="42"), T0 - 50)
    old = graph.profile("crm:42")
    assert old is not None and old.key == "c-1"
    graph.submit(ev("page_view", 1, customer_id="crm:42"), T0 + 1)
    merged = graph.profile("customer_id:crm:42")
    assert merged is not None and merged.key == "c-1" and merged.events == 4


def test_erase_names_a_colon_customer_id_by_its_token() -> None:
    assert routing_key("customer_id:crm:42", PLAIN) == "customer_id:crm:42"
    assert routing_key("customer_id:c-1", PLAIN) == "c-1"
    assert routing_key("crm:42", PLAIN) == "crm:42"  # an identifier, as typed


def test_an_adopted_profile_s_journey_goes_on_and_the_one_entered_again_ends() -> None:
    """Customer ``crm:42`` waits a day for an ad under the key an older version gave them. The
    first view after the upgrade starts a profile at the new key and enters the journey
    again; the hand-over keeps the old wait and ends the new one as ``merged``."""
    graph = _graph_with(CHASE)
    graph.submit(ev("product_view", 0, customer_id="crm-42", props={"product": "sku-1"}), T0)
    old = graph.profile("crm-42")
    assert old is not None and old.next_wake() == T0 + 86400
    old.key = old.customer_id = "crm:42"  # as the older version stored it
    encoded = records.encode(records.Profile(old))
    assert encoded is not None
    graph.table["crm:42"] = encoded
    del graph.table["crm-42"]

    graph.submit(ev("product_view", 3600, customer_id="crm:42", props={"product": "sku-2"}), T0 + 3600)
    merged = graph.profile("customer_id:crm:42")
    assert merged is not None and merged.key == "customer_id:crm:42" and merged.events == 2
    assert merged.next_wake() == T0 + 86400 and "crm:42" in merged.aliases
    assert ("exit", "chase", "merged") in _outcomes(graph)
    wake = Event("timer", WAKE, T0 + 86400, "customer_id:crm:42", "timer", T0 + 86400)
    graph.submit(wake, T0 + 86400)
    assert [(c.action, c.payload.get("product")) for c in graph.commands] == [("remarketing_ad", "sku-1")]


def test_an_adopted_profile_handed_on_to_a_profile_merged_since_does_not_take_its_id(graph: LocalGraph) -> None:
    """The new key's profile merged into ``c-1`` (an ``identify``) before the old profile's
    hand-over arrived: forwarded to ``c-1``, the hand-over is an ordinary loser there."""
    _legacy(graph, "crm:42", "crm:42", events=3)
    graph.submit(ev("page_view", -10, customer_id="c-1"), T0 - 10)
    graph.queue.append(ev("page_view", 0, customer_id="crm:42"))
    graph.step(T0)
    adopt = graph.queue.popleft()  # held back: the identify overtakes it
    login = ev("identify", 1, customer_id="c-1")
    graph.submit(dataclasses.replace(login, identifiers={"customer_id": "crm:42"}), T0 + 1)
    assert graph.record("customer_id:crm:42") == records.Forward("c-1")
    graph.queue.append(adopt)
    graph.drain(T0 + 2)
    merged = graph.profile("c-1")
    assert merged is not None and merged.key == "c-1" and merged.customer_id == "c-1"
    assert merged.events == 6 and graph.record("crm:42") == records.Forward("customer_id:crm:42")  # then c-1
