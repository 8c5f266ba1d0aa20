"""YAML loading that keeps line numbers, so every error can point at ``path:line``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mailbatch.errors import JobError

__all__ = ["LineDict", "LineList", "line_of", "load_yaml"]


class LineDict(dict):
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list):
    """A sequence that remembers its line and each item's line (1-based)."""

    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that records marks and refuses duplicate keys (a silent override hides typos)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        self.flatten_mapping(node)
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                raise yaml.MarkedYAMLError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        result = LineList(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file; syntax errors become a JobError at ``path:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobError("file not found; check the path", path=str(path)) from None
    except UnicodeDecodeError as err:
        raise JobError(f"not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8",
                       path=str(path)) from None
    except OSError as err:
        raise JobError(f"cannot read: {err.strerror}", path=str(path)) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        line = mark.line + 1 if mark else None
        column = f", column {mark.column + 1}" if mark else ""
        raise JobError(f"YAML syntax error{column}: {problem}; fix the YAML syntax there",
                       path=str(path), line=line) from None
    except yaml.YAMLError as err:
        raise JobError(f"YAML error: {err}", path=str(path)) from None


def line_of(container: Any, key: str | int | None = None) -> int | None:
    """The line of ``container[key]`` (or of the container) if the loader recorded it."""
    if key is None:
        return getattr(container, "line", None) or None
    if isinstance(container, LineDict):
        return container.key_lines.get(str(key)) or container.line or None
    if isinstance(container, LineList) and isinstance(key, int) and key < len(container.item_lines):
        return container.item_lines[key]
    return getattr(container, "line", None) or None
