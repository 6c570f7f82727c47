"""The JSON Schema files other teams validate against: current, and in step with the models."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from schemas.commands import ActionCommand
from schemas.events import ChannelEvent
from schemas.generate import MODELS, SCHEMA_DIR, render

TS = 1_800_000_000


def load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load(name))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_committed_schema_file_matches_what_the_model_generates(name):
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text()
    assert committed == render(name), f"schemas/json/{name}.schema.json is stale: run `make schemas`"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_schema_file_is_a_valid_draft_2020_12_schema(name):
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{name}.schema.json"


BASE = {"event_id": "web-1", "type": "search", "ts": TS, "customer_id": "c-42"}


def doc(**changes):
    merged = {**BASE, **changes}
    return {k: v for k, v in merged.items() if v is not ...}


# Documents whose validity JSON Schema can express: both sides must agree.
AGREEMENT = [
    pytest.param(doc(), True, id="minimal"),
    pytest.param(doc(ts=TS + 0.5), True, id="float-ts"),
    pytest.param(doc(ts="2026-11-22T10:02:03Z"), True, id="iso-z"),
    pytest.param(doc(ts="2026-11-22T12:02:03+02:00"), True, id="iso-offset"),
    pytest.param(doc(customer_id=..., identifiers={"email": "a@example.com"}), True, id="identifiers-only"),
    pytest.param(doc(identifiers={}), True, id="customer-id-with-empty-identifiers"),
    pytest.param(doc(channel="new-channel", action_id="a-1", properties={"x": [1, {"y": None}]}), True, id="full"),
    pytest.param(doc(channel=None, action_id=None), True, id="explicit-nulls"),
    pytest.param(doc(ts=True), False, id="boolean-ts"),
    pytest.param(doc(ts=None), False, id="null-ts"),
    pytest.param(doc(event_id=...), False, id="missing-event-id"),
    pytest.param(doc(type=...), False, id="missing-type"),
    pytest.param(doc(ts=...), False, id="missing-ts"),
    pytest.param(doc(customer_id=...), False, id="no-identity"),
    pytest.param(doc(customer_id=None), False, id="null-customer-id"),
    pytest.param(doc(customer_id=..., identifiers={}), False, id="empty-identifiers"),
    pytest.param(doc(customer_id=..., identifiers=None), False, id="null-identifiers"),
    pytest.param(doc(customer="c-42"), False, id="unknown-field"),
    pytest.param(doc(type="Search"), False, id="uppercase-type"),
    pytest.param(doc(event_id=7), False, id="event-id-as-int"),
    pytest.param(doc(event_id=""), False, id="empty-event-id"),
    pytest.param(doc(event_id="e" * 129), False, id="event-id-too-long"),
    pytest.param(doc(customer_id=""), False, id="empty-customer-id"),
    pytest.param(doc(channel="Web"), False, id="uppercase-channel"),
    pytest.param(doc(identifiers={"email": ""}), False, id="empty-identifier-value"),
    pytest.param(doc(identifiers={f"k{i}": "v" for i in range(17)}), False, id="too-many-identifiers"),
    pytest.param(doc(properties=["query"]), False, id="properties-as-list"),
]


def model_accepts(document: dict) -> bool:
    try:
        ChannelEvent.model_validate(document)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("document", "valid"), AGREEMENT)
def test_the_json_schema_and_the_model_agree_on_what_is_a_valid_event(document, valid):
    schema_accepts = validator("channel_event").is_valid(document)
    assert (schema_accepts, model_accepts(document)) == (valid, valid)


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param("2026-11-22T10:02:03", id="naive-iso"),
        pytest.param(float("nan"), id="nan"),
    ],
)
def test_only_the_model_catches_naive_timestamps_and_nan(ts):
    # JSON Schema cannot say "has an offset" or "finite"; ingestion relies on the model for these.
    assert validator("channel_event").is_valid(doc(ts=ts))
    assert not model_accepts(doc(ts=ts))


def test_the_json_schema_rejects_an_identifier_kind_the_model_rejects():
    document = doc(identifiers={"Email": "a@example.com"})
    assert not model_accepts(document)
    assert not validator("channel_event").is_valid(document)


def test_a_command_decided_by_the_core_matches_the_action_command_schema_and_model():
    event = Event(
        event_id="search-1",
        type="search",
        ts=TS,
        customer_key="c-42",
        channel="search",
        received_at=TS,
        customer_id="c-42",
        properties={"query": "trail running shoes"},
    )
    decision = decide(None, event, TS)
    assert decision.commands
    for command in decision.commands:
        wire = json.loads(json.dumps(command.to_wire()))
        errors = [e.message for e in validator("action_command").iter_errors(wire)]
        assert errors == []
        assert ActionCommand.model_validate(wire).model_dump() == wire


def test_an_action_command_with_an_unknown_field_is_rejected_by_schema_and_model():
    event = Event(
        event_id="view-1",
        type="product_view",
        ts=TS,
        customer_key="c-42",
        channel="web",
        received_at=TS,
        customer_id="c-42",
        properties={"product": "sku-1"},
    )
    wire = decide(None, event, TS).commands[0].to_wire() | {"extra": 1}
    assert not validator("action_command").is_valid(wire)
    with pytest.raises(ValidationError):
        ActionCommand.model_validate(wire)
