"""The Faust application: settings in, a configured ``faust.App`` with our agents out."""

from __future__ import annotations

import faust

from orchestrator.settings import Settings


def broker_url(bootstrap: str) -> str:
    """``a:9092,b:9092`` -> ``kafka://a:9092;kafka://b:9092`` as Faust wants it."""
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


def create_app(settings: Settings) -> faust.App:
    """A Faust app wired for at-least-once processing with RocksDB tables.

    ``exactly_once`` is deliberately not used: faust-streaming's transactional
    mode has open bugs. Duplicates that at-least-once allows are absorbed by
    per-customer event-id deduplication and deterministic action ids.
    """
    app = faust.App(
        settings.full_app_id,
        broker=broker_url(settings.kafka_bootstrap),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        # New events.<channel> topics are found by pattern; refresh metadata often
        # enough that a new channel starts flowing within seconds, not minutes.
        consumer_metadata_max_age_ms=10_000,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        table_standby_replicas=0,
        broker_commit_every=500,
        broker_commit_interval=1.0,
    )
    from agents import attach

    attach(app, settings)
    return app
