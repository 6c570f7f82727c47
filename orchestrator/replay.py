"""Offline replay: run history through the same ``decide`` in event time, without Kafka.

Events are taken in timestamp order (ties keep file order), and go through the
same identity graph as in the stream, so logins merge profiles here too. Before each event,
every wait that fell due is fired at its own time, exactly as the stream does
when a customer's next event arrives or a timer wakes them, so the commands
are the ones the pipeline would have sent.
"""

from __future__ import annotations

import gc
import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchestrator.core.commands import Command
from orchestrator.core.decide import WAKE, Decision
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState
from orchestrator.identity.graph import Context, Effects, handle
from orchestrator.identity.records import Erased, Missing, Profile, Record, erased_key
from orchestrator.journeys.engine import AFTER_EXIT, Engine, Outcome


@dataclass
class Summary:
    events: int = 0
    duplicates: int = 0
    customers: int = 0
    entries: Counter[str] = field(default_factory=Counter)
    exits: Counter[tuple[str, str]] = field(default_factory=Counter)
    conversions: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    blocked: Counter[str] = field(default_factory=Counter)  # entries refused: max_active
    condition_errors: Counter[str] = field(default_factory=Counter)  # conditions and templates that failed
    variants: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (journey, arm, assigned|converted)
    converted_after_exit: Counter[str] = field(default_factory=Counter)  # of conversions: within the window after
    delayed: Counter[str] = field(default_factory=Counter)  # actions delayed to the end of quiet hours
    inside: Counter[str] = field(default_factory=Counter)  # "journey:vN:step": still there at the end

    def count(self, decision: Decision) -> None:
        self.count_outcomes(decision.outcomes)
        for command in decision.commands:
            self.commands[command.action] += 1
        for held in decision.held:
            self.held[held.reason] += 1

    def count_outcomes(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.kind == "enter":
                self.entries[outcome.journey] += 1
            elif outcome.kind == "exit":
                self.exits[(outcome.journey, outcome.reason)] += 1
            elif outcome.kind == "convert":
                self.conversions[outcome.journey] += 1
                if outcome.reason == AFTER_EXIT:
                    self.converted_after_exit[outcome.journey] += 1
                if outcome.variant:
                    self.variants[(outcome.journey, outcome.variant, "converted")] += 1
            elif outcome.kind == "assign":
                self.variants[(outcome.journey, outcome.variant, "assigned")] += 1
            elif outcome.kind == "blocked":
                self.blocked[outcome.journey] += 1
            elif outcome.kind == "condition_error":
                self.condition_errors[outcome.journey] += 1
            elif outcome.kind == "delay":
                self.delayed[outcome.journey] += 1

    def add(self, other: Summary) -> None:
        """Count ``other`` in too: the summaries of replays of disjoint customers add up."""
        self.events += other.events
        self.duplicates += other.duplicates
        self.customers += other.customers
        self.entries.update(other.entries)
        self.exits.update(other.exits)
        self.conversions.update(other.conversions)
        self.commands.update(other.commands)
        self.held.update(other.held)
        self.blocked.update(other.blocked)
        self.condition_errors.update(other.condition_errors)
        self.variants.update(other.variants)
        self.converted_after_exit.update(other.converted_after_exit)
        self.delayed.update(other.delayed)
        self.inside.update(other.inside)

    def _variants(self) -> dict[str, dict[str, int]]:
        """``{"journey:arm": {"assigned": n, "converted": m}}``, the figures of an A/B test."""
        found: dict[str, dict[str, int]] = {}
        for (journey, arm, what), n in sorted(self.variants.items()):
            found.setdefault(f"{journey}:{arm}", {"assigned": 0, "converted": 0})[what] = n
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "duplicates": self.duplicates,
            "customers": self.customers,
            "entries": dict(self.entries),
            "exits": {f"{j}:{r}": n for (j, r), n in sorted(self.exits.items())},
            "conversions": dict(self.conversions),
            "converted_after_exit": dict(self.converted_after_exit),
            "commands": dict(self.commands),
            "held": dict(self.held),
            "blocked": dict(self.blocked),
            "condition_errors": dict(self.condition_errors),
            "delayed": dict(self.delayed),
            "inside": dict(sorted(self.inside.items())),
            "variants": self._variants(),
        }


@dataclass
class Replay:
    """Event-time replay; identity links, merges and erasures run as they do in the stream.

    States are updated in place (``in_place``): replay holds the only reference to
    each, so the copy the stream makes per decision would be thrown away at once.
    """

    policy: Policy
    engine: Engine | None
    summary: Summary = field(default_factory=Summary)
    records: dict[str, Record] = field(default_factory=dict)
    _timers: list[tuple[float, str]] = field(default_factory=list)
    in_place: bool = True
    # Where the run is, for commands as they are yielded: (event ts, EVENT, its index in
    # the run) or (wake time, WAKE_PHASE, customer key). Wakes due at an event's time fire
    # before it, hence the phases. See orchestrator.replay_split, which merges runs on it.
    position: tuple[float, int, Any] = (0.0, 0, 0)
    WAKE_PHASE: ClassVar[int] = 0
    EVENT: ClassVar[int] = 1

    def __post_init__(self) -> None:
        self._ctx = Context(self.policy, self.engine, in_place=self.in_place)

    def run(
        self, events: Iterable[Event], until: float | None = None, progress: Callable[[], None] | None = None
    ) -> Iterator[Command]:
        """Yield every command in the order the pipeline would decide them."""
        last = None
        for index, event in enumerate(sorted(events, key=lambda e: e.ts)):
            yield from self._fire(event.ts)
            self.position = (event.ts, self.EVENT, index)
            yield from self._apply(event, event.ts)
            last = event.ts
            if progress is not None:
                progress()
        if until is not None or last is not None:
            yield from self._fire(until if until is not None else last or 0.0)
        profiles = [r.state for r in self.records.values() if isinstance(r, Profile)]
        self.summary.customers = len(profiles)
        self.summary.inside = Counter(
            f"{jid}:v{inst['v']}:{inst['step']}" for state in profiles for jid, inst in state.journeys.items()
        )

    def state(self, key: str) -> CustomerState | None:
        record = self.records.get(key)
        return record.state if isinstance(record, Profile) else None

    def _apply(self, event: Event, now: float) -> Iterator[Command]:
        """The event, then what it sets off (links, merges, forwards), like one partition would."""
        if event.type != WAKE:
            self.summary.events += 1
        queue = deque([event])
        while queue:
            current = queue.popleft()
            effects = self._handle(current, now)
            queue.extend(effects.sends)
            if effects.left:  # an erased profile's journeys; most events leave none
                self.summary.count_outcomes(effects.left)
            decision = effects.decision
            if decision is None:
                continue
            if decision.duplicate:
                self.summary.duplicates += current.type != WAKE
                continue
            self.summary.count(decision)
            yield from decision.commands

    def _handle(self, event: Event, now: float) -> Effects:
        key = event.customer_key
        record = self.records.get(key) or self.records.get(erased_key(key), MISSING)
        before = record.state.next_wake() if isinstance(record, Profile) else None
        effects = handle(key, record, event, now, self._ctx)
        if effects.erased_at is not None:
            self.records[erased_key(key)] = Erased(effects.erased_at)
        if isinstance(effects.record, Missing):
            self.records.pop(key, None)
        elif effects.record is not None:
            self.records[key] = effects.record
            after = effects.record.state.next_wake() if isinstance(effects.record, Profile) else None
            if after is not None and after != before:
                heapq.heappush(self._timers, (after, key))
        return effects

    def _fire(self, until: float) -> Iterator[Command]:
        """Fire waits due at or before ``until``; stale heap entries are skipped."""
        while self._timers and self._timers[0][0] <= until:
            wake, key = heapq.heappop(self._timers)
            state = self.state(key)
            if state is None or state.next_wake() != wake:
                continue
            self.position = (wake, self.WAKE_PHASE, key)
            yield from self._apply(_wake(key, wake), wake)


MISSING = Missing()


def freeze_loaded() -> None:
    """Keep what is loaded by now (the history, the journeys) out of every later garbage
    collection. A replay's long-lived objects only grow, so each full collection walked the
    whole history again: about a tenth of a replay's time went to collecting, and a replay
    makes no garbage that only a collection frees (none in the simulated 30,000 events).
    Called once the history is in memory, by a process that replays and exits: what is
    frozen is never collected (``orchestrator serve`` does the same once it has loaded).
    """
    gc.freeze()


def _wake(key: str, wake: float) -> Event:
    return Event(event_id=f"wake:{wake:.3f}", type=WAKE, ts=wake, customer_key=key, channel="", received_at=wake)
