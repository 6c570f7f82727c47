"""The customers table and its follow-up events, in memory: for replay and tests.

Runs :func:`orchestrator.identity.graph.handle` exactly as the stream does,
with a queue standing in for the customer-events topic, so a merge's link,
move and forward steps happen in the same order a single partition would see.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.commands import Command
from orchestrator.core.event import Event
from orchestrator.core.state import CustomerState
from orchestrator.identity import records
from orchestrator.identity.graph import Context, Effects, handle


@dataclass
class LocalGraph:
    ctx: Context
    table: dict[str, bytes] = field(default_factory=dict)
    queue: deque[Event] = field(default_factory=deque)
    commands: list[Command] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    seen: list[tuple[str, Effects]] = field(default_factory=list)

    def submit(self, event: Event, now: float) -> None:
        """Handle one event and everything it causes, before the next one arrives."""
        self.queue.append(event)
        self.drain(now)

    def drain(self, now: float) -> None:
        while self.queue:
            self.step(now)

    def step(self, now: float) -> Effects:
        """Handle the oldest queued event only: lets tests interleave a race."""
        event = self.queue.popleft()
        key = event.customer_key
        effects = handle(key, self.record(key), event, now, self.ctx)
        if effects.record is not None:
            value = records.encode(effects.record)
            if value is None:
                self.table.pop(key, None)
            else:
                self.table[key] = value
        if effects.erased_at is not None:
            self.table[records.erased_key(key)] = records.erased_mark(effects.erased_at)
        self.queue.extend(effects.sends)
        if effects.decision is not None and not effects.decision.duplicate:
            self.commands.extend(effects.decision.commands)
        if effects.audit is not None:
            self.audits.append(effects.audit)
        self.seen.append((key, effects))
        return effects

    def record(self, key: str) -> records.Record:
        """The key's record; where nothing is stored, what an erasure left, if any."""
        return records.decode(self.table.get(key) or self.table.get(records.erased_key(key)))

    def profile(self, key: str) -> CustomerState | None:
        """The profile ``key`` leads to, following pointers like an event would."""
        for _ in range(16):
            record = self.record(key)
            if isinstance(record, records.Forward):
                key = record.target
                continue
            return record.state if isinstance(record, records.Profile) else None
        raise RuntimeError(f"pointer loop at {key}")
