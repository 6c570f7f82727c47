"""The Faust application: settings in, a configured ``faust.App`` with our agents out."""

from __future__ import annotations

from typing import Any

import faust
from faust.stores.rocksdb import RocksDBOptions

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
        # web_host only names the worker in the URLs Faust builds; web_bind is where it
        # listens, and Faust's default there is every interface.
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        table_standby_replicas=0,
        broker_commit_every=500,
        broker_commit_interval=1.0,
        # Each send waits up to this long for others to the same partition: fewer, larger
        # produce requests (measured in bench/README.md).
        producer_linger=settings.producer_linger_ms / 1000,
    )
    from agents import attach

    attach(app, settings)
    bound_rocksdb_memory(app, settings.rocksdb_memory_mb * 1024**2)
    return app


def bound_rocksdb_memory(app: faust.App, limit: int) -> None:
    """Every table partition's RocksDB shares one block cache of ``limit`` bytes, and their
    memtables (at most half of it) and index and filter blocks are charged to it: one bound
    for the worker, whatever the number of tables and partitions.

    Faust's defaults give each partition database its own 2 GiB block cache and up to
    3 x 64 MiB of memtables, so memory grew with partitions and was bounded by nothing
    but the data."""
    options = SharedRocksDBOptions(limit)
    for table in app.tables.values():
        store: Any = table.data
        if hasattr(store, "rocksdb_options"):  # the RocksDB store (tests may use memory://)
            store.rocksdb_options = options


class SharedRocksDBOptions(RocksDBOptions):
    """Faust's RocksDB options with one cache and one write buffer manager for all databases."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            write_buffer_size=min(16 * 1024**2, limit // 8),
            max_write_buffer_number=3,
            block_cache_size=limit,
            use_rocksdict=True,
        )
        import rocksdict

        self.cache = rocksdict.Cache(limit)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            limit // 2, False, self.cache
        )

    def as_options(self) -> Any:
        import rocksdict

        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(self.write_buffers)
        # Files dense with deletions (fired waits in the due index) are compacted soon, so
        # their tombstones do not linger in the way of reads.
        options.add_compact_on_deletion_collector_factory(10_000, 5_000, 0.5)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options
