"""Subscribe to ``events.<channel>`` topics as they appear.

Faust accepts ``app.topic(pattern=...)`` but its aiokafka driver subscribes by
name only (``subscribe()`` in faust/transport/drivers/aiokafka.py carries the
note "pattern does not work"), so a pattern topic silently receives nothing.
Instead we subscribe to the explicit list of matching topics and a timer looks
for new ones; when it finds some it extends the topic's name list and asks
Faust's conductor to resubscribe, which costs one rebalance. The check runs on
every worker (Faust timers do), which is what we want here: each worker
maintains its own subscription.

A broker that cannot be reached must not end the worker: an exception out of a Faust timer
crashes the whole worker, so every worker died together about 30 s into a broker restart.
The check (:class:`ChannelWatch`) says once that it fails and once that it works again, and
finds nothing new meanwhile; Faust's own clients reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import faust

from orchestrator.errors import CliError
from orchestrator.kafka.clients import LEADER_WAIT_S, TIMEOUT_MS, ensure_topics, list_topics
from orchestrator.outage import Outage
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames

log = logging.getLogger(__name__)
RESUBSCRIBE_AFTER_S = 2.0  # Faust waits 45 s by default before acting on a change


def inbound_topic(app: faust.App, settings: Settings, names: TopicNames) -> Any:
    """The inbound topic over every existing channel, kept current by a timer."""
    matcher = re.compile(names.events_pattern)
    bootstrap = settings.kafka_bootstrap
    configured = [names.events(c) for c in sorted(settings.channels)]
    ensure_topics(
        bootstrap, configured, settings.partitions, replication=settings.replication_factor, wait_s=LEADER_WAIT_S
    )
    # The configured ones are named outright: a listing made just after creating them could
    # miss them, and adding them a moment later cost a rebalance that re-read the first records.
    found = matching(list({*list_topics(bootstrap), *configured}), matcher)
    topic = app.topic(*found, key_serializer="raw", value_serializer="raw")
    conductor(app)._resubscribe_sleep_lock_seconds = RESUBSCRIBE_AFTER_S
    watch = ChannelWatch(bootstrap, matcher)

    @app.timer(interval=settings.topic_discovery_interval_s)
    async def discover_channels() -> None:
        new = await watch.new_topics(topic.topics)
        if new:
            log.info("new channel topics %s: resubscribing", ", ".join(sorted(new)))
            extend_subscription(app, topic, new)

    return topic


@dataclass
class ChannelWatch:
    """Finds the channel topics that are not subscribed yet; never raises for Kafka's sake."""

    bootstrap: str
    matcher: re.Pattern[str]
    timeout_ms: int = TIMEOUT_MS  # a dead broker holds the check this long, not kafka-python's 30 s
    outage: Outage = field(default_factory=lambda: Outage("topic discovery (listing Kafka's topics)", log))

    async def new_topics(self, known: Iterable[str]) -> set[str]:
        """Matching topics not in ``known``; none while Kafka cannot be listed."""
        try:
            listed = await asyncio.to_thread(list_topics, self.bootstrap, self.timeout_ms)
        except CliError as exc:  # Unreachable, or what Kafka said instead of topics
            self.outage.failed(exc)
            return set()
        self.outage.succeeded()
        return set(matching(listed, self.matcher)) - set(known)


def extend_subscription(app: faust.App, topic: Any, new: set[str]) -> None:
    """Add ``new`` names to the inbound topic *and* its clones, then resubscribe.

    Faust registers a clone of a topic with the conductor when an agent starts
    iterating it, so the clones are what the subscription is built from.
    """
    old = set(topic.topics)
    for channel in [topic, *conductor(app)._topics]:
        if set(getattr(channel, "topics", ())) == old:
            channel.topics = sorted(old | new)
    conductor(app)._flag_changes()


def conductor(app: faust.App) -> Any:
    """Faust's Conductor: the internals used here are not on its interface type."""
    return app.topics


def matching(topics: list[str], matcher: re.Pattern[str]) -> list[str]:
    return sorted(t for t in topics if matcher.search(t))
