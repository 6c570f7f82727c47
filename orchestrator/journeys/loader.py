"""Journey files -> compiled journeys, or a list of errors that each name file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.journeys.conditions import Condition, ConditionError, compile_payload
from orchestrator.journeys.model import Journey, Match, Step
from orchestrator.journeys.yamlines import YamlError, line_of, load_with_lines


@dataclass(frozen=True)
class JourneyError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class InvalidJourney(ValueError):
    def __init__(self, errors: list[JourneyError]) -> None:
        super().__init__("\n".join(map(str, errors)))
        self.errors = errors


@dataclass(frozen=True)
class Compiled:
    """A journey ready to run: conditions compiled, steps indexed, successors known."""

    definition: Journey
    source: str
    origin: str
    steps: dict[str, Step]
    successor: dict[str, str | None]
    conditions: dict[str, Condition] = field(default_factory=dict)
    payloads: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def version(self) -> int:
        return self.definition.version

    @property
    def first(self) -> str:
        return self.definition.steps[0].id

    def after(self, step: Step) -> str | None:
        return step.next or self.successor[step.id]


def compile_text(text: str, name: str) -> Compiled:
    """Parse, validate and compile one journey file's text; raise :class:`InvalidJourney`."""
    try:
        doc, lines = load_with_lines(text)
    except YamlError as exc:
        raise InvalidJourney([JourneyError(name, exc.line, str(exc))]) from None
    if not isinstance(doc, dict):
        raise InvalidJourney([JourneyError(name, 1, "a journey file is a mapping with id, version, trigger, steps")])
    try:
        journey = Journey.model_validate(doc)
    except ValidationError as exc:
        raise InvalidJourney([_from_pydantic(name, lines, err, doc) for err in exc.errors()]) from None
    conditions, payloads, errors = _compile_expressions(journey, name, lines)
    if errors:
        raise InvalidJourney(errors)
    order = [s.id for s in journey.steps]
    return Compiled(
        definition=journey,
        source=text,
        origin=name,
        steps={s.id: s for s in journey.steps},
        successor={sid: (order[i + 1] if i + 1 < len(order) else None) for i, sid in enumerate(order)},
        conditions=conditions,
        payloads=payloads,
    )


def compile_file(path: Path) -> Compiled:
    return compile_text(path.read_text(encoding="utf-8"), str(path))


def load_dir(folder: Path) -> tuple[list[Compiled], list[JourneyError]]:
    """Every ``*.yaml``/``*.yml`` in ``folder``: the good ones and all errors of the bad ones."""
    if not folder.is_dir():
        return [], [JourneyError(str(folder), 0, "no such folder")]
    good, errors = [], []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            good.append(compile_file(path))
        except InvalidJourney as exc:
            errors.extend(exc.errors)
    errors.extend(_duplicates(good))
    return good, errors


def _duplicates(journeys: list[Compiled]) -> list[JourneyError]:
    seen: dict[tuple[str, int], str] = {}
    errors = []
    for journey in journeys:
        key = (journey.id, journey.version)
        if key in seen:
            message = f"journey {journey.id} version {journey.version} is also defined in {seen[key]}"
            errors.append(JourneyError(journey.origin, 1, message))
        seen.setdefault(key, journey.origin)
    return errors


def _from_pydantic(name: str, lines: dict[Any, int], err: Any, doc: dict[str, Any]) -> JourneyError:
    loc = tuple(err["loc"])
    named = re.search(r"step '([^']+)'(?: goes to unknown step '([^']+)'| is defined twice)?", err["msg"])
    if not loc and named:  # a whole-journey check about one step: point at the exact place
        loc = _step_path(doc, named.group(1), named.group(2), last="defined twice" in err["msg"])
    where = ".".join(str(p) for p in loc) or "journey"
    message = err["msg"].removeprefix("Value error, ")
    return JourneyError(name, line_of(lines, _yaml_path(loc)), f"{where}: {message}")


def _step_path(doc: dict[str, Any], step_id: str, target: str | None, last: bool) -> tuple[Any, ...]:
    """The step with ``step_id`` (its last definition if ``last``), or where it names ``target``."""
    found: tuple[Any, ...] = ()
    for i, step in enumerate(doc.get("steps") or []):
        if isinstance(step, dict) and step.get("id") == step_id:
            found = ("steps", i)
            if target is not None:
                return _path_to_value(step, target, found) or found
            if not last:
                return found
    return found


def _path_to_value(node: Any, value: str, path: tuple[Any, ...]) -> tuple[Any, ...]:
    if node == value:
        return path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found = _path_to_value(child, value, (*path, key))
        if found:
            return found
    return ()


def _yaml_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic locations use field names; the YAML uses aliases (``for``, ``else``)."""
    return tuple({"for_": "for", "else_": "else"}.get(p, p) if isinstance(p, str) else p for p in loc)


def _expressions(journey: Journey) -> list[tuple[tuple[Any, ...], str]]:
    """Every CEL expression in the journey with its path in the file."""
    found: list[tuple[tuple[Any, ...], str]] = []

    def match(path: tuple[Any, ...], m: Match | None) -> None:
        if m is not None and m.when:
            found.append(((*path, "when"), m.when))

    match(("trigger",), journey.trigger)
    match(("goal",), journey.goal)
    for i, m in enumerate(journey.exit_on):
        match(("exit_on", i), m)
    if journey.audience:
        found.append((("audience",), journey.audience))
    for i, step in enumerate(journey.steps):
        if step.wait and step.wait.when:
            found.append((("steps", i, "wait", "when"), step.wait.when))
        for j, case in enumerate(step.branch or ()):
            if case.when:
                found.append((("steps", i, "branch", j, "when"), case.when))
    return found


def _payload_path(payload: Any, expression: str, path: tuple[Any, ...]) -> tuple[Any, ...]:
    """The path of the payload value whose template holds ``expression``."""
    if isinstance(payload, str):
        return path if expression in payload else ()
    items = payload.items() if isinstance(payload, dict) else enumerate(payload) if isinstance(payload, list) else ()
    for key, value in items:
        found = _payload_path(value, expression, (*path, key))
        if found:
            return found
    return ()


def _compile_expressions(
    journey: Journey, name: str, lines: dict[Any, int]
) -> tuple[dict[str, Condition], dict[str, Any], list[JourneyError]]:
    conditions: dict[str, Condition] = {}
    payloads: dict[str, Any] = {}
    errors: list[JourneyError] = []
    for path, expression in _expressions(journey):
        try:
            conditions[expression] = Condition.compile(expression)
        except ConditionError as exc:
            errors.append(JourneyError(name, line_of(lines, path), str(exc)))
    for i, step in enumerate(journey.steps):
        if step.action is not None:
            try:
                payloads[step.id] = compile_payload(step.action.payload)
            except ConditionError as exc:
                payload_path = ("steps", i, "action", "payload")
                where = _payload_path(step.action.payload, exc.expression, payload_path) or payload_path
                errors.append(JourneyError(name, line_of(lines, where), str(exc)))
    return conditions, payloads, errors
