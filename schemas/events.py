"""ChannelEvent: what channel systems publish to ``events.<channel>``."""

from __future__ import annotations

import functools
import json
import math
import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# The event types the product knows and documents. Channels may send others (any name that
# matches NAME_PATTERN): metrics count those as "other", and ``journeys validate`` warns of a
# journey waiting for one, which is more often a typo than a type nobody sends yet.
KNOWN_EVENT_TYPES = frozenset(
    {
        "page_view",
        "search",
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
        "email_open",
        "email_click",
        "ad_click",
        "ad_impression",
        "store_visit",
        "app_open",
        "support_contact",
        "consent",
        "preferences",
        "identify",
        "signup",
    }
)
CHANNEL_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
# Properties that say yes or no, by event type: only true or false will do. Read as Python
# does, "false" would count as true (an erasure suppressing the customer for ever); skipped, an
# opt-out written "false" would do nothing at all, and the customer would still be contacted.
SWITCHES = {"consent": ("granted", "do_not_contact"), "erase": ("suppress",)}
SWITCH_MAPS = {"consent": "channels"}  # a map of channel to true or false
IDENTIFIER_KIND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
CLOCK_PATTERN = r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$"  # a local clock time, H:MM or HH:MM
MAX_CONSENT_CHANNELS = 64  # channels in one consent's ``channels``
# fullmatch, never match: Python's $ also matches before a final line end ("email\n").
_CHANNEL, _CLOCK = re.compile(CHANNEL_PATTERN), re.compile(CLOCK_PATTERN)


def is_channel_name(name: Any) -> bool:
    """Whether ``name`` is a channel as commands and topics spell it (``email``): the one check
    of a channel name, whole, for ingest, the fold, settings, the API and the CLI."""
    return isinstance(name, str) and _CHANNEL.fullmatch(name) is not None


EARLIEST_TS = 946684800.0  # 2000-01-01: anything older is a unit mistake, not history.
LATEST_TS = 32503680000.0  # 3000-01-01: anything later is milliseconds (or worse), not seconds.
# The ISO form the JSON Schema promises (RFC 3339 with a year from 2000 to 2999, seconds
# optional, the offset required). Ingest accepts a little more (any form fromisoformat
# reads); what it refuses and this lets through: a day the month lacks (Feb 30), a time
# whose offset moves it across 2000 or 3000, and a time ahead of the clock.
ISO_WITH_OFFSET = (
    r"^2[0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]"
    r"(:[0-5][0-9](\.[0-9]+)?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# The schema says what ingest enforces, as far as JSON Schema can: the ``format`` alone is
# not checked by default validators, so the pattern and the bounds carry the rules.
Timestamp = Annotated[
    float,
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "minimum": EARLIEST_TS,
                    "exclusiveMaximum": LATEST_TS,
                    "description": "epoch seconds, from 2000 up to 3000 (not milliseconds)",
                },
                {
                    "type": "string",
                    "format": "date-time",
                    "pattern": ISO_WITH_OFFSET,
                    "description": "ISO-8601 with an offset (Z or +hh:mm), from 2000 up to 3000",
                },
            ]
        }
    ),
]
Text = Annotated[str, Field(min_length=1, max_length=128)]
# Written out because pydantic renders a key pattern as patternProperties, which
# lets other keys through; propertyNames says what the model enforces.
# A value must keep something once normalised (trimmed; a phone number to its digits): every
# "n/a" phone would otherwise be the one token ``phone:``, and its customers one profile.
# Blank is the space of either regex dialect: Python's ``\s`` adds \x1c-\x1f and \x85 to
# JavaScript's, which adds \ufeff, and channel teams validate with JavaScript's, so the JSON
# Schema must not take as someone what ingest takes for blank. ``\d`` stays: JavaScript's is
# [0-9] only, stricter than Python's (any script's digits, which the phone token keeps).
NOT_BLANK, HAS_DIGIT = r"[^\s\x1c-\x1f\x85\ufeff]", r"\d"
_NOT_BLANK, _HAS_DIGIT = re.compile(NOT_BLANK), re.compile(HAS_DIGIT)
_IDENTIFIER_VALUE = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": NOT_BLANK}
IDENTIFIERS_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {"pattern": IDENTIFIER_KIND_PATTERN},
            "properties": {"phone": _IDENTIFIER_VALUE | {"pattern": HAS_DIGIT}},
            "additionalProperties": _IDENTIFIER_VALUE,
        },
        {"type": "null"},
    ]
}


def parse_timestamp(value: Any) -> float:
    """Epoch seconds, or ISO-8601 *with an offset*: a naive local time is ambiguous."""
    if isinstance(value, bool):
        raise ValueError("must be epoch seconds or ISO-8601 with an offset, not a boolean")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError("must be a finite number of epoch seconds")
        return seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset")
        return parsed.timestamp()
    raise ValueError("must be epoch seconds or an ISO-8601 string with an offset")


class ChannelEvent(BaseModel):
    """One thing a customer did, seen by one channel."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    event_id: Text = Field(description="Unique id; the deduplication key.")
    type: str = Field(pattern=NAME_PATTERN, description="page_view, search, purchase, consent, ...")
    ts: Timestamp = Field(description="When it happened: epoch seconds or ISO-8601 with offset.")
    customer_id: Text | None = Field(
        default=None, description="The channel's customer id, if known.", json_schema_extra={"pattern": NOT_BLANK}
    )
    identifiers: Annotated[
        dict[
            Annotated[str, Field(pattern=IDENTIFIER_KIND_PATTERN)],
            Annotated[str, Field(min_length=1, max_length=256)],
        ]
        | None,
        WithJsonSchema(IDENTIFIERS_SCHEMA),
    ] = Field(
        default=None,
        max_length=16,
        description="Other ids for the same person: email, phone, cookie, device, loyalty_id.",
    )
    channel: str | None = Field(default=None, pattern=CHANNEL_PATTERN, description="Defaults from the topic name.")
    properties: dict[str, Any] = Field(
        default_factory=dict, description="product, value, currency, query, campaign, ..."
    )
    action_id: Text | None = Field(default=None, description="Set on responses to a command.")

    @field_validator("properties")
    @classmethod
    def _switches_are_true_or_false(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("type")
        for name in SWITCHES.get(str(kind), ()):
            if name in value and type(value[name]) is not bool:
                raise PydanticCustomError("switch", f"{name} must be true or false, not {_json(value[name])}")
        listed = SWITCH_MAPS.get(str(kind))
        if listed is not None and listed in value:
            switches = value[listed]
            if not isinstance(switches, dict) or any(type(on) is not bool for on in switches.values()):
                raise PydanticCustomError("switch", f"{listed} must map each channel to true or false")
        return value

    @field_validator("properties")
    @classmethod
    def _usable_by_type(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Properties nobody could act on are refused, not ignored (see ``PROPERTY_CHECKS``):
        one lookup by type, so other events pay nothing more."""
        check = PROPERTY_CHECKS.get(str(info.data.get("type")))
        problem = check(value) if check is not None else None
        if problem is not None:
            raise PydanticCustomError("properties", problem)
        return value

    @field_validator("customer_id")
    @classmethod
    def _customer_id_names_someone(cls, value: str | None) -> str | None:
        """A channel that writes " " for every customer it does not know would pool them all
        in one profile, as a blank identifier would."""
        if value is not None and not _NOT_BLANK.search(value):
            raise PydanticCustomError("customer_id", f"customer_id must not be blank, not {_json(value)}")
        return value

    @field_validator("identifiers")
    @classmethod
    def _identifiers_name_someone(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for kind, text in (value or {}).items():
            if kind == "phone" and not _HAS_DIGIT.search(text):
                raise PydanticCustomError("identifier", f"phone must hold a digit, not {_json(text)}")
            if not _NOT_BLANK.search(text):
                raise PydanticCustomError("identifier", f"{kind} must not be blank, not {_json(text)}")
        return value

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any) -> float:
        return parse_timestamp(value)

    @model_validator(mode="after")
    def _needs_identity(self) -> ChannelEvent:
        if not self.customer_id and not self.identifiers:
            raise ValueError("needs customer_id or at least one identifier")
        return self


def consent_problem(properties: dict[str, Any]) -> str | None:
    """A consent names channels as commands do (``email``): ``Email`` would be stored, never
    match a command's channel, and the opt-out would do nothing."""
    channel = properties.get("channel")
    if channel is not None and not is_channel_name(channel):
        return f"channel must be a channel name such as email, not {_json(channel)}"
    named = properties.get("channels")
    if not isinstance(named, dict):
        return None
    if len(named) > MAX_CONSENT_CHANNELS:
        return f"channels may name at most {MAX_CONSENT_CHANNELS} channels"
    wrong = next((name for name in named if not is_channel_name(name)), None)
    return None if wrong is None else f"channels must be channel names such as email, not {_json(wrong)}"


def preferences_problem(properties: dict[str, Any]) -> str | None:
    """A preference nobody can read is refused, not ignored: quiet hours written ``9pm`` would
    leave the customer messaged at night without anyone knowing."""
    if "timezone" in properties and known_zone(properties["timezone"]) is None:
        return f"timezone must be an IANA time zone such as Europe/Paris, not {_json(properties['timezone'])}"
    if "quiet_hours" in properties and not _is_window(properties["quiet_hours"]):
        return 'quiet_hours must be {"start": "HH:MM", "end": "HH:MM"} with two different times, or null'
    listed = properties.get("preferred_channels", [])
    if not isinstance(listed, list) or not all(
        isinstance(name, str) and name.isascii() and is_channel_name(name.strip().lower()) for name in listed
    ):
        return f"preferred_channels must be a list of channel names such as email, not {_json(listed)}"
    return None


def _is_window(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict) or set(value) != {"start", "end"}:
        return False
    start, end = clock_minutes(value["start"]), clock_minutes(value["end"])
    return start is not None and end is not None and start != end


def clock_minutes(text: Any) -> int | None:
    """Minutes after midnight of an ``H:MM``/``HH:MM`` clock time, or None."""
    match = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    return None if match is None else int(match[1]) * 60 + int(match[2])


PROPERTY_CHECKS = {"consent": consent_problem, "preferences": preferences_problem}


def known_zone(name: Any) -> str | None:
    """The IANA time zone ``name`` stands for, in any case (``asia/tokyo`` is ``Asia/Tokyo``),
    or None."""
    return _zones().get(name.lower()) if isinstance(name, str) else None


@functools.cache
def _zones() -> dict[str, str]:
    return {zone.lower(): zone for zone in zoneinfo.available_timezones()}


def _json(value: Any) -> str:
    """A value as a channel team wrote it, shortened: "false" (a string), 1, null."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


_CLOCK_TEXT: JsonValue = {"type": "string", "pattern": CLOCK_PATTERN}
# What the validators above check of a type's properties, as far as JSON Schema can say it
# (not: that a time zone exists, that quiet hours start and end at different times).
_PROPERTY_RULES: dict[str, dict[str, JsonValue]] = {
    "consent": {
        "channel": {"type": ["string", "null"], "pattern": CHANNEL_PATTERN},
        "channels": {
            "type": "object",
            "maxProperties": MAX_CONSENT_CHANNELS,
            "propertyNames": {"pattern": CHANNEL_PATTERN},
        },
    },
    "preferences": {
        "timezone": {"type": "string", "description": "an IANA time zone such as Europe/Paris (any case)"},
        "quiet_hours": {
            "type": ["object", "null"],
            "required": ["start", "end"],
            "additionalProperties": False,
            "properties": {"start": _CLOCK_TEXT, "end": _CLOCK_TEXT},
            "description": "local clock times H:MM or HH:MM, start and end different; null: none any more",
        },
        "preferred_channels": {
            "type": "array",
            # ASCII spaces only around the name: JavaScript's \s takes \ufeff, which str.strip keeps
            "items": {"type": "string", "pattern": r"^[ \t\n\r\f\v]*[A-Za-z][A-Za-z0-9_-]{0,63}[ \t\n\r\f\v]*$"},
        },
    },
}


def _switch_rules() -> list[JsonValue]:
    """SWITCHES, SWITCH_MAPS and the other property rules as JSON Schema, one rule per type."""
    rules: list[JsonValue] = []
    for kind in sorted({*SWITCHES, *SWITCH_MAPS, *_PROPERTY_RULES}):
        fields: dict[str, JsonValue] = {name: {"type": "boolean"} for name in SWITCHES.get(kind, ())}
        fields |= _PROPERTY_RULES.get(kind, {})
        if kind in SWITCH_MAPS:
            switches = dict(fields.get(SWITCH_MAPS[kind]) or {})  # type: ignore[arg-type]
            fields[SWITCH_MAPS[kind]] = switches | {"type": "object", "additionalProperties": {"type": "boolean"}}
        rules.append(
            {
                "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                "then": {"properties": {"properties": {"properties": fields}}},
            }
        )
    return rules


ChannelEvent.model_config["json_schema_extra"] = {
    "allOf": _switch_rules(),
    "anyOf": [
        {"required": ["customer_id"], "properties": {"customer_id": {"type": "string"}}},
        {"required": ["identifiers"], "properties": {"identifiers": {"type": "object", "minProperties": 1}}},
    ],
    "examples": [
        {
            "event_id": "web-7f3a",
            "type": "search",
            "ts": "2026-11-22T10:02:03+00:00",
            "customer_id": "c-42",
            "properties": {"query": "trail running shoes"},
        }
    ],
}
ChannelEvent.model_rebuild(force=True)
