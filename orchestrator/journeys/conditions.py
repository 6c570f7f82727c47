"""CEL conditions and payload templates: a small, safe, standard language, never ``eval``.

Uses the Rust CEL implementation (package ``common-expression-language``): about
12 microseconds an evaluation, where a pure-Python one takes 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cel

TEMPLATE = re.compile(r"\{\{\s*(.+?)\s*\}\}")
STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
GLOBAL_CALL = re.compile(r"(?<![.\w])([A-Za-z_]\w*)\s*\(")
# CEL's global functions and macros; methods such as .startsWith() or .exists() follow a dot.
VARIABLES = re.compile(r"(?<![.\w])(event|state|trigger|now)\b")
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


class ConditionError(ValueError):
    """An expression failed to compile; carries the expression for the message."""

    def __init__(self, expression: str, detail: str) -> None:
        super().__init__(f"{detail} in expression {expression!r}")
        self.expression = expression


@dataclass(frozen=True)
class Condition:
    """A compiled CEL expression over ``event``, ``state``, ``trigger`` and ``now``."""

    expression: str
    program: Any
    names: frozenset[str] = frozenset({"event", "state", "trigger", "now"})

    @classmethod
    def compile(cls, expression: str) -> Condition:
        try:
            program = cel.compile(expression)
        except (ValueError, RuntimeError) as exc:
            first = str(exc).splitlines()[0]
            raise ConditionError(expression, first.split(": ERROR: ")[-1]) from None
        code = STRINGS.sub('""', expression)
        unknown = sorted(set(GLOBAL_CALL.findall(code)) - CEL_FUNCTIONS)
        if unknown:
            raise ConditionError(expression, f"unknown function {', '.join(unknown)}")
        return cls(expression, program, frozenset(VARIABLES.findall(code)))

    def value(self, context: Mapping[str, Any]) -> Any:
        """The expression's value; raises on a runtime error such as a missing field.

        Only the variables the expression names are handed over: converting a
        whole customer profile into CEL values on every call costs ten times more
        than evaluating the expression.
        """
        return self.program.execute({name: context[name] for name in self.names})

    def holds(self, context: Mapping[str, Any]) -> bool:
        """True only for a boolean true; a runtime error raises so the caller can count it."""
        return self.value(context) is True


@dataclass(frozen=True)
class Template:
    """A payload value: ``"{{ expr }}"`` is the expression's value, ``"a {{ x }} b"`` text."""

    text: str
    parts: tuple[Condition, ...]

    @classmethod
    def compile(cls, text: str) -> Template:
        return cls(text, tuple(Condition.compile(expr) for expr in TEMPLATE.findall(text)))

    def render(self, context: Mapping[str, Any]) -> Any:
        if not self.parts:
            return self.text
        whole = TEMPLATE.fullmatch(self.text.strip())
        if whole and len(self.parts) == 1:
            return self.parts[0].value(context)
        values = iter(self.parts)
        return TEMPLATE.sub(lambda _m: str(next(values).value(context)), self.text)


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
    if isinstance(payload, Template):
        return payload.render(context)
    if isinstance(payload, dict):
        return {k: render_payload(v, context) for k, v in payload.items()}
    if isinstance(payload, list):
        return [render_payload(v, context) for v in payload]
    return payload
