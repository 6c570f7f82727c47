"""``decide(state, event, now) -> Decision``: the whole brain, as one pure function.

Fold the event into a copy of the state, let the built-in rules and the journeys
propose commands, let the contact policy hold back what must not go out, and
remember what was sent. Last of all, every command about to leave is checked
against consent in the final state, so an opt-out folded in this very call
stops even a wait that fell due before it. Same inputs, same outputs: the
streaming agents and offline replay share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.commands import Command
from orchestrator.core.event import Event
from orchestrator.core.fold import fold, query_subject
from orchestrator.core.policy import (
    ALREADY_CONVERTED,
    NOT_CONTACTS,
    Policy,
    contactable,
    forget_contact,
    hold_back_reason,
    record_contact,
)
from orchestrator.core.rules import Held, post_purchase, remarketing, stop_after_merge, stop_chasing
from orchestrator.core.state import CustomerState, remember
from orchestrator.journeys.engine import MERGED_AWAY, Engine, JourneyRun, Outcome, exit_of

WAKE = "__wake__"  # internal event type: "a wait may be due"; channels cannot send it
DEFAULT_POLICY = Policy()


@dataclass(slots=True)
class Decision:
    """What one call of :func:`decide` chose. Not frozen, though nothing changes one once made:
    a frozen dataclass sets each field through ``object.__setattr__``, five times the cost of
    building it, and every event and every wait fired makes one."""

    state: CustomerState
    commands: list[Command] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    duplicate: bool = False
    fired: list[float] = field(default_factory=list)  # the due time of each wait fired (timer lateness)


def decide(
    state: CustomerState | None,
    event: Event,
    now: float,
    policy: Policy = DEFAULT_POLICY,
    engine: Engine | None = None,
    *,
    in_place: bool = False,
) -> Decision:
    """Apply one event (or a timer's wake) for one customer and choose what to do next.

    ``state`` is left untouched and the decision holds an updated copy, unless the
    caller passes ``in_place=True`` to say it keeps no other reference to ``state``
    (offline replay): then ``state`` itself is updated and returned, which saves
    the copy and gives the same decision.
    """
    if event.type == WAKE:
        if state is None or engine is None:
            return Decision(state=state or CustomerState(key=""), duplicate=True)
        return _wake(_writable(state, in_place), now, policy, engine, fire_until(event, now))
    if state is not None and event.event_id in state.seen_ids:
        return Decision(state=state, duplicate=True)
    new = _writable(state, in_place) if state is not None else CustomerState(key=event.customer_key)
    until = fire_until(event, now)
    overdue = _overdue(new, now, policy, engine, until)
    candidates, held = _rule_candidates(new, event, now, policy)
    run = JourneyRun(policy=policy)
    if engine is not None:
        engine.react(new, event, now, run, until)  # the waits due by then have just fired
    candidates += _by_priority(run)
    held += run.held
    sent = _apply_policy(new, candidates, held, policy, now)
    if overdue is None:
        commands = _final_check(new, sent, held, policy)
        return Decision(state=new, commands=commands, held=held, outcomes=run.outcomes, fired=run.fired)
    held = overdue.held + held
    return Decision(
        state=new,
        commands=_final_check(new, overdue.commands + sent, held, policy),
        held=held,
        outcomes=overdue.outcomes + run.outcomes,
        fired=overdue.fired + run.fired,
    )


def fire_until(event: Event, now: float) -> float:
    """The waits that fire before ``event`` (or on it, a wake) are those due by this: ``now``,
    but never after the event reached Kafka, nor, a wake, after the clock its timer sent it by.

    Live, a worker that is behind (it took partitions over from a dead one, or restarted, or
    is overloaded) decides an event well after it arrived. A wait that fell due in between
    must not fire before the events that arrived before it are read: a purchase behind this
    event would come too late to cancel it. Its wake fires it once they are (see
    ``agents/inbound_clock.py``). Offline and in event time an event arrives at its own time,
    so nothing changes there."""
    if event.type == WAKE:
        return min(now, float(event.properties.get("clock", now)))
    return min(now, event.received_at)


def decide_merged(
    state: CustomerState,
    event: Event,
    now: float,
    policy: Policy = DEFAULT_POLICY,
    engine: Engine | None = None,
    elsewhere: dict[str, list[dict[str, Any]]] | None = None,
    doubled: Mapping[str, dict[str, Any]] | None = None,
) -> Decision | None:
    """What a merge of two profiles into ``state`` (in place) calls for at once: ending the
    journeys one of them runs on a goal or an exit the other saw (``elsewhere``: see
    :meth:`Engine.end_on_events_elsewhere`), and stopping the ads one of them runs for what
    the other bought or was refused (:func:`stop_after_merge`). The waits that hang on the
    customer's clock follow the merged time zone and quiet hours (:meth:`Engine.retime`).
    ``doubled``: the instances of the profile merged in that the survivor's own replace (both
    were in the journey), each counted as an exit, reason ``merged``, so that entries less
    exits is who is inside. The journeys left beyond ``ORCH_MAX_ACTIVE_JOURNEYS`` then end
    (:meth:`Engine.keep_to_limit`). None when it calls for nothing, as most merges do."""
    run = JourneyRun(policy=policy)
    run.outcomes += [exit_of(jid, instance, MERGED_AWAY) for jid, instance in (doubled or {}).items()]
    if engine is not None:
        if elsewhere:
            engine.end_on_events_elsewhere(state, elsewhere, run)
        engine.keep_to_limit(state, now, run)
        engine.retime(state, now, run, fire_until(event, now))
    candidates = stop_after_merge(state, event, policy, now) + _by_priority(run)
    if not candidates and not run.outcomes and not run.held:
        return None
    held = list(run.held)
    sent = _apply_policy(state, candidates, held, policy, now)
    return Decision(state=state, commands=_final_check(state, sent, held, policy), held=held, outcomes=run.outcomes)


def _writable(state: CustomerState, in_place: bool) -> CustomerState:
    return state if in_place else state.thaw()


def _overdue(new: CustomerState, now: float, policy: Policy, engine: Engine | None, until: float) -> Decision | None:
    """The waits that fell due by ``until``, before this event, fired; None when none had
    (most events), and then the journeys are not even asked."""
    wake = new.next_wake()
    if engine is None or wake is None or wake > until:
        return None
    return _wake(new, now, policy, engine, until)


def _rule_candidates(new: CustomerState, event: Event, now: float, policy: Policy) -> tuple[list[Command], list[Held]]:
    """Fold the event in, with the built-in reflex rules around it."""
    rm_commands, held = remarketing(new, event, policy, now) if "remarketing" in policy.rules else ([], [])
    fold(new, event, recent_most=policy.recent_events, dedupe_most=policy.dedupe_window)
    candidates = stop_chasing(new, event, policy, now)  # whatever started the ads, and rules or not
    if "post_purchase" in policy.rules:
        candidates += post_purchase(new, event, now)
    return candidates + rm_commands, held


def _wake(new: CustomerState, now: float, policy: Policy, engine: Engine, until: float) -> Decision:
    """Fire waits due by ``until`` on a thawed state, judged by the policy as the state was
    then (quiet hours and fatigue at their due time, expiry at ``now``). Consent alone is
    judged again at the end of decide(): an opt-out folded in the same call still wins."""
    run = JourneyRun(policy=policy)
    engine.fire_due(new, until, run)
    if not (run.commands or run.held or run.outcomes):
        return Decision(state=new, fired=run.fired)  # nothing to send: a wait into a wait, or a wake sent twice
    sent = _apply_policy(new, _by_priority(run), run.held, policy, now)
    commands = _final_check(new, sent, run.held, policy)
    return Decision(state=new, commands=commands, held=run.held, outcomes=run.outcomes, fired=run.fired)


def _by_priority(run: JourneyRun) -> list[Command]:
    """In the order they fell due, then higher priority first: waits that fire together (late,
    on one wake or before one event) are judged as if each had fired on time, and under a
    frequency cap the most important action of one moment wins."""
    if len(run.commands) < 2:
        return [command for _, command in run.commands]
    return [command for _, command in sorted(run.commands, key=lambda pc: (pc[1].issued_at, -pc[0]))]


def _apply_policy(
    state: CustomerState, candidates: list[Command], held: list[Held], policy: Policy, now: float
) -> list[Command]:
    """Judge each command at its own ``issued_at``: a wait that fired late is judged as
    of when it was due, so live, event-time and replay runs agree. Its expiry, though,
    is measured at ``now``: a command that can no longer be acted on is not sent."""
    sent: list[Command] = []
    for command in candidates:
        reason = hold_back_reason(state, command, policy, command.issued_at, now) or _already_bought(state, command)
        if reason is not None:
            held.append(Held(command, reason))
            continue
        _remember_sent(state, command, command.issued_at)
        sent.append(command)
    return sent


def _already_bought(state: CustomerState, command: Command) -> str | None:
    """No ad for a product the customer has bought, whatever proposed it: the built-in rule
    checks before it proposes one, but a journey's wait may end after a purchase it never
    saw (made on a profile merged in after it began)."""
    subject = _remarketed_subject(command)
    if subject is not None and subject.startswith("product:") and subject.removeprefix("product:") in state.purchased:
        return ALREADY_CONVERTED
    return None


def _final_check(state: CustomerState, commands: list[Command], held: list[Held], policy: Policy) -> list[Command]:
    """The hard rule, last before anything leaves: no contact on a channel the final state
    has no consent for. What fails is moved to ``held`` and its contact is forgotten."""
    allowed: list[Command] = []
    for command in commands:
        reason = None if command.action in NOT_CONTACTS else contactable(state, command.channel, policy)
        if reason is None:
            allowed.append(command)
            continue
        held.append(Held(command, reason))
        _forget_sent(state, command)
    return allowed


def _forget_sent(state: CustomerState, command: Command) -> None:
    """Undo :func:`_remember_sent` for a command that did not go out after all."""
    forget_contact(state, command, command.issued_at)
    subject = _remarketed_subject(command)
    if subject is not None and state.remarketed.get(subject) == command.issued_at:
        del state.remarketed[subject]


def _remarketed_subject(command: Command) -> str | None:
    """What a remarketing ad, the built-in rule's or a journey's, is about, so that a purchase
    or an opt-out can stop it; None for other commands, or an ad about nothing known."""
    if command.action != "remarketing_ad":
        return None
    product = command.payload.get("product")
    if product:  # a journey's template gives "" for what its trigger did not carry
        return f"product:{product}"
    query = command.payload.get("query")
    if isinstance(query, str) and query.strip():
        return query_subject(query)  # as the rule and the customer's interests spell it
    return None


def _remember_sent(state: CustomerState, command: Command, now: float) -> None:
    record_contact(state, command, now)
    subject = _remarketed_subject(command)
    if subject is not None:
        remember(state.remarketed, subject, now)
    elif command.action == "remarketing_stop":
        state.remarketed = {s: t for s, t in state.remarketed.items() if s not in command.payload["subjects"]}
