"""Recipients: ``iter_recipients(job)`` streams them from an inline list or a CSV, YAML, JSON file.

CSV files are read row by row, so a batch of any size costs the same memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbatch.errors import JobError
from mailbatch.job.addresses import AddressError, ascii_address
from mailbatch.job.csvfiles import read_csv
from mailbatch.job.fields import kind_of
from mailbatch.job.fileformats import header_problem, load_json
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
    for key in (source.address_field, source.name_field):
        value = fields.get(key)
        if isinstance(value, Mapping | list | tuple | bool):  # would travel as "{'a': 1}"
            raise JobError(f"{key}: must be text, not {kind_of(value)}; write the "
                           f"{'address' if key == source.address_field else 'name'} itself",
                           path=where)
    address = fields.get(source.address_field)
    if address is None or str(address).strip() == "":
        raise JobError(f"has no {source.address_field!r} value; every recipient needs an "
                       "address", path=where)
    address = str(address).strip()
    with contextlib.suppress(AddressError):  # the render pass says why it cannot be sent
        address = ascii_address(address)  # a domain in Unicode, as it goes over the wire
    name = str(fields.get(source.name_field) or "").strip()
    return Recipient(index=index, address=address, name=name, fields=dict(fields), where=where)


def _from_mappings(items: Sequence[Any], source: RecipientSource, path: str,
                   lines: Any) -> Iterator[Recipient]:
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


def _listed(value: Any, path: Path) -> list[Any]:
    if isinstance(value, Mapping) and isinstance(value.get("recipients"), list):
        value = value["recipients"]
    if not isinstance(value, list):
        raise JobError("must hold a list of recipients (or a 'recipients:' list)", path=str(path))
    return value


def _from_csv(source: RecipientSource) -> Iterator[Recipient]:
    path = source.path
    assert path is not None
    count = 0
    for count, (line, row) in enumerate(read_csv(
            path, source.csv, missing="recipients file not found; check the recipients path",
            empty="the recipients file is empty; it needs a header row and at least one "
                  "recipient", required=(source.address_field, "recipients.address_field")),
            start=1):
        yield _recipient(count - 1, row, source, f"{path}:{line}")
    if count == 0:
        raise JobError("the recipients file has a header but no recipients", path=str(path))
