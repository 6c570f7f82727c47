"""ChannelEvent: what a channel team may publish, and what it may not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.events import ChannelEvent

TS = 1_800_000_000
BASE = {"event_id": "web-1", "type": "search", "ts": TS, "customer_id": "c-42"}


def event(**changes):
    doc = {**BASE, **changes}
    return {k: v for k, v in doc.items() if v is not ...}


def test_the_documented_example_is_a_valid_event():
    example = ChannelEvent.model_json_schema()["examples"][0]
    assert ChannelEvent.model_validate(example).type == "search"


def test_an_integer_epoch_timestamp_is_accepted_as_seconds():
    assert ChannelEvent.model_validate(event(ts=TS)).ts == float(TS)


def test_a_fractional_epoch_timestamp_keeps_its_fraction():
    assert ChannelEvent.model_validate(event(ts=TS + 0.25)).ts == TS + 0.25


def test_an_iso_timestamp_in_utc_with_z_is_accepted():
    parsed = ChannelEvent.model_validate(event(ts="2026-11-22T10:02:03Z"))
    assert parsed.ts == datetime(2026, 11, 22, 10, 2, 3, tzinfo=UTC).timestamp()


def test_an_iso_timestamp_with_a_positive_offset_is_converted_to_utc():
    parsed = ChannelEvent.model_validate(event(ts="2026-11-22T12:02:03+02:00"))
    assert parsed.ts == datetime(2026, 11, 22, 10, 2, 3, tzinfo=UTC).timestamp()


def test_identifiers_alone_identify_a_customer():
    parsed = ChannelEvent.model_validate(event(customer_id=..., identifiers={"email": "a@example.com"}))
    assert parsed.customer_id is None
    assert parsed.identifiers == {"email": "a@example.com"}


def test_an_explicit_channel_with_a_hyphen_is_accepted():
    assert ChannelEvent.model_validate(event(channel="new-channel")).channel == "new-channel"


def test_properties_may_hold_any_nested_data():
    props = {"products": [{"id": "sku-1", "qty": 2}], "value": 19.5, "flags": {"gift": True}}
    assert ChannelEvent.model_validate(event(properties=props)).properties == props


def test_a_validated_event_is_immutable():
    parsed = ChannelEvent.model_validate(event())
    with pytest.raises(ValidationError):
        parsed.type = "purchase"


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        pytest.param({"ts": "2026-11-22T10:02:03"}, "no UTC offset", id="naive-iso"),
        pytest.param({"ts": "2026-11-22"}, "no UTC offset", id="date-only"),
        pytest.param({"ts": "yesterday"}, "not ISO-8601", id="not-a-date"),
        pytest.param({"ts": True}, "boolean", id="boolean-ts"),
        pytest.param({"ts": float("nan")}, "finite", id="nan-ts"),
        pytest.param({"ts": float("inf")}, "finite", id="infinite-ts"),
        pytest.param({"ts": None}, "ts", id="null-ts"),
        pytest.param({"event_id": ...}, "event_id", id="missing-event-id"),
        pytest.param({"type": ...}, "type", id="missing-type"),
        pytest.param({"ts": ...}, "ts", id="missing-ts"),
        pytest.param({"customer_id": ...}, "customer_id or at least one identifier", id="no-identity"),
        pytest.param({"customer_id": None}, "customer_id or at least one identifier", id="null-customer-id"),
        pytest.param(
            {"customer_id": ..., "identifiers": {}}, "customer_id or at least one identifier", id="empty-identifiers"
        ),
        pytest.param({"customer": "c-42"}, "customer", id="unknown-field"),
        pytest.param({"type": "Search"}, "type", id="uppercase-type"),
        pytest.param({"type": "page-view"}, "type", id="hyphen-in-type"),
        pytest.param({"type": ""}, "type", id="empty-type"),
        pytest.param({"event_id": 7}, "event_id", id="event-id-as-int"),
        pytest.param({"event_id": ""}, "event_id", id="empty-event-id"),
        pytest.param({"event_id": "e" * 129}, "event_id", id="event-id-too-long"),
        pytest.param({"customer_id": 42}, "customer_id", id="customer-id-as-int"),
        pytest.param({"channel": "Web"}, "channel", id="uppercase-channel"),
        pytest.param({"identifiers": {"Email": "a@example.com"}}, "identifiers", id="uppercase-identifier-kind"),
        pytest.param({"identifiers": {"email": ""}}, "identifiers", id="empty-identifier-value"),
        pytest.param({"identifiers": {f"k{i}": "v" for i in range(17)}}, "identifiers", id="too-many-identifiers"),
        pytest.param({"properties": ["query"]}, "properties", id="properties-as-list"),
    ],
)
def test_an_invalid_event_is_rejected_with_a_message_naming_the_problem(changes, where):
    with pytest.raises(ValidationError) as caught:
        ChannelEvent.model_validate(event(**changes))
    assert where in str(caught.value)


def test_an_epoch_timestamp_too_large_for_a_float_is_a_validation_error():
    with pytest.raises(ValidationError):
        ChannelEvent.model_validate(event(ts=10**400))
