"""Recipients: ``iter_recipients(job)`` streams them from an inline list or a CSV, YAML, JSON file.

CSV files are read row by row, so a batch of any size costs the same memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.fileformats import csv_records, header_problem, load_json
from mailbatch.job.model import Job, RecipientSource
from mailbatch.job.yamlfile import line_of, load_yaml

__all__ = ["Recipient", "duplicate_failure", "iter_recipients"]

@dataclass(frozen=True)
class Recipient:
    """One row of the recipient list; ``where`` says where it came from, for error messages."""

    index: int
    address: str
    name: str
    fields: Mapping[str, Any]
    where: str

    @property
    def key(self) -> str:
        """The journal identity: the address, case-folded (the domain part is case-insensitive)."""
        return self.address.lower()


def duplicate_failure(recipient: Recipient, earlier: str) -> str:
    """The failure line for a recipient listed again; merging silently would hide the mistake."""
    return (f"{recipient.where}: {recipient.address} is listed twice (first at {earlier}); "
            "remove one of them")


def iter_recipients(job: Job) -> Iterator[Recipient]:
    """Yield each recipient in order; bad rows raise JobError naming the file and row."""
    source = job.recipients
    if source.inline is not None:
        yield from _from_mappings(source.inline, source, str(job.path), line_of)
        return
    assert source.path is not None
    suffix = source.path.suffix.lower()
    if suffix == ".csv":
        yield from _from_csv(source)
    elif suffix in (".yaml", ".yml"):
        yield from _from_mappings(_listed(load_yaml(source.path), source.path), source,
                                  str(source.path), line_of)
    elif suffix == ".json":
        yield from _from_mappings(_listed(load_json(source.path, "recipients file"),
                                          source.path), source,
                                  str(source.path), None)
    else:
        raise JobError("recipients file must end in .csv, .yaml, .yml or .json",
                       path=str(job.path), field="recipients")


def _recipient(index: int, fields: Mapping[str, Any], source: RecipientSource,
               where: str) -> Recipient:
    address = fields.get(source.address_field)
    if address is None or str(address).strip() == "":
        raise JobError(f"has no {source.address_field!r} value; every recipient needs an "
                       "address", path=where)
    address = str(address).strip()
    name = str(fields.get(source.name_field) or "").strip()
    return Recipient(index=index, address=address, name=name, fields=dict(fields), where=where)


def _from_mappings(items: list, source: RecipientSource, path: str, lines: Any) -> Iterator[
        Recipient]:
    if not items:
        raise JobError("the recipient list is empty; add at least one recipient", path=path)
    for i, item in enumerate(items):
        # The job model keeps inline lists as tuples; each mapping still knows its own line.
        line = (lines(items, i) or lines(item)) if lines else None
        where = f"{path}:{line}" if line else f"{path}: recipient {i + 1}"
        if not isinstance(item, Mapping):
            raise JobError(f"recipient must be a mapping with an {source.address_field!r} key",
                           path=where)
        problem = header_problem(list(item), "key")
        if problem:
            raise JobError(problem, path=where)
        yield _recipient(i, item, source, where)


def _listed(value: Any, path: Path) -> list:
    if isinstance(value, Mapping) and isinstance(value.get("recipients"), list):
        value = value["recipients"]
    if not isinstance(value, list):
        raise JobError("must hold a list of recipients (or a 'recipients:' list)", path=str(path))
    return value


def _from_csv(source: RecipientSource) -> Iterator[Recipient]:
    path = source.path
    assert path is not None
    try:
        file = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise JobError("recipients file not found; check the recipients path",
                       path=str(path)) from None
    except OSError as err:
        raise JobError(f"cannot read: {err.strerror}", path=str(path)) from None
    with file:
        try:
            count = 0
            for count, (line, row) in enumerate(csv_records(file, path, empty=(
                    "the recipients file is empty; it needs a header row and at least one "
                    "recipient")), start=1):
                if count == 1 and source.address_field not in row:
                    raise JobError(f"has no {source.address_field!r} column (columns: "
                                   f"{', '.join(row)}); add it or set recipients.address_field",
                                   path=str(path), line=1)
                yield _recipient(count - 1, row, source, f"{path}:{line}")
            if count == 0:
                raise JobError("the recipients file has a header but no recipients",
                               path=str(path))
        except UnicodeDecodeError as err:
            line, column = _bad_byte(path)
            raise JobError(f"not UTF-8 ({err.reason} at column {column}); save the file as "
                           "UTF-8", path=str(path), line=line) from None


def _bad_byte(path: Path) -> tuple[int | None, int | None]:
    """Line and column of the first byte that is not UTF-8: the text reader decodes 8 KiB
    ahead, so its own position says nothing about where the bad byte was."""
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return number, err.start + 1
    return None, None
