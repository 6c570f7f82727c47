"""``make bench``: figures measured side by side in one run, printed, never asserted.

* decide(): microseconds per event, built-in rules only vs rules plus the six journeys.
* replay: events per second through the offline engine (target: 100k/s), and, for the
  ratios, the same run copying every state as the stream does, and also with conditions
  evaluated plainly (whole variables converted to CEL values every time, nothing
  remembered); the engine's other speed-ups stay on in all three.
* journey tally: where a stored profile is in its journeys, the profile decoded whole vs the
  ``journeys`` field read alone (the worker asks it of both values of every write).
* recount: after a start or a rebalance, a worker counts its partitions' profiles again
  (customers, and where they are in journeys) in steps, within a budget of each second; the
  same profiles counted as it did before, a fixed chunk per partition per second.
* read model: one customer's profile (state, stage, ranked actions) as JSON, encoded with the
  standard library (as it was) vs orjson (as it is); a worker encodes one per customer per flush.
* timer index: resident memory and the cost of one tick with 1,000,000 pending waits in
  a RocksDB index laid out like the worker's ``due`` table (target: < 2 GB; a tick reads
  only what is due).
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
from rocksdict import Options, Rdict

from agents import web
from agents.journeys import DueCursor
from orchestrator.core.commands import Command
from orchestrator.core.decide import decide
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.history import event_parser, parse_all, read_lines, replay_scanned, scan
from orchestrator.identity import records
from orchestrator.journeys.catalogue import Catalogue
from orchestrator.journeys.conditions import Condition
from orchestrator.journeys.engine import Engine
from orchestrator.journeys.loader import load_dir
from orchestrator.readmodel import decode_profile, encode_profile, profile
from orchestrator.replay import Replay, freeze_loaded
from orchestrator.replay_split import default_processes, replay_split
from orchestrator.simulator import Simulator

ROOT = Path(__file__).parents[1]


def history_docs(steps: int, span_s: float = 30 * 86400) -> list[dict[str, Any]]:
    """Simulated ChannelEvents (with their channel), as a history file holds them."""
    sim = Simulator(customers=2000, seed=3, run_id="bench")
    start = 1_790_000_000.0
    return [
        out.event | {"channel": out.channel}
        for i in range(steps)
        for out in sim.records(start + span_s * i / steps)
        if out.event
    ]


def history(steps: int, span_s: float = 30 * 86400) -> list[Event]:
    return [
        Event(
            doc["event_id"],
            doc["type"],
            doc["ts"],
            doc["customer_id"],
            doc["channel"],
            doc["ts"],
            doc["customer_id"],
            {},
            doc["properties"],
        )
        for doc in history_docs(steps, span_s)
    ]


def engine() -> Engine:
    journeys, errors = load_dir(ROOT / "journeys")
    assert not errors, errors
    return Engine(Catalogue.of(journeys))


def bench_decide(events: list[Event]) -> None:
    for label, policy, eng in (
        ("rules only", Policy(), None),
        ("rules + 6 journeys", Policy(), engine()),
        ("6 journeys only", Policy(rules=frozenset()), engine()),
    ):
        states: dict = {}
        started = time.perf_counter()
        for e in events:
            states[e.customer_key] = decide(states.get(e.customer_key), e, e.ts, policy, eng).state
        per = (time.perf_counter() - started) / len(events) * 1e6
        print(f"decide, {label:<20} {per:8.1f} us/event   {1e6 / per:10,.0f} events/s")


def bench_replay(events: list[Event]) -> None:
    """The offline engine, then the same run without its shortcuts, for the ratios."""
    rate, commands = replay_rate(events, in_place=True)
    print(
        f"replay, 6 journeys          {rate:10,.0f} events/s  ({commands} commands; target 100,000/s: "
        f"{rate / 100_000:.2f}x)"
    )
    cores = default_processes(10**9)
    split, _ = split_rate(events, cores)
    print(
        f"  split over {cores} processes    {split:10,.0f} events/s  ({split / rate:.2f}x one process; "
        f"target: {split / 100_000:.2f}x; scales with cores)"
    )
    copying, _ = replay_rate(events, in_place=False)
    print(f"  copying every state       {copying:10,.0f} events/s  (in place: {rate / copying:.2f}x as fast)")
    with plain_conditions():
        plain, _ = replay_rate(events, in_place=False)
    print(f"  copying, plain CEL        {plain:10,.0f} events/s  (in place, lean CEL: {rate / plain:.2f}x as fast)")


def replay_rate(events: list[Event], *, in_place: bool) -> tuple[float, int]:
    """Events per second and commands; a fresh engine each time, so nothing is remembered."""
    player = Replay(Policy(rules=frozenset()), engine(), in_place=in_place)
    started = time.perf_counter()
    commands = sum(1 for _ in player.run(events))
    return len(events) / (time.perf_counter() - started), commands


def split_rate(events: list[Event], processes: int) -> tuple[float, int]:
    """Replay split by identity groups over ``processes`` (orchestrator.replay_split)."""
    player = cli_player()
    started = time.perf_counter()
    commands, _ = replay_split(events, player, processes)
    count = sum(1 for _ in commands)
    return len(events) / (time.perf_counter() - started), count


def bench_replay_file(steps: int) -> None:
    """``orchestrator replay`` as a user runs it, from a file, with its output thrown away:
    parsed in the parent before the customers are shared out (as it was), then parsed by
    the processes that replay them. What the parent spends per event is the serial part:
    no number of cores can replay faster than one process does that part alone."""
    cores = default_processes(10**9)
    folder = Path(tempfile.mkdtemp(prefix="replay-bench-"))
    try:
        path = folder / "history.jsonl"
        path.write_text("".join(json.dumps(doc) + "\n" for doc in history_docs(steps)), encoding="utf-8")
        lines = read_lines(path)
        events = sum(1 for line in lines if line.strip())
        print(f"replay of a {events:,}-event file over {cores} processes (the CLI's path, output discarded):")
        for label, run in (
            ("parsed in the parent", lambda: parsed_in_parent(lines, cores)),
            ("parsed where replayed", lambda: parsed_where_replayed(lines, cores)),
        ):
            wall, parent, others = cpu_split(run)
            print(
                f"  {label:<22} {events / wall:10,.0f} events/s; the parent {parent / events * 1e6:5.1f} us/event "
                f"(at most {events / parent:,.0f} events/s on any number of cores), "
                f"the others {others / events * 1e6:5.1f} us/event"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def parsed_in_parent(lines: list[bytes], processes: int) -> None:
    events = parse_all(lines, event_parser("replay"))
    commands, _ = replay_split(events, cli_player(), processes, render=as_json)
    for _ in commands:
        pass


def parsed_where_replayed(lines: list[bytes], processes: int) -> None:
    parse = event_parser("replay")
    scanned = scan(lines, parse, processes)
    commands, _ = replay_scanned(lines, parse, scanned, cli_player(), processes, scanned.last_ts, render=as_json)
    for _ in commands:
        pass


def cli_player() -> Callable[[], Replay]:
    """Players as the CLI makes them: the journeys loaded once, before the processes fork."""
    journeys = engine()
    return lambda: Replay(Policy(rules=frozenset()), journeys)


def as_json(command: Command) -> str:
    """A command as ``orchestrator replay --json`` prints it."""
    return json.dumps(command.to_wire(), sort_keys=True)


def cpu_split(run: Any) -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds and its children's, for ``run()``."""
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    parent = self_after.ru_utime + self_after.ru_stime - self_before.ru_utime - self_before.ru_stime
    children = children_after.ru_utime + children_after.ru_stime - children_before.ru_utime - children_before.ru_stime
    return wall, parent, children


def plain_value(condition: Condition, context: Mapping[str, Any]) -> Any:
    """A condition evaluated as it was first written: every variable it names converted
    whole into CEL values, every time."""
    return condition.program.execute({name: context[name] for name in condition.names})


@contextmanager
def plain_conditions() -> Iterator[None]:
    fast = Condition.value
    Condition.value = plain_value  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        Condition.value = fast  # type: ignore[method-assign]


def bench_journey_tally(events: list[Event]) -> None:
    """Where each stored profile is in its journeys: what the worker's journey tally asks of the
    old and the new value of every write, and of every profile after a rebalance. Side by side:
    the profile decoded whole (as it was) and the ``journeys`` field read alone (as it is)."""
    stored = stored_profiles(events, Policy(rules=frozenset()))
    inside = sum(1 for raw in stored if records.journey_places(raw))

    def whole(raw: bytes) -> Any:
        return {(j, i["v"], i["step"]): 1 for j, i in (msgpack.unpackb(raw, raw=False)["journeys"] or {}).items()}

    figures = [per_item(tally, stored, rounds=10) for tally in (whole, records.journey_places)]
    print(
        f"journey tally, {len(stored):,} profiles ({inside:,} in a journey, {sum(map(len, stored)) / len(stored):,.0f} "
        f"bytes each): decoded whole {figures[0]:.1f} us, the field alone {figures[1]:.1f} us "
        f"({figures[0] / figures[1]:.1f}x less)"
    )


OLD_CHUNKS = (20_000, 2_500)  # keys, and profiles read for their journeys, per partition per second, as it was


def bench_recount(events: list[Event], profiles: int = 100_000, partitions: int = 4) -> None:
    """The worker's count after a start or a rebalance (``agents.web.count_step``), on
    ``profiles`` stored profiles in ``partitions`` RocksDB partitions: the steps it takes now,
    within ``COUNT_BUDGET_S`` of each second, and the fixed chunks per partition it took once
    per second before, side by side. A step stalls the agents; the budget bounds the share."""
    stored = stored_profiles(events, Policy())
    folder = Path(tempfile.mkdtemp(prefix="recount-bench-"))
    try:
        dbs = [(p, Rdict(str(folder / str(p)), Options(raw_mode=True))) for p in range(partitions)]
        for i in range(profiles):
            dbs[i % partitions][1].put(f"c-{i:08d}".encode(), stored[i % len(stored)])
        steps = recount([dbs], web.COUNT_CHUNK, web.DECODE_CHUNK)
        before = recount([[db] for db in dbs], *OLD_CHUNKS)  # each partition its own chunks, each second
        print(
            f"recount, {profiles:,} profiles in {partitions} partitions: {sum(steps) / profiles * 1e6:.1f} us each; "
            f"steps of {max(steps) * 1e3:.0f} ms at most, {web.COUNT_BUDGET_S:.1f} s of each second: done in "
            f"{sum(steps) / web.COUNT_BUDGET_S * web.COUNT_INTERVAL_S:.1f} s (before: {len(before)} s, "
            f"stalls of {max(before) * 1e3:.0f} ms, {sum(before) / len(before) * 1e3:.0f} ms of each second)"
        )
        for _, db in dbs:
            db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def recount(groups: list[list[tuple[int, Any]]], chunk: int, decode: int) -> list[float]:
    """Seconds each step of a whole count takes: a step is the worker's (``count_more``) in
    each group of partitions, with ``chunk`` and ``decode`` keys."""
    counters = [
        (
            group,
            web.KeyCounts(None, counts=records.is_profile),
            web.KeyCounts(None, tally=records.journey_places),
        )
        for group in groups
    ]
    took = []
    while True:
        started = time.perf_counter()
        done = [web.count_more(counts, [tally], group, chunk, decode) for group, counts, tally in counters]
        took.append(time.perf_counter() - started)
        if all(total is not None and None not in places for total, places in done):
            return took


def bench_profile_encoding(events: list[Event]) -> None:
    """The read model's profile documents, as a worker with the built-in rules and the journeys
    leaves them, encoded both ways side by side (the document itself is built once, apart), then
    decoded both ways, as the API reads one per request."""
    now = events[-1].ts
    docs = [profile(r.state, now) for r in replayed(events, Policy()) if isinstance(r, records.Profile)]
    encoded = [encode_profile(doc) for doc in docs]
    size = sum(map(len, encoded)) / len(docs)
    writes = [per_item(encode, docs) for encode in (lambda doc: json.dumps(doc).encode(), encode_profile)]
    reads = [per_item(decode, encoded) for decode in (json.loads, decode_profile)]
    for verb, (plain, fast) in (("encoding", writes), ("decoding", reads)):
        print(
            f"read model, {len(docs):,} profiles ({size:,.0f} bytes each), {verb}: json {plain:.1f} us, "
            f"orjson {fast:.1f} us ({plain / fast:.1f}x less)"
        )


def replayed(events: list[Event], policy: Policy) -> list[records.Record]:
    """Every stored record a replay of ``events`` with the shipped journeys leaves."""
    player = Replay(policy, engine())
    for _ in player.run(events):
        pass
    return list(player.records.values())


def stored_profiles(events: list[Event], policy: Policy) -> list[bytes]:
    """The profiles a replay of ``events`` leaves, as the customers table stores them."""
    return [raw for raw in map(records.encode, replayed(events, policy)) if raw and records.is_profile(raw)]


def per_item(work: Callable[[Any], Any], items: list[Any], rounds: int = 5) -> float:
    """Microseconds ``work`` takes per item, over ``rounds`` passes."""
    started = time.perf_counter()
    for _ in range(rounds):
        for item in items:
            work(item)
    return (time.perf_counter() - started) / rounds / len(items) * 1e6


def bench_timer_index(pending: int = 1_000_000, fired: int = 100_000) -> None:
    """The due index alone: fill, one tick, then the tick again after ``fired`` waits fired.

    Fired waits leave tombstones in RocksDB until compaction. A tick that reads the index
    from the start steps over all of them (what the worker did before); the worker's
    :class:`DueCursor` seeks to where the last tick stopped instead."""
    folder = Path(tempfile.mkdtemp(prefix="due-bench-"))
    before = rss_mb()
    try:
        options = Options(raw_mode=True)
        db = Rdict(str(folder), options)
        now = 1_800_000_000.0
        started = time.perf_counter()
        for i in range(pending):
            wake = now + (i % 86400) + i / pending  # spread over a day
            db.put(f"{wake:017.3f}|cust-{i:08d}".encode(), b"1")
        fill = time.perf_counter() - started
        due_until = f"{now + 1.0:017.3f}|".encode() + b"\xff"  # about 12 customers due
        tick, due = timed(lambda: scan_from_start(db, due_until))
        print(
            f"timer index, {pending:,} pending: filled in {fill:.1f}s, one tick found {due} due in "
            f"{tick:.2f} ms, process RSS {rss_mb():,.0f} MB (+{rss_mb() - before:,.0f} MB; target < 2,048 MB)"
        )
        fired_keys: list[bytes] = sorted(bytes(k) for k in db.keys(from_key=b"0"))[:fired]  # type: ignore[arg-type]
        for key in fired_keys:  # these waits fired: the decide agent deleted their keys
            db.delete(key)
        last = fired_keys[-1] if fired_keys else b""
        wake_then = float(last.partition(b"|")[0] or now)
        due_until = f"{wake_then + 1.0:017.3f}|".encode() + b"\xff"
        old, due_old = timed(lambda: scan_from_start(db, due_until))
        new, due_new = timed(lambda: from_cursor(db, last + b"\xff", due_until))
        print(
            f"  after {fired:,} waits fired (tombstones, not compacted yet), one tick finding {due_new} due: "
            f"from the start {old:.2f} ms ({due_old} found), from the cursor {new:.3f} ms ({old / new:,.0f}x less)"
        )
        db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def timed(tick: Any, repeat: int = 20) -> tuple[float, int]:
    """Mean milliseconds of ``tick()`` and what it returned."""
    started = time.perf_counter()
    for _ in range(repeat):
        found = tick()
    return (time.perf_counter() - started) / repeat * 1000, found


def scan_from_start(db: Rdict, due_until: bytes) -> int:
    """The tick as it was: read the index from its first key, stop at the first not due."""
    due = 0
    for key in db.keys():  # noqa: SIM118 - RocksDB iterator in key order
        if key > due_until:  # type: ignore[operator]
            break
        due += 1
    return due


def from_cursor(db: Rdict, next_from: bytes, due_until: bytes) -> int:
    """The worker's tick: seek to where the last one stopped."""
    cursor = DueCursor()
    cursor.next_from = next_from
    return len(cursor.due(db, due_until, 1_000_000))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    events = history(steps)
    freeze_loaded()  # as ``orchestrator replay`` does once the history is read
    print(f"{len(events):,} simulated events, 2,000 customers, 30 days")
    bench_decide(events)
    bench_replay(events)
    bench_replay_file(steps)
    bench_journey_tally(events)
    bench_profile_encoding(events)
    bench_recount(events)
    bench_timer_index()
    print("Timer lateness on a live worker under load: make bench-timers (see bench/README.md).")


if __name__ == "__main__":
    main()
