"""``make bench-timers``: durable timers on a live worker, the benchmark of issue 3, section 2.

Target: **1,000,000 pending waits on one worker fit in 2 GB resident memory, and firing
lateness p99 stays <= 1 s while events keep flowing.** ``bench/run.py`` times the timer index
alone, in its own process; this script measures the whole path on a real worker (ingest,
decide, the state and ``due`` tables with their changelogs, the timer's wakes, the commands),
because that is where memory and lateness come from in production.

1. One ``orchestrator worker`` subprocess with its own topic prefix, web port and data folder,
   journeys only (``ORCH_RULES`` empty) and two generated journeys, both entered on
   ``bench_wait``: ``bench_hold`` waits 7 days (pending for the whole run) and ``bench_due``
   waits D seconds (falls due inside the measurement window).
2. Load, two ways (``--load``). **preload** (the default): all but ``--probe`` of the N
   customers are written straight into the worker's ``customers`` and ``due`` changelogs
   *before* it starts, each record exactly what the worker would write for that customer's
   ``bench_wait`` event (the same ingest, identity graph and ``decide()`` run offline, see
   :func:`preload`); the worker then recovers them at start, as after a restart or a
   rebalance, and the rest (``--probe``) go through the pipeline to measure its rate with the
   waits in place. **pipeline**: all N as ``bench_wait`` events through ingest and decide,
   flat out but never more than ``LEAD`` ahead of the worker, so a load cut short by
   ``--budget`` leaves no backlog behind to disturb the lateness window (at about 500
   events per worker CPU-second, 1,000,000 take half an hour of a core). Either way the
   output says how the waits were loaded, and the exact ``orchestrator_timers_pending``
   gauge says what is in.
3. Memory: the worker's VmRSS (with any children) from ``/proc``, at rest with N pending.
4. Lateness: page views for other customers flow in a background thread; K more customers
   enter ``bench_due`` over a window of W seconds, so their waits fall due at the same pace,
   D > W seconds later. Unless given, both rates are fractions of the ingest rate measured in
   step 2, so the window measures timers on a busy worker rather than an overloaded one.
   Lateness two ways: the worker's histogram (due time -> wait fired) from bucket deltas,
   and end to end: each command's Kafka timestamp minus its ``issued_at``, which the engine
   sets to the wait's due time when a wait fires.
5. Everything created is deleted: topics, consumer group, Redis keys, the data folder.

Figures are printed, never asserted: exit 0 whatever they are; exit 2 with one line when
Kafka or Redis cannot be reached, 1 when the worker fails. Usage:
``python bench/timers_live.py [--quick] [--customers N] [--budget MIN]`` (``--help`` for more).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import redis
from aiokafka.partitioner import murmur2
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.journeys import due_key
from orchestrator.core.event import Event
from orchestrator.errors import CliError
from orchestrator.identity.graph import Context, handle
from orchestrator.identity.records import Missing, Profile, encode
from orchestrator.ingest import ingest
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import load_dir
from orchestrator.kafka.cleanup import remove_prefix
from orchestrator.kafka.clients import COMPACTED, check_kafka, ensure_topics
from orchestrator.settings import Settings
from orchestrator.topics import TopicNames
from schemas.codec import content_type_header, decode_payload, encode_payload

TARGET_RSS_BYTES = 2 * 1024**3
TARGET_P99_S = 1.0
FULL_SCALE = 1_000_000
MB = 1024**2
INBOUND = "web"  # a channel whose events topic the worker creates at start
ACTION_CHANNEL = "bench"
HOLD, DUE, PING = "bench_hold", "bench_due", "bench_ping"
PING_RATE = 5.0  # control events per second during the window
GAP_S = 15.0  # from the last due-lane entry to the first due wait: all waits are pending then
LEAD = 50_000  # events the loader may be ahead of the worker
BACKGROUND_SHARE, DUE_SHARE = 0.25, 0.1  # of the measured ingest rate, when rates are not given
MAX_AUTO_RATE = 1000.0
READY_TIMEOUT_S = 120.0
HEADERS = content_type_header("msgpack")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The run cannot go on (worker died, stalled); the message says why in one line."""


@dataclass(frozen=True)
class Config:
    customers: int
    load: str  # "preload": changelogs written offline, then recovered; "pipeline": every wait as an event
    probe: int  # with preload: waits that still go through the pipeline, to measure its rate
    budget_s: float
    window_s: float
    due_rate: float | None
    background_rate: float | None
    stall_s: float
    worker_env: dict[str, str]
    dump: Path | None
    bootstrap: str
    redis_url: str

    @property
    def wait_s(self) -> int:
        """The due lane's wait: every due-lane entry is in before the first one fires."""
        return math.ceil(self.window_s + GAP_S)


# -- the worker ------------------------------------------------------------------------------


def journey_yaml(journey_id: str, lane: str, wait: str) -> str:
    """Entry on ``bench_wait`` of one lane, one wait, one command, exit."""
    return f"""id: {journey_id}
version: 1
description: timer benchmark, {lane} lane
trigger:
  event: bench_wait
  when: event.properties.lane == "{lane}"
reentry: once
steps:
  - id: wait
    wait: {wait}
  - id: fire
    action:
      channel: {ACTION_CHANNEL}
      action: wait_over
      payload: {{lane: {lane}}}
  - exit
"""


PING_YAML = f"""id: {PING}
version: 1
description: timer benchmark, control - a command at once, no wait
trigger:
  event: {PING}
reentry: always
steps:
  - id: fire
    action:
      channel: {ACTION_CHANNEL}
      action: ping
      payload: {{sent: '{{{{ trigger.ts }}}}'}}
  - exit
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_command() -> list[str]:
    """The installed console script next to this interpreter, as an operator would run it."""
    script = Path(sys.executable).with_name("orchestrator")
    return [str(script), "worker"] if script.exists() else [sys.executable, "-m", "orchestrator", "worker"]


class Worker:
    """One worker subprocess with its own prefix, web port, data folder and journeys, at the
    default log level (info)."""

    def __init__(self, config: Config, prefix: str, folder: Path) -> None:
        journeys = folder / "journeys"
        journeys.mkdir(parents=True)
        (journeys / f"{HOLD}.yaml").write_text(journey_yaml(HOLD, "hold", "7d"))
        (journeys / f"{DUE}.yaml").write_text(journey_yaml(DUE, "due", f"{config.wait_s}s"))
        (journeys / f"{PING}.yaml").write_text(PING_YAML)
        self.port = free_port()
        self.log_path = folder / "worker.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")} | {
            "ORCH_TOPIC_PREFIX": prefix,
            "ORCH_KAFKA_BOOTSTRAP": config.bootstrap,
            "ORCH_REDIS_URL": config.redis_url,
            "ORCH_WEB_PORT": str(self.port),
            "ORCH_DATA_DIR": str(folder / "state"),
            "ORCH_RULES": "",
            "ORCH_JOURNEYS_DIR": str(journeys),
        }
        self.env |= config.worker_env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(worker_command(), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.http("/ready")[0] == 200:
                return
            time.sleep(0.3)
        raise BenchError(f"worker not ready after {timeout:.0f} s")

    def settings(self) -> Settings:
        """The worker's settings, read from the environment it runs with."""
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(self.env)
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(f"the worker exited (code {code})")

    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def scrape(self) -> dict[str, float]:
        """Every sample on /metrics, by series name with labels in sorted order."""
        status, body = self.http("/metrics")
        if status != 200:
            self.check_alive()
            raise BenchError(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid, *descendants(self.proc.pid)]

    def memory(self) -> tuple[int, int]:
        """(resident now, resident peak) in bytes: the worker plus any children it started."""
        pids = self.pids()
        return sum(proc_status(p, "VmRSS") for p in pids), sum(proc_status(p, "VmHWM") for p in pids)

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(p) for p in self.pids())

    def state_bytes(self) -> int:
        """Size of the worker's RocksDB folders: what the memory figures are to be read against."""
        total = 0
        for path in Path(self.env["ORCH_DATA_DIR"]).rglob("*"):
            with suppress(OSError):  # RocksDB removes files as it compacts
                total += path.stat().st_size if path.is_file() else 0
        return total

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# -- /proc: psutil is not a dependency -------------------------------------------------------


def proc_status(pid: int, name: str) -> int:
    """One ``kB`` field of /proc/<pid>/status in bytes (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (fields 14 and 15 of /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine: the other tenants show up here."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... from /proc/<pid>/task/*/children."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with suppress(OSError):
            for child in map(int, children.read_text().split()):
                found += [child, *descendants(child)]
    return found


@dataclass
class CpuMeter:
    """CPU used by the worker and by the whole machine between ``start()`` and ``read()``."""

    worker: Worker
    marks: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def start(self) -> CpuMeter:
        self.marks = (time.monotonic(), self.worker.cpu_seconds(), *machine_cpu())
        return self

    def read(self) -> tuple[float, float]:
        """(worker cores, machine cores busy) on average since ``start()``."""
        wall, worker, busy, _ = self.marks
        elapsed = max(time.monotonic() - wall, 1e-9)
        return (self.worker.cpu_seconds() - worker) / elapsed, (machine_cpu()[0] - busy) / elapsed


# -- /metrics ----------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            with suppress(ValueError):
                samples[series_key(series)] = float(value)
    return samples


def series_key(series: str) -> str:
    """Labels sorted, so a lookup does not depend on the exposition's order."""
    if "{" not in series:
        return series
    name, _, rest = series.partition("{")
    return name + "{" + ",".join(sorted(p for p in rest.rstrip("}").split(",") if p)) + "}"


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    return samples.get(key, 0.0)


def entries(samples: dict[str, float], journey: str) -> int:
    return int(sample(samples, "orchestrator_journey_entries_total", journey=journey, version="1"))


def page_views(samples: dict[str, float]) -> float:
    return sample(samples, "orchestrator_events_consumed_total", channel=INBOUND, type="page_view")


def bucket_deltas(before: dict[str, float], after: dict[str, float], name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) of one histogram for what happened between two scrapes."""
    prefix = name + '_bucket{le="'
    bounds = sorted((key[len(prefix) : -2] for key in after if key.startswith(prefix)), key=float)
    return [(float(b), after[f'{prefix}{b}"}}'] - before.get(f'{prefix}{b}"}}', 0.0)) for b in bounds]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' estimate: linear inside the bucket holding rank q; inf above the last bound."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return math.inf
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return math.inf


def quantile(q: float, values: list[float]) -> float:
    """Nearest rank on exact samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- traffic -----------------------------------------------------------------------------------


def producer(bootstrap: str) -> KafkaProducer:
    """Throughput settings: big batches, a short linger, one ack, no compression on localhost."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks=1,
        linger_ms=20,
        batch_size=512 * 1024,
        max_block_ms=60_000,
        compression_type=None,
    )


def wait_event(run_id: str, lane: str, i: int) -> tuple[bytes, bytes]:
    customer = f"{run_id}-{lane[0]}{i:07d}"
    doc = {
        "event_id": f"bw-{customer}",
        "type": "bench_wait",
        "ts": time.time(),
        "customer_id": customer,
        "properties": {"lane": lane},
    }
    return customer.encode(), encode_payload(doc)


def ping(run_id: str, i: int) -> tuple[bytes, bytes]:
    """A control event: its journey sends a command at once, so it times the pipeline alone."""
    customer = f"{run_id}-p{i:07d}"
    doc = {"event_id": f"ping-{customer}", "type": PING, "ts": time.time(), "customer_id": customer}
    return customer.encode(), encode_payload(doc)


def page_view(run_id: str, i: int) -> tuple[bytes, bytes]:
    customer = f"{run_id}-v{i % 10_000:05d}"
    doc = {"event_id": f"pv-{run_id}-{i}", "type": "page_view", "ts": time.time(), "customer_id": customer}
    return customer.encode(), encode_payload(doc)


@dataclass
class Plan:
    """What a sender sends: ``make(i)`` for i < count (None: until stopped), at rate/s (None:
    flat out), never past ``ceiling[0]`` when a ceiling is given."""

    topic: str
    make: Callable[[int], tuple[bytes, bytes]]
    count: int | None
    rate: float | None
    ceiling: list[int] | None = None

    def bound(self, i: int, started: float) -> int:
        upto = i + 1000 if self.rate is None else int((time.monotonic() - started) * self.rate)
        for limit in (self.count, self.ceiling[0] if self.ceiling else None):
            if limit is not None:
                upto = min(upto, limit)
        return upto


class Sender(threading.Thread):
    """Sends a plan from a thread with its own producer, so the main thread can watch the worker.

    Open loop: the schedule does not wait for the worker, so a slow worker shows up as
    lateness rather than as a lighter load."""

    def __init__(self, bootstrap: str, plan: Plan) -> None:
        super().__init__(daemon=True)
        self.client = producer(bootstrap)
        self.plan = plan
        self.halt = threading.Event()
        self.sent = 0
        self.started_at = self.finished_at = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        self.started_at = time.time()
        try:
            self._send()
            self.client.flush(timeout=60)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.finished_at = time.time()
            self.client.close(timeout=10)

    def _send(self) -> None:
        plan, started = self.plan, time.monotonic()
        while (plan.count is None or self.sent < plan.count) and not self.halt.is_set():
            first = self.sent
            upto = plan.bound(first, started)
            for i in range(first, upto):
                key, value = plan.make(i)
                self.client.send(plan.topic, key=key, value=value, headers=list(HEADERS))
            self.sent = max(first, upto)
            if plan.rate is not None or upto - first < 1000:  # on schedule, or at the ceiling
                time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=90)

    @property
    def rate(self) -> float:
        end = self.finished_at or time.time()
        return self.sent / max(end - self.started_at, 1e-9)


@dataclass
class Fired:
    customer: str
    due: float  # the command's issued_at: the wait's due time
    produced: float  # the command record's Kafka timestamp: when the worker sent it
    seen: float  # when this benchmark read it


class Collector(threading.Thread):
    """Reads the benchmark's action topic from the start: fired due-lane waits, and how long
    each control event took from its send to its command."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
        self.topic = topic
        self.fired: list[Fired] = []
        self.pings: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        partitions = [TopicPartition(self.topic, p) for p in sorted(self.consumer.partitions_for_topic(self.topic))]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        while not self.halt.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                seen = time.time()
                for r in records:
                    command = decode_payload(r.value)
                    if command.get("journey") == DUE:
                        self.fired.append(Fired(command["customer_id"], command["issued_at"], r.timestamp / 1000, seen))
                    elif command.get("journey") == PING:
                        self.pings.append(r.timestamp / 1000 - float(command["payload"]["sent"]))
        self.consumer.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


# -- progress ----------------------------------------------------------------------------------


@contextmanager
def bars(totals: dict[str, int]) -> Iterator[Callable[[str, int], None]]:
    """Yield ``update(label, done)``: rich bars on a terminal, a plain line every 15 s otherwise."""
    if sys.stderr.isatty():
        columns = [TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            tasks = {label: progress.add_task(label, total=total) for label, total in totals.items()}
            yield lambda label, done: progress.update(tasks[label], completed=done)
        return
    done_by: dict[str, int] = dict.fromkeys(totals, 0)
    last = [time.monotonic()]

    def update(label: str, done: int) -> None:
        done_by[label] = done
        if time.monotonic() - last[0] >= 15:
            last[0] = time.monotonic()
            print("  " + ", ".join(f"{k} {v:,}/{totals[k]:,}" for k, v in done_by.items()), file=sys.stderr)

    yield update


class Stall:
    """Gives up when a watched count has not moved for ``limit_s``."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s, self.last, self.since = limit_s, -1, time.monotonic()

    def check(self, value: int, what: str) -> None:
        if value != self.last:
            self.last, self.since = value, time.monotonic()
        elif time.monotonic() - self.since > self.limit_s:
            raise BenchError(f"no progress for {self.limit_s:.0f} s: {what} at {value:,}")


# -- phase 1: load -----------------------------------------------------------------------------


@dataclass
class Load:
    count: int
    seconds: float
    send_rate: float
    rss_idle: int
    rss_loaded: int
    cpu: tuple[float, float]  # worker cores, machine cores busy
    cut_short: bool
    samples: list[tuple[int, int]] = field(default_factory=list)  # (waits in, RSS bytes)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def load_pending(config: Config, worker: Worker, names: TopicNames, run_id: str, first: int, count: int) -> Load:
    """The hold lane flat out, at most ``LEAD`` ahead; done when the worker has every one in.

    Customers ``first`` to ``first + count - 1``: those below ``first`` were preloaded."""
    rss_idle, cpu = worker.memory()[0], CpuMeter(worker).start()
    ceiling = [LEAD]
    plan = Plan(names.events(INBOUND), lambda i: wait_event(run_id, "hold", first + i), count, None, ceiling)
    sender, stall, samples = Sender(config.bootstrap, plan), Stall(config.stall_s), []
    with bars({"sent": count, "waits pending in the worker": count}) as update:
        sender.start()
        while True:
            done = entries(worker.scrape(), HOLD)
            samples.append((done, worker.memory()[0]))
            ceiling[0] = done + LEAD
            if sender.is_alive() and time.time() - sender.started_at > config.budget_s:
                sender.stop()  # budget spent: measure what was sent
            update("sent", sender.sent)
            update("waits pending in the worker", done)
            if sender.error is not None:
                raise BenchError(f"producer failed: {sender.error!r}")
            if not sender.is_alive() and done >= sender.sent:
                break
            stall.check(done, f"{HOLD} entries")
            time.sleep(1.0)
    seconds = time.time() - sender.started_at
    return Load(done, seconds, sender.rate, rss_idle, worker.memory()[0], cpu.read(), done < count, samples)


# -- phase 1, preload: what a worker recovers after a restart ---------------------------------


@dataclass
class Preloaded:
    count: int
    build_s: float  # running the worker's own code offline, and producing the records
    recovery_s: float = 0.0  # worker start -> ready (its tables recovered from the changelogs)
    recovery_cpu_s: float = 0.0
    rss_recovered: int = 0
    changelog_bytes: int = 0


def preload(config: Config, worker: Worker, names: TopicNames, run_id: str, count: int) -> Preloaded:
    """Write ``count`` customers waiting in the hold lane straight into the worker's changelogs.

    Each is what the worker itself would write for that customer's ``bench_wait`` event: the
    event goes through the same ingest (decode, validate, normalise) and the same msgpack
    round trip to the decide agent, then the identity graph and ``decide()`` with the
    worker's journeys and settings; the customers changelog gets the encoded profile and the
    due changelog the key ``<wake>|<customer>``, both on the customer's partition (the
    producer's murmur2 of the key, as the ingest agent's send picks it). The worker, started
    afterwards with an empty data folder, recovers both tables exactly as after a restart."""
    settings = worker.settings()
    journeys, errors = load_dir(Path(worker.env["ORCH_JOURNEYS_DIR"]))
    if errors:
        raise BenchError(f"bench journeys are invalid: {errors}")
    ctx = Context(
        settings.policy(),
        Engine(Catalogue.of(journeys), settings.max_active_journeys, settings.default_timezone),
        in_place=True,  # the state is encoded at once and never looked at again
    )
    customers = f"{settings.full_app_id}-customers-changelog"
    due = f"{settings.full_app_id}-due-changelog"
    ensure_topics(config.bootstrap, [customers, due], settings.partitions, COMPACTED, settings.replication_factor)
    topic, limits, hasher = names.events(INBOUND), settings.limits(), settings.hasher()
    client, started, written = producer(config.bootstrap), time.monotonic(), 0
    print(f"preloading {count:,} pending waits into {customers} and {due} ...")
    try:
        with bars({"waits preloaded": count}) as update:
            for i in range(count):
                _, value = wait_event(run_id, "hold", i)
                now = time.time()
                event = ingest(
                    value,
                    topic=topic,
                    headers=HEADERS,
                    received_at=now,
                    now=now,
                    topics=names,
                    limits=limits,
                    hasher=hasher,
                )
                if not isinstance(event, Event):
                    raise BenchError(f"the worker would refuse the bench event: {event}")
                event = Event.from_wire(msgpack.unpackb(msgpack.packb(event.to_wire(), use_bin_type=True), raw=False))
                key = event.customer_key.encode()
                effects = handle(event.customer_key, Missing(), event, now, ctx)
                record = effects.record
                wake = record.state.next_wake() if isinstance(record, Profile) else None
                state = encode(record) if record is not None else None
                if state is None or wake is None or effects.sends:
                    raise BenchError("a preloaded customer did not end up waiting in the hold lane")
                partition = (murmur2(key) & 0x7FFFFFFF) % settings.partitions
                client.send(customers, key=key, value=state, partition=partition)
                client.send(due, key=due_key(wake, key), value=b"1", partition=partition)
                written += len(key) + len(state) + 32
                if i % 5000 == 0:
                    update("waits preloaded", i)
            client.flush(timeout=120)
    finally:
        client.close(timeout=30)
    return Preloaded(count, time.monotonic() - started, changelog_bytes=written)


def start_recovering(config: Config, worker: Worker, preloaded: Preloaded | None) -> None:
    """Start the worker; with a preload, time its recovery and wait for its exact gauges."""
    timeout = READY_TIMEOUT_S + (preloaded.count / 1000 if preloaded else 0)
    started = time.monotonic()
    worker.start(timeout)
    if preloaded is None:
        return
    preloaded.recovery_s = time.monotonic() - started
    preloaded.recovery_cpu_s = worker.cpu_seconds()
    stall = Stall(config.stall_s)
    while (pending := sample(worker.scrape(), "orchestrator_timers_pending")) != preloaded.count:
        stall.check(int(pending), "orchestrator_timers_pending after recovery")
        time.sleep(1.0)
    time.sleep(5.0)  # memory settles once the counts are done
    preloaded.rss_recovered = worker.memory()[0]


# -- phase 2: lateness under load --------------------------------------------------------------


@dataclass
class Window:
    due: int
    due_rate: float
    background_rate: float
    rss_all_pending: int
    timers_pending_gauge: float
    fired: list[Fired]
    pings: list[float]  # control events: send -> command, through the same worker, no timer
    wakes: list[tuple[float, float]]  # the worker's lateness histogram, deltas over the window
    # event_to_command: from the tick sending a wake to its command (the control events' share
    # of it is small); lateness minus this is the tick's own delay
    queued: list[tuple[float, float]]
    background_sent_rate: float
    background_processed_rate: float
    cpu: tuple[float, float]


def window_rates(config: Config, capacity: float) -> tuple[float, float]:
    """(page views/s, waits due/s): as given, else shares of the measured ingest rate."""
    background = config.background_rate or min(MAX_AUTO_RATE, BACKGROUND_SHARE * capacity)
    due = config.due_rate or min(MAX_AUTO_RATE, DUE_SHARE * capacity)
    return background, due


def measure_window(config: Config, worker: Worker, names: TopicNames, run_id: str, capacity: float) -> Window:
    """Page views flow; K waits enter over the window, then fall due at that pace; watch them fire."""
    background_rate, due_rate = window_rates(config, capacity)
    count = max(1, round(due_rate * config.window_s))
    print(
        f"lateness window: page views at {background_rate:,.0f}/s; {count:,} waits enter at {due_rate:,.0f}/s "
        f"and fall due {config.wait_s} s after entry ..."
    )
    topic = names.events(INBOUND)
    collector = Collector(config.bootstrap, names.actions(ACTION_CHANNEL))
    background = Sender(config.bootstrap, Plan(topic, lambda i: page_view(run_id, i), None, background_rate))
    control = Sender(config.bootstrap, Plan(topic, lambda i: ping(run_id, i), None, PING_RATE))
    collector.start()
    background.start()
    control.start()
    try:
        time.sleep(3.0)  # the background stream is steady before anything is measured
        before, cpu = worker.scrape(), CpuMeter(worker).start()
        due = Sender(config.bootstrap, Plan(topic, lambda i: wait_event(run_id, "due", i), count, due_rate))
        due.start()
        watch_due_entries(config, worker, count)
        due.join()
        rss, gauge = worker.memory()[0], sample(worker.scrape(), "orchestrator_timers_pending")
        watch_firing(config, worker, collector, count)
        after, used = worker.scrape(), cpu.read()
        elapsed = time.monotonic() - cpu.marks[0]
    finally:
        background.stop()
        control.stop()
        collector.stop()
    return Window(
        count,
        due_rate,
        background_rate,
        rss,
        gauge,
        collector.fired,
        collector.pings,
        bucket_deltas(before, after, "orchestrator_timer_lateness_seconds"),
        bucket_deltas(before, after, "orchestrator_event_to_command_seconds"),
        background.rate,
        (page_views(after) - page_views(before)) / elapsed,
        used,
    )


def watch_due_entries(config: Config, worker: Worker, count: int) -> None:
    stall = Stall(config.stall_s)
    with bars({"due-lane waits entered": count}) as update:
        while (done := entries(worker.scrape(), DUE)) < count:
            update("due-lane waits entered", done)
            stall.check(done, f"{DUE} entries")
            time.sleep(0.5)


def watch_firing(config: Config, worker: Worker, collector: Collector, count: int) -> None:
    """Until every due wait has fired, or well past the last due time (then report what fired)."""
    deadline = time.monotonic() + config.wait_s + config.window_s + 120
    with bars({"due waits fired": count}) as update:
        while len(collector.fired) < count and time.monotonic() < deadline:
            worker.check_alive()
            update("due waits fired", len(collector.fired))
            time.sleep(0.5)
    time.sleep(2.0)  # a last poll of the action topic and a last scrape catch stragglers


# -- report ------------------------------------------------------------------------------------


def mb(value: float) -> str:
    return f"{value / MB:,.0f} MB"


def secs(value: float) -> str:
    return "   n/a" if math.isnan(value) else ("   inf" if math.isinf(value) else f"{value:6.3f} s")


def cores(cpu: tuple[float, float]) -> str:
    return f"worker used {cpu[0]:.2f} cores, the machine {cpu[1]:.2f} of {os.cpu_count()}"


def extrapolate(load: Load) -> str | None:
    """Least squares of RSS on waits during the load, projected to 1,000,000: labelled as such."""
    points = [(n, r) for n, r in load.samples if n >= load.count * 0.1]
    if load.count >= FULL_SCALE or len(points) < 3:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_r = sum(r for _, r in points) / len(points)
    var = sum((n - mean_n) ** 2 for n, _ in points)
    slope = sum((n - mean_n) * (r - mean_r) for n, r in points) / var if var else 0.0
    projected = load.rss_loaded + slope * (FULL_SCALE - load.count)
    return (
        f"  EXTRAPOLATION, not a measurement: {slope:,.0f} bytes per pending wait during the load, so about "
        f"{mb(projected)} at {FULL_SCALE:,} pending ({projected / TARGET_RSS_BYTES:.2f}x the 2,048 MB target)"
    )


def report_load(load: Load, preloaded: Preloaded | None, gauge: float, on_disk: int) -> None:
    per_core = load.rate / max(load.cpu[0], 1e-9)
    pending = load.count + (preloaded.count if preloaded else 0)
    if preloaded is not None:
        print(
            f"loaded     PRELOADED, not through the pipeline: {preloaded.count:,} waits written offline into the "
            f"customers and due changelogs ({mb(preloaded.changelog_bytes)}) with the worker's own code (ingest, "
            f"identity graph, decide) in {preloaded.build_s:.0f} s, then recovered by the worker at start as after "
            f"a restart: ready in {preloaded.recovery_s:.0f} s using {preloaded.recovery_cpu_s:.0f} CPU-seconds, "
            f"RSS {mb(preloaded.rss_recovered)} right after; the read model (Redis) was not filled for them"
        )
        print(f"           then {load.count:,} more through the pipeline, to measure it with the waits in place:")
    else:
        print(f"loaded     every wait through the pipeline (events.{INBOUND} -> ingest -> decide):")
    print(
        f"ingest     {load.count:,} waits in {load.seconds:.1f} s = {load.rate:,.0f} events/s through one worker "
        f"(sent at {load.send_rate:,.0f}/s; {cores(load.cpu)}: {per_core:,.0f} events per worker CPU-second)"
    )
    if load.cut_short:
        print(
            f"           load budget spent: {FULL_SCALE:,} would take about {FULL_SCALE / load.rate / 60:.0f} min "
            f"at this rate, {FULL_SCALE / per_core / 60:.0f} min with a whole core"
        )
    idle = "" if preloaded else f"idle {mb(load.rss_idle)}; "
    print(
        f"memory     RSS {mb(load.rss_loaded)} with {pending:,} waits pending, at rest ({idle}"
        f"target < 2,048 MB: {load.rss_loaded / TARGET_RSS_BYTES:.2f}x); RocksDB on disk {mb(on_disk)}; "
        f"orchestrator_timers_pending (exact) says {gauge:,.0f}"
    )
    line = None if preloaded else extrapolate(load)
    if line:
        print(line)


def report_window(pending: int, window: Window, peak_rss: int) -> None:
    fired, unique = window.fired, {f.customer for f in window.fired}
    late = [f.produced - f.due for f in fired]
    seen = [f.seen - f.due for f in fired]
    wakes = window.wakes[-1][1] if window.wakes else 0.0
    p99 = quantile(0.99, late)
    print(
        f"memory     RSS {mb(window.rss_all_pending)} with {pending + window.due:,} pending under load; "
        f"peak over the run {mb(peak_rss)} ({peak_rss / TARGET_RSS_BYTES:.2f}x the target)"
    )
    print(
        f"lateness   {window.due:,} waits due at {window.due_rate:,.0f}/s while page views flow "
        f"(sent {window.background_sent_rate:,.0f}/s, processed {window.background_processed_rate:,.0f}/s; "
        f"{cores(window.cpu)})"
    )
    print(
        f"           fired {len(unique):,} of {window.due:,} ({len(fired):,} commands); the worker's lateness "
        f"histogram observed {wakes:,.0f} firings"
    )
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        print(
            f"  {label}  end to end: command sent {secs(quantile(q, late))}, read {secs(quantile(q, seen))}   "
            f"worker histograms (bucket estimates): lateness {secs(histogram_quantile(q, window.wakes))}; "
            f"wake sent -> command {secs(histogram_quantile(q, window.queued))}"
        )
    print(f"  max  end to end: command sent {secs(max(late, default=math.nan))}")
    print(
        f"  control: {len(window.pings):,} events through the same worker meanwhile, no timer, send -> command: "
        f"p50 {secs(quantile(0.5, window.pings))}, p99 {secs(quantile(0.99, window.pings))}"
    )
    verdict = "met" if p99 <= TARGET_P99_S and len(unique) == window.due else "MISSED"
    print(f"  target p99 <= 1 s: {verdict} ({p99 / TARGET_P99_S:.2f}x, end to end)")


# -- setup and cleanup -------------------------------------------------------------------------


def check_stack(bootstrap: str, redis_url: str, script: str = "timers_live") -> None:
    """One clear line and exit 2 when Kafka or Redis is down: nothing to measure then."""
    try:
        for server in bootstrap.split(","):  # a closed port fails in milliseconds, not 30 s
            host, _, port = server.strip().rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=3).close()
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot reach Kafka at {server} ({type(exc).__name__}); try 'make up'") from exc
        check_kafka(bootstrap)
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            raise CliError(f"cannot reach Redis at {redis_url} ({type(exc).__name__}); try 'make up'") from exc
        finally:
            client.close()
    except CliError as exc:
        print(f"{script}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cleanup(bootstrap: str, redis_url: str, prefix: str) -> str:
    """Delete every topic, the consumer group and every Redis key this run's prefix made."""
    return f"cleaned up under {prefix!r}: {remove_prefix(bootstrap, redis_url, prefix, settle_s=2.0)}"


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description="Durable timers on a live worker (issue 3, section 2).")
    parser.add_argument("--quick", action="store_true", help="50,000 waits, 4 min budget, 20 s window")
    parser.add_argument("--customers", type=int, help="pending waits to load (default 1,000,000)")
    parser.add_argument(
        "--load",
        choices=("preload", "pipeline"),
        default="preload",
        help="preload (default): write all but --probe waits into the changelogs offline, with the worker's own "
        "code, and let the worker recover them at start, as after a restart; pipeline: every wait as an event "
        "through ingest and decide (about 500-600 events per worker CPU-second)",
    )
    parser.add_argument(
        "--probe", type=int, help="with --load preload: waits still loaded through the pipeline (default 20,000)"
    )
    parser.add_argument("--budget", type=float, help="minutes for loading; stop there (default 15)")
    parser.add_argument("--window", type=float, help="seconds over which the due waits fall due (default 60)")
    parser.add_argument(
        "--due-rate", type=float, help=f"waits due per second (default {DUE_SHARE * 100:.0f}%% of ingest)"
    )
    parser.add_argument(
        "--background-rate",
        type=float,
        help=f"page views per second (default {BACKGROUND_SHARE * 100:.0f}%% of ingest)",
    )
    parser.add_argument("--stall", type=float, default=120.0, help="give up after this long without progress")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE", help="extra worker env")
    parser.add_argument("--dump", type=Path, help="write each fired wait (due, sent, read) to this CSV file")
    args = parser.parse_args(argv)
    customers = args.customers or (50_000 if args.quick else FULL_SCALE)
    return Config(
        customers=customers,
        load=args.load,
        probe=min(customers, args.probe if args.probe is not None else (5_000 if args.quick else 20_000)),
        budget_s=60 * (args.budget or (4.0 if args.quick else 15.0)),
        window_s=args.window or (20.0 if args.quick else 60.0),
        due_rate=args.due_rate,
        background_rate=args.background_rate,
        stall_s=args.stall,
        worker_env=dict(item.split("=", 1) for item in args.worker_env),
        dump=args.dump,
        bootstrap=os.environ.get("ORCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        redis_url=os.environ.get("ORCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )


def run(config: Config, worker: Worker, names: TopicNames, run_id: str) -> None:
    # The action topic exists before the first command, so the collector reads it from offset 0.
    ensure_topics(config.bootstrap, [names.actions(ACTION_CHANNEL)], 4)
    preloaded = None
    if config.load == "preload":
        preloaded = preload(config, worker, names, run_id, max(0, config.customers - config.probe))
    start_recovering(config, worker, preloaded)
    first = preloaded.count if preloaded else 0
    print(
        f"worker ready (pid {worker.pids()[0]}, topics {names.prefix}*) with {first:,} waits pending; "
        f"loading {config.customers - first:,} more through the pipeline ..."
    )
    load = load_pending(config, worker, names, run_id, first, config.customers - first)
    time.sleep(5.0)  # let the timer tick refresh the gauge and memory settle
    gauge = sample(worker.scrape(), "orchestrator_timers_pending")
    load.rss_loaded = worker.memory()[0]
    print(f"\ntimers on a live worker, {names.prefix}")
    report_load(load, preloaded, gauge, worker.state_bytes())
    window = measure_window(config, worker, names, run_id, load.rate)
    report_window(first + load.count, window, worker.memory()[1])
    if config.dump is not None:
        lines = [f"{f.customer},{f.due:.3f},{f.produced:.3f},{f.seen:.3f}" for f in window.fired]
        config.dump.write_text("customer,due,sent,read\n" + "\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    check_stack(config.bootstrap, config.redis_url)
    run_id = secrets.token_hex(3)
    prefix = f"bench-{run_id}."
    folder = Path(tempfile.mkdtemp(prefix="timers-live-"))
    worker = Worker(config, prefix, folder)
    code = 0
    try:
        run(config, worker, TopicNames(prefix), run_id)
    except BenchError as exc:
        print(f"timers_live: {exc}\n--- worker log, last lines ---\n{worker.log_tail()}", file=sys.stderr)
        code = 1
    finally:
        worker.stop()
        shutil.rmtree(folder, ignore_errors=True)
        try:
            print(cleanup(config.bootstrap, config.redis_url, prefix))
        except (KafkaError, redis.RedisError, OSError) as exc:
            print(f"timers_live: could not clean up {prefix!r}: {exc!r}", file=sys.stderr)
            code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
