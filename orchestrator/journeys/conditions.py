"""CEL conditions and payload templates: a small, safe, standard language, never ``eval``.

Uses the Rust CEL implementation (package ``common-expression-language``): about
12 microseconds an evaluation, where a pure-Python one takes 400. Most of that is
converting Python values into CEL ones, so an expression is handed only the fields
it reads, and its results are remembered by input (see :meth:`Condition.value`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

STRINGS = re.compile(r'(?:(?<!\w)[bBrR]{1,2})?(?:"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\')')  # b"..", r'..' too
GLOBAL_CALL = re.compile(r"(?<![.\w])([A-Za-z_]\w*)\s*\(")
# CEL's global functions and macros; methods such as .startsWith() or .exists() follow a dot.
VARIABLES = re.compile(r"(?<![.\w])(event|state|trigger|now)\b")
# ``event.properties.product``: a variable and the chain of plain field selections after it,
# and whether a call follows (then the last name is a method: ``state.cart.size()``).
CHAIN = re.compile(r"(?<![.\w])(event|state|trigger)((?:\s*\.\s*[A-Za-z_]\w*)*)(\s*\()?")
SEGMENT = re.compile(r"[A-Za-z_]\w*")
MAPS = ("event", "state", "trigger")
# A name that is not a field, a method or a call: it must be a variable, a literal or a type.
ROOT_NAME = re.compile(r"(?<![.\w])([A-Za-z_]\w*)\b(?!\s*\()")
# The variable a comprehension macro binds: ``state.cart.exists(x, x > 1)`` names ``x``.
BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
VARIABLE_NAMES = ("event", "state", "trigger", "now")
LITERALS_AND_TYPES = frozenset(
    {"true", "false", "null", "in", "int", "uint", "double", "string", "bytes", "bool", "list", "map", "type", "dyn"}
)
EVENT_FIELDS = ("event_id", "type", "channel", "ts", "properties")
STATE_FIELDS = (
    "customer_id", "stage", "events", "purchases", "revenue", "first_seen", "last_seen", "channel_counts",
    "type_counts", "cart", "cart_size", "purchased", "consent", "identifiers",
)  # fmt: skip
FIELDS = {"event": EVENT_FIELDS, "trigger": EVENT_FIELDS, "state": STATE_FIELDS}  # what each map variable holds
CEL_FUNCTIONS = frozenset(
    {
        "has",
        "size",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "duration",
        "timestamp",
        "type",
        "dyn",
        "matches",
    }
)


# Bounds on an expression, checked before CEL sees it. The Rust CEL crate recurses once per
# nested operator: evaluating about 12,500 (``1+1+…``) overflowed the stack and killed the
# process (a segfault, nothing to catch), compiling about 21,000; an error past column 65,535
# panicked. The shipped journeys' longest expression has 116 characters and 10 operators.
MAX_EXPRESSION_CHARS = 4000
MAX_OPERATORS = 300  # also bounds chains such as event.a.a.a…, which reads_of walks recursively
OPERATOR = re.compile(r"&&|\|\||[=!<>]=|[-+*/%<>!?.\[]|(?<!\w)in(?!\w)")  # in strings too: an upper bound
# Comprehensions multiply: each level runs the one inside for every element (ten times ten
# times ten … took 9 s at six levels of ten-element lists).
MAX_COMPREHENSIONS = 2
COMPREHENSION_OR_PAREN = re.compile(r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(|[()]")


class ConditionError(ValueError):
    """An expression failed to compile; carries the expression (whole) for the message
    (shortened: a long expression quoted whole would bury the error; the line finds it)."""

    def __init__(self, expression: str, detail: str) -> None:
        super().__init__(f"{_shortened(detail, 240)} in expression {_shortened(expression, 80)!r}")
        self.expression, self.detail = expression, detail


def _shortened(text: str, most: int) -> str:
    """``text``, cut to ``most`` characters with an ellipsis when it is longer."""
    return text if len(text) <= most else text[: most - 1] + "…"


# What an expression reads of a map: each field it selects, with what it reads of that
# field's value; None means the whole value (it is compared, iterated, returned, ...).
# Pairs rather than a map, so that a compiled condition stays hashable.
Reads = tuple[tuple[str, "Reads"], ...] | None


class Variables(Mapping[str, Any]):
    """A context that can hand over only the part of a variable an expression reads.

    Converting a Python map into CEL values costs far more than evaluating the
    expression, so a context that knows how to build single fields (the journey
    engine's) overrides :meth:`select` to build and convert only those.
    """

    def select(self, name: str, reads: Reads) -> Any:
        """``name``'s value, cut down to what ``reads`` names."""
        return prune(self[name], reads)


def prune(value: Any, reads: Reads) -> Any:
    """``value`` with only the fields ``reads`` names (and that ``value`` has), at every level.

    An expression that only selects fields cannot tell the difference: a field it
    selects is there exactly when it was there before, with the same value below it."""
    if reads is None or type(value) is not dict:
        return value
    return {k: value[k] if below is None else prune(value[k], below) for k, below in reads if k in value}


@dataclass(frozen=True)
class Condition:
    """A compiled CEL expression over ``event``, ``state``, ``trigger`` and ``now``.

    ``reads`` says, for each variable named, which of its fields the expression
    reads (see :func:`reads_of`).
    """

    expression: str
    program: Any
    names: frozenset[str] = frozenset({"event", "state", "trigger", "now"})
    reads: tuple[tuple[str, Reads], ...] = ()
    _memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def compile(cls, expression: str) -> Condition:
        import cel  # here, not at the top: importing it loads its own CLI's libraries (~0.2 s)

        check_cost(expression)
        try:
            program = cel.compile(expression)
        except (ValueError, RuntimeError) as exc:
            first = str(exc).splitlines()[0]
            raise ConditionError(expression, first.split(": ERROR: ")[-1]) from None
        except BaseException as exc:  # a Rust panic: BaseException, so it would pass every except Exception
            if not _panicked(exc):
                raise
            raise ConditionError(expression, f"CEL failed on it ({exc})") from None
        code = STRINGS.sub('""', expression)
        unknown = sorted(set(GLOBAL_CALL.findall(code)) - CEL_FUNCTIONS)
        if unknown:
            raise ConditionError(expression, f"unknown function {', '.join(unknown)}")
        names = frozenset(VARIABLES.findall(code))
        return cls(
            expression, program, names, tuple((name, reads_of(expression, code, name)) for name in sorted(names))
        )

    def value(self, context: Mapping[str, Any]) -> Any:
        """The expression's value; raises on a runtime error such as a missing field.

        Only the variables the expression names are handed over, and of a
        :class:`Variables` context only the fields it reads: converting a whole
        customer profile into CEL values on every call costs ten times more
        than evaluating the expression.
        """
        if isinstance(context, Variables):
            return self._memoised({name: context.select(name, reads) for name, reads in self.reads})
        return _execute(self.program, {name: context[name] for name in self.names})

    def _memoised(self, variables: dict[str, Any]) -> Any:
        """Evaluate, remembering results by the exact input.

        An expression is a pure function of its variables, the same inputs (a purchase
        count, whether an event names a product, a cart) come back all the time, and
        one evaluation costs as much as a few hundred dictionary lookups. The key is the
        input's ``repr``: for the JSON-like values a context holds (state fields, event
        properties) it is a literal that tells apart everything CEL does, types included
        (``1``, ``1.0``, ``True`` and ``'1'``). A remembered map or list is copied for
        every caller, so no two commands share a payload; errors and values other than
        JSON-like ones are not remembered.
        """
        key = repr(variables)
        memo = self._memo
        found = memo.get(key, _UNKNOWN)
        if found is not _UNKNOWN:
            return _copied(found)
        result = _execute(self.program, variables)
        try:
            kept = _copied(result)
        except TypeError:
            return result
        if len(memo) >= MEMO_MAX:
            memo.clear()
        memo[key] = kept
        return result

    def holds(self, context: Mapping[str, Any]) -> bool:
        """True or false; a runtime error, or a value that is neither, raises so the caller can count it."""
        value = self.value(context)
        if type(value) is not bool:
            raise TypeError(f"condition gave {cel_type(value)}, not bool")
        return value


def _execute(program: Any, variables: dict[str, Any]) -> Any:
    """The program's value; a panic in the Rust evaluator becomes a RuntimeError, so the engine
    counts it as a condition error like any other instead of letting it end the worker."""
    try:
        return program.execute(variables)
    except Exception:
        raise
    except BaseException as exc:
        if not _panicked(exc):
            raise
        raise RuntimeError(f"CEL failed: {exc}") from None


def _panicked(exc: BaseException) -> bool:
    """pyo3's PanicException: its module (pyo3_runtime) cannot be imported to name it."""
    return type(exc).__name__ == "PanicException"


def cel_type(value: Any) -> str:
    """The CEL name of a value's type, for messages."""
    return _CEL_TYPES.get(type(value).__name__, type(value).__name__)


_CEL_TYPES = {"float": "double", "str": "string", "dict": "map", "NoneType": "null", "datetime": "timestamp"}
_CEL_TYPES["timedelta"] = "duration"


def check_boolean(condition: Condition) -> None:
    """Refuse a condition that plainly gives something other than true or false: a bare map
    variable, or an expression over no variable at all (``"1"``, ``"'yes'"``), which is
    evaluated here. At run time such a value counts as a condition error (see ``holds``)."""
    expression = condition.expression.strip()
    if expression in MAPS or expression == "now":
        kind = "double" if expression == "now" else "map"  # now: seconds since 1970, as ts is
    elif condition.names or comprehension_depth(expression):
        return  # known only at run time (a comprehension could be slow: not run here)
    else:
        try:
            value = _execute(condition.program, {})
        except Exception:
            return  # an error at run time, counted there
        if type(value) is bool:
            return
        kind = cel_type(value)
    raise ConditionError(condition.expression, f"a condition must be true or false, this gives {kind}")


def check_cost(expression: str) -> None:
    """Refuse an expression that would crash CEL or take too long: too many characters or
    operators (see MAX_OPERATORS), or comprehensions nested deeper than MAX_COMPREHENSIONS.
    Linear in the expression's length, so that checking is never the slow part."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        detail = f"expression too long ({len(expression)} characters, at most {MAX_EXPRESSION_CHARS})"
        raise ConditionError(expression, detail)
    operators = len(OPERATOR.findall(expression))
    if operators > MAX_OPERATORS:
        raise ConditionError(expression, f"too deeply nested ({operators} operators, at most {MAX_OPERATORS})")
    depth = comprehension_depth(expression)
    if depth > MAX_COMPREHENSIONS:
        detail = f"comprehensions nested {depth} deep (at most {MAX_COMPREHENSIONS}): each level multiplies the work"
        raise ConditionError(expression, detail)


def comprehension_depth(expression: str) -> int:
    """How deep ``all``/``exists``/``exists_one``/``map``/``filter`` calls nest in ``expression``.

    Strings are blanked first; where that might go wrong (escapes, triple quotes) every
    comprehension counts as nested in the one before, which can only say more."""
    if "\\" in expression or "'''" in expression or '"""' in expression:
        return sum(1 for token in COMPREHENSION_OR_PAREN.findall(expression) if token not in "()")
    open_calls: list[bool] = []  # for each open parenthesis: does it start a comprehension?
    depth = deepest = 0
    for token in COMPREHENSION_OR_PAREN.findall(STRINGS.sub('""', expression)):
        if token == ")":
            depth -= open_calls.pop() if open_calls else 0
        else:
            open_calls.append(token != "(")
            depth += open_calls[-1]
            deepest = max(deepest, depth)
    return deepest


MEMO_MAX = 2048  # results remembered per expression; then it starts again
_UNKNOWN = object()
_SCALARS = frozenset({str, bool, int, float, type(None)})


def _copied(value: Any) -> Any:
    """A copy of a JSON-like value that shares no map or list with it; TypeError otherwise."""
    kind = type(value)
    if kind is dict:
        return {_copied(k): _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    if kind in _SCALARS:
        return value
    raise TypeError(kind)


def check_names(expression: str) -> None:
    """Refuse a name CEL would only trip over at run time (``evnt.type``, ``state.purchses``):
    in a journey a condition that fails counts as false, so a typo would quietly stop it."""
    if "'''" in expression or '"""' in expression:
        return  # where such strings end is beyond these patterns: CEL has the last word
    code = STRINGS.sub('""', expression)
    bound = set(BOUND.findall(code))
    for name in ROOT_NAME.findall(code):
        if name not in VARIABLE_NAMES and name not in LITERALS_AND_TYPES and name not in bound:
            raise ConditionError(expression, f"unknown name {name!r} (the variables are {', '.join(VARIABLE_NAMES)})")
    for variable, chain, call in CHAIN.findall(code):
        path = SEGMENT.findall(chain)
        if path and not (call and len(path) == 1) and path[0] not in FIELDS[variable]:
            known = ", ".join(FIELDS[variable])
            raise ConditionError(expression, f"{variable} has no field {path[0]!r} (it has {known})")


def reads_of(expression: str, code: str, name: str) -> Reads:
    """What ``expression`` (``code`` is it with strings blanked) reads of map variable ``name``.

    Conservative by construction: every mention of the word counts, even one after a
    dot (``event.properties.state``), and any mention that is not a plain chain of field
    selections means "the whole variable"; so does any doubt about where strings end
    (escapes, triple quotes, comments).
    """
    if name not in MAPS or "\\" in expression or "'''" in expression or '"""' in expression or "//" in code:
        return None
    mentions = len(re.findall(rf"(?<!\w){name}(?!\w)", code))
    chains = [(chain, bool(call)) for variable, chain, call in CHAIN.findall(code) if variable == name]
    if len(chains) != mentions:
        return None
    tree: dict[str, Any] = {}
    for chain, call in chains:
        path = SEGMENT.findall(chain)[: -1 if call else None]  # a call's last name is a method
        if not path:
            return None
        _add_path(tree, path)
    return _as_reads(tree)


def _add_path(tree: dict[str, Any], path: list[str]) -> None:
    """Merge one chain of selections into ``tree``; its last field is read whole (None)."""
    node = tree
    for depth, part in enumerate(path):
        if part in node and node[part] is None:
            return  # already read whole
        if depth == len(path) - 1:
            node[part] = None
            return
        node = node.setdefault(part, {})


def _as_reads(tree: dict[str, Any] | None) -> Reads:
    return None if tree is None else tuple((name, _as_reads(below)) for name, below in tree.items())


@dataclass(frozen=True)
class Template:
    """A payload value: ``"{{ expr }}"`` is the expression's value, ``"a {{ x }} b"`` text."""

    text: str
    parts: tuple[Condition, ...]
    whole: bool = False  # the text is one ``{{ expr }}`` and nothing else: its value, not text

    @classmethod
    def compile(cls, text: str) -> Template:
        spans = template_spans(text)
        parts = tuple(_template_part(expression) for _, _, expression in spans)
        lead = len(text) - len(text.lstrip())
        whole = len(spans) == 1 and spans[0][:2] == (lead, lead + len(text.strip()))  # nothing else around it
        return cls(text, parts, whole)

    def render(self, context: Mapping[str, Any]) -> Any:
        if not self.parts:
            return self.text
        if self.whole:
            return self.parts[0].value(context)
        values = iter(self.parts)
        pieces, done = [], 0
        try:
            for start, end, _ in template_spans(self.text):
                pieces += [self.text[done:start], as_text(next(values).value(context))]
                done = end
        except NotText as exc:
            raise TypeError(f"{self.text!r} gives {exc}, which text cannot show") from None
        return "".join([*pieces, self.text[done:]])


def _template_part(expression: str) -> Condition:
    """One ``{{ expr }}``'s expression compiled. A quote left open almost always means text
    holding ``}}``, which ended the template early: the error says so and how to write it."""
    try:
        return Condition.compile(expression)
    except ConditionError as exc:
        code = STRINGS.sub("", expression)  # what is left once every closed string is taken out
        if code.count("'") % 2 or code.count('"') % 2:
            hint = "; a template ends at the first }}, so write }} inside one as '}' + '}'"
            raise ConditionError(exc.expression, exc.detail + hint) from None
        raise


def template_spans(text: str) -> list[tuple[int, int, str]]:
    """Each ``{{ expr }}`` in ``text``: where it starts and ends, and its expression, stripped.

    Like the lazy regex ``\\{\\{\\s*(.+?)\\s*\\}\\}`` it replaces, the first ``}}`` after a
    ``{{`` closes it, and an expression that spans lines is no template. Linear by
    construction, where the regex took cubic time on ``{{`` and thousands of spaces: each
    search starts where the one before it stopped, and results are kept while they hold.
    """
    spans: list[tuple[int, int, str]] = []
    start, end, last, newline = text.find("{{"), -1, -1, -1
    while start != -1:
        if end < start + 2:  # else the "}}" found for an earlier "{{" still closes this one
            end = text.find("}}", start + 2)
            if end == -1:
                break
            last = end - 1  # the expression's last character: the one before the "}}" and its spaces
            while last > start + 1 and text[last].isspace():
                last -= 1
        first = start + 2
        while first <= last and text[first].isspace():
            first += 1
        if newline < first:
            found = text.find("\n", first)
            newline = len(text) if found == -1 else found
        if first < newline < last:  # spans lines: not a template; look further, as the regex did
            start = text.find("{{", start + 1)
            continue
        spans.append((start, end + 2, text[first : last + 1]))
        start = text.find("{{", end + 2)
    return spans


def templates_in(payload: Any) -> list[Template]:
    """Every template in a compiled payload tree."""
    if isinstance(payload, Template):
        return [payload]
    children = payload.values() if isinstance(payload, dict) else payload if isinstance(payload, list) else ()
    return [template for child in children for template in templates_in(child)]


def compile_payload(payload: Any) -> Any:
    """Compile every string in a payload tree into a :class:`Template`."""
    if isinstance(payload, str):
        return Template.compile(payload)
    if isinstance(payload, dict):
        return {k: compile_payload(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [compile_payload(v) for v in payload]
    return payload


def render_payload(payload: Any, context: Mapping[str, Any]) -> Any:
    """The payload with every template filled in; TypeError when a template's value is not
    plain JSON (a CEL timestamp, duration or bytes), which no command can carry."""
    if isinstance(payload, Template):
        value = payload.render(context)
        if payload.parts and (problem := _not_json(value)):  # plain text is always JSON
            raise TypeError(f"{payload.text!r} gives {problem}, which a command cannot carry")
        return value
    if isinstance(payload, dict):
        return {k: render_payload(v, context) for k, v in payload.items()}
    if isinstance(payload, list):
        return [render_payload(v, context) for v in payload]
    return payload


def _not_json(value: Any) -> str | None:
    """What in a template's value JSON cannot hold ("a timedelta", "NaN"), or None."""
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else json.dumps(value)
    if kind in _SCALARS:
        return None
    if kind is dict or kind is list:
        inside = [*value, *value.values()] if kind is dict else value
        return next((problem for item in inside if (problem := _not_json(item))), None)
    return f"a {kind.__name__}"


class NotText(TypeError):
    """A value no message should show (bytes, NaN, an infinity); says what it is."""


def as_text(value: Any) -> str:
    """How a template's value reads among other text, where a customer may read it: a string
    as it is, null as nothing, true and false, a number as JSON writes it (20.0 as 20), a list
    or a map as compact JSON, a timestamp or a duration as CEL's string() writes it. Bytes, NaN
    and the infinities raise :class:`NotText`."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    plain = _plain(value)
    return plain if type(plain) is str else json.dumps(plain, ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    """``value`` as :func:`as_text` writes it: JSON's values, timestamps and durations as text."""
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise NotText(json.dumps(value))
        return int(value) if value.is_integer() and abs(value) < 2**53 else value  # exact as an integer
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {key: _plain(item) for key, item in value.items()}
    if kind is list:
        return [_plain(item) for item in value]
    if kind is datetime or kind is timedelta:
        return _cel_string(value)
    raise NotText(f"a {kind.__name__}")


def _cel_string(value: datetime | timedelta) -> str:
    """As CEL's ``string()`` writes a timestamp or a duration (2024-01-01T09:30:00+00:00, 1h30m0s);
    a negative duration by its size, which the library gets wrong ("-1ms", not "-5124095h...")."""
    if isinstance(value, timedelta) and value < timedelta(0):
        return "-" + _cel_string(-value)
    return str(_cel_string_program().execute({"x": value}))


@functools.cache
def _cel_string_program() -> Any:
    import cel  # as in Condition.compile: loaded on first use

    return cel.compile("string(x)")
