"""The wire codec: msgpack by default, JSON when the header or the first byte says so."""

from __future__ import annotations

import json

import msgpack
import pytest

from schemas.codec import (
    JSON,
    MSGPACK,
    DecodeError,
    check_json_integers,
    content_type_header,
    content_type_of,
    decode_payload,
    encode_payload,
)

EVENT = {
    "event_id": "web-7f3a",
    "type": "search",
    "ts": 1_800_000_000.5,
    "customer_id": "c-42",
    "properties": {"query": "trail running shoes", "tags": ["a", "b"], "n": 3, "ok": True, "none": None},
}


def test_an_event_survives_a_msgpack_round_trip_unchanged():
    assert decode_payload(encode_payload(EVENT)) == EVENT


def test_an_event_survives_a_json_round_trip_unchanged():
    payload = encode_payload(EVENT, "json")
    assert payload.startswith(b"{")
    assert decode_payload(payload, JSON) == EVENT


def test_json_is_read_when_the_producer_says_so_in_the_content_type_header():
    payload = json.dumps(EVENT).encode()
    headers = [("Content-Type", b"application/json; charset=utf-8")]
    assert decode_payload(payload, content_type_of(headers)) == EVENT


def test_json_is_read_without_a_header_when_the_payload_starts_with_a_brace():
    assert decode_payload(json.dumps(EVENT).encode()) == EVENT


def test_a_json_array_with_the_json_header_is_decoded_as_json():
    assert decode_payload(b"[1, 2]", JSON) == [1, 2]


def test_the_header_wins_over_the_first_byte():
    # "{" is a msgpack fixint followed by junk when the producer insists on msgpack.
    with pytest.raises(DecodeError):
        decode_payload(b'{"a": 1}', MSGPACK)


def test_content_type_is_found_in_kafka_headers_case_insensitively():
    assert content_type_of([("x-trace", b"1"), ("CONTENT-TYPE", b" Application/JSON ")]) == JSON
    assert content_type_of({"content-type": b"application/msgpack"}) == MSGPACK
    assert content_type_of(None) is None
    assert content_type_of([("content-type", None)]) is None


def test_what_we_produce_carries_a_content_type_header_for_its_encoding():
    assert content_type_header("json") == [("content-type", JSON.encode())]
    assert content_type_header("msgpack") == [("content-type", MSGPACK.encode())]


@pytest.mark.parametrize(
    ("payload", "content_type", "message"),
    [
        pytest.param(b"", None, "empty payload", id="empty"),
        pytest.param(b"", JSON, "empty payload", id="empty-json"),
        pytest.param(b"\x92\x01", None, "incomplete", id="truncated-msgpack"),
        pytest.param(b"\x01\x02", None, "trailing bytes", id="trailing-msgpack"),
        pytest.param(msgpack.packb({"a": 1}) + b"\x00", None, "trailing bytes", id="trailing-after-map"),
        pytest.param(b"\xa2\xff\xfe", None, "utf-8", id="msgpack-bad-utf8"),
        pytest.param(b"\x81\x01\x02", None, "map key", id="msgpack-int-key"),
        pytest.param(b'{"a": 1', None, "not valid JSON", id="truncated-json"),
        pytest.param(b'{"a": 1} x', None, "not valid JSON", id="trailing-json"),
        pytest.param(b'{"a": "\xff"}', None, "not valid JSON", id="json-bad-utf8"),
        pytest.param(b"\x00\x01garbage", JSON, "not valid JSON", id="garbage-as-json"),
        pytest.param(b"[" * 100_000, JSON, "nested too deeply", id="deep-json-array"),
        pytest.param(b'{"a":' * 100_000, None, "nested too deeply", id="deep-json-object"),
    ],
)
def test_unreadable_payloads_raise_decode_error_with_a_readable_reason(payload, content_type, message):
    with pytest.raises(DecodeError, match=message):
        decode_payload(payload, content_type)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x00\x01garbage", id="garbage"),
        pytest.param(b"[" * 100_000, id="deep-array-sniffed-as-msgpack"),
        pytest.param(b"\x91" * 100_000, id="deep-msgpack"),
        pytest.param(b"\xc1", id="reserved-msgpack-byte"),
        pytest.param(bytes(range(256)), id="all-bytes"),
    ],
)
def test_any_garbage_raises_decode_error_and_never_another_exception(payload):
    with pytest.raises(DecodeError):
        decode_payload(payload)


def test_a_decode_error_is_a_value_error_so_callers_can_catch_either():
    assert issubclass(DecodeError, ValueError)


def test_a_json_integer_too_long_for_python_is_a_decode_error():
    payload = b'{"ts": ' + b"1" * 5000 + b"}"
    with pytest.raises(DecodeError):
        decode_payload(payload)


@pytest.mark.parametrize(
    "payload",
    [pytest.param(b"\x91" * 100_000, id="deep-msgpack"), pytest.param(b"\xc1", id="reserved-byte")],
)
def test_every_msgpack_decode_error_says_what_is_wrong(payload):
    with pytest.raises(DecodeError) as caught:
        decode_payload(payload)
    assert not str(caught.value).rstrip().endswith(":"), str(caught.value)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v": 18446744073709551616}',
        b'{"v": -9223372036854775809}',
        b'{"v": 1' + b"0" * 40 + b"}",
        b'{"a": [1, 2, {"b": ' + str(2**70).encode() + b"}]}",
    ],
)
def test_check_json_integers_refuses_what_decoding_refuses(payload):
    with pytest.raises(DecodeError) as decoding:
        decode_payload(payload, JSON)
    with pytest.raises(DecodeError) as checking:
        check_json_integers(payload)

    assert str(checking.value) == str(decoding.value)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v": 18446744073709551615, "w": -9223372036854775808}',
        b'{"id": "123456789012345678901234567890"}',  # digits in a string are no integer
        b'{"v": 1.0000000000000000000000001}',
        b'{"ts": 1790000000.25, "n": 3}',
    ],
)
def test_check_json_integers_lets_through_what_decoding_takes(payload):
    decode_payload(payload, JSON)
    check_json_integers(payload)
