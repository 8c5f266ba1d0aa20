"""Typed reading of YAML mappings: each problem becomes a JobError at ``file:line: key``."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.yamlfile import LineDict, line_of

__all__ = ["Section", "kind_of"]


class Section:
    """Reads typed fields out of one mapping and reports every problem as ``file:line: key``."""

    def __init__(self, mapping: Any, path: Path, keypath: str = "") -> None:
        self.path = path
        self.keypath = keypath
        if mapping is None:
            mapping = LineDict()
        if not isinstance(mapping, Mapping):
            raise self.error(f"must be a mapping of keys, not {kind_of(mapping)}")
        self.mapping = mapping
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.keypath}.{name}" if self.keypath else name

    def error(self, message: str, name: str | None = None) -> JobError:
        line = line_of(self.mapping, name) if hasattr(self, "mapping") else None
        return JobError(message, path=str(self.path), line=line,
                        field=self.key(name) if name else (self.keypath or None))

    def get(self, name: str, types: type | tuple[type, ...], default: Any = None,
            required: bool = False) -> Any:
        self.seen.add(name)
        if name not in self.mapping or self.mapping[name] is None:
            if required:
                typo = self.typo_of(name)
                if typo:  # "subjet:" must be reported as a typo, not as a missing "subject:"
                    raise self.error(f"unknown key; did you mean {name!r}?", typo)
                raise self.error("is required but missing", name)
            return default
        value = self.mapping[name]
        if isinstance(value, bool) and bool not in _as_tuple(types):
            raise self.error(f"must be {_names(types)}, not a boolean", name)
        if not isinstance(value, types):
            raise self.error(f"must be {_names(types)}, not {kind_of(value)}", name)
        return value

    def text(self, name: str, default: str | None = None, required: bool = False) -> Any:
        value = self.get(name, (str, int, float), default, required)
        return str(value) if value is not None else None

    def path_(self, name: str, base: Path) -> Path | None:
        value = self.text(name)
        return (base / value) if value else None

    def sub(self, name: str) -> Section:
        self.seen.add(name)
        value = self.mapping.get(name)
        return Section(value, self.path, self.key(name))

    def typo_of(self, name: str) -> str | None:
        """An unread key of this mapping that looks like a misspelling of ``name``."""
        unread = [k for k in self.mapping if k not in self.seen and isinstance(k, str)]
        close = difflib.get_close_matches(name, unread, n=1, cutoff=0.75)
        return close[0] if close else None

    def done(self) -> None:
        unknown = [k for k in self.mapping if k not in self.seen]
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise self.error(f"unknown key; check the spelling (known keys here: {known})",
                             unknown[0])


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _names(types: type | tuple[type, ...]) -> str:
    words = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping", Mapping: "a mapping"}
    return " or ".join(dict.fromkeys(words.get(t, t.__name__) for t in _as_tuple(types)))


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"a {type(value).__name__}"
