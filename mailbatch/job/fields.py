"""Typed reading of YAML mappings: each problem becomes a JobError at ``file:line: key``."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.yamlfile import LineDict, line_of

__all__ = ["Section", "batch_problem", "kind_of", "path_problem", "place_problem"]

MAX_NAME = 255  # bytes in one file name (NAME_MAX on Linux, macOS and the BSDs)
MAX_PATH = 4095  # bytes in a whole path (PATH_MAX less its NUL)


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot be a path, if it cannot: a NUL character, a name or a whole path too
    long for any file system. (Left unchecked, the first use of such a path is a crash.)"""
    if "\0" in text:
        return "it contains a NUL character"
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return "it contains a character that is not valid Unicode"
    if len(data) > MAX_PATH:
        return f"it is longer than {MAX_PATH} bytes"
    if any(len(part) > MAX_NAME for part in data.split(b"/")):
        return f"it has a name longer than {MAX_NAME} bytes"
    return None


def place_problem(name: str, text: str) -> str | None:
    """Why a rendered ``report`` or ``outbox`` cannot be where its files go: an empty one
    would put them beside the job's folder or into it, and a report prefix must end in a
    name (``.json`` and ``.csv`` are added to it), not in ``/``, ``.`` or ``..``."""
    if name not in ("report", "outbox"):
        return None
    if not text.strip():
        return "it is empty"
    if name == "report" and (text.endswith(("/", "\\")) or Path(text).name in ("", ".", "..")):
        return "it names a folder, not a file name to add .json and .csv to"
    return None


def batch_problem(name: str) -> str | None:
    """Why a rendered ``batch`` cannot name a batch: the journal tells batches apart by it,
    and the report's and the outbox's names hold it, so it must be one file name's worth."""
    if not name:
        return "renders to nothing; a batch needs a name such as '{{ today }}' or '{{ iso_week }}'"
    odd = next((c for c in name if c in "/\\" or not c.isprintable()), None)
    if odd is not None or name in (".", ".."):
        shown = repr(odd) if odd is not None else repr(name)
        return (f"renders to {name!r}, and {shown} cannot be part of a batch name (it goes into "
                "the report's and the outbox's file names); write '-' instead, e.g. "
                "\"{{ now.strftime('%Y-%m') }}\"")
    return None


class Section:
    """Reads typed fields out of one mapping and reports every problem as ``file:line: key``."""

    def __init__(self, mapping: Any, path: Path, keypath: str = "",
                 line: int | None = None) -> None:
        self.path = path
        self.keypath = keypath
        self.line = line  # where the key of this mapping is, in its parent
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
        if line is None:
            line = self.line
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
            raise self.error(f"must be {_names(types)}, not {kind_of(value)}"
                             f"{_number_hint(value, types)}", name)
        return value

    def text(self, name: str, default: str | None = None, required: bool = False) -> Any:
        value = self.get(name, (str, int, float), default, required)
        return str(value) if value is not None else None

    def number(self, name: str, default: float | None, low: float, high: float, *,
               whole: bool = False, unit: str = "") -> Any:
        """A number within ``low``..``high``: a setting where infinity, NaN or a number of
        5,000 digits is never meant (and would crash or hang a socket, a sleep, a loop)."""
        value = self.get(name, int if whole else (int, float), default)
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(f"must be a finite number, not {value}", name)
        if not low <= value <= high:
            shown = f"{value}" if abs(value) < 10**15 else "a number that large"
            raise self.error(f"must be between {low:g} and {high:g}{unit}, not {shown}", name)
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        """Text or a list of texts (cc: one address or several)."""
        value = self.get(name, (str, list), [])
        items = [value] if isinstance(value, str) else value
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise JobError(f"must be text, not {kind_of(item)}", path=str(self.path),
                               line=line_of(value, i), field=f"{self.key(name)}[{i}]")
        return tuple(str(item) for item in items)

    def path_(self, name: str, base: Path) -> Path | None:
        value = self.text(name)
        return self.checked_path(name, value, base) if value else None

    def checked_path(self, name: str, value: str, base: Path) -> Path:
        """``base / value``, refused at the key if no file system could open it."""
        problem = path_problem(value)
        if problem:
            raise self.error(f"is not a usable path: {problem}", name)
        return base / value

    def sub(self, name: str, required: bool = False) -> Section:
        if required:
            self.get(name, Mapping, required=True)
        self.seen.add(name)
        value = self.mapping.get(name)
        return Section(value, self.path, self.key(name), line_of(self.mapping, name))

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
    if float in _as_tuple(types):  # "a whole number or a number" says less than "a number"
        words[int] = "a number"
    return " or ".join(dict.fromkeys(words.get(t, t.__name__) for t in _as_tuple(types)))


def _number_hint(value: Any, types: type | tuple[type, ...]) -> str:
    """Why "1e-3" or "30s" is text: YAML 1.1 reads a number only without a unit, and an
    exponent only after a dot and with a sign (1.0e-3)."""
    if not isinstance(value, str) or not {int, float} & set(_as_tuple(types)):
        return ""
    try:
        float(value)
    except ValueError:
        return " (write the number alone, without a unit)" if value[:1].isdigit() else ""
    return f" ({value!r} is text to YAML; write it as plain digits, such as 0.5 or 30)"


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
