"""The JSON Schema files other teams validate against: current, and in step with the models."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from orchestrator.cli.send import _Check, _prepare
from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.errors import CliError
from orchestrator.ingest import Limits, ingest
from orchestrator.topics import TopicNames
from schemas.commands import ActionCommand
from schemas.events import EARLIEST_TS, LATEST_TS, ChannelEvent
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
    pytest.param(doc(identifiers={"email": "  "}), False, id="blank-identifier-value"),
    pytest.param(doc(identifiers={"phone": "n/a"}), False, id="phone-without-digits"),
    pytest.param(doc(identifiers={"phone": " +49 (30) 1234 "}), True, id="phone-written-freely"),
    pytest.param(doc(identifiers={"cookie": " k "}), True, id="identifier-with-spaces-around"),
    pytest.param(doc(customer_id=" \t"), False, id="blank-customer-id"),
    pytest.param(doc(customer_id=" c-42"), True, id="customer-id-with-a-space"),
    pytest.param(doc(properties=["query"]), False, id="properties-as-list"),
    pytest.param(doc(type="consent", properties={"channel": "ads", "granted": False}), True, id="consent"),
    pytest.param(doc(type="consent", properties={"channels": {"ads": False}}), True, id="consent-channels"),
    pytest.param(doc(type="erase", properties={"suppress": True}), True, id="erase-suppress"),
    pytest.param(doc(type="search", properties={"granted": "x"}), True, id="granted-outside-consent"),
    pytest.param(doc(type="consent", properties={"granted": "false"}), False, id="consent-granted-as-text"),
    pytest.param(doc(type="consent", properties={"do_not_contact": 1}), False, id="do-not-contact-as-number"),
    pytest.param(doc(type="consent", properties={"channels": {"ads": "no"}}), False, id="consent-channels-as-text"),
    pytest.param(doc(type="consent", properties={"channels": ["ads"]}), False, id="consent-channels-as-list"),
    pytest.param(doc(type="erase", properties={"suppress": "false"}), False, id="erase-suppress-as-text"),
    pytest.param(
        doc(type="consent", properties={"channel": "Email", "granted": False}), False, id="consent-channel-case"
    ),
    pytest.param(doc(type="consent", properties={"channels": {"Email": False}}), False, id="consent-channels-case"),
    pytest.param(doc(type="consent", properties={"channel": None, "granted": True}), True, id="consent-every-channel"),
    pytest.param(doc(type="preferences", properties={"timezone": "Europe/Paris"}), True, id="preferences-zone"),
    pytest.param(doc(type="preferences", properties={"timezone": 1}), False, id="preferences-zone-number"),
    pytest.param(
        doc(type="preferences", properties={"quiet_hours": {"start": "21:00", "end": "8:00"}}), True, id="quiet"
    ),
    pytest.param(doc(type="preferences", properties={"quiet_hours": None}), True, id="quiet-null"),
    pytest.param(
        doc(type="preferences", properties={"quiet_hours": {"start": "9pm", "end": "8am"}}), False, id="quiet-9pm"
    ),
    pytest.param(doc(type="preferences", properties={"quiet_hours": {"start": "21:00"}}), False, id="quiet-no-end"),
    pytest.param(doc(type="preferences", properties={"preferred_channels": [" Email"]}), True, id="preferred"),
    pytest.param(doc(type="preferences", properties={"preferred_channels": [7]}), False, id="preferred-number"),
    # Characters where Python's and JavaScript's regular expressions differ: the Kelvin sign
    # lower-cases to k in Python; \ufeff is space in JavaScript only, \x85 and \x1c in Python only.
    pytest.param(doc(type="preferences", properties={"preferred_channels": ["\u212aakao"]}), False, id="kelvin"),
    pytest.param(doc(type="preferences", properties={"preferred_channels": ["\ufeffemail"]}), False, id="bom"),
    pytest.param(doc(type="preferences", properties={"preferred_channels": ["email\x85"]}), False, id="nel"),
    pytest.param(doc(customer_id="\ufeff"), False, id="customer-id-bom"),
    pytest.param(doc(customer_id="\x85\x1c"), False, id="customer-id-python-space"),
    pytest.param(doc(identifiers={"cookie": "\ufeff"}), False, id="identifier-bom"),
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


# Times of events: what the JSON Schema says (with a validator's defaults, which ignore
# ``format``) must be what the product does, on the same samples. (time, accepted)
TIMES = [
    pytest.param(TS, True, id="epoch-seconds"),
    pytest.param(TS + 0.25, True, id="epoch-seconds-fraction"),
    pytest.param(EARLIEST_TS, True, id="epoch-2000-01-01"),
    pytest.param(LATEST_TS - 1, True, id="epoch-last-second-before-3000"),
    pytest.param("2026-11-22T10:02:03Z", True, id="iso-z"),
    pytest.param("2026-11-22T12:02:03+02:00", True, id="iso-offset"),
    pytest.param("2026-11-22T04:32:03.250-05:30", True, id="iso-fraction-negative-offset"),
    pytest.param("2026-11-22 10:02:03+00:00", True, id="iso-space"),
    pytest.param("2026-11-22T10:02Z", True, id="iso-no-seconds"),
    pytest.param("2000-01-01T00:00:00Z", True, id="iso-2000"),
    pytest.param(TS * 1000, False, id="epoch-milliseconds"),
    pytest.param(915_148_800, False, id="epoch-1999"),
    pytest.param(0, False, id="epoch-zero"),
    pytest.param(-1, False, id="epoch-negative"),
    pytest.param(EARLIEST_TS - 1, False, id="epoch-just-before-2000"),
    pytest.param(LATEST_TS, False, id="epoch-3000"),
    pytest.param("noon", False, id="noon"),
    pytest.param("", False, id="empty-string"),
    pytest.param(str(TS), False, id="epoch-as-string"),
    pytest.param("2026-11-22T10:02:03", False, id="iso-without-offset"),
    pytest.param("2026-11-22", False, id="date-only"),
    pytest.param("1999-12-31T23:59:59Z", False, id="iso-1999"),
    pytest.param("3000-01-01T00:00:00Z", False, id="iso-3000"),
    pytest.param("2026-13-01T00:00:00Z", False, id="iso-month-13"),
    pytest.param("2026-11-22T24:00:00Z", False, id="iso-hour-24"),
    pytest.param("2026-11-22T10:02:03+24:00", False, id="iso-offset-24h"),
    pytest.param(True, False, id="boolean"),
    pytest.param(None, False, id="null"),
    pytest.param([TS], False, id="list"),
]


def ingest_accepts(document: dict) -> bool:
    """The stream's check: what ingest does not dead-letter (no clock to be ahead of)."""
    payload = json.dumps(document).encode()
    result = ingest(
        payload, topic="events.web", headers=[], received_at=TS, now=LATEST_TS, topics=TopicNames(), limits=Limits()
    )
    return isinstance(result, Event)


def send_accepts(document: dict) -> bool:
    """``orchestrator send``'s check of a line before it sends it (no clock to be ahead of:
    the skew allowed reaches past the year 3000)."""
    check = _Check("events.web", TopicNames(), Limits(max_future_skew_s=LATEST_TS))
    try:
        _prepare(json.dumps(document).encode(), check)
    except CliError:
        return False
    return True


@pytest.mark.parametrize(("ts", "accepted"), TIMES)
def test_the_json_schema_accepts_the_times_the_product_accepts_and_no_others(ts, accepted):
    document = doc(ts=ts)
    verdicts = validator("channel_event").is_valid(document), ingest_accepts(document), send_accepts(document)
    assert verdicts == (accepted, accepted, accepted)


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param("2026-02-30T10:00:00Z", id="a-day-the-month-lacks"),
        pytest.param("2000-01-01T00:30:00+01:00", id="offset-moves-it-into-1999"),
        pytest.param("2999-12-31T23:30:00-01:00", id="offset-moves-it-into-3000"),
        pytest.param(float("nan"), id="nan"),
    ],
)
def test_only_the_product_catches_what_json_schema_cannot_say(ts):
    # A calendar, an offset's arithmetic and "finite" are beyond a pattern and bounds (NaN is
    # not JSON anyway); ingest refuses them, and a time ahead of its clock, itself.
    assert validator("channel_event").is_valid(doc(ts=ts))
    assert not model_accepts(doc(ts=ts)) or not ingest_accepts(doc(ts=ts))


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
