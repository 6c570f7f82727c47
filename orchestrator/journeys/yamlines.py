"""Load YAML and remember the line of every node, so errors can say where they are."""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from orchestrator.ingest import has_lone_surrogate

Path = tuple[str | int, ...]


class YamlError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


MAX_BYTES = 256 * 1024
MAX_DEPTH = 32
PLAIN = (str, int, float, bool, type(None))  # what JSON, msgpack and CEL all carry
_LONE_SURROGATE = (
    "text with a lone surrogate (an escape like \\ud800, half of a character) cannot be sent: write the whole character"
)
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_NUMBERS = (_INT, _FLOAT)
_DIGITS = list("-+0123456789")
# YAML 1.2's core schema, the one JSON agrees with, in place of PyYAML's YAML 1.1 rules
# (tag, pattern, the characters a match can start with).
_CORE_SCHEMA = (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", _DIGITS),
    (_FLOAT, r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", [*_DIGITS, "."]),
    (_FLOAT, r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", ["-", "+", "."]),
)


class _Alias(yaml.ScalarNode):
    """Where a ``*name`` is written. PyYAML hands back the anchored node itself, whose line
    is the anchor's, so an error would point at the ``&name`` instead of the alias."""


class JourneyLoader(yaml.SafeLoader):
    """The safe loader, reading unquoted scalars as YAML 1.2 and JSON do. YAML 1.1, PyYAML's
    default, surprises in ways a marketer never sees coming: ``country: NO`` is false,
    ``opt_in: yes`` true, ``code: 017`` the octal 15, ``2024-01-01`` a date (which no command
    or state can carry), ``10:00`` the base-60 number 600, and ``1e3`` text. Here ``NO``,
    ``yes``, ``on``, dates and times stay text, ``017`` is 17 (``0o17`` is octal, ``0x1f``
    hex) and ``1e3`` is 1000.0."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, Any]]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """An alias as its own node on its own line, never the anchored node again: nothing is
        shared, so neither a recursive alias nor a "billion laughs" can be expanded."""
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event = self.get_event()
        if event.anchor not in self.anchors:
            raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
        return _Alias("tag:yaml.org,2002:null", "", event.start_mark, event.end_mark)

    def construct_core_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)  # leading zeros are decimal, as in YAML 1.2 (YAML 1.1: octal)


for _tag, _pattern, _first in _CORE_SCHEMA:
    JourneyLoader.add_implicit_resolver(_tag, re.compile(_pattern), _first)
JourneyLoader.add_constructor(_INT, JourneyLoader.construct_core_int)


def load_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """The document as plain Python, and ``{path: line}`` for each value in it; the first
    problem :func:`load_with_problems` finds is raised."""
    doc, lines, problems = load_with_problems(text)
    if problems:
        raise problems[0]
    return doc, lines


def load_with_problems(text: str) -> tuple[Any, dict[Path, int], list[YamlError]]:
    """The document as plain Python, ``{path: line}`` for each value in it, and the problems
    that leave the rest readable, so that every one is reported along with the file's other
    errors: a key written twice (the first is kept) and an alias (read as null).

    Journey files are small and flat, so anything else is refused with a line
    number instead of being allowed to eat the stack or the CPU: aliases
    (``&``/``*``, the "billion laughs"), nesting deeper than 32, keys that are
    not scalars or appear twice in a mapping, files over 256 KiB. What leaves
    nothing readable (bad syntax, the size, the depth) is raised.
    """
    if len(text.encode()) > MAX_BYTES:
        raise YamlError(1, f"the file is larger than {MAX_BYTES // 1024} KiB")
    try:
        loader = JourneyLoader(text)  # its reader refuses control characters already here
    except yaml.reader.ReaderError as exc:
        raise _unreadable(text, exc) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        lines: dict[Path, int] = {}
        problems: list[YamlError] = []
        return _walk(loader, node, (), lines, problems), lines, problems
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError((mark.line + 1) if mark else 1, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:
        raise _unreadable(text, exc) from None
    except RecursionError:
        raise YamlError(1, "nested too deeply") from None
    finally:
        loader.dispose()


def _unreadable(text: str, exc: yaml.reader.ReaderError) -> YamlError:
    """A character YAML does not allow (a control character, U+FFFE), on its line."""
    line = text.count("\n", 0, exc.position) + 1
    return YamlError(line, f"not valid YAML: unacceptable character #x{exc.character:04x}")


def _walk(loader: JourneyLoader, node: yaml.Node, path: Path, lines: dict[Path, int], problems: list[YamlError]) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, _Alias):
        problems.append(YamlError(line, "aliases (& and *) are not supported in journey files"))
        return None
    if len(path) > MAX_DEPTH:
        raise YamlError(line, f"nested deeper than {MAX_DEPTH} levels")
    lines[path] = line
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        written: dict[Any, str] = {}  # each key as the file spells it: 1 and true are one key once read
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(key_line, "keys must be plain names, not lists or maps")
            key = _scalar(loader, key_node, key_line)
            if key in out:  # YAML would keep the last silently, hiding the first
                problems.append(YamlError(key_line, _twice(written[key], key_node.value)))
                continue
            written[key] = key_node.value
            out[key] = _walk(loader, value_node, (*path, key), lines, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, child, (*path, i), lines, problems) for i, child in enumerate(node.value)]
    return _scalar(loader, node, line)


def _scalar(loader: JourneyLoader, node: yaml.Node, line: int) -> Any:
    """A scalar that JSON, msgpack and CEL can all carry as it is, or a :class:`YamlError`:
    commands carry journey values to channels as msgpack or JSON, which have no NaN or
    infinity, no text with a lone surrogate, and no integer beyond 64 bits."""
    try:
        value = loader.construct_object(node, deep=True)
    except ValueError as exc:  # an integer of thousands of digits (Python refuses to read it), a 13th month
        raise YamlError(line, _too_large(node.value) if node.tag in _NUMBERS else f"not valid YAML: {exc}") from None
    if type(value) not in PLAIN:  # !!binary, !!timestamp: nothing downstream can carry them
        kind = node.tag.rsplit(":", 1)[-1]
        raise YamlError(
            line, f"a {kind} value cannot go into a journey (only text, numbers, true/false and null): quote it"
        )
    if type(value) is int and not -(2**63) <= value < 2**63:
        raise YamlError(line, _too_large(node.value))
    if type(value) is float and not math.isfinite(value):
        raise YamlError(line, f"{node.value} is not a number JSON can carry: quote it, or use a number")
    if type(value) is str and has_lone_surrogate(value):
        raise YamlError(line, _LONE_SURROGATE)
    return value


def _twice(first: str, again: str) -> str:
    if first == again:
        return f"key {again!r} appears twice"
    return f"key {again!r} is the same key as {first!r} once read: quote one of them"


def _too_large(written: str) -> str:
    number = written if len(written) <= 24 else f"{written[:24]}…"
    return f"the number {number} is too large for a journey (beyond 2^63): quote it"


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor that has one."""
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)
