"""``make bench`` (live part): how many events one worker takes in and decides, per second
and per CPU-second, so that the README's *Scaling out* can say how many workers a load needs.

``bench/run.py`` times ``decide()`` alone; a live worker does much more per event: it reads the
channel's topic, checks and forwards the event through the identity topic to the customer's
partition, reads and writes the customer's state (RocksDB and its changelog), sends the
commands, and writes the Redis read model and the decision log. This script measures all of it
on a real worker, twice: the built-in rules alone, then the rules with the six shipped journeys.

1. One ``orchestrator worker`` subprocess with its own topic prefix, web port and data folder
   (as in ``bench/timers_live.py``), started and ready with nothing to read.
2. N simulated events, the traffic of ``orchestrator simulate`` (sign-ups, searches, product
   views, carts, purchases, email opens, store visits, consent and preferences of 5,000
   customers, no malformed records), written to the events topics at once: a backlog.
3. Until the worker's consumer group has committed every record of the events topics and of
   the internal topics behind them: the wall time, and the worker's CPU time. CPU-seconds are
   what sizing needs; on this shared 2-core machine the wall time also pays for the broker,
   Redis and the rest, which share the cores with the worker.

Figures are printed, never asserted. Usage: ``python bench/live.py [EVENTS]`` (default 30,000).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError
from timers_live import (
    READY_TIMEOUT_S,
    BenchError,
    Worker,
    check_stack,
    cleanup,
    free_port,
    sample,
)

from orchestrator.cli.simulate import CHANNELS
from orchestrator.kafka.clients import ensure_topics, producer
from orchestrator.settings import Settings
from orchestrator.simulator import Simulator
from orchestrator.topics import TopicNames
from schemas.codec import content_type_header, encode_payload

ROOT = Path(__file__).parents[1]
CUSTOMERS = 5_000
SETTLE_S = 3.0  # the group commits every second: committed offsets this long unchanged at the end are final
STALL_S = 120.0  # no record committed for this long: the worker is stuck


class LiveWorker(Worker):
    """A worker as an operator runs one: the built-in rules, and the shipped journeys or none."""

    def __init__(self, bootstrap: str, redis_url: str, prefix: str, folder: Path, journeys: bool) -> None:
        self.port = free_port()
        self.log_path = folder / "worker.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | {
            "ORCH_TOPIC_PREFIX": prefix,
            "ORCH_KAFKA_BOOTSTRAP": bootstrap,
            "ORCH_REDIS_URL": redis_url,
            "ORCH_WEB_PORT": str(self.port),
            "ORCH_DATA_DIR": str(folder / "state"),
            "ORCH_LOG_LEVEL": "warning",
        }
        if journeys:
            self.env["ORCH_JOURNEYS_DIR"] = str(ROOT / "journeys")
        self.proc: subprocess.Popen[bytes] | None = None


def backlog(names: TopicNames, run_id: str, count: int) -> list[tuple[str, bytes, bytes]]:
    """``count`` simulated events, encoded as a channel sends them: (topic, key, value)."""
    sim = Simulator(customers=CUSTOMERS, seed=11, run_id=run_id)
    records: list[tuple[str, bytes, bytes]] = []
    while len(records) < count:
        for out in sim.records(time.time()):
            if out.event is not None:
                key = str(out.event["customer_id"]).encode()
                records.append((names.events(out.channel), key, encode_payload(out.event)))
    return records[:count]


def send_all(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    client = producer(bootstrap)
    headers = list(content_type_header("msgpack"))
    try:
        for topic, key, value in records:
            client.send(topic, key=key, value=value, headers=headers)
        client.flush(timeout=60)
    finally:
        client.close()


def progress(admin: KafkaAdminClient, consumer: KafkaConsumer, group: str, topics: list[str]) -> tuple[int, int]:
    """(records on ``topics`` that ``group`` has not committed yet, or -1 before its first
    commit; records it has committed)."""
    committed = admin.list_group_offsets({group: None}).get(group, {})
    partitions = [tp for tp in committed if tp.topic in topics]
    if not partitions:
        return -1, 0
    ends = consumer.end_offsets(partitions)
    done = sum(committed[tp].offset for tp in partitions)
    return sum(max(0, ends[tp] - committed[tp].offset) for tp in partitions), done


def drained(worker: LiveWorker, settings: Settings, names: TopicNames) -> float:
    """When the group had committed everything: the wall clock of the first poll that saw it,
    once the count of records behind has stayed 0 for ``SETTLE_S`` (wakes and follow-ups
    land on the internal topics after the events they follow). A :class:`BenchError` when
    nothing more is committed for ``STALL_S``, however big the backlog."""
    topics = [names.events(c) for c in CHANNELS] + [names.identity, names.customer_events]
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        caught_up: float | None = None
        most, progressed = 0, time.monotonic()
        while time.monotonic() - progressed < STALL_S:
            worker.check_alive()
            left, done = progress(admin, consumer, settings.full_app_id, topics)
            now = time.monotonic()
            if done > most:
                most, progressed = done, now
            if left != 0:
                caught_up = None
            elif caught_up is None:
                caught_up = now
            elif now - caught_up >= SETTLE_S:
                return caught_up
            time.sleep(0.25)
        raise BenchError(f"the worker committed nothing more for {STALL_S:.0f} s ({most:,} records committed)")
    finally:
        admin.close()
        consumer.close()


def measure(bootstrap: str, redis_url: str, count: int, journeys: bool) -> str:
    run_id = secrets.token_hex(3)
    prefix = f"bench-{run_id}."
    names = TopicNames(prefix)
    folder = Path(tempfile.mkdtemp(prefix="live-bench-"))
    worker = LiveWorker(bootstrap, redis_url, prefix, folder, journeys)
    settings = worker.settings()
    try:
        records = backlog(names, run_id, count)
        ensure_topics(bootstrap, [names.events(c) for c in CHANNELS], settings.partitions)
        worker.start(READY_TIMEOUT_S)
        cpu_before = worker.cpu_seconds()
        started = time.monotonic()
        send_all(bootstrap, records)
        done = drained(worker, settings, names)
        cpu = worker.cpu_seconds() - cpu_before
        wall = done - started
        scraped = worker.scrape()
        commands = sum(v for k, v in scraped.items() if k.startswith("orchestrator_commands_emitted_total"))
        loaded = sample(scraped, "orchestrator_journeys_loaded")
        label = f"rules + {loaded:.0f} journeys" if journeys else "rules only"
        return (
            f"  {label:<20} {count / wall:8,.0f} events/s, {count / cpu:8,.0f} per worker CPU-second "
            f"({cpu / wall:.2f} cores busy; {commands:,.0f} commands)"
        )
    except BenchError as exc:
        return f"  failed: {exc}\n--- worker log, last lines ---\n{worker.log_tail()}"
    finally:
        worker.stop()
        shutil.rmtree(folder, ignore_errors=True)
        try:
            cleanup(bootstrap, redis_url, prefix)
        except (KafkaError, redis.RedisError, OSError) as exc:
            print(f"live: could not clean up {prefix!r}: {exc!r}", file=sys.stderr)


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 30_000
    bootstrap = os.environ.get("ORCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    redis_url = os.environ.get("ORCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    check_stack(bootstrap, redis_url, "live")
    print(f"live worker, a backlog of {count:,} simulated events ({CUSTOMERS:,} customers), one worker:")
    for journeys in (False, True):
        print(measure(bootstrap, redis_url, count, journeys), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
