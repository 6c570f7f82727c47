"""The worker's web port: ``/metrics`` for Prometheus, ``/ready`` for probes."""

from __future__ import annotations

import logging
from typing import Any

import faust

from orchestrator import metrics

log = logging.getLogger(__name__)


def attach_web(app: faust.App, table: Any, runtime: Any) -> None:
    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        # The full type (with version and charset) goes in the header: aiohttp
        # refuses a content_type argument that carries parameters.
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """200 once tables are recovered, journeys loaded and no rebalance is under way."""
        tables: Any = app.tables  # the TableManager has .recovery; its interface type does not say so
        ok = tables.recovery.completed.is_set() and not app.rebalancing and runtime.catalogue_ready.is_set()
        return web.json({"ready": ok}, status=200 if ok else 503)

    @app.timer(interval=10.0)
    async def count_customers() -> None:
        metrics.CUSTOMERS.set(estimate_keys(table))


def estimate_keys(table: Any) -> int:
    """RocksDB's own key estimate per partition: O(partitions), never a scan."""
    total = 0
    for db in getattr(table.data, "_dbs", {}).values():
        try:
            total += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
        except Exception:  # a store without the property: report what we can
            log.debug("no key estimate for %r", db)
    return total
