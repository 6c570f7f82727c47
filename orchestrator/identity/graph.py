"""Route one event at one key of the customers table: pure, so replay and tests can run it.

Every key holds a :mod:`record <orchestrator.identity.records>`. Ordinary
events are decided where a profile lives and forwarded where a pointer
points. Control events keep the graph right:

* ``__link__`` tells an identifier's key which profile it belongs to. Sent when
  an event shows an identifier the profile did not know. Only an ``identify``
  event may merge two existing profiles; any other event just claims
  identifiers nobody owns, because shared devices and typos must not fuse
  strangers.
* ``__merge_in__`` carries a losing profile's whole state to the survivor,
  which folds it in by the rules of :mod:`orchestrator.identity.merge`, and
  answers ``__merged__``: the loser's pointer then stops keeping the hand-over
  for a crash (see :mod:`agents.outbox`).
* ``__adopt__`` moves a profile an older version kept under a customer id with a
  colon in it (``crm:42``) to that id's key now (``customer_id:crm:42``): sent
  once, when the new key starts a profile (see :func:`_adopt`).
* ``erase`` (from a channel or ``orchestrator erase``) removes a profile and,
  through ``__erase_key__``, every pointer to it; with ``suppress`` the keys
  stay as suppression markers that drop later events. Without, each key erased
  leaves the time of its erasure (:class:`~orchestrator.identity.records.Erased`,
  under a digest of the key): an event dated before it that is read after it (a
  channel event forwarded again after a restart, a late batch) is dropped
  rather than starting the erased customer again; a later event starts afresh.

Events for an old identifier that are still in flight during a merge are not
lost: they reach the loser's key after it has become a pointer and are
forwarded, with their event id, to the survivor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.core.decide import WAKE, Decision, decide, decide_merged, fire_until
from orchestrator.core.event import Event
from orchestrator.core.policy import Policy
from orchestrator.core.state import CustomerState, append_bounded
from orchestrator.identity.merge import MAX_ALIASES, merge_states, survivor_order
from orchestrator.identity.records import Erased, Forward, Missing, Profile, Record, Suppressed
from orchestrator.identity.tokens import CUSTOMER_ID, PLAIN, Hasher, legacy_key, profile_key_for, tokens_of
from orchestrator.journeys.engine import ERASED_OUT, Engine, Outcome, exit_of

LINK = "__link__"
MERGE_IN = "__merge_in__"
ERASE = "erase"
ERASE_KEY = "__erase_key__"
ADOPT = "__adopt__"  # a new ``customer_id:<id>`` profile to the key an older version gave it
MERGED = "__merged__"  # the survivor to the loser's key: the hand-over arrived, keep no outbox for it
IDENTIFY = "identify"
MERGE_CONFIRMED = "merge_confirmed"  # what a pointer that drops its outbox counts
MAX_HOPS = 8  # a pointer chain longer than this is a loop, not a history of merges


@dataclass
class Effects:
    """What handling one event at one key asks the agent to do."""

    record: Record | None = None  # the key's new record; None leaves it as it was
    decision: Decision | None = None
    sends: list[Event] = field(default_factory=list)  # each to customer-events, keyed by its customer_key
    forget: list[str] = field(default_factory=list)  # profile keys to remove from the read model
    forget_tokens: list[str] = field(default_factory=list)  # identifier tokens whose read-model aliases go
    moved_to: str | None = None  # the forgotten profile merged into this key: its decision log moves there
    restage: CustomerState | None = None  # unchanged in the table, written to the read model again
    audit: dict[str, Any] | None = None
    erased_at: float | None = None  # the key was erased: remember when (records.erased_key)
    counted: str | None = None  # what happened, for metrics: forwarded, merged, linked, dropped_*, ...
    left: list[Outcome] = field(default_factory=list)  # journeys an erased profile was in: exits, no decision


@dataclass(frozen=True)
class Context:
    policy: Policy
    engine: Engine | None
    in_place: bool = False  # decide() may update states in place: the caller keeps no old copies
    hasher: Hasher = PLAIN  # the deployment's: the erasure audit names no raw identifier


def handle(key: str, record: Record, event: Event, now: float, ctx: Context) -> Effects:
    """The single entry point: what ``event`` does at ``key`` holding ``record``."""
    if isinstance(record, Erased):
        if event.ts <= record.at and event.type not in _CONTROL and event.type != WAKE:
            return Effects(counted="dropped_erased")
        record = Missing()  # for a later event, or the graph's own: as if nothing had been here
    handler = _CONTROL.get(event.type)
    if handler is not None:
        return handler(key, record, event, now, ctx)
    if isinstance(record, Forward):
        return _forward(event, record.target, "forwarded")
    if isinstance(record, Suppressed):
        return Effects(counted="dropped_suppressed")
    if event.type == WAKE and not isinstance(record, Profile):
        return Effects(counted="stale_wake")
    return _decide(key, record if isinstance(record, Profile) else None, event, now, ctx)


def control(kind: str, to: str, now: float, origin: str, **properties: Any) -> Event:
    """An internal event for key ``to``; channels cannot send these types."""
    return Event(
        event_id=f"{kind}:{origin}:{to}:{now:.6f}",
        type=kind,
        ts=now,
        customer_key=to,
        channel="",
        received_at=now,
        properties=properties,
    )


def _decide(key: str, profile: Profile | None, event: Event, now: float, ctx: Context) -> Effects:
    state = profile.state if profile is not None else None
    if event.type == WAKE and not _wait_due(state, fire_until(event, now), ctx):
        # Nothing is due: a wake sent twice, or for a wait that fired (on an event) or was
        # cancelled since. It changes nothing, so nothing is written: no state, no changelog,
        # no read model. Wakes need no dedupe entry either (decide() never puts their ids in
        # ``seen_ids``): a wake fires only what is due by ``now``, so a repeat finds nothing.
        return Effects(counted="stale_wake")
    claims = _claims(key, state, event)  # before decide(), which may update ``state`` in place
    decision = decide(state, event, now, ctx.policy, ctx.engine, in_place=ctx.in_place)
    if decision.duplicate:
        # Most often a record read again after a crash: the table has its outcome, but the
        # read model is written in batches after the table and may have lost it.
        return Effects(decision=decision, restage=decision.state, counted="duplicate")
    new = decision.state
    if state is None:
        new.created_at = event.ts
    sends = _claim_identifiers(key, claims, new, now, merge=event.type == IDENTIFY)
    if state is None:
        sends += _adoption(key, new.created_at, now)
    record = profile if profile is not None and profile.state is new else Profile(new)  # updated in place
    return Effects(record=record, decision=decision, sends=sends, counted="decided")


def _wait_due(state: CustomerState | None, until: float, ctx: Context) -> bool:
    """Whether a wake would fire anything: some wait is due by ``until`` and journeys run."""
    wake = state.next_wake() if state is not None else None
    return ctx.engine is not None and wake is not None and wake <= until


def _claims(key: str, old: CustomerState | None, event: Event) -> list[str]:
    """The keys of the event's identifiers that this profile did not know yet, in token order.

    Most events name only the profile's own key: then the known keys are not even built."""
    if not event.identifiers and (not event.customer_id or event.customer_id == key):
        return []  # no token, or only the customer id that names this very profile
    targets = [profile_key_for(token) for token in tokens_of(event.customer_id, event.identifiers)]
    if all(target == key for target in targets):
        return []
    known = _known_keys(key, old)
    claims = []
    for target in targets:
        if target not in known:
            known.add(target)
            claims.append(target)
    return claims


def _claim_identifiers(key: str, claims: list[str], new: CustomerState, now: float, *, merge: bool) -> list[Event]:
    """Tell the key of every identifier this profile did not know yet that it belongs here."""
    sends = []
    for target in claims:
        new.aliases = [*new.aliases, target][-MAX_ALIASES:]
        sends.append(control(LINK, target, now, key, target=key, created_at=new.created_at, merge=merge))
    return sends


def _adoption(key: str, created_at: float, now: float) -> list[Event]:
    """A new profile whose customer id has a colon asks the key an older version kept that
    customer under (the bare id) to hand its profile over, if one is there."""
    legacy = legacy_key(key)
    return [] if legacy is None else [control(ADOPT, legacy, now, key, target=key, created_at=created_at)]


def _known_keys(key: str, state: CustomerState | None) -> set[str]:
    known = {key}
    if state is not None:
        known.update(state.aliases)
        known.update(profile_key_for(t) for t in tokens_of(state.customer_id, state.identifiers))
    return known


def _forward(event: Event, target: str, counted: str) -> Effects:
    if event.hops >= MAX_HOPS:
        return Effects(counted="dropped_loop")
    return Effects(sends=[replace(event, customer_key=target, hops=event.hops + 1)], counted=counted)


# -- control events ---------------------------------------------------------


def _link(key: str, record: Record, event: Event, now: float, ctx: Context) -> Effects:
    target = str(event.properties["target"])
    merge = bool(event.properties.get("merge"))
    repoint = bool(event.properties.get("repoint"))
    if target == key:
        return Effects()
    if isinstance(record, (Missing, Erased)):
        return Effects(record=Forward(target), counted="linked")
    if isinstance(record, Forward):
        if record.target == target:
            return _merged_again(key, target) if merge else Effects()
        if repoint:
            return Effects(record=Forward(target), counted="repointed")
        return _forward(event, record.target, "link_forwarded") if merge else Effects(counted="conflict")
    if isinstance(record, Suppressed) or not merge:
        return Effects(counted="conflict")
    return _settle(key, record.state, target, float(event.properties.get("created_at", 0.0)), now)


def _settle(key: str, state: CustomerState, other: str, other_created: float, now: float) -> Effects:
    """Two profiles are one person: the one that sorts first survives, the other moves in."""
    if survivor_order(key, state.created_at) < survivor_order(other, other_created):
        ask = control(LINK, other, now, key, target=key, created_at=state.created_at, merge=True)
        return Effects(sends=[ask], counted="merge_requested")
    return _move(key, state, other, now)


def _move(key: str, state: CustomerState, other: str, now: float, **flags: Any) -> Effects:
    """Hand this profile to ``other`` and leave a pointer to it here."""
    move = control(MERGE_IN, other, now, key, state=state.to_bytes(), loser=key, **flags)
    return Effects(record=Forward(other), sends=[move], forget=[key], moved_to=other, counted="merged_out")


def _adopt(key: str, record: Record, event: Event, now: float, ctx: Context) -> Effects:
    """The profile of a customer id with a colon, kept by an older version under the bare id,
    merges into the id's key now. It is the same customer id, so no ``identify`` is needed.
    Where that profile has merged into another since (an ``identify``), the ask follows the
    pointer, and the older of the two survives as in any merge. A key holding anything else
    is an identifier's (``crm:42`` for ``identifiers: {crm: "42"}``) and is left alone."""
    target = str(event.properties["target"])
    legacy = legacy_key(target)
    if isinstance(record, Forward):
        return _forward(event, record.target, "adopt_forwarded")
    if not isinstance(record, Profile) or key == target:
        return Effects()
    if key == legacy:
        if record.state.customer_id != legacy:
            return Effects()  # an anonymous profile of the identifier that reads like the id
        # The old profile's history leads: a journey the new key's first event entered again
        # ends (``merged``) and the old profile's instance, maybe mid-wait, goes on.
        return _move(key, record.state, target, now, adopted=target)
    if legacy not in record.state.aliases:
        return Effects()
    return _settle(key, record.state, target, float(event.properties.get("created_at", 0.0)), now)


def _merged_again(key: str, target: str) -> Effects:
    """A merge read again at the pointer it made: a worker killed after the table write may
    have lost the read model's delete of this profile and the move of its decisions, which
    nothing else would ever do. Both are idempotent."""
    return Effects(forget=[key], moved_to=target, counted="merge_read_again")


def _merge_in(key: str, record: Record, event: Event, now: float, ctx: Context) -> Effects:
    if isinstance(record, Forward):
        return _forward(event, record.target, "merge_forwarded")
    if isinstance(record, Suppressed):
        return Effects(counted="dropped_suppressed")
    confirm = control(MERGED, str(event.properties["loser"]), now, key, target=key)
    if isinstance(record, Profile) and event.event_id in record.state.seen_ids:
        # The hand-over sent again after a crash: counts must not add twice; the read model
        # may have lost the merged profile.
        return Effects(sends=[confirm], restage=record.state, counted="duplicate")
    handed = CustomerState.from_bytes(event.properties["state"])
    here = record.state if isinstance(record, Profile) else CustomerState(key=key)
    # An adopted profile leads at the key it was sent to; forwarded on (that profile merged
    # into another since), it is the loser, as in any merge: the survivor keeps its own id.
    adopted = event.properties.get("adopted") == key
    winner, loser = (_rekeyed(handed, key), here) if adopted else (here, handed)
    policy = ctx.policy
    merged = merge_states(winner, loser, recent_most=policy.recent_events, dedupe_most=policy.dedupe_window)
    append_bounded(merged.seen_ids, event.event_id, policy.dedupe_window)
    repoints = [control(LINK, alias, now, key, target=key, repoint=True) for alias in handed.aliases if alias != key]
    merged.aliases = [a for a in merged.aliases if a != key]
    doubled = {jid: instance for jid, instance in loser.journeys.items() if jid in winner.journeys}
    decision = decide_merged(merged, event, now, policy, ctx.engine, _events_elsewhere(winner, loser, merged), doubled)
    return Effects(record=Profile(merged), decision=decision, sends=[*repoints, confirm], counted="merged_in")


def _rekeyed(state: CustomerState, key: str) -> CustomerState:
    """An adopted profile as if it had always lived at ``key``: its old key becomes an alias."""
    moved = state.thaw()
    moved.aliases = [*state.aliases, state.key][-MAX_ALIASES:]
    moved.key = key
    return moved


def _events_elsewhere(
    winner: CustomerState, loser: CustomerState, merged: CustomerState
) -> dict[str, list[dict[str, Any]]]:
    """For each journey in flight after a merge, or in its conversion window after it, the
    recent events of the profile it did not run on: one of them may be its goal, which it
    never saw. Where both profiles had it, the merge kept the survivor's instance (or window),
    so the loser's events are the ones it missed."""

    def ran_on_winner(jid: str) -> bool:
        return jid in winner.journeys or (jid not in merged.journeys and "after" in winner.journey_log.get(jid, {}))

    waiting = [*merged.journeys, *(jid for jid, log in merged.journey_log.items() if "after" in log)]
    return {jid: loser.recent if ran_on_winner(jid) else winner.recent for jid in waiting}


def _merged(key: str, record: Record, event: Event, now: float, ctx: Context) -> Effects:
    """The survivor has folded in what this pointer handed over: the pointer need keep no
    copy of the state for a merge read again (see :mod:`agents.outbox`)."""
    if not isinstance(record, Forward) or record.target != event.properties.get("target"):
        return Effects()
    if any(sent.sends for sent in record.outbox):
        return Effects(record=Forward(record.target), counted=MERGE_CONFIRMED)
    return Effects()


def _erase(key: str, record: Record, event: Event, now: float, ctx: Context) -> Effects:
    suppress = bool(event.properties.get("suppress"))
    if isinstance(record, Forward):
        return _forward(event, record.target, "erase_forwarded")
    if not isinstance(record, Profile):
        # Nothing stored, yet the read model is cleared again: this may be the erasure read
        # again after a crash that wrote the table but lost the read model's deletes.
        audit = _audit(ctx.hasher.pseudonym(key), event, now, suppress, aliases=0, found=False)
        return _erased(suppress, now, None, forget=[key], audit=audit, counted="erased")
    state = record.state
    owners = sorted({key, *state.aliases})
    keys = sorted(
        ({profile_key_for(t) for t in tokens_of(state.customer_id, state.identifiers)} | set(state.aliases)) - {key}
    )
    sends = [control(ERASE_KEY, k, now, key, owners=owners, suppress=suppress) for k in keys]
    return _erased(
        suppress,
        now,
        Missing(),
        sends=sends,
        forget=[key],
        forget_tokens=_tokens(state),
        audit=_audit(ctx.hasher.pseudonym(key), event, now, suppress, aliases=len(keys), found=True),
        counted="erased",
        left=[exit_of(jid, instance, ERASED_OUT) for jid, instance in state.journeys.items()],
    )


def _erase_key(key: str, record: Record, event: Event, now: float, ctx: Context) -> Effects:
    """Remove a pointer to an erased profile; a separate profile sharing the key is left alone."""
    suppress = bool(event.properties.get("suppress"))
    owners = set(event.properties.get("owners") or ())
    if isinstance(record, Forward) and record.target not in owners:
        return Effects(counted="erase_skipped")
    if isinstance(record, (Profile, Suppressed)):
        return Effects(counted="erase_skipped")
    return _erased(suppress, now, Missing(), forget=[key], counted="erased_pointer")


def _erased(suppress: bool, now: float, absent: Record | None, **effects: Any) -> Effects:
    """What an erased key is left with: a suppression marker with ``--suppress``; otherwise
    ``absent`` (None: nothing was stored, leave it so) and, beside it, the time of the erasure
    (:class:`~orchestrator.identity.records.Erased`)."""
    if suppress:
        return Effects(record=Suppressed(), **effects)
    return Effects(record=absent, erased_at=now, **effects)


def _tokens(state: CustomerState) -> list[str]:
    """Every identifier token the read model may hold an alias for."""
    found = tokens_of(state.customer_id, state.identifiers)
    found += [alias if ":" in alias else f"{CUSTOMER_ID}:{alias}" for alias in state.aliases]
    return list(dict.fromkeys(found))


def _audit(customer: str, event: Event, now: float, suppress: bool, *, aliases: int, found: bool) -> dict[str, Any]:
    """Proof that an erasure happened, holding no personal data: ``customer`` is the profile key
    as :meth:`Hasher.pseudonym` gives it, and the request id is the erase event's, which
    ``orchestrator erase`` makes random (``orchestrator.cli.erase.erase_request``)."""
    return {
        "kind": "erasure",
        "customer": customer,
        "request_id": event.event_id,
        "requested_by": str(event.properties.get("requested_by") or event.channel or "unknown"),
        "requested_at": event.ts,
        "erased_at": now,
        "found": found,
        "pointers_removed": aliases,
        "suppressed": suppress,
    }


_CONTROL = {
    LINK: _link,
    ADOPT: _adopt,
    MERGE_IN: _merge_in,
    MERGED: _merged,
    ERASE: _erase,
    ERASE_KEY: _erase_key,
}
