"""ChannelEvent: what channel systems publish to ``events.<channel>``."""

from __future__ import annotations

import json
import math
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
IDENTIFIERS_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "maxProperties": 16,
            "propertyNames": {"pattern": IDENTIFIER_KIND_PATTERN},
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 256},
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
    customer_id: Text | None = Field(default=None, description="The channel's customer id, if known.")
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

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any) -> float:
        return parse_timestamp(value)

    @model_validator(mode="after")
    def _needs_identity(self) -> ChannelEvent:
        if not self.customer_id and not self.identifiers:
            raise ValueError("needs customer_id or at least one identifier")
        return self


def _json(value: Any) -> str:
    """A value as a channel team wrote it, shortened: "false" (a string), 1, null."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def _switch_rules() -> list[JsonValue]:
    """SWITCHES and SWITCH_MAPS as JSON Schema: for each such type, its switches are booleans."""
    rules: list[JsonValue] = []
    for kind in sorted({*SWITCHES, *SWITCH_MAPS}):
        fields: dict[str, JsonValue] = {name: {"type": "boolean"} for name in SWITCHES.get(kind, ())}
        if kind in SWITCH_MAPS:
            fields[SWITCH_MAPS[kind]] = {"type": "object", "additionalProperties": {"type": "boolean"}}
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
