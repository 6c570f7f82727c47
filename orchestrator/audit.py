"""The decision audit record: what one decision did and why, in plain words.

``decision_record`` turns a ``Decision`` into a plain, JSON- and msgpack-ready
dict: what was sent, every candidate held back with a bounded reason code and a
sentence a person can read, and what happened in journeys. ``explain_lines``
renders records for ``orchestrator explain``. Both are pure, so the same record
is produced in the stream, in tests and in replay.

Why a sentence is stored next to the code: the sentence depends on the
customer's state at the time (which channel they opted out of, their quiet
hours), and that state is gone by the time someone asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from orchestrator.core import policy as p
from orchestrator.core.commands import Command
from orchestrator.core.decide import WAKE, Decision
from orchestrator.core.event import Event
from orchestrator.core.fold import consent_word
from orchestrator.core.state import CustomerState
from orchestrator.journeys.engine import Outcome
from orchestrator.printable import printable

RECORD_VERSION = 1
JOURNEY_KINDS = frozenset({"enter", "assign", "exit", "convert", "blocked", "condition_error", "migrate", "delay"})
MAX_OUTCOME_REASON = 200  # a condition error carries an expression and an exception: keep records small
LATE_S = 1.0  # a command dated this much before its event was a wait that fell due earlier


def decision_record(event: Event, decision: Decision, now: float) -> dict[str, Any]:
    """One decision as a plain dict; ``now`` is when it was decided."""
    state = decision.state
    return {
        "v": RECORD_VERSION,
        "customer_key": state.key or event.customer_key,
        "event_id": event.event_id,
        "event_type": event.type,
        "channel": event.channel,
        "event_ts": float(event.ts),
        "decided_at": float(now),
        "duplicate": decision.duplicate,
        "sent": [_sent(command) for command in decision.commands],
        "suppressed": [_suppressed(held.command, held.reason, state) for held in decision.held],
        "journeys": [_outcome(o) for o in decision.outcomes if o.kind in JOURNEY_KINDS],
    }


def _sent(command: Command) -> dict[str, Any]:
    return {
        "action_id": command.action_id,
        "channel": command.channel,
        "action": command.action,
        "journey": command.journey,
        "reason": command.reason,
        "issued_at": float(command.issued_at),
    }


def _suppressed(command: Command, reason: str, state: CustomerState) -> dict[str, Any]:
    return {
        "action_id": command.action_id,
        "channel": command.channel,
        "action": command.action,
        "journey": command.journey,
        "reason": reason,
        "detail": reason_sentence(reason, command, state),
        "issued_at": float(command.issued_at),
    }


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "kind": outcome.kind,
        "journey": outcome.journey,
        "version": int(outcome.version),
        "reason": outcome.reason[:MAX_OUTCOME_REASON],
    } | ({"variant": outcome.variant} if outcome.variant else {})


# -- why something was held back, in words ---------------------------------------------------------


def reason_sentence(reason: str, command: Command, state: CustomerState) -> str:
    """A plain sentence for a reason code, completed from the command and the state."""
    explain = _SENTENCES.get(reason)
    return explain(command, state) if explain is not None else f"held back ({reason})"


def _no_consent(command: Command, state: CustomerState) -> str:
    if state.consent.get(command.channel) is False:
        return f"the customer opted out of {command.channel}"
    if consent_word(state.consent, command.channel) is False:
        return "the customer opted out of every channel"
    return f"the customer has not opted in to {command.channel}, which needs consent first"


def _quiet_hours(command: Command, state: CustomerState) -> str:
    hours = state.quiet_hours
    zone = state.timezone or "the default time zone"
    window = f"{hours.get('start')}-{hours.get('end')} {zone}" if hours else zone
    return f"it fell in the customer's quiet hours ({window}), and {command.channel} respects them"


def _expired(command: Command, state: CustomerState) -> str:
    return f"it was due at {when(command.issued_at)} and expired at {when(command.expires_at)}, before it could go out"


_SENTENCES: dict[str, Callable[[Command, CustomerState], str]] = {
    p.DO_NOT_CONTACT: lambda c, s: "the customer asked not to be contacted at all",
    p.NO_CONSENT: _no_consent,
    p.NO_ADDRESS: lambda c, s: (
        f"the customer is anonymous and {c.channel} has no address for them (no customer id, and no identifier "
        "it delivers to)"
    ),
    p.EXPIRED: _expired,
    p.QUIET_HOURS: _quiet_hours,
    p.FREQUENCY_CAP: lambda c, s: (
        f"the customer already had as many {c.channel} contacts in 24 hours as the frequency cap allows"
    ),
    p.COOLDOWN: lambda c, s: "the same thing was advertised to the customer recently and the cooldown has not passed",
    p.ALREADY_CONVERTED: lambda c, s: "the customer has already bought it",
    p.HOLDOUT: lambda c, s: (
        f"the customer is in the holdout group of journey {c.journey}, which gets no actions so it can be compared"
    ),
}


# -- rendering ------------------------------------------------------------------------------------


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def explain_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One text block per decision, in the order given (oldest first reads best).

    Each element is a block of lines joined by newlines: a heading with the time and
    the event, then one indented line for each thing sent, held back or changed. A control
    character from a channel (an event id holding a newline) is shown escaped, so a line
    is always one of these.
    """
    return ["\n".join(map(printable, _block(record))) for record in records]


def _block(record: dict[str, Any]) -> list[str]:
    lines = [f"{when(record.get('event_ts', 0.0))}  {_what_happened(record)}"]
    if record.get("duplicate"):
        return [*lines, "  already seen: a redelivered event, ignored"]
    event_ts = float(record.get("event_ts", 0.0))
    for sent in record.get("sent", ()):
        late = f" (due at {when(sent['issued_at'])})" if event_ts - sent.get("issued_at", event_ts) > LATE_S else ""
        lines.append(f"  sent {sent['action']} on {sent['channel']}{late}: {sent.get('reason', '')}")
    for held in record.get("suppressed", ()):
        detail = held.get("detail") or f"held back ({held.get('reason')})"
        lines.append(f"  held back {held['action']} on {held['channel']}: {detail}")
    lines += [f"  {_journey_line(outcome)}" for outcome in record.get("journeys", ())]
    if len(lines) == 1:
        lines.append("  nothing to send")
    return lines


def _what_happened(record: dict[str, Any]) -> str:
    if record.get("event_type") == WAKE:
        return "a wait fell due (timer)"
    return f"{record.get('event_type')} on {record.get('channel')} (event {record.get('event_id')})"


def _journey_line(outcome: dict[str, Any]) -> str:
    name = f"journey {outcome.get('journey')} v{outcome.get('version')}"
    kind, reason = outcome.get("kind"), str(outcome.get("reason") or "")
    if kind == "enter":
        return f"entered {name}"
    if kind == "assign":
        arm = outcome.get("variant")
        return (
            f"put in the holdout of {name}: tracked, never contacted"
            if arm == "holdout"
            else f"given arm {arm} of {name}"
        )
    if kind == "convert":
        arm = f" (arm {outcome['variant']})" if outcome.get("variant") else ""
        if reason == "after_exit":
            return f"converted for {name}{arm}: reached its goal within its conversion window after leaving it"
        return f"converted in {name}{arm}: reached its goal"
    if kind == "delay":
        step, _, until = reason.partition(" until ")
        return f"{name} holds step {step} until the customer's quiet hours end at {until}"
    if kind == "blocked":
        return f"did not enter {name}: already in as many journeys as allowed at once"
    if kind == "condition_error":
        return f"a condition in {name} could not be evaluated, so it counted as false ({reason})"
    if kind == "migrate":
        return f"moved to {name} by its migration rule ({reason})"
    return f"left {name}: {_exit_sentence(reason)}"


def _exit_sentence(reason: str) -> str:
    if reason.startswith("exit_on:"):
        return f"a {reason.removeprefix('exit_on:')} event ends it"
    fixed = {
        "goal": "reached its goal",
        "completed": "completed every step",
        "loop": "it looped without waiting and was stopped",
        "version_removed": "the version the customer was on was removed",
        "migration": "a newer version's migration rule ends it for customers at this step",
        "merged": "their profile merged into another that was in it too, and goes on there",
        "erased": "the customer was erased",
        "over_limit": "a merge left them in more journeys than the limit, and it was entered last",
    }
    return fixed.get(reason, f"exit step ({reason})")
