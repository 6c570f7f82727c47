"""The shape of a journey's steps: where each step leads, and the mistakes that shape can hold.

Within one event the engine runs steps one after another until a wait or the end
(``Engine._go``): a loop with no wait in it is cut off only at run time, when a step comes
round again, ending the journey (reason ``loop``) and dropping what that run queued; a step
nothing leads to, a branch case that is never taken, a target the engine never follows, two
split arms with one name, or a second split are never noticed at all. These checks find them when a folder
is validated or published. Pure functions over a validated :class:`Journey` (or its steps and rules); each problem
carries its path in the file, for the loader to turn into a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.journeys.model import Case, Migration, Step

YamlPath = tuple[str | int, ...]


class Shape(Protocol):
    """What these checks look at: a :class:`Journey`, or the steps and rules of a file the
    schema refused elsewhere (``loader.review_invalid``)."""

    @property
    def steps(self) -> Sequence[Step]: ...

    @property
    def migrate(self) -> Sequence[Migration]: ...


@dataclass(frozen=True)
class Link:
    """One way out of a step: to ``target`` (None: the journey ends), said at ``path`` in the file."""

    target: str | None
    path: YamlPath


@dataclass(frozen=True)
class Problem:
    path: YamlPath
    message: str


def problems(journey: Shape) -> list[Problem]:
    """Everything wrong with the shape of ``journey``'s steps, in the order of the checks."""
    graph = links(journey)
    return [
        *loops_without_a_wait(journey, graph),
        *unreached_steps(journey, graph),
        *dead_cases(journey),
        *ignored_targets(journey),
        *split_arms_named_twice(journey),
        *splits_after_the_first(journey),
    ]


def step_problems(step: Step, index: int) -> list[Problem]:
    """What is wrong with one step whatever the others are (the file's ``index``-th): what
    ``validate`` can still say of it when another step, or the journey, fails the schema."""
    return [*_dead_cases_of(step, index), *_ignored_targets_of(step, index), *_arms_named_twice_of(step, index)]


def links(journey: Shape) -> dict[str, list[Link]]:
    """Every step's ways out as the engine takes them; the step after one is its ``next:``,
    else the step below it, else the end (``Compiled.after``)."""
    steps = journey.steps
    found = {}
    for i, step in enumerate(steps):
        below = steps[i + 1].id if i + 1 < len(steps) else None
        found[step.id] = _links_of(step, ("steps", i), step.next or below)
    return found


def _links_of(step: Step, path: YamlPath, after: str | None) -> list[Link]:
    if step.exit is not None:
        return []
    if step.wait is not None and step.wait.event:
        return [Link(step.wait.on_event or after, path), Link(step.wait.on_timeout or after, path)]
    if step.branch is not None:
        return _branch_links(step.branch, path, after)
    if step.split is not None:
        return [Link(arm.next or after, (*path, "split", j)) for j, arm in enumerate(step.split)]
    return [Link(after, path)]


def _branch_links(cases: list[Case], path: YamlPath, after: str | None) -> list[Link]:
    """The cases up to the first ``else`` (the engine never looks past it); without an
    ``else``, also the step after the branch, where it goes when no case holds."""
    found = []
    for j, case in enumerate(cases):
        found.append(Link(case.next, (*path, "branch", j)))
        if case.else_:
            return found
    return [*found, Link(after, path)]


def _falls_through(step: Step) -> bool:
    """Whether some way out of ``step`` is the step after it, so that its ``next:`` is used."""
    if step.wait is not None and step.wait.event:
        return not (step.wait.on_event and step.wait.on_timeout)
    if step.branch is not None:
        return not any(case.else_ for case in step.branch)
    if step.split is not None:
        return not all(arm.next for arm in step.split)
    return step.exit is None


def loops_without_a_wait(journey: Shape, graph: dict[str, list[Link]]) -> list[Problem]:
    """Each loop of steps with no wait on it, said at the link that closes it. Nothing in one
    event changes what a condition sees, so a loop that is entered is gone round until the
    engine stops it: the journey ends (reason ``loop``) and that run's commands are dropped."""
    waits = {step.id for step in journey.steps if step.wait is not None}
    moving = {sid: [] if sid in waits else out for sid, out in graph.items()}  # a wait ends the run
    return [Problem(link.path, _loop_message(loop)) for loop, link in _closing_links(moving)]


def _loop_message(loop: list[str]) -> str:
    steps = " -> ".join(loop)
    return (
        f"a loop with no wait in it ({steps}): one event would go round it until the engine ends the journey ('loop')"
    )


def _closing_links(graph: dict[str, list[Link]]) -> list[tuple[list[str], Link]]:
    """Depth first, without recursion (a file may have hundreds of steps): each link back to
    a step on the current path, with the loop it closes, from that step round to it again."""
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    found = []
    for root in graph:
        if root in state:
            continue
        path, pending = [root], [iter(graph[root])]
        state[root] = "open"
        while pending:
            link = next(pending[-1], None)
            if link is None:
                state[path.pop()] = "done"
                pending.pop()
            elif link.target is not None and state.get(link.target) == "open":
                found.append(([*path[path.index(link.target) :], link.target], link))
            elif link.target is not None and link.target not in state:
                state[link.target] = "open"
                path.append(link.target)
                pending.append(iter(graph[link.target]))
    return found


def unreached_steps(journey: Shape, graph: dict[str, list[Link]]) -> list[Problem]:
    """Steps no path leads to from the first step, nor from a step a migration rule moves
    customers onto: nobody can ever be there, so something is missing (a ``next:``, say)."""
    first = journey.steps[0].id
    entries = [first, *(new for rule in journey.migrate for new in rule.steps.values())]
    reached: set[str] = set()
    while entries:
        step_id = entries.pop()
        if step_id not in reached:
            reached.add(step_id)
            # .get: a migration rule may name a step that does not exist (refused on its own line)
            entries += [link.target for link in graph.get(step_id, ()) if link.target is not None]
    also = " or a step a migration rule moves customers onto" if journey.migrate else ""
    why = f"no path leads to it from the first step '{first}'{also}"
    return [
        Problem(("steps", i), f"step '{step.id}' is never reached: {why}")
        for i, step in enumerate(journey.steps)
        if step.id not in reached
    ]


def dead_cases(journey: Shape) -> list[Problem]:
    """Branch cases the engine never takes. It tries them in order and takes the first that
    holds, so it never looks past ``else``, and a condition written again can only hold where
    the earlier case with it already did."""
    return [problem for i, step in enumerate(journey.steps) for problem in _dead_cases_of(step, i)]


def _dead_cases_of(step: Step, i: int) -> list[Problem]:
    found = []
    seen: dict[str, int] = {}
    cases = step.branch or []
    for j, case in enumerate(cases):
        path = ("steps", i, "branch", j)
        if any(earlier.else_ for earlier in cases[:j]):
            found.append(Problem(path, f"branch '{step.id}': a case after 'else' is never tried"))
        elif case.when is not None and case.when in seen:
            message = f"branch '{step.id}': this case repeats the condition of case {seen[case.when] + 1}"
            found.append(Problem(path, f"{message}, so it is never taken"))
        if case.when is not None:
            seen.setdefault(case.when, j)
    return found


def ignored_targets(journey: Shape) -> list[Problem]:
    """Targets the file names but the engine never follows, so customers do not go where the
    file says: ``next:`` on a step whose every way out names its own target (or an exit), and
    ``on_event``/``on_timeout`` on a wait that is not waiting for an event."""
    return [problem for i, step in enumerate(journey.steps) for problem in _ignored_targets_of(step, i)]


def _ignored_targets_of(step: Step, i: int) -> list[Problem]:
    found = []
    if step.next is not None and not _falls_through(step):
        why = "an exit ends the journey" if step.exit is not None else "every way out of it names its own step"
        message = f"step '{step.id}': 'next: {step.next}' is never followed: {why}"
        found.append(Problem(("steps", i, "next"), message))
    wait = step.wait
    for outcome in ("on_event", "on_timeout"):
        if wait is not None and not wait.event and getattr(wait, outcome) is not None:
            message = f"step '{step.id}': '{outcome}' is never followed: only a wait for an event has outcomes"
            found.append(Problem(("steps", i, "wait", outcome), message))
    return found


def split_arms_named_twice(journey: Shape) -> list[Problem]:
    """Two arms of one split with the same name (``holdout`` for the holdout). A customer's arm
    is remembered, counted (metrics, replay summary, decision log) and migrated by its name, so
    the two could not be told apart."""
    return [problem for i, step in enumerate(journey.steps) for problem in _arms_named_twice_of(step, i)]


def splits_after_the_first(journey: Shape) -> list[Problem]:
    """A second split. A customer keeps the arm of the first for the whole journey (a holdout
    must never be contacted further on), and conversions are counted for that arm, so a
    second split could neither assign nor measure anything: test another choice in another
    journey, or give the one split more arms."""
    splits = [(i, step) for i, step in enumerate(journey.steps) if step.split is not None]
    if len(splits) < 2:
        return []
    first = splits[0][1].id
    return [
        Problem(("steps", i, "split"), f"split '{step.id}': a journey has one split, and '{first}' is it: {_WHY_ONE}")
        for i, step in splits[1:]
    ]


_WHY_ONE = "a customer keeps that arm to the end, and its conversions count for it; give that split more arms"


def _arms_named_twice_of(step: Step, i: int) -> list[Problem]:
    found = []
    seen: dict[str, int] = {}
    for j, arm in enumerate(step.split or []):
        name = arm.variant or "holdout"
        if name in seen:
            message = f"split '{step.id}': arm {j + 1} is named '{name}' like arm {seen[name] + 1}"
            found.append(Problem(("steps", i, "split", j), f"{message}: the two cannot be told apart"))
        seen.setdefault(name, j)
    return found
