"""Prometheus metrics. Labels never carry customer identifiers: only bounded sets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from schemas.events import KNOWN_EVENT_TYPES

KNOWN_TYPES = KNOWN_EVENT_TYPES  # event types with their own label value; others count as 'other'

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
COMMANDS_RESENT = Counter(
    "orchestrator_commands_resent_total",
    "Commands sent again because the record that decided them was read again after a crash "
    "(same action ids: channels drop the copy), by channel and action.",
    ["channel", "action"],
)
COMMANDS_SENT_BEFORE = Counter(
    "orchestrator_commands_sent_before_total",
    "Commands a worker decided again after taking customers over and did not send, because the "
    "worker before it had sent them (found on the action topic by action id), by channel and action.",
    ["channel", "action"],
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
    "Customer profiles in this worker's state table partitions (exact; counted again after a rebalance).",
)
JOURNEY_ENTRIES = Counter(
    "orchestrator_journey_entries_total", "Customers who entered a journey.", ["journey", "version"]
)
JOURNEY_EXITS = Counter(
    "orchestrator_journey_exits_total",
    "Customers who left a journey version, by reason (goal, completed, exit_on, loop, version_removed, migration, "
    "merged, erased, over_limit, migrated_to_v<N>: moved on to version N, still in the journey, ...).",
    ["journey", "version", "reason"],
)
JOURNEY_CONVERSIONS = Counter(
    "orchestrator_journey_conversions_total",
    "Goals reached inside a journey (when=in_journey) or within its conversion window after (after_exit).",
    ["journey", "version", "when"],
)
JOURNEY_DELAYED = Counter(
    "orchestrator_journey_delayed_total",
    "Journey actions delayed to the end of the customer's quiet hours.",
    ["journey", "version"],
)
JOURNEY_VARIANTS = Counter(
    "orchestrator_journey_variant_total",
    "A/B splits: customers assigned to each arm (holdout included), and the goals they reached.",
    ["journey", "version", "variant", "outcome"],
)
JOURNEY_CONDITION_ERRORS = Counter(
    "orchestrator_journey_condition_errors_total",
    "Conditions or templates that failed at run time (treated as false / action skipped).",
    ["journey", "version"],
)
JOURNEY_BLOCKED = Counter(
    "orchestrator_journey_blocked_total", "Entries refused because of the active-journey limit.", ["journey"]
)
TIMERS_PENDING = Gauge(
    "orchestrator_timers_pending",
    "Customers with a pending wait in this worker's partitions (exact; counted again after a rebalance).",
)
JOURNEY_CUSTOMERS = Gauge(
    "orchestrator_journey_customers",
    "Customers inside each journey version now, by the step they are at, in this worker's partitions "
    "(exact; counted again after a rebalance).",
    ["journey", "version", "step"],
)
TIMER_LATENESS = Histogram(
    "orchestrator_timer_lateness_seconds",
    "How late waits fired, wall clock from the due time to the firing; one observation per firing "
    "(not per wake), none in event-time mode.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0),
)
TIMER_HELD_BACK = Gauge(
    "orchestrator_timer_held_back_seconds",
    "How far the timer's clock is behind the wall clock while this worker's ingest, or another "
    "worker's (ORCH_SHARED_INBOUND_CLOCK), still reads events from before it "
    "(+Inf: a partition new to the worker has not given its first record yet).",
)
JOURNEYS_LOADED = Gauge("orchestrator_journeys_loaded", "Journey versions in this worker's catalogue.")
JOURNEYS_UNLOADABLE = Gauge(
    "orchestrator_journeys_unloadable",
    "Published journey versions this worker cannot load; their customers wait, untouched, for a worker that can.",
)

IDENTITY_EVENTS = Counter(
    "orchestrator_identity_events_total",
    "What identity resolution did: linked, forwarded, merged_in, merged_out, conflict, erased, dropped_suppressed, ...",
    ["outcome"],
)
ERASURES = Counter("orchestrator_erasures_total", "Customers erased (profile and every pointer to it).")
ERASURES_WAITING = Gauge(
    "orchestrator_erasures_waiting",
    "Erasures holding their partition until their messages are delivered and their Redis deletes written.",
)
READMODEL_WRITES = Counter("orchestrator_readmodel_writes_total", "Customer profiles written to the Redis read model.")
READMODEL_ERRORS = Counter("orchestrator_readmodel_errors_total", "Failed flushes to the Redis read model (retried).")
READMODEL_REFUSED = Counter(
    "orchestrator_readmodel_refused_total",
    "Profile writes Redis refused as older than the one there (a hand-over's late batch).",
)
READMODEL_PENDING = Gauge("orchestrator_readmodel_pending", "Customer profiles waiting to be written to Redis.")
COMMITS_HELD = Counter(
    "orchestrator_commits_held_total",
    "Offset commits skipped because Redis had not taken the writes of the records they cover (tried again).",
)
STREAM_DROPS = Counter(
    "orchestrator_stream_drops_total",
    "Records a stream dropped in a rebalance, by topic; each is read again, and the records after it too.",
    ["topic"],
)


def type_label(event_type: str) -> str:
    """Keep the label set bounded whatever types channels invent."""
    return event_type if event_type in KNOWN_TYPES else "other"


def count_outcomes(outcomes: list[Any]) -> None:
    """Journey outcomes from one decision into the journey counters."""
    for o in outcomes:
        version = str(o.version)
        if o.kind == "enter":
            JOURNEY_ENTRIES.labels(o.journey, version).inc()
        elif o.kind == "exit":
            reason = o.reason.split(":")[0] if o.reason.startswith("exit_on:") else o.reason
            JOURNEY_EXITS.labels(o.journey, version, reason[:40]).inc()
        elif o.kind == "migrate":  # left the old version for this one; not a new entry
            JOURNEY_EXITS.labels(o.journey, str(o.from_version), f"migrated_to_v{o.version}"[:40]).inc()
        elif o.kind == "assign":
            JOURNEY_VARIANTS.labels(o.journey, version, o.variant[:40], "assigned").inc()
        elif o.kind == "convert":
            JOURNEY_CONVERSIONS.labels(o.journey, version, o.reason or "in_journey").inc()
            if o.variant:
                JOURNEY_VARIANTS.labels(o.journey, version, o.variant[:40], "converted").inc()
        elif o.kind == "condition_error":
            JOURNEY_CONDITION_ERRORS.labels(o.journey, version).inc()
        elif o.kind == "blocked":
            JOURNEY_BLOCKED.labels(o.journey).inc()
        elif o.kind == "delay":
            JOURNEY_DELAYED.labels(o.journey, version).inc()


_journey_places: set[tuple[str, str, str]] = set()


def set_journey_customers(places: Mapping[Any, int]) -> None:
    """The journey gauge from a full count: ``{(journey, version, step): customers}``. A step
    nobody is at any more loses its series, so removed versions leave nothing behind."""
    current = {place for place, n in places.items() if n > 0}
    for place in _journey_places - current:
        JOURNEY_CUSTOMERS.remove(*place)
    for place in current:
        JOURNEY_CUSTOMERS.labels(*place).set(places[place])
    _journey_places.clear()
    _journey_places.update(current)


def exposition() -> tuple[bytes, str]:
    """The text format body and its content type, for the ``/metrics`` page."""
    return generate_latest(), CONTENT_TYPE_LATEST
