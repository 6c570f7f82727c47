"""Thin Faust agents: decode, look up state, call the core, write state, send commands.

``attach`` wires everything onto an app; nothing here decides anything.
"""

from __future__ import annotations

import faust

from agents.decide import attach_decide
from agents.ingest import attach_ingest
from agents.outbound import Outbound
from agents.web import attach_web
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames


def attach(app: faust.App, settings: Settings) -> None:
    names = TopicNames(settings.topic_prefix)
    customer_events = app.topic(
        names.customer_events,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
    )
    outbound = Outbound(app, names, settings.output_encoding)
    attach_ingest(app, settings, names, customer_events, outbound)
    table = attach_decide(app, settings, customer_events, outbound)
    attach_web(app, table)
