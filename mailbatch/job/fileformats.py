"""Field names and JSON read strictly: a field named twice, a blank field name, a value nested
too deep. A later column or key silently winning once sent a message to the wrong person."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.regularfiles import refuse_special
from mailbatch.job.yamlfile import MAX_DEPTH, unicode_text

__all__ = ["header_problem", "load_json"]


def header_problem(header: Sequence[str], kind: str = "column") -> str | None:
    """What is wrong with a CSV header row (or a record's keys), if anything: a name given
    twice (the later would silently win) or a blank name. Names are compared without the
    spaces around them, which a reader does not see."""
    seen: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        key = str(name).strip()
        if not key:
            return (f"{kind} {number} has no name; name it or delete it (a value without a "
                    "name cannot be used, and may be shifted from a neighbour)")
        if key in seen:
            return (f"{kind} {number} ({name!r}) repeats {kind} {seen[key]} "
                    f"({header[seen[key] - 1]!r}); rename or remove one (which of the two "
                    "would be used is ambiguous)")
        seen[key] = number
    return None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; write it as text or leave the value out")


def load_json(path: Path, what: str = "file") -> Any:
    """Parse a JSON file; every problem is a JobError at ``path:line``. Refused besides
    invalid JSON: a key repeated in one object, NaN and Infinity, nesting deeper than
    ``MAX_DEPTH``. A UTF-8 byte-order mark (Notepad writes one) is skipped, as in YAML
    and CSV files."""
    refuse_special(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise JobError(f"{what} not found; check the path", path=str(path)) from None
    except UnicodeDecodeError as err:
        raise JobError(f"not UTF-8 ({err.reason}); save it as UTF-8", path=str(path)) from None
    except OSError as err:
        raise JobError(f"cannot read: {err.strerror}", path=str(path)) from None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as err:
        raise JobError(f"invalid JSON: {err.msg} (column {err.colno})", path=str(path),
                       line=err.lineno) from None
    except _DuplicateKey as err:
        raise JobError(f"key {err.key!r} appears twice in the object that starts here; "
                       "remove one (the later would silently win)", path=str(path),
                       line=_line_of_duplicate(text)) from None
    except RecursionError:
        raise JobError(f"nested more than {MAX_DEPTH} levels deep", path=str(path)) from None
    except ValueError as err:  # an integer of 5,000 digits; NaN
        problem = "a number too large to read" if "digits" in str(err) else str(err)
        raise JobError(problem, path=str(path)) from None
    depth, lone = _walk(value)
    if depth > MAX_DEPTH:
        raise JobError(f"nested more than {MAX_DEPTH} levels deep", path=str(path))
    if lone is not None:
        escape = f"\\u{ord(lone):04x}"
        at = text.lower().find(escape)
        raise JobError(f"{escape} is half of a surrogate pair, not a character; write the "
                       "character itself (or both halves of its pair)", path=str(path),
                       line=text.count("\n", 0, at) + 1 if at >= 0 else None)
    return value


def _walk(value: Any) -> tuple[int, str | None]:
    """How deeply lists and objects nest in ``value``, and the first lone surrogate in its
    texts, if any (JSON joins escaped pairs, but lets a lone ``\\ud800`` through). Walked
    without recursion."""
    deepest, lone = 0, None
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if lone is None and not item.isascii() and unicode_text(item) is None:
                lone = next(c for c in item if 0xD800 <= ord(c) <= 0xDFFF)
            continue
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            pending.extend((child, depth + 1) for child in item)
    return deepest, lone


def _line_of_duplicate(text: str) -> int | None:
    """The line of the first repeated key: parsed again by the pure-Python decoder, which says
    where each object starts (only when there is one to find, so the fast path stays fast)."""
    decoder = json.JSONDecoder(object_pairs_hook=_pairs)
    found: list[int] = []

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> Any:
        try:
            return json.decoder.JSONObject(s_and_end, *args)  # type: ignore[attr-defined]
        except _DuplicateKey:
            if not found:
                found.append(text.count("\n", 0, s_and_end[1]) + 1)
            raise

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    with contextlib.suppress(ValueError, RecursionError):
        decoder.decode(text)
    return found[0] if found else None
