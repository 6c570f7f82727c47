"""Topic names, in one place, so the prefix is applied everywhere or nowhere."""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.events import CHANNEL_PATTERN

EVENTS = "events."
ACTIONS = "actions."
CHANNEL_NAME = CHANNEL_PATTERN.strip("^$")  # a longer channel would make a topic name Kafka refuses


@dataclass(frozen=True)
class TopicNames:
    """Every topic the product reads or writes, for one ``topic_prefix``."""

    prefix: str = ""

    @property
    def events_pattern(self) -> str:
        """Inbound topics, matched by pattern so a new channel needs no code change."""
        return f"^{re.escape(self.prefix + EVENTS)}{CHANNEL_NAME}$"

    @property
    def actions_pattern(self) -> str:
        return f"^{re.escape(self.prefix + ACTIONS)}{CHANNEL_NAME}$"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}orchestrator.dlq"

    @property
    def journeys(self) -> str:
        """Compacted: one record per journey version, the published catalogue."""
        return f"{self.prefix}orchestrator.journeys"

    @property
    def customer_events(self) -> str:
        """Internal: validated events, repartitioned by customer key."""
        return f"{self.prefix}orchestrator.customer-events"

    @property
    def identity(self) -> str:
        """Internal: validated events and identity links, keyed by identifier token."""
        return f"{self.prefix}orchestrator.identity"

    @property
    def decisions(self) -> str:
        """Out: every decision with what was sent, what was held back and why."""
        return f"{self.prefix}orchestrator.decisions"

    @property
    def audit(self) -> str:
        """Out: erasure records (who asked, when, what was removed); never customer data."""
        return f"{self.prefix}orchestrator.audit"

    def events(self, channel: str) -> str:
        return f"{self.prefix}{EVENTS}{channel}"

    def actions(self, channel: str) -> str:
        return f"{self.prefix}{ACTIONS}{channel}"

    def channel_of(self, topic: str) -> str | None:
        """``events.web`` -> ``web``; None for a topic that is not an events topic."""
        head = self.prefix + EVENTS
        return topic[len(head) :] if topic.startswith(head) and len(topic) > len(head) else None

    def is_events_topic(self, topic: str) -> bool:
        """Whether ``topic`` is one the workers read events from (``events_pattern``)."""
        return re.fullmatch(self.events_pattern, topic) is not None

    def is_actions_topic(self, topic: str) -> bool:
        """Whether ``topic`` is one the workers send commands to (``actions_pattern``)."""
        return re.fullmatch(self.actions_pattern, topic) is not None

    def resolve(self, name: str, kind: str = EVENTS) -> str:
        """Accept a bare channel (``ads``) or a full topic name (``actions.ads``)."""
        if name.startswith(self.prefix + kind) or "." in name:
            return name
        return f"{self.prefix}{kind}{name}"
