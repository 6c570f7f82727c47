"""The journey file format, validated by pydantic. See ``journeys/*.yaml`` for examples."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from orchestrator.journeys.durations import parse_duration
from schemas.events import CHANNEL_PATTERN

Duration = Annotated[float, BeforeValidator(parse_duration)]
ID = r"^[a-z][a-z0-9_]{0,63}$"
MAX_VERSION = 10**9  # far beyond any journey's history; big enough numbers break msgpack
# Exit reasons the engine gives (exit_on as exit_on:<type>; and migrated_to_v<N>); an exit step's is its own.
ENGINE_EXITS = frozenset({"goal", "loop", "exit_on", "version_removed", "migration", "merged", "erased", "over_limit"})
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


_YAML_KINDS = {int: "a number", float: "a number", bool: "true/false", type(None): "null"}


def _one_or_list(what: str) -> BeforeValidator:
    """One name as a list of one; neither a name nor a list is an error in the user's words
    (pydantic would say "Input should be a valid list" of ``event: 5``)."""

    def as_list(value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return value
        raise ValueError(f"give {what} or a list of them, not {_YAML_KINDS.get(type(value), 'a map')}")

    return BeforeValidator(as_list)


Names = Annotated[list[str], _one_or_list("an event name"), Field(min_length=1)]
Channel = Annotated[str, Field(pattern=CHANNEL_PATTERN)]  # as events and commands spell it: web, not Web
Channels = Annotated[list[Channel], _one_or_list("a channel"), Field(min_length=1)]


def _clock_text(value: Any) -> Any:
    """``until: 10`` is a number, not a time of day: ask for the quoted form."""
    if value is not None and not isinstance(value, str):
        raise ValueError(f'until {str(value)[:40]} is not a time of day: write it in quotes, like "10:00"')
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Match(Strict):
    """Which events count: by type, optionally channel, optionally a CEL condition."""

    event: Names
    channel: Channels | None = None  # an empty list would match every channel
    when: str | None = None


class Reentry(Strict):
    policy: Literal["once", "cooldown", "always"] = "once"
    cooldown: Duration | None = None

    @model_validator(mode="after")
    def _cooldown_needs_duration(self) -> Reentry:
        if self.policy == "cooldown" and not self.cooldown:
            raise ValueError("reentry policy 'cooldown' needs a cooldown duration")
        return self


class Wait(Strict):
    """Exactly one of: ``for`` a duration, an ``event`` (with timeout), or ``until`` a local time."""

    for_: Duration | None = Field(default=None, alias="for")
    event: Names | None = None
    when: str | None = None
    timeout: Duration | None = None
    on_event: str | None = None
    on_timeout: str | None = None
    until: Annotated[str | None, BeforeValidator(_clock_text)] = Field(
        default=None, description="HH:MM in the customer's time zone"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Wait:
        kinds = [k for k in ("for_", "event", "until") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a wait needs exactly one of 'for', 'event' or 'until'")
        if self.event is not None and self.timeout is None:
            raise ValueError("waiting for an event needs a timeout")
        if (self.for_ is not None and self.for_ <= 0) or (self.timeout is not None and self.timeout <= 0):
            raise ValueError("a wait must be longer than zero")
        if self.until is not None and not CLOCK.fullmatch(self.until):  # not "10:00\n"
            raise ValueError(f"until {self.until!r} is not HH:MM (24-hour clock)")
        return self


class Case(Strict):
    when: str | None = None
    else_: bool = Field(default=False, alias="else")
    next: str

    @model_validator(mode="after")
    def _when_or_else(self) -> Case:
        if (self.when is None) == (not self.else_):
            raise ValueError("a branch case has either 'when' or 'else: true'")
        return self


class Arm(Strict):
    """One share of a split: a named variant, or the holdout that gets no action."""

    variant: str | None = None
    holdout: bool = False
    percent: float = Field(gt=0, le=100)
    next: str | None = None

    @model_validator(mode="after")
    def _named(self) -> Arm:
        if self.holdout == (self.variant is not None):
            raise ValueError("a split arm is either 'variant: name' or 'holdout: true'")
        if self.variant is not None and (not self.variant.strip() or self.variant == "holdout"):
            # reasons, metrics and the summary name the holdout 'holdout': an arm so named,
            # or with no name, would pass for it while its customers are messaged
            raise ValueError(f"a variant needs a name other than {self.variant!r} ('holdout' is the holdout's)")
        return self


class Action(Strict):
    channel: str = Field(pattern=CHANNEL_PATTERN)
    action: str = Field(pattern=ID)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=50, ge=0, le=100)
    ttl: Duration | None = None
    # In the customer's quiet hours a journey's action waits for them to end ("delay"), and
    # the rest of the journey with it; "skip" drops it (held back, reason quiet_hours) and
    # goes on, for a message that is worth nothing later.
    quiet_hours: Literal["delay", "skip"] = "delay"

    @model_validator(mode="after")
    def _lives(self) -> Action:
        if self.ttl is not None and self.ttl <= 0:  # it would be held back as expired, every time
            raise ValueError("an action's ttl must be longer than zero (leave it out for none)")
        return self


class Step(Strict):
    id: str = Field(pattern=ID)
    wait: Wait | None = None
    branch: list[Case] | None = None
    split: list[Arm] | None = None
    action: Action | None = None
    exit: str | None = None
    next: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data == "exit":
            return {"exit": "completed"}
        if isinstance(data, dict) and isinstance(data.get("wait"), (str, int, float)):
            return {**data, "wait": {"for": data["wait"]}}
        return data

    @field_validator("exit")
    @classmethod
    def _own_reason(cls, reason: str | None) -> str | None:
        """An exit step's reason is counted and explained beside the engine's own: one that
        looked like them (``goal``) would pass for a conversion that was never counted."""
        if reason is None:
            return reason
        if not re.fullmatch(ID, reason):
            raise ValueError(f"exit reason {reason!r} is a name: a lower-case letter, then letters, digits or '_'")
        if reason in ENGINE_EXITS or re.fullmatch(r"migrated_to_v\d+", reason):
            raise ValueError(f"exit reason {reason!r} is one the engine gives: name the step's own reason")
        return reason

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in ("wait", "branch", "split", "action", "exit") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a step is exactly one of wait, branch, split, action or exit")
        if self.split is not None and abs(sum(arm.percent for arm in self.split) - 100) > 1e-6:
            raise ValueError("split percentages must add up to 100")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("wait", "branch", "split", "action", "exit") if getattr(self, k) is not None)


def _versions(value: Any) -> Any:
    """``from``: one version, a list of them, or ``all``; whole numbers only (no ``true``, ``"2"``, ``1.5``)."""
    if value == "all":
        return value
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("'from' names at least one version, or 'all'")
    for item in items:
        if type(item) is not int or not 1 <= item <= MAX_VERSION:
            raise ValueError(f"'from' takes versions (whole numbers from 1) or 'all', not {str(item)[:40]!r}")
    return items


StepId = Annotated[str, Field(pattern=ID)]


class Migration(Strict):
    """Moves customers in flight on older versions to this one: ``from`` which versions,
    old step -> new step in ``steps``, and what happens at a step it does not map."""

    from_: Annotated[list[int] | Literal["all"], BeforeValidator(_versions)] = Field(alias="from")
    steps: dict[StepId, StepId] = Field(default_factory=dict)
    otherwise: Literal["stay", "exit"] = "stay"

    @model_validator(mode="after")
    def _moves_someone(self) -> Migration:
        if not self.steps and self.otherwise == "stay":
            raise ValueError("this migration moves nobody: map some steps, or say 'otherwise: exit'")
        return self


class Journey(Strict):
    id: str = Field(pattern=ID)
    version: int = Field(strict=True, ge=1, le=MAX_VERSION)  # strict: not true (1) or 2.0
    description: str = ""
    trigger: Match
    audience: str | None = None
    goal: Match | None = None
    exit_on: list[Match] = Field(default_factory=list)
    reentry: Reentry = Reentry()
    # False for a long watch that mostly waits (win-back's 90 days of silence): it must not
    # keep a customer out of the journeys that talk to them (ORCH_MAX_ACTIVE_JOURNEYS).
    counts_towards_limit: bool = True
    # How long after leaving (other than by its goal) a goal event still counts as this
    # journey's conversion: a journey that ends with its ad still converts when they buy.
    conversion_window: Duration | None = None
    steps: list[Step] = Field(min_length=1)
    migrate: list[Migration] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        return expand_shorthands(data)

    # Step ids are unique and every target names a step: the loader checks that on the file
    # as written (``loader._references``), so that every such mistake is reported, also
    # beside a schema error, where a validator here would run only once the rest is valid
    # and stop at the first.

    def migration_from(self, version: int) -> Migration | None:
        """The rule that moves customers on ``version`` here: the one that names it, else
        the ``from: all`` one (for older versions only); None if they stay where they are."""
        if version >= self.version:
            return None
        named = next((m for m in self.migrate if isinstance(m.from_, list) and version in m.from_), None)
        return named or next((m for m in self.migrate if m.from_ == "all"), None)


def expand_shorthands(data: Any) -> Any:
    """A journey mapping with its shorthands written out: steps without an ``id`` named by
    position (so short files stay short), ``- exit``, ``reentry: once``, and one migration
    rule written without a list. Anything that is not a mapping is left to the schema."""
    if not isinstance(data, dict):
        return data
    if isinstance(data.get("steps"), list):
        steps = []
        for i, step in enumerate(data["steps"]):
            if step == "exit":
                step = {"exit": "completed"}
            if isinstance(step, dict) and "id" not in step:
                step = {"id": f"step{i + 1}", **step}
            steps.append(step)
        data = {**data, "steps": steps}
    if isinstance(data.get("reentry"), str):
        data = {**data, "reentry": {"policy": data["reentry"]}}
    if isinstance(data.get("migrate"), dict):  # one rule, the usual case
        data = {**data, "migrate": [data["migrate"]]}
    return data
