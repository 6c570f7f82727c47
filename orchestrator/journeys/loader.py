"""Journey files -> compiled journeys, or a list of errors that each name file and line."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from difflib import get_close_matches
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import CliError
from orchestrator.journeys import graph, probe
from orchestrator.journeys.conditions import (
    Condition,
    ConditionError,
    Template,
    check_boolean,
    check_names,
    compile_payload,
    templates_in,
)
from orchestrator.journeys.model import Journey, Migration, Step, expand_shorthands
from orchestrator.journeys.yamlines import YamlError, line_of, load_with_lines, load_with_problems
from schemas.events import KNOWN_EVENT_TYPES


@dataclass(frozen=True)
class JourneyError:
    """An error, or with ``warning`` something that may be right (it refuses nothing)."""

    file: str
    line: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file  # line 0: the file as a whole
        return f"{where}: {'warning: ' if self.warning else ''}{self.message}"


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

    # Cached: the engine asks a journey its id and version about ten times per event.
    @functools.cached_property
    def id(self) -> str:
        return self.definition.id

    @functools.cached_property
    def version(self) -> int:
        return self.definition.version

    @functools.cached_property
    def first(self) -> str:
        return self.definition.steps[0].id

    def after(self, step: Step) -> str | None:
        return step.next or self.successor[step.id]


def compile_text(text: str, name: str) -> Compiled:
    """Parse, validate and compile one journey file's text; raise :class:`InvalidJourney`."""
    try:
        doc, lines, problems = load_with_problems(text)
    except YamlError as exc:
        raise InvalidJourney([JourneyError(name, exc.line, str(exc))]) from None
    errors = [JourneyError(name, problem.line, str(problem)) for problem in problems]
    if not isinstance(doc, dict):
        errors.append(JourneyError(name, 1, "a journey file is a mapping with id, version, trigger, steps"))
        raise InvalidJourney(errors)
    # Expressions, step references and migration rules are read from the mapping itself, so a
    # schema error elsewhere hides none of theirs.
    conditions, condition_errors = _compile_conditions(doc, name, lines)
    errors += condition_errors
    payloads, payload_errors = _compile_payloads(doc, name, lines)
    errors += payload_errors + _references(doc, name, lines) + _check_migrate(doc, name, lines)
    try:
        journey = Journey.model_validate(doc)
    except ValidationError as exc:
        errors += [_from_pydantic(name, lines, err, doc) for err in exc.errors()]
    if errors:
        raise InvalidJourney(sorted(errors, key=lambda e: e.line)) from None
    order = [s.id for s in journey.steps]
    return Compiled(
        definition=journey,
        source=text,
        origin=name,
        steps={s.id: s for s in journey.steps},
        successor={sid: (order[i + 1] if i + 1 < len(order) else None) for i, sid in enumerate(order)},
        conditions=conditions,
        payloads={step.id: payloads[i] for i, step in enumerate(journey.steps) if step.action is not None},
    )


def compile_file(path: Path) -> Compiled:
    """One file; what cannot be read (not a file, not UTF-8) is an error on its line, like any other."""
    return compile_text(read_text(path), str(path))


def read_text(path: Path) -> str:
    """A journey file's text; :class:`InvalidJourney` if it cannot be read or is not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidJourney([JourneyError(str(path), 0, f"cannot read it: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidJourney([JourneyError(str(path), line, f"not UTF-8 text (byte {data[exc.start]:#04x})")]) from None
    return text


@dataclass(frozen=True)
class Checked:
    """A folder after every check: the good journeys, the errors of the bad ones, and warnings
    about things that may well be right (an event type the product does not know yet)."""

    journeys: list[Compiled]
    errors: list[JourneyError]
    warnings: list[JourneyError]


def check_dir(folder: Path) -> Checked:
    """Every ``*.yaml``/``*.yml`` in ``folder`` (``.YAML`` too), compiled and then reviewed
    (see :func:`review`). Only regular files are read: a FIFO would block the read for ever,
    so anything else so named is an error that says it was not read."""
    if not folder.is_dir():
        return Checked([], [JourneyError(str(folder), 0, "no such folder")], [])
    good, errors, warnings = [], [], []
    for path in sorted(path for path in folder.iterdir() if path.suffix.lower() in (".yaml", ".yml")):
        if not path.is_file():
            errors.append(JourneyError(str(path), 0, f"cannot read it: {_not_a_file(path)}, not read"))
            continue
        journey, problems, notes = _check_file(path)
        errors.extend(problems)
        warnings.extend(notes)
        if journey is not None:
            good.append(journey)
    errors.extend(_duplicates(good))
    errors.extend(check_migrations(good, good)[0])
    return Checked(good, errors, warnings)


def _check_file(path: Path) -> tuple[Compiled | None, list[JourneyError], list[JourneyError]]:
    """One file: the journey if it is good, and all its errors and warnings. A file the schema
    refuses is still reviewed as far as it can be (:func:`review_invalid`)."""
    try:
        text = read_text(path)
    except InvalidJourney as exc:
        return None, exc.errors, []
    try:
        journey = compile_text(text, str(path))
    except InvalidJourney as exc:
        problems, notes = review_invalid(text, str(path))
        return None, sorted([*exc.errors, *problems], key=lambda e: e.line), notes
    problems, notes = review(journey)
    return (None if problems else journey), problems, notes


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return "a folder"
    if path.is_symlink() and not path.exists():
        return "a link to nothing"
    return "not a regular file (a FIFO, a device)"


def load_dir(folder: Path) -> tuple[list[Compiled], list[JourneyError]]:
    """Every ``*.yaml``/``*.yml`` in ``folder``: the good ones and all errors of the bad ones."""
    checked = check_dir(folder)
    return checked.journeys, checked.errors


def valid_journeys(folder: Path) -> list[Compiled]:
    """Every journey in ``folder`` (a worker's ``ORCH_JOURNEYS_DIR``), or a :class:`CliError`
    naming all the errors: a worker does not start on a folder it would half run."""
    journeys, errors = load_dir(folder)
    if errors:
        raise CliError(f"journeys in {folder} are invalid:\n" + "\n".join(map(str, errors)))
    return journeys


def review(journey: Compiled) -> tuple[list[JourneyError], list[JourneyError]]:
    """What a folder being validated or published must not hold though :func:`compile_text`
    lets it through: errors in the shape of the steps (see :mod:`graph`), and warnings for
    event types the product does not know. Not part of ``compile_text``, which also reads
    journeys already published (a worker must keep running those whatever this learns to
    refuse) and whose engine stops a loop at run time anyway."""
    doc, lines = load_with_lines(journey.source)
    errors = [
        JourneyError(journey.origin, line_of(lines, problem.path), problem.message)
        for problem in graph.problems(journey.definition)
    ]
    errors += _tried_on_samples(doc, journey.origin, lines)
    return sorted(errors, key=lambda e: e.line), _unknown_event_types(doc, journey.origin, lines)


def review_invalid(text: str, name: str) -> tuple[list[JourneyError], list[JourneyError]]:
    """:func:`review` for a file :func:`compile_text` refused, as far as the rest allows: the
    event types it names, and the shape of each step the schema accepts on its own (with a
    step that fails, where it leads is unknown). When every step and migration rule passes
    and every target exists (the error is elsewhere, say in ``version``), the whole shape."""
    try:
        doc, lines, _ = load_with_problems(text)  # its problems are among compile_text's errors
    except YamlError:
        return [], []
    if not isinstance(doc, dict):
        return [], []
    doc = expand_shorthands(doc)
    steps = {i: _valid(Step, step) for i, step in _items(doc.get("steps"))}
    rules = [_valid(Migration, rule) for rule, _ in _raw_rules(doc)]
    whole = steps and None not in steps.values() and None not in rules and not _references(doc, name, lines)
    if whole:
        problems = graph.problems(_Shape(list(steps.values()), rules))
    else:
        valid = [(i, step) for i, step in steps.items() if step is not None]
        problems = [problem for i, step in valid for problem in graph.step_problems(step, i)]
    errors = [JourneyError(name, line_of(lines, problem.path), problem.message) for problem in problems]
    return errors + _tried_on_samples(doc, name, lines), _unknown_event_types(doc, name, lines)


@dataclass(frozen=True)
class _Shape:
    """The steps and migration rules of a file whose schema error is elsewhere."""

    steps: list[Step]
    migrate: list[Migration]


def _valid(model: Any, data: Any) -> Any:
    """``data`` as ``model`` (a step, a migration rule) if it is valid on its own, else None."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _tried_on_samples(doc: dict[str, Any], name: str, lines: dict[Any, int]) -> list[JourneyError]:
    """Each condition and payload template that cannot work for any customer, found by trying
    it on sample customers (see :mod:`probe`); one that does not compile is reported already."""
    trigger = _first_type(doc.get("trigger")) or "page_view"
    errors = []
    for path, expression in _conditions_in(doc):
        condition = _compiled(expression)
        event_type = _event_type_at(doc, path, trigger)
        if condition and (problem := probe.condition_problem(condition, event_type, trigger)):
            errors.append(JourneyError(name, line_of(lines, path), str(ConditionError(expression, problem))))
    for i, step in _items(doc.get("steps")):
        action = step.get("action") if isinstance(step, dict) else None
        payload = action.get("payload") if isinstance(action, dict) else None
        for path, text in _strings(payload, ("steps", i, "action", "payload")):
            template = _compiled_template(text)
            if template and (problem := probe.template_problem(template, trigger)):
                errors.append(JourneyError(name, line_of(lines, path), str(ConditionError(text, problem))))
    return errors


def _compiled(expression: str) -> Condition | None:
    """:func:`_condition`, or None where it refuses the expression (reported already)."""
    try:
        return _condition(expression)
    except ConditionError:
        return None


def _condition(expression: str) -> Condition:
    """``expression`` compiled and checked as a condition; :class:`ConditionError` if it is not one."""
    condition = Condition.compile(expression)
    check_names(expression)
    check_boolean(condition)
    return condition


def _compiled_template(text: str) -> Template | None:
    try:
        template: Template = _checked(Template.compile(text))
    except ConditionError:
        return None
    return template


def _first_type(match: Any) -> str | None:
    """The first event type a trigger, goal, exit or wait names, if it names one."""
    names = match.get("event") if isinstance(match, dict) else None
    names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
    return next((n for n in names if isinstance(n, str)), None)


def _event_type_at(doc: dict[str, Any], path: tuple[Any, ...], trigger: str) -> str | None:
    """The type of the event a condition at ``path`` is judged on: the trigger's for the trigger
    and the audience, each match's own, and None (no event in hand) for a branch case."""
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    if path[0] in ("goal", "exit_on") or path[-2:-1] == ("wait",):
        return _first_type(node) or trigger
    return None if path[0] == "steps" else trigger


def _strings(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every string in a payload, with its path."""
    if isinstance(node, str):
        yield path, node
    for key, child in node.items() if isinstance(node, dict) else _items(node):
        yield from _strings(child, (*path, key))


def _unknown_event_types(doc: Any, name: str, lines: dict[Any, int]) -> list[JourneyError]:
    """A warning for each event type named that the product does not know: a typo never
    matches, but channels may send new types, so it refuses nothing. Read from the file as
    written, so a schema error elsewhere hides none of them."""
    warnings = []
    for where, path, event_type in _event_types(doc):
        if event_type not in KNOWN_EVENT_TYPES:
            close = get_close_matches(event_type, KNOWN_EVENT_TYPES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            message = f"{_where(where)}: event type '{event_type}' is not one the product knows{hint}"
            warnings.append(JourneyError(name, line_of(lines, path), message, warning=True))
    return warnings


def _event_types(doc: Any) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...], str]]:
    """Every event type the file names: where (its ``event:``), its own path, and the type."""
    if not isinstance(doc, dict):
        return
    matches: list[tuple[tuple[Any, ...], Any]] = [(("trigger",), doc.get("trigger")), (("goal",), doc.get("goal"))]
    matches += [(("exit_on", i), match) for i, match in _items(doc.get("exit_on"))]
    matches += [
        (("steps", i, "wait"), step.get("wait")) for i, step in _items(doc.get("steps")) if isinstance(step, dict)
    ]
    for path, match in matches:
        names = match.get("event") if isinstance(match, dict) else None
        where = (*path, "event")
        if isinstance(names, str):
            yield where, where, names
        for k, event_type in _items(names):
            if isinstance(event_type, str):
                yield where, (*where, k), event_type


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
    if loc[:2] == ("migrate", 0) and isinstance(doc.get("migrate"), dict):  # one rule, written without a list
        loc = ("migrate", *loc[2:])
    where = ".".join(str(p) for p in loc) or "journey"
    message = err["msg"].removeprefix("Value error, ")
    return JourneyError(name, line_of(lines, _yaml_path(loc)), f"{where}: {message}")


def _yaml_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pydantic locations use field names; the YAML uses aliases (``for``, ``else``)."""
    return tuple({"for_": "for", "else_": "else"}.get(p, p) if isinstance(p, str) else p for p in loc)


def _items(node: Any) -> list[tuple[int, Any]]:
    return list(enumerate(node)) if isinstance(node, list) else []


def _steps(doc: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The steps written as mappings, by position, with their ids filled in as the schema does."""
    return [(i, step) for i, step in _items(expand_shorthands(doc).get("steps")) if isinstance(step, dict)]


def _references(doc: dict[str, Any], name: str, lines: dict[Any, int]) -> list[JourneyError]:
    """Every step id defined twice (at each repeat) and every target that names no step, read
    from the file as written: all of them, also beside a schema error in a step or elsewhere."""
    errors = []
    known: dict[str, int] = {}  # step id: the line it is first defined on (a dict: not quadratic)
    for i, step in _steps(doc):
        step_id = step.get("id")
        if not isinstance(step_id, str):
            continue
        line = line_of(lines, ("steps", i))
        if step_id in known:  # both lines: one of them may be a position's name, step2
            both = f"lines {known[step_id]} and {line}"
            message = f"steps.{i}: step '{step_id}' is defined twice ({both}); step ids must be unique"
            errors.append(JourneyError(name, line, message))
        else:
            known[step_id] = line
    for i, step in _steps(doc):
        for path, target in _targets(step, ("steps", i)):
            if target not in known:
                message = f"{_where(path)}: step '{step.get('id')}' goes to unknown step '{target}'"
                errors.append(JourneyError(name, line_of(lines, path), message))
    return errors


def _targets(step: dict[str, Any], path: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    """Each step a step names (``next``, a wait's outcomes, branch cases, split arms), with its path."""
    found = [((*path, "next"), step.get("next"))]
    wait = step.get("wait")
    if isinstance(wait, dict):
        found += [((*path, "wait", outcome), wait.get(outcome)) for outcome in ("on_event", "on_timeout")]
    for kind in ("branch", "split"):
        found += [
            ((*path, kind, j, "next"), item.get("next")) for j, item in _items(step.get(kind)) if isinstance(item, dict)
        ]
    return [(where, target) for where, target in found if isinstance(target, str)]


def _conditions_in(doc: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Every condition in the file with its path, read from the mapping as written (whatever
    the schema makes of the rest): trigger, goal, exit_on and wait ``when``, ``audience``, branch cases."""
    found: list[tuple[tuple[Any, ...], str]] = []

    def when(path: tuple[Any, ...], node: Any) -> None:
        if isinstance(node, dict) and isinstance(node.get("when"), str):
            found.append(((*path, "when"), node["when"]))

    when(("trigger",), doc.get("trigger"))
    when(("goal",), doc.get("goal"))
    for i, match in _items(doc.get("exit_on")):
        when(("exit_on", i), match)
    if isinstance(doc.get("audience"), str):
        found.append((("audience",), doc["audience"]))
    for i, step in _items(doc.get("steps")):
        if isinstance(step, dict):
            when(("steps", i, "wait"), step.get("wait"))
            for j, case in _items(step.get("branch")):
                when(("steps", i, "branch", j), case)
    return found


def _compile_conditions(
    doc: dict[str, Any], name: str, lines: dict[Any, int]
) -> tuple[dict[str, Condition], list[JourneyError]]:
    conditions: dict[str, Condition] = {}
    errors: list[JourneyError] = []
    for path, expression in _conditions_in(doc):
        try:
            conditions[expression] = _condition(expression)
        except ConditionError as exc:
            errors.append(JourneyError(name, line_of(lines, path), str(exc)))
    return conditions, errors


def _compile_payloads(
    doc: dict[str, Any], name: str, lines: dict[Any, int]
) -> tuple[dict[int, Any], list[JourneyError]]:
    """Each action step's payload compiled, by the step's position; every bad template is an
    error on its own line."""
    payloads: dict[int, Any] = {}
    errors: list[JourneyError] = []
    for i, step in _items(doc.get("steps")):
        action = step.get("action") if isinstance(step, dict) else None
        if not isinstance(action, dict):
            continue
        payload = action.get("payload", {})
        try:
            payloads[i] = _checked(compile_payload(payload))
        except ConditionError:
            for path, exc in _bad_templates(payload, ("steps", i, "action", "payload")):
                errors.append(JourneyError(name, line_of(lines, path), str(exc)))
    return payloads, errors


def _checked(payload: Any) -> Any:
    """A compiled payload whose templates name only what exists; ConditionError otherwise."""
    for template in templates_in(payload):
        for part in template.parts:
            check_names(part.expression)
    return payload


def _bad_templates(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], ConditionError]]:
    """The path and error of every string in a payload that is not a good template."""
    for where, text in _strings(node, path):
        try:
            _checked(compile_payload(text))
        except ConditionError as exc:
            yield where, exc


# -- migration rules -------------------------------------------------------------------------------


def _migrate_paths(doc: dict[str, Any], journey: Journey) -> list[tuple[Any, ...]]:
    """Where each migration rule is in the file: ``migrate`` itself when it is one mapping."""
    if isinstance(doc.get("migrate"), dict):
        return [("migrate",)]
    return [("migrate", i) for i in range(len(journey.migrate))]


def _where(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def _raw_rules(doc: dict[str, Any]) -> list[tuple[Any, tuple[Any, ...]]]:
    """Each migration rule as written, with its path: ``migrate`` itself when it is one mapping."""
    rules = doc.get("migrate")
    if isinstance(rules, dict):
        return [(rules, ("migrate",))]
    return [(rule, ("migrate", i)) for i, rule in _items(rules)]


def _check_migrate(doc: dict[str, Any], name: str, lines: dict[Any, int]) -> list[JourneyError]:
    """What a migration rule can get wrong on its own: versions that are not older than this
    one or named twice, ``from: all`` on a first version, new steps that do not exist. Each
    rule the schema accepts on its own is checked, whatever the rest of the file holds;
    without a valid ``version`` there is nothing to check them against."""
    version = doc.get("version")
    if type(version) is not int or version < 1:
        return []
    errors: list[JourneyError] = []

    def error(path: tuple[Any, ...], message: str) -> None:
        errors.append(JourneyError(name, line_of(lines, path), f"{_where(path)}: {message}"))

    named: set[int] = set()
    seen_all = False
    step_ids = {step.get("id") for _, step in _steps(doc)}
    for raw, path in _raw_rules(doc):
        rule = _valid(Migration, raw)
        if rule is None:
            continue
        if rule.from_ == "all":
            if version == 1:
                error((*path, "from"), "version 1 has no older versions to migrate from")
            if seen_all:
                error((*path, "from"), "only one migration rule can say 'from: all'")
            seen_all = True
        else:
            mine: set[int] = set()
            for k, older in enumerate(rule.from_):
                where = (*path, "from", k)
                if older in mine:
                    error(where, f"version {older} is named twice")
                    continue
                mine.add(older)
                if older >= version:
                    newer = "customers only move to a newer version"
                    error(where, f"version {older} is not older than this one ({version}): {newer}")
                elif older in named:
                    error(where, f"version {older} is named by more than one migration rule")
                named.add(older)
        for old, new in rule.steps.items():
            if new not in step_ids:
                error((*path, "steps", old), f"goes to unknown step '{new}', which version {version} lacks")
    return errors


def check_migrations(
    journeys: Iterable[Compiled], known: Iterable[Compiled]
) -> tuple[list[JourneyError], list[JourneyError]]:
    """Each journey's migration rules against the older versions in ``known``: errors for old
    steps that no version a rule takes has (a typo), or that are not waits there (customers
    only ever rest at a wait, so another step never moves anyone). A rule is checked only when
    every version it takes is known (for ``from: all``, every older number); otherwise a note
    says which are not, since a step may be in one of those."""
    pool: dict[str, dict[int, Compiled]] = {}
    for journey in known:
        pool.setdefault(journey.id, {})[journey.version] = journey
    errors: list[JourneyError] = []
    notes: list[JourneyError] = []
    for journey in journeys:
        if not journey.definition.migrate:
            continue
        doc, lines = load_with_lines(journey.source)
        older = {v: j for v, j in pool.get(journey.id, {}).items() if v < journey.version}
        named = {v for rule in journey.definition.migrate if isinstance(rule.from_, list) for v in rule.from_}
        paths = _migrate_paths(doc, journey.definition)
        for rule, path in zip(journey.definition.migrate, paths, strict=True):
            if isinstance(rule.from_, list):
                takes = sorted({v for v in rule.from_ if v < journey.version})
                missing = [v for v in takes if v not in older]
                unknown = len(missing)
            else:  # every older version by number, known or not, that no other rule names
                takes = sorted(v for v in older if v not in named)
                gaps = (v for v in range(1, journey.version) if v not in older and v not in named)
                missing = list(islice(gaps, 10))  # the version may be huge: never walk every number
                unknown = journey.version - 1 - len(set(older) | {v for v in named if v < journey.version})
            if unknown:
                where = (*path, "from")
                more = f" and {unknown - 10} more" if unknown > 10 else ""
                listed = ", ".join(map(str, missing[:10])) + more
                which = f"version {listed} is" if unknown == 1 else f"versions {listed} are"
                message = f"{_where(where)}: old steps are not checked: {which} not known here"
                notes.append(JourneyError(journey.origin, line_of(lines, where), message))
            elif takes:
                errors += _check_old_steps(journey, rule, path, lines, [older[v] for v in takes])
    return errors, notes


def _check_old_steps(
    journey: Compiled, rule: Migration, path: tuple[Any, ...], lines: dict[Any, int], sources: list[Compiled]
) -> list[JourneyError]:
    errors = []
    versions = " or ".join(str(s.version) for s in sources)
    for old in rule.steps:
        where = (*path, "steps", old)
        found = [s.steps[old] for s in sources if old in s.steps]
        if any(step.wait is not None for step in found):
            continue
        if found:
            message = (
                f"step '{old}' of version {versions} is a{'n' if found[0].kind[0] in 'aeiou' else ''} "
                f"{found[0].kind} step; customers only ever rest at a wait, so only a wait can be migrated from"
            )
        else:
            message = f"no step '{old}' in version {versions}"
        errors.append(JourneyError(journey.origin, line_of(lines, where), f"{_where(where)}: {message}"))
    return errors
