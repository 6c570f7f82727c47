"""Load YAML and remember the line of every node, so errors can say where they are."""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]


class YamlError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def load_with_lines(text: str) -> tuple[Any, dict[Path, int]]:
    """The document as plain Python, and ``{path: line}`` for each value in it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Path, int] = {}
        return _walk(loader, node, (), lines), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError((mark.line + 1) if mark else 1, f"not valid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = _walk(loader, value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, child, (*path, i), lines) for i, child in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest ancestor that has one."""
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)
