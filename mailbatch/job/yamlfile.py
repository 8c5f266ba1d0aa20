"""YAML loading that keeps line numbers, so every error can point at ``path:line``, and bounds
what a file can make it build: nesting depth, alias expansion ("billion laughs"), numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mailbatch.errors import JobError
from mailbatch.job.regularfiles import refuse_special

__all__ = ["MAX_ALIAS_NODES", "MAX_DEPTH", "LineDict", "LineList", "line_of", "load_yaml",
           "unicode_text"]

MAX_DEPTH = 100  # mappings and lists inside each other; a job or data file needs a handful
# Nodes that aliases may add beyond the document's own (each ``*name`` counts the whole value
# it repeats): room for ``<<: *defaults`` in every recipient, nothing like a billion laughs.
MAX_ALIAS_NODES = 100_000


class LineDict(dict[Any, Any]):  # keys are text: the loader makes them so
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    """A sequence that remembers its line and each item's line (1-based)."""

    line: int = 0
    item_lines: list[int]


class _Refused(yaml.MarkedYAMLError):
    """Raised for valid YAML that the loader will not build (too deep, too many aliases...)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that records marks, refuses duplicate keys (a silent override hides typos)
    and bounds the document it builds: nesting depth and the nodes aliases repeat, counted
    while composing, before anything is constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0  # nodes written in the document
        self._expanded = 0  # nodes added by aliases, each counted as the value it repeats
        self._sizes: dict[int, int] = {}  # id(node) -> nodes in it, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            node = super().compose_node(parent, index)
            assert node is not None  # an alias event always composes a node
            size = self._sizes.get(id(node))
            if size is None:  # the alias is inside the value it names
                raise _Refused(None, None, "an alias inside the value it refers "
                                           "to (a recursive structure) is not supported", mark)
            self._expanded += size
            if self._expanded > MAX_ALIAS_NODES + self._nodes:
                raise _Refused(None, None, "aliases (*name) expand to more than "
                                           f"{MAX_ALIAS_NODES:,} values; write the values out "
                                           "or use fewer aliases", mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep",
                           self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        before = self._nodes + self._expanded
        node = super().compose_node(parent, index)
        assert node is not None  # called only where an event starts a node
        self._depth -= 1
        self._nodes += 1
        self._sizes[id(node)] = self._nodes + self._expanded - before
        return node

    def construct_scalar(self, node: yaml.ScalarNode | yaml.MappingNode) -> Any:
        value = super().construct_scalar(node)
        if isinstance(value, str) and not value.isascii():
            text = unicode_text(value)
            if text is None:
                raise _Refused(None, None, "an escape such as \\ud800 makes a lone surrogate, "
                               "which is not a character; write the character itself",
                               node.start_mark)
            return text
        return value

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:  # 2024-02-30, an int of 5,000 digits
            problem = ("a number too large to read" if "digits" in str(err) else
                       f"cannot read this value ({err})")
            raise _Refused(None, None, problem, node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        # A merge (<<: *defaults) puts the merged pairs first; a key written in the mapping
        # itself overrides them, as YAML says. Only a key written twice is a duplicate.
        written = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        self.flatten_mapping(node)
        merged = len(node.value) - written
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        explicit: set[str] = set()
        for i, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if i >= merged:
                if key in explicit:
                    raise yaml.MarkedYAMLError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                explicit.add(key)
            # Merged pairs come in the order that makes a later one win (<<: [*a, *b]: a's).
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
    refuse_special(path)
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
    except _Refused as err:
        mark = err.problem_mark
        assert mark is not None  # every refusal is raised with its mark
        raise JobError(f"{err.problem} (column {mark.column + 1})", path=str(path),
                       line=mark.line + 1) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        line = mark.line + 1 if mark else None
        column = f", column {mark.column + 1}" if mark else ""
        raise JobError(f"YAML syntax error{column}: {problem}; fix the YAML syntax there",
                       path=str(path), line=line) from None
    except yaml.reader.ReaderError as err:  # a control character: shown by its code only
        code = err.character if isinstance(err.character, int) else ord(err.character or "?")
        line = text.count("\n", 0, err.position) + 1
        raise JobError(f"YAML cannot contain the character U+{code:04X}; remove it",
                       path=str(path), line=line) from None
    except yaml.YAMLError as err:
        raise JobError(f"YAML error: {err}", path=str(path)) from None


def unicode_text(text: str) -> str | None:
    """``text`` as valid Unicode: escaped surrogate pairs (``"\\ud83d\\ude00"``, which YAML
    leaves as two halves) joined into their character; None if a lone half remains, which
    no UTF-8 file, header or terminal can hold."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        joined.encode("utf-8")
        return joined
    except UnicodeError:
        return None


def line_of(container: Any, key: str | int | None = None) -> int | None:
    """The line of ``container[key]`` (or of the container) if the loader recorded it."""
    if key is None:
        return getattr(container, "line", None) or None
    if isinstance(container, LineDict):
        lines = getattr(container, "key_lines", {})  # a LineDict made empty by the model
        return lines.get(str(key)) or container.line or None
    if isinstance(container, LineList) and isinstance(key, int) and key < len(container.item_lines):
        return container.item_lines[key]
    return getattr(container, "line", None) or None
