"""``decide(state, event, now) -> Decision``: the whole brain, as one pure function.

Fold the event into a copy of the state, let the rules propose commands, let the
contact policy hold back what must not go out, and remember what was sent.
Same inputs, same outputs: the streaming agents and offline replay share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.core.commands import Command
from orchestrator.core.event import Event
from orchestrator.core.fold import fold
from orchestrator.core.policy import Policy, hold_back_reason, record_contact
from orchestrator.core.rules import Held, consent_withdrawn, post_purchase, remarketing
from orchestrator.core.state import CustomerState, remember

DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Decision:
    state: CustomerState
    commands: list[Command] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    duplicate: bool = False


def decide(state: CustomerState | None, event: Event, now: float, policy: Policy = DEFAULT_POLICY) -> Decision:
    """Apply one event for one customer and choose what to do next."""
    if state is not None and event.event_id in state.seen_ids:
        return Decision(state=state, duplicate=True)
    new = state.thaw() if state is not None else CustomerState(key=event.customer_key)
    rm_commands, held = remarketing(new, event, policy, now)
    fold(new, event, recent_most=policy.recent_events, dedupe_most=policy.dedupe_window)
    sent: list[Command] = []
    for command in consent_withdrawn(new, event, policy, now) + post_purchase(new, event, now) + rm_commands:
        reason = hold_back_reason(new, command, policy, now)
        if reason is not None:
            held.append(Held(command, reason))
            continue
        _remember_sent(new, command, now)
        sent.append(command)
    return Decision(state=new, commands=sent, held=held)


def _remember_sent(state: CustomerState, command: Command, now: float) -> None:
    record_contact(state, command, now)
    if command.action == "remarketing_ad":
        kind = "product" if "product" in command.payload else "query"
        remember(state.remarketed, f"{kind}:{command.payload[kind]}", now)
    elif command.action == "remarketing_stop":
        state.remarketed = {s: t for s, t in state.remarketed.items() if s not in command.payload["subjects"]}
