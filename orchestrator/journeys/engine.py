"""Run customers through journeys: pure, deterministic, clock passed in.

``on_event`` handles a customer's event: first it fires the waits that fell due
before it, then goals and exits (which end a journey at once, also in the
middle of a wait), then event waits, then entries. ``fire_due`` fires waits on
their own, for the timer path. Both work on a thawed state in place and report
commands, held-back commands and outcomes (entries, exits, conversions).

Before anything else, both move customers whom a newer version's ``migrate`` rule
claims (see :meth:`Engine.migrate`): lazily, the first time the engine looks at them
after the new version is known, and as of the earlier of that moment and their
pending wait's due time, so a late timer or a late event moves them the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.core.commands import Command, make_command
from orchestrator.core.event import Event
from orchestrator.core.fold import PREFERENCES
from orchestrator.core.localtime import next_local_time
from orchestrator.core.policy import Policy, quiet_hours_end
from orchestrator.core.rules import Held, who
from orchestrator.core.state import CustomerState
from orchestrator.journeys.catalogue import Catalogue, Move
from orchestrator.journeys.conditions import Condition, render_payload
from orchestrator.journeys.context import Context, summary
from orchestrator.journeys.loader import Compiled
from orchestrator.journeys.model import Match, Step

MAX_STEPS_PER_RUN = 64  # waits of no length fired again and again in one call: a loop, stopped, not spun forever
MAX_MIGRATION_HOPS = 64  # each move goes to a newer version, so a chain ends anyway: a guard, not a limit
AFTER_EXIT = "after_exit"  # a conversion's reason when it came within the conversion window after leaving
ERASED_OUT = "erased"  # the exit reason of the journeys of a customer erased (no decision records it)
MERGED_AWAY = "merged"  # the exit reason of an instance a merge replaced: the survivor was in the journey too
MIGRATION = "migration"  # the exit reason of a customer a migration rule ends (``otherwise: exit``)
OVER_LIMIT = "over_limit"  # the exit reason of the journeys a merge left beyond ``max_active``: the later entered
UNSEEN = "unseen_since"  # in an instance: the first event a worker that could not load its version did not look at


@dataclass
class Outcome:
    """What happened to a customer in a journey; never changed once made. Not frozen: a frozen
    dataclass sets each field through ``object.__setattr__``, which made building one cost
    nine times as much, and a replay builds about one per event."""

    kind: str  # enter | assign | exit | convert | condition_error | blocked | migrate | delay
    journey: str
    version: int  # for migrate: the version moved to
    reason: str = ""
    from_version: int = 0  # for migrate: the version moved from
    variant: str = ""  # assign: the split arm chosen; exit and convert: the arm the customer was in


@dataclass
class JourneyRun:
    commands: list[tuple[int, Command]] = field(default_factory=list)  # (priority, command)
    held: list[Held] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    policy: Policy | None = None  # decide()'s: its quiet hours delay actions; None: never delayed
    fired: list[float] = field(default_factory=list)  # the due time of each wait fired, for lateness


@dataclass
class Engine:
    catalogue: Catalogue
    max_active: int = 3
    default_timezone: str = "UTC"

    # -- entry points -------------------------------------------------------
    def on_event(self, state: CustomerState, event: Event, now: float, run: JourneyRun) -> None:
        self.fire_due(state, now, run)
        self.react(state, event, now, run)

    def react(
        self, state: CustomerState, event: Event, now: float, run: JourneyRun, until: float | None = None
    ) -> None:
        """:meth:`on_event` for a caller that has just fired the waits due by ``until`` (by
        default ``now``; live, the time the event reached Kafka: ``core.decide.fire_until``)."""
        until = now if until is None else until
        if self.migrate(state, now, run) and (wake := state.next_wake()) is not None and wake <= until:
            self.fire_due(state, until, run)  # a move may leave a wait that is already over
        context = Context(state, event, now)
        for jid in list(state.journeys):
            self._react(state, jid, event, context, run)
        if event.type == PREFERENCES:
            self.retime(state, now, run, until)
        if state.journey_log and event.type in self.catalogue.goal_types:
            self._credit_after_exit(state, event, context, run)
        for journey in self.catalogue.triggered_by(event.type):
            if journey.id not in state.journeys and self._may_enter(state, journey, event, context, run):
                self._enter(state, journey, event, context, run)

    def fire_due(self, state: CustomerState, until: float, run: JourneyRun) -> None:
        """Fire every wait due at or before ``until``, earliest first, each at its own time."""
        self.migrate(state, until, run)
        fired: dict[str, int] = {}
        while True:
            due = [(inst["wake"], jid) for jid, inst in state.journeys.items() if self._due(jid, inst, until)]
            if not due:
                return
            wake, jid = min(due)
            instance = state.journeys[jid]
            journey = self._journey_of(state, jid, run)
            if journey is None:
                continue
            fired[jid] = fired.get(jid, 0) + 1
            if fired[jid] > MAX_STEPS_PER_RUN:  # a loop through waits that are already due
                self._end(state, journey, "loop", wake, run)
                continue
            step = journey.steps[instance["step"]]
            instance["wake"] = None
            run.fired.append(wake)
            context = Context(state, None, wake, trigger=instance["trigger"])
            self._go(state, journey, jid, _after_wake(journey, step), context, run)

    # -- reacting to an event inside a journey -----------------------------------
    def _react(self, state: CustomerState, jid: str, event: Event, context: Context, run: JourneyRun) -> None:
        journey = self._journey_of(state, jid, run)
        if journey is None:
            if jid in state.journeys:  # held: a worker that can load the version looks at it later
                _unseen_since(state.journeys[jid], event.ts)
            return
        definition = journey.definition
        context.trigger = state.journeys[jid]["trigger"]
        if definition.goal and self._matches(journey, definition.goal, event, context, run):
            self._end(state, journey, "goal", context.now, run, converted=True)
            return
        for match in definition.exit_on:
            if self._matches(journey, match, event, context, run):
                self._end(state, journey, f"exit_on:{event.type}", context.now, run)
                return
        instance = state.journeys[jid]
        step = journey.steps[instance["step"]]
        wait = step.wait
        if wait is None or not wait.event or instance.get("wake") is None:
            return
        if event.type in wait.event and (wait.when is None or self._holds(journey, wait.when, context, run)):
            instance["wake"] = None
            self._go(state, journey, jid, wait.on_event or journey.after(step), context, run)

    def _credit_after_exit(self, state: CustomerState, event: Event, context: Context, run: JourneyRun) -> None:
        """A goal reached within a journey's ``conversion_window`` after the customer left it
        (other than by the goal) is that journey's conversion, once: the ad that ended the
        journey worked if they buy the next day. It counts for the arm they were in."""
        for jid, log in state.journey_log.items():
            after = log.get("after")
            if after is None or jid in state.journeys:
                continue
            journey = self.catalogue.get(jid, after["v"])
            if journey is None and self.catalogue.held(jid, after["v"]):
                continue
            if journey is None or context.now > after["until"]:
                del log["after"]
                continue
            goal = journey.definition.goal
            context.trigger = after["trigger"]
            if goal is not None and self._matches(journey, goal, event, context, run):
                _credit_after_exit(log, journey, run)

    def end_on_events_elsewhere(
        self, state: CustomerState, elsewhere: dict[str, list[dict[str, Any]]], run: JourneyRun
    ) -> None:
        """Two profiles of one person have just merged into ``state``: a journey that ran on
        one of them ends on a goal (converted) or an exit that the *other* one saw after the
        journey began, as if both had been one profile all along. A stream can deliver a
        purchase to the survivor before the profile merging into it, so without this a
        journey would go on after its goal. ``elsewhere`` maps each journey to the other
        side's recent events, as :func:`orchestrator.core.fold.fold` keeps them: their type,
        channel, time and product or query, not all their properties, so a condition that
        reads anything else cannot hold (nor is it counted as an error: the event is partial)."""
        for jid, summaries in elsewhere.items():
            if jid in state.journeys:
                self._end_elsewhere(state, jid, summaries, run)
            elif "after" in state.journey_log.get(jid, {}):
                self._credit_elsewhere(state, jid, summaries, run)

    def _end_elsewhere(self, state: CustomerState, jid: str, summaries: list[dict[str, Any]], run: JourneyRun) -> None:
        instance = state.journeys[jid]
        journey = self._journey_of(state, jid, run)
        events = _since_began(instance, summaries, state.key)
        if journey is None:
            if jid in state.journeys and events:  # held: as for an event it did not look at
                _unseen_since(instance, events[0].ts)
            return
        self._end_on(state, journey, instance, events, run)

    def _end_on(
        self, state: CustomerState, journey: Compiled, instance: dict[str, Any], events: list[Event], run: JourneyRun
    ) -> bool:
        """End ``journey`` at the first of ``events`` (oldest first, as a state's recent list
        keeps them) that is its goal (converted) or one of its exits; whether one was."""
        for event in events:
            context = Context(state, event, event.ts, trigger=instance["trigger"])
            reason = self._ending(journey, event, context)
            if reason is not None:
                self._end(state, journey, reason, event.ts, run, converted=reason == "goal")
                return True
        return False

    def _credit_elsewhere(
        self, state: CustomerState, jid: str, summaries: list[dict[str, Any]], run: JourneyRun
    ) -> None:
        """The conversion window's half of :meth:`end_on_events_elsewhere`: a goal the other
        profile reached after the customer left the journey, within its window."""
        log = state.journey_log[jid]
        after = log["after"]
        journey = self.catalogue.get(jid, after["v"])
        goal = journey.definition.goal if journey is not None else None
        if journey is None or goal is None:
            return
        left = after["until"] - float(journey.definition.conversion_window or 0.0)
        for event in _recent_events(summaries, state.key, left, after["until"]):
            context = Context(state, event, event.ts, trigger=after["trigger"])
            if self._matches(journey, goal, event, context, JourneyRun()):
                _credit_after_exit(log, journey, run)
                return

    def _ending(self, journey: Compiled, event: Event, context: Context) -> str | None:
        """``goal`` or ``exit_on:<type>`` if ``event`` ends ``journey``; conditions that fail
        on a partial event are not reported."""
        quiet = JourneyRun()
        goal = journey.definition.goal
        if goal is not None and self._matches(journey, goal, event, context, quiet):
            return "goal"
        if any(self._matches(journey, match, event, context, quiet) for match in journey.definition.exit_on):
            return f"exit_on:{event.type}"
        return None

    # -- entering ---------------------------------------------------------------
    def _may_enter(
        self, state: CustomerState, journey: Compiled, event: Event, context: Context, run: JourneyRun
    ) -> bool:
        definition = journey.definition
        context.trigger = None  # before entry, `trigger` is the event itself
        if not self._matches(journey, definition.trigger, event, context, run):
            return False
        log = state.journey_log.get(journey.id)
        if log and log.get("entries"):
            policy = definition.reentry
            if policy.policy == "once":
                return False
            if policy.policy == "cooldown" and context.now - log.get("last_exit", 0.0) < (policy.cooldown or 0):
                return False
        if definition.audience and not self._holds(journey, definition.audience, context, run):
            return False
        if definition.counts_towards_limit and self._counted(state) >= self.max_active:
            run.outcomes.append(Outcome("blocked", journey.id, journey.version, "max_active"))
            return False
        return True

    def _counted(self, state: CustomerState) -> int:
        """The journeys the customer is in that count towards ``max_active``."""
        return len(self._counting(state))

    def _counting(self, state: CustomerState) -> list[str]:
        """The ids of the journeys the customer is in that count towards ``max_active``; one
        whose version this worker cannot load counts, as it may talk to them."""
        counting = []
        for jid, instance in state.journeys.items():
            journey = self.catalogue.get(jid, instance["v"])
            if journey is None or journey.definition.counts_towards_limit:
                counting.append(jid)
        return counting

    def keep_to_limit(self, state: CustomerState, now: float, run: JourneyRun) -> None:
        """After a merge, end the journeys beyond ``max_active`` (reason ``over_limit``), as
        if the two profiles had been one all along: the limit would have kept the customer out
        of those entered last, so the earliest entered go on and the later ones end (at the
        same entry time, the journey id decides). No conversion window follows such an exit:
        the customer did not leave, the merge took them out. A journey on a version this
        worker cannot load stays (it may not count towards the limit at all), so the customer
        may stay above the limit until it ends."""
        counting = self._counting(state)
        if len(counting) <= self.max_active:
            return
        by_entry = sorted(counting, key=lambda jid: (float(state.journeys[jid]["entered"]), jid))
        for jid in by_entry[self.max_active :]:
            version = state.journeys[jid]["v"]
            if self.catalogue.get(jid, version) is not None:
                _leave(state, jid, version, OVER_LIMIT, now, run)

    def _enter(self, state: CustomerState, journey: Compiled, event: Event, context: Context, run: JourneyRun) -> None:
        state.journeys[journey.id] = {
            "v": journey.version,
            "step": journey.first,
            "wake": None,
            "entered": context.now,
            "trigger": summary(event),
            "variant": None,
            "holdout": False,
        }
        log = state.journey_log.setdefault(journey.id, {"entries": 0, "conversions": 0})
        log.pop("after", None)  # a conversion from now on is the new instance's
        log["entries"] = log.get("entries", 0) + 1
        log["last_entry"] = context.now
        run.outcomes.append(Outcome("enter", journey.id, journey.version))
        context.trigger = state.journeys[journey.id]["trigger"]
        if self._ended_before_entry(state, journey, event, run):
            return
        self._go(state, journey, journey.id, journey.first, context, run)

    def _ended_before_entry(self, state: CustomerState, journey: Compiled, event: Event, run: JourneyRun) -> bool:
        """A trigger decided after events dated later than itself (a channel's late record:
        one Faust's stream dropped is read again before the records after it, by
        ``agents/stream_drops.py``) meets its journey's goal or exit among them, as far as
        the recent events reach back (``ORCH_RECENT_EVENTS``). The journey then ends at
        once, at that event's time, before any step runs, as it would have had the trigger
        come first: a purchase already made stops the nudge for the view before it. Events
        dated the same as the trigger do not count; recent events keep only a product or a
        query (see :meth:`_ended_while_held`)."""
        later = [summary for summary in state.recent if summary["ts"] > event.ts]  # mostly none: in order
        return bool(later) and self._end_on(
            state, journey, state.journeys[journey.id], _as_events(later, state.key), run
        )

    # -- walking the steps -----------------------------------------------------------
    def _go(
        self, state: CustomerState, journey: Compiled, jid: str, target: str | None, context: Context, run: JourneyRun
    ) -> None:
        """Move to ``target`` and run steps until a wait is armed or the journey ends."""
        instance = state.journeys[jid]
        context.trigger = instance["trigger"]
        first_command = len(run.commands)
        visited: set[str] = set()
        while target not in visited:  # nothing in one run changes a condition: a step again is a loop
            if target is None:
                self._end(state, journey, "completed", context.now, run)
                return
            visited.add(target)
            instance["step"] = target
            step = journey.steps[target]
            if step.wait is not None:
                instance["wake"] = self._wake_time(state, step, context.now)
                instance["since"] = context.now  # a migration re-times the wait from here
                return
            if step.exit is not None:
                self._end(state, journey, step.exit, context.now, run)
                return
            if step.action is not None and self._delayed(state, journey, step, context.now, run):
                return
            target = self._run_step(state, journey, instance, step, context, run)
        # A journey that loops without waiting is broken: end it, and send nothing it queued.
        run.commands[first_command:] = [pc for pc in run.commands[first_command:] if pc[1].journey != jid]
        self._end(state, journey, "loop", context.now, run)

    def _run_step(
        self,
        state: CustomerState,
        journey: Compiled,
        instance: dict[str, Any],
        step: Step,
        context: Context,
        run: JourneyRun,
    ) -> str | None:
        if step.action is not None:
            self._act(state, journey, instance, step, context, run)
        elif step.branch is not None:
            for case in step.branch:
                if case.else_ or (case.when and self._holds(journey, case.when, context, run)):
                    return case.next
        elif step.split is not None:
            arm = _arm_of(step, instance, state.key, journey.id)
            if instance.get("variant") is None:
                instance["variant"] = arm.variant or "holdout"
                instance["holdout"] = arm.holdout
                run.outcomes.append(Outcome("assign", journey.id, journey.version, variant=instance["variant"]))
            return arm.next or journey.after(step)
        return journey.after(step)

    def _act(
        self,
        state: CustomerState,
        journey: Compiled,
        instance: dict[str, Any],
        step: Step,
        context: Context,
        run: JourneyRun,
    ) -> None:
        action = step.action
        assert action is not None
        try:
            payload = render_payload(journey.payloads.get(step.id, {}), context)
        except Exception as exc:  # a template over a missing field: skip the action, say why
            run.outcomes.append(Outcome("condition_error", journey.id, journey.version, f"{step.id}: {exc!r}"))
            return
        variant = f", variant {instance['variant']}" if instance.get("variant") else ""
        description = journey.definition.description or journey.id
        command = make_command(
            customer_id=who(state),
            channel=action.channel,
            action=action.action,
            journey=journey.id,
            trigger=instance["trigger"]["event_id"],
            subject=f"v{journey.version}:{step.id}",  # the trigger's event id tells entries apart; no time
            payload=payload,
            reason=f"{description} (journey {journey.id} v{journey.version}, step {step.id}{variant})",
            now=context.now,
            ttl_s=action.ttl,
        )
        if instance.get("holdout"):
            run.held.append(Held(command, "holdout"))
        else:
            run.commands.append((action.priority, command))

    def _delayed(self, state: CustomerState, journey: Compiled, step: Step, now: float, run: JourneyRun) -> bool:
        """Whether the action must wait for the customer's quiet hours to end; if so the
        instance rests on it until then, like on a wait (a goal still ends it at once)."""
        action = step.action
        assert action is not None
        if run.policy is None or action.quiet_hours == "skip":
            return False
        until = quiet_hours_end(state, action.channel, now, run.policy)
        if until is None:
            return False
        state.journeys[journey.id]["wake"] = until
        when = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%MZ")
        run.outcomes.append(Outcome("delay", journey.id, journey.version, f"{step.id} until {when}"))
        return True

    def _end(
        self, state: CustomerState, journey: Compiled, reason: str, now: float, run: JourneyRun, converted: bool = False
    ) -> None:
        instance = state.journeys.get(journey.id)
        _leave(state, journey.id, journey.version, reason, now, run, converted)
        window = journey.definition.conversion_window
        if window and not converted and reason != "loop" and instance is not None and journey.definition.goal:
            state.journey_log[journey.id]["after"] = {
                "v": journey.version,
                "until": now + window,
                "variant": instance.get("variant") or "",
                "trigger": instance["trigger"],
            }

    # -- moving to a newer version -------------------------------------------------------------
    def migrate(self, state: CustomerState, now: float, run: JourneyRun) -> bool:
        """Move every instance a newer version's ``migrate`` rule claims; True if any moved.

        An instance moves as of ``min(now, its pending wake)``: the moment the engine next
        looks at it, unless its wait fell due before that. Mapped onto a wait, it waits as if
        it had been on the new step since it reached the old one (a wait that is then already
        over fires at its new due time, like any late wait); mapped onto another kind of step,
        it runs from there at once, as a timer would (no current event). The trigger, entry
        time, split arm and holdout go along. Unmapped steps stay, or end with reason
        ``migration``. Moves chain: a newer rule that takes the new version applies next."""
        if not state.journeys or not self.catalogue.migrating:
            return False
        moved = False
        for jid in [j for j in state.journeys if j in self.catalogue.migrating]:
            for _ in range(MAX_MIGRATION_HOPS):
                instance = state.journeys.get(jid)
                if instance is None:
                    break
                move = self.catalogue.migration(jid, instance["v"], instance["step"])
                if move is None:
                    break
                self._move(state, jid, instance, move, now, run)
                moved = True
        return moved

    def _move(
        self, state: CustomerState, jid: str, instance: dict[str, Any], move: Move, now: float, run: JourneyRun
    ) -> None:
        wake = instance.get("wake")
        at = min(now, wake) if wake is not None else now
        old_version, old_step = instance["v"], instance["step"]
        if move.step is None:
            _leave(state, jid, old_version, MIGRATION, at, run)
            return
        target = move.journey
        reason = f"from v{old_version} step {old_step} to step {move.step}"
        run.outcomes.append(Outcome("migrate", jid, target.version, reason, from_version=old_version))
        step = target.steps[move.step]
        since = self._since(jid, instance, old_version, old_step)
        instance["v"] = target.version
        instance["step"] = move.step
        if step.wait is not None:
            if since is not None:
                instance["wake"], instance["since"] = self._wake_time(state, step, since), since
            elif wake is None:  # not waiting at all (never the case at rest): start the wait now
                instance["wake"], instance["since"] = self._wake_time(state, step, at), at
            # else: armed before waits remembered their start, and of unknown length: keep the due time
            return
        instance["wake"] = None
        self._go(state, target, jid, move.step, Context(state, None, at, trigger=instance["trigger"]), run)

    def _since(self, jid: str, instance: dict[str, Any], version: int, step_id: str) -> float | None:
        """When the instance reached its wait: remembered, or worked out from the old wait's length."""
        since = instance.get("since")
        if since is not None:
            return float(since)
        wake = instance.get("wake")
        old = self.catalogue.get(jid, version)
        wait = old.steps[step_id].wait if old is not None and step_id in old.steps else None
        length = None if wait is None else wait.for_ if wait.for_ is not None else wait.timeout
        return None if wake is None or length is None else float(wake) - length

    # -- time --------------------------------------------------------------------------
    def retime(self, state: CustomerState, now: float, run: JourneyRun, until: float) -> None:
        """Work out again the wake times still ahead that hang on the customer's clock, after
        a ``preferences`` event or a merge that may have changed their time zone or quiet hours: a wait
        for the next 10:00 armed before they gave their zone is 10:00 where they are, and an
        action waiting for quiet hours to end follows the new hours (and goes out at once
        when ``now`` is no longer in them). Other waits keep their time. What falls due fires
        here only up to ``until`` (see :meth:`react`); the rest, a little later, on its wake."""
        overdue = False
        for jid, instance in state.journeys.items():
            journey = self.catalogue.get(jid, instance["v"])
            if instance.get("wake") is None or instance["wake"] <= now or journey is None:
                continue  # overdue waits fire as they were set; retiming them would skip them
            if instance["step"] not in journey.steps:
                continue  # a version published again without it: the customer leaves at the wake
            step = journey.steps[instance["step"]]
            if step.wait is not None and step.wait.until is not None:
                instance["wake"] = self._wake_time(state, step, now)
            elif step.action is not None and run.policy is not None:
                instance["wake"] = quiet_hours_end(state, step.action.channel, now, run.policy) or now
                overdue = overdue or instance["wake"] <= now
        if overdue:
            self.fire_due(state, until, run)

    def _wake_time(self, state: CustomerState, step: Step, now: float) -> float:
        wait = step.wait
        assert wait is not None
        if wait.until is not None:
            return next_local_time(now, wait.until, state.timezone or self.default_timezone)
        return now + float(wait.for_ if wait.for_ is not None else wait.timeout or 0.0)

    # -- conditions ------------------------------------------------------------------------
    def _matches(self, journey: Compiled, match: Match, event: Event, context: Context, run: JourneyRun) -> bool:
        if event.type not in match.event or (match.channel and event.channel not in match.channel):
            return False
        return match.when is None or self._holds(journey, match.when, context, run)

    def _holds(self, journey: Compiled, expression: str, context: Context, run: JourneyRun) -> bool:
        condition = journey.conditions.get(expression)
        if condition is None:
            condition = Condition.compile(expression)
        try:
            return condition.holds(context)
        except Exception as exc:  # missing field, wrong type: false, and counted
            run.outcomes.append(Outcome("condition_error", journey.id, journey.version, f"{expression}: {exc!r}"))
            return False

    def _due(self, jid: str, instance: dict[str, Any], until: float) -> bool:
        """Whether the instance's wait is due by ``until``; one on a version this worker cannot
        load stays due, untouched, until it can (or the version is removed)."""
        wake = instance.get("wake")
        return wake is not None and wake <= until and not self.catalogue.held(jid, instance["v"])

    def _journey_of(self, state: CustomerState, jid: str, run: JourneyRun) -> Compiled | None:
        """The version this customer entered; if it is gone, the journey ends for them. If this
        worker cannot load it, they stay as they are (see :meth:`Catalogue.held`), and the
        first worker that can looks for the goals and exits they reached meanwhile, before
        anything else: None too if one of those ended the journey."""
        instance = state.journeys[jid]
        journey = self.catalogue.get(jid, instance["v"])
        if journey is None and self.catalogue.held(jid, instance["v"]):
            return None
        if journey is None or instance["step"] not in journey.steps:  # or published again without their step
            state.journeys.pop(jid, None)
            run.outcomes.append(Outcome("exit", jid, instance["v"], "version_removed"))
            return None
        if UNSEEN in instance and self._ended_while_held(state, journey, instance, run):
            return None
        return journey

    def _ended_while_held(
        self, state: CustomerState, journey: Compiled, instance: dict[str, Any], run: JourneyRun
    ) -> bool:
        """A goal or an exit that came while no worker could load the customer's version ends
        the journey now, at its own time, as far as the customer's recent events reach back
        (``ORCH_RECENT_EVENTS``): a wait that fell due meanwhile does not fire after a goal.
        Recent events keep only a product or a query of their properties, so a condition
        that reads others cannot hold on them (as at a merge: :meth:`end_on_events_elsewhere`)."""
        since = float(instance.pop(UNSEEN))
        return self._end_on(state, journey, instance, _recent_events(state.recent, state.key, since, None), run)


def exit_of(jid: str, instance: dict[str, Any], reason: str) -> Outcome:
    """The exit of an instance that goes with its profile, not by a step of its own: a merge
    that keeps the survivor's instead (``merged``), an erasure (``erased``)."""
    return Outcome("exit", jid, instance["v"], reason, variant=instance.get("variant") or "")


def _unseen_since(instance: dict[str, Any], ts: float) -> None:
    """Remember the earliest event a worker that cannot load the instance's version let by."""
    instance[UNSEEN] = min(float(instance.get(UNSEEN, ts)), ts)


def _leave(
    state: CustomerState, jid: str, version: int, reason: str, now: float, run: JourneyRun, converted: bool = False
) -> None:
    instance = state.journeys.pop(jid, None)
    variant = (instance or {}).get("variant") or ""
    log = state.journey_log.setdefault(jid, {"entries": 0, "conversions": 0})
    log["last_exit"] = now
    if converted:
        log["conversions"] = log.get("conversions", 0) + 1
        run.outcomes.append(Outcome("convert", jid, version, variant=variant))
    run.outcomes.append(Outcome("exit", jid, version, reason, variant=variant))


def _credit_after_exit(log: dict[str, Any], journey: Compiled, run: JourneyRun) -> None:
    """Count a goal reached within the conversion window as the journey's conversion, once."""
    after = log.pop("after")
    log["conversions"] = log.get("conversions", 0) + 1
    run.outcomes.append(Outcome("convert", journey.id, journey.version, AFTER_EXIT, variant=after["variant"]))


def _since_began(instance: dict[str, Any], summaries: list[dict[str, Any]], key: str) -> list[Event]:
    """Those of a profile's recent events that came after ``instance`` began, as one profile
    judges them: dated after its trigger (the late-trigger rule of
    ``Engine._ended_before_entry``) or at or after its entry, oldest first."""
    entered = instance["entered"]
    trigger_ts = instance["trigger"].get("ts", entered)
    return _as_events([s for s in summaries if s["ts"] > trigger_ts or s["ts"] >= entered], key)


def _recent_events(summaries: list[dict[str, Any]], key: str, since: float, until: float | None) -> list[Event]:
    """A profile's recent events from ``since`` to ``until`` (open if None), oldest first."""
    return _as_events([s for s in summaries if s["ts"] >= since and (until is None or s["ts"] <= until)], key)


def _as_events(summaries: list[dict[str, Any]], key: str) -> list[Event]:
    """Recent events kept as summaries, as events again, oldest first."""
    return [_from_recent(summary, key) for summary in sorted(summaries, key=lambda s: s["ts"])]


def _from_recent(summary: dict[str, Any], key: str) -> Event:
    """An event again from what a state's ``recent`` list keeps of it: its product or query
    is its only property."""
    kind, _, value = str(summary.get("subject") or "").partition(":")
    return Event(
        event_id=summary["event_id"],
        type=summary["type"],
        ts=summary["ts"],
        customer_key=key,
        channel=summary["channel"],
        received_at=summary["ts"],
        properties={kind: value} if value else {},
    )


def _after_wake(journey: Compiled, step: Step) -> str | None:
    """Where a customer resting on ``step`` goes when its time comes: on from a wait (its
    timeout path for an event wait), or into an action that waited for quiet hours to end."""
    wait = step.wait
    if wait is None:
        return step.id
    return (wait.on_timeout if wait.event else None) or journey.after(step)


def _arm_of(step: Step, instance: dict[str, Any], customer: str, journey_id: str) -> Any:
    """The arm a customer takes at a split: the one named like the arm they already have
    (passing the split again, or after a migration), so a holdout stays a holdout and an arm
    is counted once; otherwise one chosen by :func:`_choose`."""
    given = instance.get("variant")
    named = [arm for arm in step.split or [] if given is not None and (arm.variant or "holdout") == given]
    return named[0] if named else _choose(step, customer, journey_id)


def _choose(step: Step, customer: str, journey_id: str) -> Any:
    """Deterministic by customer and journey: the same person always lands in the same arm."""
    digest = hashlib.sha256(f"{journey_id}|{step.id}|{customer}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * 100
    total = 0.0
    arms = step.split or []
    for arm in arms:
        total += arm.percent
        if point < total:
            return arm
    return arms[-1]
