"""readmodel.profile(): what other systems read about a customer from Redis."""

from __future__ import annotations

import json

from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.readmodel import alias_key, decode_profile, encode_profile, not_found, profile, profile_key, records

T0 = 1_800_000_000.0


def customer():
    state = None
    for i, (type, props) in enumerate([("search", {"query": "tent"}), ("add_to_cart", {"product": "sku-1"})]):
        event = Event(
            event_id=f"e-{i}",
            type=type,
            ts=T0 + i,
            customer_key="c-42",
            channel="web",
            received_at=T0 + i,
            customer_id="c-42",
            identifiers={"email": "a@example.com", "cookie": "ck-1"} if i else {},
            properties=props,
        )
        state = decide(state, event, T0 + i).state
    return state


def test_a_profile_carries_the_lifecycle_stage_and_when_it_was_written():
    doc = profile(customer(), T0 + 10)
    assert doc["stage"] == "engaged"
    assert doc["updated_at"] == T0 + 10


def test_a_profile_omits_the_internal_deduplication_ids():
    state = customer()
    assert state.seen_ids
    assert "seen_ids" not in profile(state, T0)


def test_a_profile_keeps_what_other_systems_need():
    doc = profile(customer(), T0)
    assert doc["key"] == "c-42"
    assert doc["customer_id"] == "c-42"
    assert set(doc["cart"]) == {"sku-1"}
    assert set(doc["interests"]) == {"query:tent", "product:sku-1"}
    assert doc["events"] == 2


def test_a_profile_is_plain_json_and_does_not_touch_the_state():
    state = customer()
    before = state.to_bytes()
    doc = profile(state, T0)
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert state.to_bytes() == before
    assert state.seen_ids


def test_profiles_are_stored_under_the_topic_prefix():
    assert profile_key("p.", "email:a@example.com") == "p.customer:email:a@example.com"


def test_a_profile_carries_ranked_next_best_actions_per_channel():
    doc = profile(customer(), T0 + 10)
    assert doc["next_best_actions"]["web"][0]["action"] == "cart_reminder"
    assert set(doc["next_best_actions"]) >= {"web", "email", "app", "store", "support"}


def test_the_next_best_actions_follow_the_policy():
    doc = profile(customer(), T0 + 10, Policy(consent_required_channels=frozenset({"email"})))
    assert "email" not in doc["next_best_actions"]


def test_a_customer_can_be_found_by_every_identifier():
    state = customer()
    written = records("p.", state, T0)
    assert set(written) == {
        "p.customer:c-42",
        "p.alias:customer_id:c-42",
        "p.alias:email:a@example.com",
        "p.alias:cookie:ck-1",
    }
    assert written[alias_key("p.", "email:a@example.com")] == b"c-42"
    assert json.loads(written["p.customer:c-42"]) == profile(state, T0)


def test_keys_merged_into_a_customer_keep_finding_it():
    state = customer()
    state.aliases = ["cookie:ck-0", "c-old"]
    written = records("p.", state, T0)
    assert written["p.alias:cookie:ck-0"] == b"c-42"
    assert written["p.alias:customer_id:c-old"] == b"c-42"


def test_a_profile_is_encoded_as_the_standard_library_would_read_it():
    doc = profile(customer(), T0) | {"note": "Zoë 😀", "by_day": {20261124: 2}, "ratio": 0.1 + 0.2}
    assert json.loads(encode_profile(doc)) == json.loads(json.dumps(doc))


def test_a_profile_is_decoded_as_the_standard_library_reads_it_whoever_wrote_it():
    doc = profile(customer(), T0) | {"note": "Zoë 😀", "by_day": {20261124: 2}, "ratio": 0.1 + 0.2, "big": 2**63}
    for written in (encode_profile(doc), json.dumps(doc).encode(), json.dumps(doc, ensure_ascii=False)):
        assert decode_profile(written) == json.loads(written)


def test_an_unknown_id_with_a_colon_is_told_how_a_customer_id_is_written() -> None:
    assert not_found("c-1") == "no customer 'c-1' in the read model"
    hinted = "no customer 'crm:42' in the read model (if that is a customer id: customer_id:crm:42)"
    assert not_found("crm:42") == hinted
    assert not_found("customer_id:crm:42") == "no customer 'customer_id:crm:42' in the read model"
