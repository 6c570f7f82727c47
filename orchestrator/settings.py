"""Configuration, read once from ``ORCH_*`` environment variables.

Every field is documented in the README's configuration table; the names there
are these names upper-cased with the ``ORCH_`` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator.core.policy import CHANNEL_ADDRESSES, RULES, Policy
from orchestrator.identity.tokens import KIND_RANK, Hasher
from orchestrator.ingest import Limits
from orchestrator.redact import masked_url
from schemas.events import IDENTIFIER_KIND_PATTERN, is_channel_name

CHANNEL_RULE = "a channel is lower-case letters, digits, '_' or '-'"
# A Kafka bootstrap server: a name or address ([..] for IPv6), and a port (Kafka's 9092 when left out).
SERVER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Settings(BaseSettings):
    """All knobs of a worker and of the CLI."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",  # what Kafka allows in a topic name
        description="Prepended to every topic and the app id.",
    )
    app_id: str = "orchestrator"
    partitions: int = Field(default=4, ge=1, description="Partitions of the internal topics and tables.")
    replication_factor: int = Field(default=1, ge=1, description="Replicas of every topic the product creates.")
    topic_retention_s: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="How long the product's own log topics keep records; bounds how long erased data survives there.",
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path = Path(".stack/worker")
    log_level: str = "info"

    max_message_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest event taken in; a larger one goes to the dead letters."
    )
    max_depth: int = Field(default=8, ge=2, description="Deepest nesting of maps/lists in an event.")
    max_future_skew_s: float = Field(default=300.0, ge=0)
    dedupe_window: int = Field(default=128, ge=1, description="Recent event ids kept per customer.")
    recent_events: int = Field(default=20, ge=1)

    channels: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset({"web", "search", "ads", "email", "social", "store", "app", "support"}),
        description="events.<channel> and actions.<channel> topics a worker creates at start; others as they appear.",
    )
    topic_discovery_interval_s: float = Field(default=5.0, gt=0)

    output_encoding: str = Field(default="msgpack", pattern="^(msgpack|json)$")
    consent_required_channels: Annotated[frozenset[str], NoDecode] = frozenset()
    frequency_cap_per_day: int = Field(default=3, ge=0, description="Contacts per channel per 24 h.")
    remarketing_cooldown_s: float = Field(default=24 * 3600.0, ge=0)
    remarketing_discount_percent: int = Field(default=10, ge=0, le=100)
    cart_discount_percent: int = Field(default=15, ge=0, le=100)

    rules: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset({"remarketing", "post_purchase"}),
        description="Built-in reflex rules that run besides journeys; empty for journeys only.",
    )
    journeys_dir: Path | None = Field(
        default=None, description="Journey files loaded at start, besides published ones."
    )
    max_active_journeys: int = Field(default=3, ge=1)
    default_timezone: str = "UTC"
    clock: str = Field(default="wall", pattern="^(wall|event)$", description="wall: live; event: time from events.")
    allowed_lateness_s: float = Field(default=5.0, ge=0, description="Event-time mode: how far behind timers run.")
    timer_interval_s: float = Field(default=0.25, gt=0)
    shared_inbound_clock: bool = Field(
        default=True,
        description="Wall clock: waits also wait for other workers reading a backlog (shared through Redis), "
        "for events not keyed by customer id.",
    )
    fetch_wait_ms: int = Field(
        default=25,
        ge=0,
        le=1500,
        description="How long the broker may hold a worker's fetch to gather fetch_min_bytes: fewer, larger "
        "fetches cost far less CPU under a trickle of events, for at most this much latency per hop.",
    )
    fetch_min_bytes: int = Field(
        default=65536, ge=1, description="Bytes a worker's fetch asks for before the broker answers; 1: at once."
    )
    producer_linger_ms: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="How long a worker's producer holds a record to batch it with others for the same "
        "partition: fewer, larger produce requests under load, for at most this much latency per hop; 0: at once.",
    )
    rebalance_stuck_s: float = Field(
        default=120.0,
        ge=0,
        description="A worker whose Faust rebalance callback runs longer exits (code 75) to be restarted; 0: never.",
    )
    rocksdb_memory_mb: int = Field(
        default=256,
        ge=16,
        description="RocksDB memory of one worker, shared by every table partition: block cache, with the "
        "memtables (up to half of it) and index and filter blocks charged to it.",
    )

    readmodel_flush_interval_s: float = Field(default=0.05, gt=0)
    readmodel_batch_max: int = Field(default=500, ge=1)

    identity_hash_key: SecretStr | None = Field(
        default=None, description="HMAC key for identifiers of the kinds below; unset keeps them readable."
    )
    identity_hash_kinds: Annotated[frozenset[str], NoDecode] = frozenset({"email", "phone"})
    quiet_hours_exempt_channels: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset({"ads", "web"}),
        description="Channels that wait for nobody's attention, so quiet hours do not hold them back.",
    )
    channel_addresses: Annotated[tuple[tuple[str, str], ...], NoDecode] = Field(
        default=CHANNEL_ADDRESSES,
        description="channel:identifier_kind pairs: an anonymous profile without that identifier is not sent "
        "commands on that channel (no_address).",
    )
    decisions_kept: int = Field(default=50, ge=1, description="Recent decisions kept per customer for explain.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_tokens: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(), description="Bearer tokens the HTTP API accepts; the API refuses to start without one."
    )

    @field_validator(
        "consent_required_channels",
        "channels",
        "rules",
        "identity_hash_kinds",
        "quiet_hours_exempt_channels",
        "api_tokens",
        mode="before",
    )
    @classmethod
    def _split_channels(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("channels", "consent_required_channels", "quiet_hours_exempt_channels")
    @classmethod
    def _channel_names(cls, value: frozenset[str]) -> frozenset[str]:
        """Channel names become topic names (``actions.<channel>``): a bad one would fail
        half-way through creating them, with Kafka's traceback."""
        _refuse([name for name in value if not is_channel_name(name)], CHANNEL_RULE)
        return value

    @field_validator("channel_addresses", mode="before")
    @classmethod
    def _address_pairs(cls, value: object) -> object:
        """``email:email,sms:phone``: each channel with the identifier kind it delivers to."""
        if not isinstance(value, str):
            return value
        pairs = [part.strip() for part in value.split(",") if part.strip()]
        found = [tuple(side.strip() for side in pair.split(":", 1)) for pair in pairs]
        _refuse(
            [pair for pair, sides in zip(pairs, found, strict=True) if not _address_pair(sides)],
            "each is channel:identifier_kind, e.g. email:email,sms:phone",
        )
        return tuple(found)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_servers(cls, value: str) -> str:
        """The Kafka clients read this only when they connect: a port that is no number ends
        in a traceback there, and no server at all in a wait for the connect timeout. A refused
        server is named with any password in it masked (``user:***@host:9092``)."""
        servers = [server.strip() for server in value.split(",")]
        _refuse(
            [masked_url(server) for server in servers if not _server(server)],
            "Kafka's servers are host:port, comma-separated (a port from 1 to 65535)",
        )
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: frozenset[str]) -> frozenset[str]:
        """A mistyped rule would simply not run, and nobody would notice."""
        _refuse(value - RULES, f"the built-in rules are {', '.join(sorted(RULES))}")
        return value

    @field_validator("identity_hash_kinds")
    @classmethod
    def _known_kinds(cls, value: frozenset[str]) -> frozenset[str]:
        _refuse(value - set(KIND_RANK), f"identifier kinds are {', '.join(sorted(KIND_RANK))}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        """A time zone by its IANA name: a customer's unknown zone means UTC (see
        localtime.zone), but a mistyped default would silently move every customer's clock."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone name like UTC or Europe/Paris") from None
        return value

    @property
    def full_app_id(self) -> str:
        return f"{self.topic_prefix}{self.app_id}"

    def policy(self) -> Policy:
        return Policy(
            consent_required_channels=self.consent_required_channels,
            frequency_cap_per_day=self.frequency_cap_per_day,
            remarketing_cooldown_s=self.remarketing_cooldown_s,
            remarketing_discount_percent=self.remarketing_discount_percent,
            cart_discount_percent=self.cart_discount_percent,
            recent_events=self.recent_events,
            dedupe_window=self.dedupe_window,
            rules=self.rules,
            quiet_hours_exempt_channels=self.quiet_hours_exempt_channels,
            default_timezone=self.default_timezone,
            channel_addresses=self.channel_addresses,
        )

    def hasher(self) -> Hasher:
        key = self.identity_hash_key.get_secret_value().encode() if self.identity_hash_key else None
        return Hasher(key=key, kinds=self.identity_hash_kinds)

    def limits(self) -> Limits:
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_depth=self.max_depth,
            max_future_skew_s=self.max_future_skew_s,
        )


def _server(server: str) -> bool:
    found = SERVER.fullmatch(server)
    return found is not None and (found[1] is None or 1 <= int(found[1]) <= 65535)


def _address_pair(sides: tuple[str, ...]) -> bool:
    """``(channel, identifier kind)``, each a valid name."""
    return len(sides) == 2 and is_channel_name(sides[0]) and re.fullmatch(IDENTIFIER_KIND_PATTERN, sides[1]) is not None


def _refuse(bad: Iterable[str], why: str) -> None:
    """Refuse a list setting naming anything in ``bad``: every such name, then why."""
    names = sorted(bad)
    if names:
        raise ValueError(f"{', '.join(map(repr, names))}: {why}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own ``Settings`` instead."""
    return Settings()
