"""Thin Faust agents: decode, look up state, call the core, write state, send commands.

``attach`` wires everything onto an app; nothing here decides anything.
"""

from __future__ import annotations

import faust

from agents import commit_head, fetch_batching, fetch_guard, rebalance_watchdog
from agents.decide import attach_decide
from agents.inbound_clock import InboundProgress
from agents.ingest import attach_ingest
from agents.journeys import attach_journeys
from agents.outbound import Outbound
from agents.web import attach_web
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames


def attach(app: faust.App, settings: Settings) -> None:
    fetch_guard.install()  # before any consumer fetches: see its docstring
    commit_head.install()  # before any commit: see its docstring
    fetch_batching.install(app, settings.fetch_wait_ms, settings.fetch_min_bytes)
    rebalance_watchdog.install(app, settings.rebalance_stuck_s)
    names = TopicNames(settings.topic_prefix)
    customer_events = app.topic(
        names.customer_events,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        retention=settings.topic_retention_s,
        internal=True,
    )
    outbound = Outbound(app, names, settings.output_encoding, settings.topic_retention_s)
    outbound.create_topics(settings)
    inbound = InboundProgress()  # the ingest agent reports to it; the timer's wall clock follows it
    attach_ingest(app, settings, names, customer_events, outbound, inbound)
    runtime, due = attach_journeys(app, settings, names, customer_events, inbound)
    table = attach_decide(app, settings, customer_events, outbound, runtime, due)
    attach_web(app, table, runtime, settings)
