"""Bytes <-> Python objects for the wire: msgpack by default, JSON accepted.

A payload is JSON when its producer says so (``content-type: application/json``)
or when it starts with ``{``: that byte is the positive fixint 123 in msgpack,
which can never be a whole event, so the sniff is unambiguous.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

JSON = "application/json"
MSGPACK = "application/msgpack"


class DecodeError(ValueError):
    """The payload is not a msgpack or JSON document we can read."""


def content_type_of(headers: Any) -> str | None:
    """Find a ``content-type`` header in Kafka's list of (name, bytes) pairs."""
    for name, value in _header_items(headers):
        if name.lower() == "content-type" and value is not None:
            raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            return raw.split(";")[0].strip().lower()
    return None


def _header_items(headers: Any) -> list[tuple[str, Any]]:
    if not headers:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return [(str(k), v) for k, v in headers]


def is_json(payload: bytes, content_type: str | None) -> bool:
    """Decide the encoding from the header first, then from the first byte."""
    if content_type is not None:
        return content_type in (JSON, "text/json")
    return payload[:1] == b"{"


def decode_payload(payload: bytes, content_type: str | None = None) -> Any:
    """Decode one message value; raise :class:`DecodeError` with a readable reason."""
    if not payload:
        raise DecodeError("empty payload")
    if is_json(payload, content_type):
        return _decode_json(payload)
    return _decode_msgpack(payload)


INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


def _bounded_int(text: str) -> int:
    """JSON integers must fit msgpack's 64 bits, or the event could not travel on."""
    if len(text) > 21:
        raise ValueError(f"integer {text[:20]}... out of 64-bit range")
    value = int(text)
    if not INT64_MIN <= value <= UINT64_MAX:
        raise ValueError(f"integer {text} out of 64-bit range")
    return value


def _decode_json(payload: bytes) -> Any:
    try:
        return json.loads(payload, parse_int=_bounded_int)
    except RecursionError as exc:
        raise DecodeError("JSON nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and our integer bound
        raise DecodeError(f"not valid JSON: {exc}") from exc


# Every byte that is a digit read as "0", every other byte as a space: a run of this many
# "0"s is then the only place an integer beyond 64 bits could be (2**63 has 19 digits).
_DIGITS_AS_ZEROS = bytes(ord("0") if b in b"0123456789" else ord(" ") for b in range(256))
_SHORTEST_OUT_OF_RANGE = b"0" * len(str(2**63))


def check_json_integers(payload: bytes) -> None:
    """Raise the :class:`DecodeError` :func:`decode_payload` raises for a JSON document with
    an integer beyond 64 bits, for readers that parse JSON another way (pydantic takes any
    integer) yet must refuse what the stream refuses. Under a microsecond for a typical
    line: only one with 19 digits in a row is decoded again."""
    if _SHORTEST_OUT_OF_RANGE in payload.translate(_DIGITS_AS_ZEROS):
        _decode_json(payload)


def _decode_msgpack(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, timestamp=0)
    except msgpack.ExtraData as exc:
        raise DecodeError("not valid msgpack: trailing bytes after the document") from exc
    except (msgpack.StackError, RecursionError) as exc:
        raise DecodeError("msgpack nested too deeply") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError(f"not valid msgpack: {str(exc) or type(exc).__name__}") from exc


def encode_payload(obj: Any, encoding: str = "msgpack") -> bytes:
    """Encode for the wire; ``encoding`` is ``msgpack`` or ``json``."""
    if encoding == "json":
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return msgpack.packb(obj, use_bin_type=True)


def content_type_header(encoding: str) -> list[tuple[str, bytes]]:
    """The header we attach to everything we produce, so consumers need not sniff."""
    return [("content-type", (JSON if encoding == "json" else MSGPACK).encode())]
