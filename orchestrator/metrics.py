"""Prometheus metrics. Labels never carry customer identifiers: only bounded sets."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

KNOWN_TYPES = frozenset(
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
        "identify",
        "signup",
    }
)

EVENTS_CONSUMED = Counter(
    "orchestrator_events_consumed_total",
    "Valid events consumed, by channel and event type (unknown types count as 'other').",
    ["channel", "type"],
)
EVENTS_REJECTED = Counter(
    "orchestrator_events_rejected_total",
    "Events sent to the dead-letter topic, by reason.",
    ["reason"],
)
EVENTS_DUPLICATE = Counter(
    "orchestrator_events_duplicate_total",
    "Events dropped because their event_id was already processed for that customer.",
)
COMMANDS_EMITTED = Counter(
    "orchestrator_commands_emitted_total",
    "Commands sent to action topics, by channel and action.",
    ["channel", "action"],
)
COMMANDS_SUPPRESSED = Counter(
    "orchestrator_commands_suppressed_total",
    "Candidate commands the contact policy held back, by channel, action and reason.",
    ["channel", "action", "reason"],
)
EVENT_TO_COMMAND = Histogram(
    "orchestrator_event_to_command_seconds",
    "From the event's arrival on its inbound topic to its command being sent.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CUSTOMERS = Gauge(
    "orchestrator_customers",
    "Customers in this worker's state table partitions (RocksDB estimate).",
)
READMODEL_WRITES = Counter("orchestrator_readmodel_writes_total", "Customer profiles written to the Redis read model.")
READMODEL_ERRORS = Counter("orchestrator_readmodel_errors_total", "Failed flushes to the Redis read model (retried).")
READMODEL_PENDING = Gauge("orchestrator_readmodel_pending", "Customer profiles waiting to be written to Redis.")


def type_label(event_type: str) -> str:
    """Keep the label set bounded whatever types channels invent."""
    return event_type if event_type in KNOWN_TYPES else "other"


def exposition() -> tuple[bytes, str]:
    """The text format body and its content type, for the ``/metrics`` page."""
    return generate_latest(), CONTENT_TYPE_LATEST
