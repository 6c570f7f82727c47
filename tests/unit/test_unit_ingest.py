"""ingest(): raw record -> normalised Event, or a Rejection with a reason; never an exception."""

from __future__ import annotations

import json
import re
from dataclasses import asdict

import msgpack
import pytest

from agents.outbound import DLQ_OVERHEAD, dead_letter_body, dead_letter_key
from orchestrator.core.event import Event, customer_key
from orchestrator.history import event_parser
from orchestrator.ingest import EARLIEST_TS, Limits, Rejection, depth_of, ingest
from orchestrator.topics import TopicNames
from schemas.codec import encode_payload

NOW = 1_800_000_000.0
JSON_HEADERS = [("content-type", b"application/json")]


def doc(**changes):
    base = {"event_id": "web-1", "type": "search", "ts": NOW - 5, "customer_id": "c-42", "properties": {"query": "q"}}
    merged = {**base, **changes}
    return {k: v for k, v in merged.items() if v is not ...}


DEFAULT_TOPICS = TopicNames()
DEFAULT_LIMITS = Limits()


def run(payload, *, topic="events.web", headers=None, topics=DEFAULT_TOPICS, limits=DEFAULT_LIMITS):
    return ingest(payload, topic=topic, headers=headers, received_at=NOW + 1, now=NOW, topics=topics, limits=limits)


def rejected(result, reason: str) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    return result


def nested(levels: int) -> dict:
    """A ``properties`` value that brings the whole event to ``levels`` levels of maps."""
    inner: dict = {"leaf": 1}
    for _ in range(levels - 2):  # the event is level 1, the innermost map is level ``levels``
        inner = {"a": inner}
    return inner


def test_a_valid_msgpack_event_becomes_a_normalised_event():
    result = run(encode_payload(doc(ts="2027-01-15T09:00:00+01:00")))
    assert isinstance(result, Event)
    assert result.event_id == "web-1"
    assert result.type == "search"
    assert result.channel == "web"
    assert result.customer_key == "c-42"
    assert result.customer_id == "c-42"
    assert result.received_at == NOW + 1
    assert result.properties == {"query": "q"}
    assert isinstance(result.ts, float)


def test_a_valid_json_event_is_accepted_with_or_without_the_header():
    payload = json.dumps(doc()).encode()
    assert isinstance(run(payload, headers=JSON_HEADERS), Event)
    assert isinstance(run(payload), Event)


def test_an_accepted_event_survives_the_wire_format_of_the_internal_topic():
    result = run(encode_payload(doc(identifiers={"email": "a@example.com"})))
    assert Event.from_wire(msgpack.unpackb(msgpack.packb(result.to_wire()))) == result


def test_the_wire_map_of_an_event_is_every_field_and_leaves_the_event_as_it_was():
    event = Event(
        "e-1",
        "purchase",
        1.79e9,
        "c-1",
        "web",
        1.79e9 + 1,
        "c-1",
        {"email": "a@example.com"},
        {"products": [{"id": "sku-1", "qty": 2}], "value": 20.0},
        "act-1",
        2,
    )
    wire = event.to_wire()
    assert wire == asdict(event)
    assert Event.from_wire(msgpack.unpackb(msgpack.packb(wire), raw=False)) == event
    wire["properties"]["value"] = 0.0  # the internal topic's map, changed: the event is not
    wire["identifiers"].clear()
    assert event.properties["value"] == 20.0 and event.identifiers == {"email": "a@example.com"}


@pytest.mark.parametrize("payload", [b"", None])
def test_an_empty_record_is_rejected_as_empty(payload):
    rejected(run(payload), "empty")


def test_a_record_over_the_size_limit_is_rejected_as_too_large():
    payload = encode_payload(doc(properties={"blob": "x" * 2000}))
    result = rejected(run(payload, limits=Limits(max_message_bytes=1000)), "too_large")
    assert str(len(payload)) in result.detail
    assert "1000" in result.detail


def test_a_record_exactly_at_the_size_limit_is_accepted():
    payload = encode_payload(doc())
    assert isinstance(run(payload, limits=Limits(max_message_bytes=len(payload))), Event)


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        pytest.param(b"\x00\x01garbage", None, id="garbage"),
        pytest.param(b'{"event_id": "e1", ', None, id="truncated-json"),
        pytest.param(encode_payload(doc()), JSON_HEADERS, id="msgpack-labelled-as-json"),
        pytest.param(encode_payload(doc()) + b"\x00", None, id="trailing-bytes"),
    ],
)
def test_bytes_that_are_neither_msgpack_nor_json_are_rejected_as_undecodable(payload, headers):
    result = rejected(run(payload, headers=headers), "undecodable")
    assert "not valid" in result.detail


@pytest.mark.parametrize(
    "document",
    [
        pytest.param([doc()], id="list"),
        pytest.param("an event", id="string"),
        pytest.param(42, id="int"),
        pytest.param(None, id="nil"),
    ],
)
def test_a_document_that_is_not_a_map_is_rejected_as_not_an_object(document):
    result = rejected(run(msgpack.packb(document)), "not_an_object")
    assert "expected a map" in result.detail


def test_properties_nested_beyond_the_depth_limit_are_rejected_as_too_deep():
    limits = Limits(max_depth=8)
    assert depth_of(doc(properties=nested(9)), 100) == 9
    result = rejected(run(encode_payload(doc(properties=nested(9))), limits=limits), "too_deep")
    assert "8" in result.detail


def test_properties_nested_exactly_to_the_depth_limit_are_accepted():
    assert depth_of(doc(properties=nested(8)), 100) == 8
    assert isinstance(run(encode_payload(doc(properties=nested(8))), limits=Limits(max_depth=8)), Event)


def test_nesting_is_counted_through_lists_as_well_as_maps():
    deep = doc(properties={"a": [[[[[[[{"x": 1}]]]]]]]})
    rejected(run(encode_payload(deep)), "too_deep")


def test_json_too_deep_for_the_parser_is_rejected_as_too_deep_not_as_a_crash():
    payload = b'{"a":' * 20_000
    rejected(run(payload, limits=Limits(max_message_bytes=10**6)), "too_deep")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"event_id": ...}, "event_id", id="missing-event-id"),
        pytest.param({"type": "Search"}, "type", id="bad-type"),
        pytest.param({"ts": "2026-11-22T10:02:03"}, "ts", id="naive-ts"),
        pytest.param({"event_id": 7}, "event_id", id="event-id-as-int"),
        pytest.param({"colour": "red"}, "colour", id="unknown-field"),
    ],
)
def test_a_schema_violation_is_rejected_as_invalid_naming_the_field(changes, field):
    result = rejected(run(encode_payload(doc(**changes))), "invalid")
    assert field in result.detail


@pytest.mark.parametrize(
    ("kind", "properties", "detail"),
    [
        ("erase", {"suppress": "false"}, 'properties: suppress must be true or false, not "false"'),
        ("consent", {"channel": "ads", "granted": "false"}, 'properties: granted must be true or false, not "false"'),
        ("consent", {"do_not_contact": "true"}, 'properties: do_not_contact must be true or false, not "true"'),
        ("consent", {"channels": {"ads": "no"}}, "properties: channels must map each channel to true or false"),
    ],
)
def test_a_yes_or_no_that_is_not_true_or_false_is_dead_lettered_not_guessed(kind, properties, detail):
    """A string "false" would read as true (a suppression for ever), or be skipped (an opt-out
    that does nothing): the channel team hears of it instead."""
    result = rejected(run(encode_payload(doc(type=kind, properties=properties))), "invalid")

    assert result.detail == detail


QUIET = 'quiet_hours must be {"start": "HH:MM", "end": "HH:MM"} with two different times, or null'
A_CHANNEL = "must be a channel name such as email, not"
ZONE = "timezone must be an IANA time zone such as Europe/Paris, not"
PREFERRED = "preferred_channels must be a list of channel names such as email, not"


@pytest.mark.parametrize(
    ("kind", "properties", "detail"),
    [
        ("consent", {"channel": "Email", "granted": False}, f'channel {A_CHANNEL} "Email"'),
        ("consent", {"channel": "", "granted": False}, f'channel {A_CHANNEL} ""'),
        # A line end after the name: Python's $ matches before it, commands never carry it.
        ("consent", {"channel": "email\n", "granted": False}, f'channel {A_CHANNEL} "email\\n"'),
        ("consent", {"channels": {"email\n": False}}, 'channels must be channel names such as email, not "email\\n"'),
        ("consent", {"channels": {"Email": False}}, 'channels must be channel names such as email, not "Email"'),
        ("consent", {"channels": {f"c{i}": False for i in range(65)}}, "channels may name at most 64 channels"),
        ("preferences", {"timezone": "Mars/Base"}, f'{ZONE} "Mars/Base"'),
        ("preferences", {"timezone": 9}, f"{ZONE} 9"),
        ("preferences", {"quiet_hours": {"start": "9pm", "end": "8am"}}, QUIET),
        ("preferences", {"quiet_hours": {"start": "21:00:00", "end": "08:00:00"}}, QUIET),
        ("preferences", {"quiet_hours": {"start": "21:00", "end": "21:00"}}, QUIET),
        ("preferences", {"quiet_hours": {"start": "21:00"}}, QUIET),
        ("preferences", {"quiet_hours": "21:00-08:00"}, QUIET),
        ("preferences", {"preferred_channels": ["email", 7]}, f'{PREFERRED} ["email", 7]'),
        ("preferences", {"preferred_channels": "email"}, f'{PREFERRED} "email"'),
    ],
)
def test_consent_and_preferences_nobody_could_act_on_are_dead_lettered_not_ignored(kind, properties, detail):
    """``Email: false`` would be stored and match no command's channel; quiet hours of ``9pm``
    would be dropped: either way the customer is messaged against their word, unseen."""
    result = rejected(run(encode_payload(doc(type=kind, properties=properties))), "invalid")

    assert result.detail == f"properties: {detail}"


@pytest.mark.parametrize(
    "properties",
    [
        {"timezone": "asia/tokyo"},
        {"quiet_hours": {"start": "9:30", "end": "07:00"}},
        {"quiet_hours": None},
        {"preferred_channels": [" Email ", "sms"]},
        {"preferred_channels": []},
    ],
)
def test_preferences_written_any_way_they_can_be_read_are_accepted(properties):
    assert isinstance(run(encode_payload(doc(type="preferences", properties=properties))), Event)


def test_a_missing_identity_is_rejected_as_invalid_with_a_readable_detail():
    result = rejected(run(encode_payload(doc(customer_id=...))), "invalid")
    assert "customer_id or at least one identifier" in result.detail


def test_the_invalid_detail_lists_at_most_three_errors_and_counts_the_rest():
    result = rejected(run(encode_payload({"properties": [], "channel": "X", "action_id": ""})), "invalid")
    assert result.detail.count(";") == 2
    assert "more)" in result.detail


def test_a_timestamp_beyond_the_allowed_clock_skew_is_rejected_as_future_timestamp():
    result = rejected(run(encode_payload(doc(ts=NOW + 301))), "future_timestamp")
    assert "301s in the future" in result.detail


def test_a_timestamp_within_the_allowed_clock_skew_is_accepted():
    assert isinstance(run(encode_payload(doc(ts=NOW + 299))), Event)


def test_milliseconds_by_mistake_are_rejected_as_future_timestamp():
    rejected(run(encode_payload(doc(ts=NOW * 1000))), "future_timestamp")


def test_a_timestamp_before_2000_is_rejected_as_invalid():
    result = rejected(run(encode_payload(doc(ts=EARLIEST_TS - 1))), "invalid")
    assert "before 2000" in result.detail


def test_the_channel_defaults_from_the_topic_name():
    assert run(encode_payload(doc()), topic="events.store").channel == "store"


def test_the_channel_defaults_from_a_prefixed_topic_name():
    result = run(encode_payload(doc()), topic="p.events.new-channel", topics=TopicNames("p."))
    assert result.channel == "new-channel"


def test_an_explicit_channel_wins_over_the_topic_name():
    assert run(encode_payload(doc(channel="ads")), topic="events.web").channel == "ads"


def test_an_event_without_channel_on_a_foreign_topic_is_rejected_as_invalid():
    result = rejected(run(encode_payload(doc()), topic="events.web", topics=TopicNames("p.")), "invalid")
    assert "events.web" in result.detail


@pytest.mark.parametrize(
    ("customer_id", "identifiers", "key"),
    [
        pytest.param("c-42", {"email": "a@example.com"}, "c-42", id="customer-id-wins"),
        pytest.param(
            None,
            {"cookie": "k", "device": "d", "phone": "+49", "email": "a@example.com", "loyalty_id": "L1"},
            "loyalty_id:L1",
            id="loyalty-first",
        ),
        pytest.param(None, {"cookie": "k", "device": "d", "phone": "+49", "email": "a@x"}, "email:a@x", id="email"),
        pytest.param(None, {"cookie": "k", "device": "d", "phone": "+49"}, "phone:+49", id="phone"),
        pytest.param(None, {"cookie": "k", "device": "d"}, "device:d", id="device"),
        pytest.param(None, {"cookie": "k", "zz_partner": "z"}, "cookie:k", id="cookie-over-unknown-kinds"),
        pytest.param(None, {"zz_partner": "z", "crm": "9", "ab_test": "t"}, "ab_test:t", id="alphabetical-fallback"),
    ],
)
def test_the_customer_key_prefers_the_most_stable_identifier(customer_id, identifiers, key):
    assert customer_key(customer_id, identifiers) == key
    result = run(encode_payload(doc(customer_id=customer_id or ..., identifiers=identifiers)))
    assert result.customer_key == key
    assert result.identifiers == identifiers


@pytest.mark.parametrize("customer_id", [" ", "\t\n"])
def test_a_blank_customer_id_is_dead_lettered_not_shared(customer_id):
    """A channel that writes " " for every customer it does not know would pool them in one profile."""
    result = rejected(run(encode_payload(doc(customer_id=customer_id))), "invalid")
    assert result.detail == f"customer_id: customer_id must not be blank, not {json.dumps(customer_id)}"


@pytest.mark.parametrize(
    ("identifiers", "detail"),
    [
        ({"phone": "n/a"}, 'identifiers: phone must hold a digit, not "n/a"'),
        ({"phone": "+"}, 'identifiers: phone must hold a digit, not "+"'),
        ({"email": "   "}, 'identifiers: email must not be blank, not "   "'),
        ({"cookie": "\t"}, 'identifiers: cookie must not be blank, not "\\t"'),
    ],
)
def test_an_identifier_that_normalises_to_nothing_is_dead_lettered_not_shared(identifiers, detail):
    """Normalised, each would be the token ``phone:`` (or ``email:``): every customer whose
    channel wrote "n/a" would land on one profile, and an identify would merge them all."""
    for customer_id in (..., "c-42"):
        result = rejected(run(encode_payload(doc(customer_id=customer_id, identifiers=identifiers))), "invalid")
        assert result.detail == detail


def test_every_accepted_event_can_be_forwarded_as_msgpack():
    payload = json.dumps(doc(properties={"value": 10**20})).encode()
    result = run(payload)
    if isinstance(result, Event):
        msgpack.packb(result.to_wire(), use_bin_type=True)


def test_a_timestamp_too_large_for_a_float_is_rejected_not_raised():
    payload = b'{"event_id": "e", "type": "search", "customer_id": "c", "ts": 1' + b"0" * 400 + b"}"
    rejected(run(payload), "undecodable")  # no JSON integer beyond 64 bits gets past decoding


def test_a_json_integer_too_long_to_parse_is_rejected_not_raised():
    payload = b'{"event_id": "e", "type": "search", "customer_id": "c", "ts": ' + b"1" * 5000 + b"}"
    rejected(run(payload), "undecodable")


def test_msgpack_too_deep_for_the_parser_is_rejected_as_too_deep_like_json():
    rejected(run(b"\x81\xa1a" * 2_000 + b"\x01"), "too_deep")  # 6 kB, well under the size limit


UNSENDABLE = [
    (doc(properties={"price": float("nan")}), "properties.price: NaN is not a finite number"),
    (doc(properties={"a": [1, {"b": float("-inf")}]}), "properties.a.1.b: -Infinity is not a finite number"),
    (doc(properties={"query": "\ud800"}), "properties.query: invalid unicode: lone surrogate"),
    (doc(properties={"\udc00x": 1}), "properties.'\\udc00x': invalid unicode: lone surrogate"),
    (doc(customer_id="c-\ud800"), "customer_id: invalid unicode: lone surrogate"),
    (doc(identifiers={"email": "\udfff@x"}), "identifiers.email: invalid unicode: lone surrogate"),
]


@pytest.mark.parametrize(("document", "detail"), UNSENDABLE)
def test_a_non_finite_number_or_a_lone_surrogate_is_refused_the_same_way_live_and_in_replay(document, detail):
    """JSON's NaN and Infinity (and 1e999) would reach commands, which JSON cannot carry; a lone
    surrogate has no UTF-8, so the event could not be forwarded (the agent crashed on it)."""
    line = json.dumps(document).encode()  # Python writes NaN, Infinity and "\ud800" escapes
    assert rejected(run(line), "invalid").detail == detail
    with pytest.raises(ValueError, match=re.escape(detail)):
        event_parser("web")(line)


def test_a_json_number_too_big_for_a_float_is_refused_as_infinite():
    line = json.dumps(doc()).replace('"query": "q"', '"value": 1e999').encode()
    assert rejected(run(line), "invalid").detail == "properties.value: Infinity is not a finite number"


def test_a_non_finite_msgpack_float_is_refused_too():
    assert rejected(run(encode_payload(doc(properties={"x": float("inf")}))), "invalid").detail.startswith(
        "properties.x: Infinity"
    )


def test_a_surrogate_pair_is_one_character_and_accepted():
    result = run(
        b'{"event_id": "e", "type": "search", "ts": %d, "customer_id": "c", "properties": {"q": "\\ud83d\\ude00"}}'
        % (NOW - 5)
    )
    assert isinstance(result, Event) and result.properties == {"q": "\U0001f600"}
    assert event_parser("web")(json.dumps(doc(properties={"q": "\U0001f600"})).encode()).properties == {
        "q": "\U0001f600"
    }


# --- a dead letter fits the producer's largest request -------------------------------------------


def test_a_dead_letter_that_fits_is_the_record_as_it_came_with_the_dlq_headers() -> None:
    value, headers = dead_letter_body(b"k", b"abc", [("h", b"1")], [("dlq.reason", b"invalid")], 1_000_000)
    assert (value, headers) == (b"abc", [("h", b"1"), ("dlq.reason", b"invalid")])


def test_a_dead_letter_too_big_for_the_producer_keeps_the_start_and_says_how_big_it_was() -> None:
    big = b"x" * 1_040_000
    value, headers = dead_letter_body(b"k", big, [("h", b"1")], [("dlq.reason", b"too_large")], 1_000_000)
    assert big.startswith(value) and 900_000 < len(value) < 1_000_000
    assert headers[-2:] == [("dlq.truncated", b"true"), ("dlq.size", b"1040000")]
    assert sum(len(n) + len(v) for n, v in headers) + len(value) + DLQ_OVERHEAD <= 1_000_000


def test_a_key_that_would_crowd_the_letter_out_keeps_its_start_and_says_how_long_it_was() -> None:
    key, cut = dead_letter_key(b"k" * 1_000_000, 1_000_000)
    assert key == b"k" * 1024 and cut == [("dlq.key_truncated", b"true"), ("dlq.key_size", b"1000000")]
    value, headers = dead_letter_body(key, b"x" * 990_000, [], [("dlq.reason", b"invalid"), *cut], 1_000_000)
    assert len(key) + sum(len(n) + len(v) for n, v in headers) + len(value) + DLQ_OVERHEAD <= 1_000_000


@pytest.mark.parametrize("key", [None, b"", b"c-42", b"k" * 249_999])
def test_a_key_that_leaves_room_is_kept_whole(key: bytes | None) -> None:
    assert dead_letter_key(key, 1_000_000) == (key, [])


def test_headers_that_alone_would_crowd_the_letter_out_are_dropped_and_counted() -> None:
    own = [(f"h{i}", b"y" * 10_000) for i in range(60)]
    value, headers = dead_letter_body(None, b"abc", own, [("dlq.reason", b"invalid")], 1_000_000)
    assert value == b"abc"
    assert headers == [("dlq.reason", b"invalid"), ("dlq.headers_dropped", b"60")]
