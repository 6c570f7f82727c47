"""Replay in several processes, split by identity, with the output of a single one.

Customers never affect each other, except through identity: an event that names
two identifiers can merge their profiles. So the history is cut into *identity
groups* (the keys linked by any event, found with union-find) and the groups
are shared out between processes, each running its own :class:`Replay`. Forked
children read the parent's events without copying them.

Each command carries the place in the single-process run that produced it (the
event's rank in time order, or a wake's time and key) and the parent merges the
children's streams on it, so the commands come out in exactly the order one
process would give. Summaries add up.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from orchestrator.core.commands import Command
from orchestrator.core.event import Event
from orchestrator.forked import fork_each, reap
from orchestrator.identity.tokens import profile_key_for, tokens_of
from orchestrator.replay import Replay, Summary, freeze_loaded

BATCH = 2000  # commands a child sends at a time
MIN_EVENTS_PER_PROCESS = 5_000  # below this, forking costs more than it saves
# The most processes a replay forks, asked or not: beyond the cores there is nothing to gain,
# and each holds open files in the parent (a thousand hit the usual limit of open files).
MAX_PROCESSES = 128


@dataclass(frozen=True)
class Plan:
    """Which events each process replays: lists of ranks into the time-ordered history."""

    shares: list[list[int]]
    groups: int


def default_processes(events: int) -> int:
    """As many processes as this process may use cores, but none that would idle."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, events // MIN_EVENTS_PER_PROCESS, MAX_PROCESSES))


def keys_of(event: Event) -> list[str]:
    """Every profile key an event touches: the one it is routed by and each identifier's."""
    keys = [event.customer_key]
    if event.identifiers or (event.customer_id and event.customer_id != event.customer_key):
        keys += [profile_key_for(token) for token in tokens_of(event.customer_id, event.identifiers)]
    return keys


def plan(ordered: Sequence[Event], processes: int) -> Plan:
    """Share identity groups between ``processes``, biggest first onto the least loaded.

    Deterministic: the same history and count give the same shares."""
    routed = [event.customer_key for event in ordered]
    linked = {rank: keys[1:] for rank, event in enumerate(ordered) if len(keys := keys_of(event)) > 1}
    return plan_keys(routed, linked, processes)


def plan_keys(routed: Sequence[str], linked: Mapping[int, Sequence[str]], processes: int) -> Plan:
    """:func:`plan` from the key each event (by rank in time order) is routed by, and the
    other keys of the few that name more (:func:`keys_of`)."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while (up := parent.setdefault(key, key)) != key:
            parent[key] = parent.setdefault(up, up)  # halve the path as we go
            key = parent[key]
        return key

    for rank, others in linked.items():
        first = root(routed[rank])
        for other in others:
            top = root(other)
            if top != first:
                parent[top] = first
    members: dict[str, list[int]] = {}
    for rank, key in enumerate(routed):  # a key never linked is its own root
        members.setdefault(root(key) if key in parent else key, []).append(rank)
    processes = max(1, min(processes, len(members)))  # a process without a group would idle
    shares: list[list[int]] = [[] for _ in range(processes)]
    loads = [(0, i) for i in range(processes)]
    for group in sorted(members.values(), key=lambda ranks: (-len(ranks), ranks[0])):
        load, i = heapq.heappop(loads)
        shares[i].extend(group)
        heapq.heappush(loads, (load + len(group), i))
    for share in shares:
        share.sort()
    return Plan(shares, len(members))


def replay_split(
    events: Iterable[Event],
    make_player: Callable[[], Replay],
    processes: int,
    *,
    until: float | None = None,
    render: Callable[[Command], Any] = lambda command: command,
    progress: Callable[[int], None] | None = None,
) -> tuple[Iterator[Any], Summary]:
    """Rendered commands in single-process order, and the summary, filled in when they are used up.

    ``render`` runs in the children, so only its result (a line of text, say) crosses
    between processes. ``progress`` is told how many events were replayed since it was last told.
    """
    ordered = sorted(events, key=lambda e: e.ts)
    summary = Summary()
    if processes <= 1 or len(ordered) < 2:
        return _single(ordered, make_player(), until, render, progress, summary), summary
    shares = plan(ordered, processes).shares
    last = ordered[-1].ts if until is None else until
    return _merged(ordered.__getitem__, shares, make_player, last, render, progress, summary), summary


def replay_shared(
    fetch: Callable[[int], Event],
    shares: list[list[int]],
    make_player: Callable[[], Replay],
    until: float,
    *,
    render: Callable[[Command], Any] = lambda command: command,
    progress: Callable[[int], None] | None = None,
) -> tuple[Iterator[Any], Summary]:
    """:func:`replay_split` of a history already planned: ``shares`` hold ranks in time order,
    and each process gets its events with ``fetch(rank)`` (parsing them, say: see
    :mod:`orchestrator.history`)."""
    summary = Summary()
    return _merged(fetch, shares, make_player, until, render, progress, summary), summary


def _single(
    ordered: list[Event],
    player: Replay,
    until: float | None,
    render: Callable[[Command], Any],
    progress: Callable[[int], None] | None,
    summary: Summary,
) -> Iterator[Any]:
    tick = (lambda: progress(1)) if progress is not None else None
    for command in player.run(ordered, until=until, progress=tick):
        yield render(command)
    summary.add(player.summary)


def _merged(
    fetch: Callable[[int], Event],
    shares: list[list[int]],
    make_player: Callable[[], Replay],
    until: float,
    render: Callable[[Command], Any],
    progress: Callable[[int], None] | None,
    summary: Summary,
) -> Iterator[Any]:
    children, receivers = fork_each(_child, [(fetch, share, make_player, until, render) for share in shares])
    streams = [_received(receiver, progress, summary) for receiver in receivers]
    try:
        for _position, rendered in heapq.merge(*streams, key=lambda item: item[0]):
            yield rendered
    finally:
        failed = reap(children)
    if failed:
        raise RuntimeError(f"a replay process failed (exit codes {failed})")


def _received(
    receiver: Connection, progress: Callable[[int], None] | None, summary: Summary
) -> Iterator[tuple[tuple, Any]]:
    """One child's (position, rendered command) pairs, in its order; then its summary."""
    with receiver:
        while True:
            try:
                kind, payload, replayed = receiver.recv()
            except EOFError:
                raise RuntimeError("a replay process stopped before it finished") from None
            if progress is not None and replayed:
                progress(replayed)
            if kind == "summary":
                summary.add(payload)
                return
            if kind == "error":
                raise RuntimeError(f"a replay process failed: {payload}")
            yield from payload


def _child(
    fetch: Callable[[int], Event],
    share: list[int],
    make_player: Callable[[], Replay],
    until: float,
    render: Callable[[Command], Any],
    sender: Connection,
) -> None:
    """Replay one share, sending positioned, rendered commands in batches."""
    replayed = 0
    told = 0

    def counted() -> None:
        nonlocal replayed
        replayed += 1

    batch: list[tuple[tuple, Any]] = []
    try:
        player = make_player()
        events = [fetch(rank) for rank in share]
        freeze_loaded()  # a child replays its share and exits
        for command in player.run(events, until=until, progress=counted):
            batch.append((_global(player.position, share), render(command)))
            if len(batch) >= BATCH:
                sender.send(("commands", batch, replayed - told))
                told, batch = replayed, []
        sender.send(("commands", batch, replayed - told))
        sender.send(("summary", player.summary, 0))
    except BaseException as exc:  # the parent must hear why, not just see a closed pipe
        sender.send(("error", f"{type(exc).__name__}: {exc}", 0))
        raise SystemExit(1) from None  # the parent reports it, once
    finally:
        sender.close()


def _global(position: tuple, share: list[int]) -> tuple:
    """An event's place in this share becomes its rank in the whole history; wakes keep theirs."""
    when, phase, which = position
    return (when, phase, share[which]) if phase == Replay.EVENT else position
