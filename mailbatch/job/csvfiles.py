"""CSV files as spreadsheets write them: the separator, the encoding, a BOM, Excel's ``sep=``.

Excel in many locales writes ``;``-separated files in a legacy encoding such as cp1252,
sometimes with a ``sep=;`` first line; "Unicode text" is UTF-16 with a BOM and tabs. The
separator is found from the header line unless the job names it, the encoding from a BOM
unless the job names it (else UTF-8). A wrong choice is an error naming the file, never
garbled names in the mail: a row that does not split into as many values as the header is
refused, and a file that reads as UTF-8 but was declared a legacy encoding is refused too.
Rows are read one at a time, so a file of any size costs the same memory.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mailbatch.errors import JobError
from mailbatch.job.fileformats import header_problem
from mailbatch.job.regularfiles import refuse_special

__all__ = ["DELIMITERS", "CsvFormat", "check_encoding", "csv_records", "read_csv"]

DELIMITERS = (",", ";", "\t", "|")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_SEP_LINE = re.compile(r"^sep=(.)\r?\n?$")
_UNICODE = {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"}


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written; None: found from the file (header line, BOM)."""

    delimiter: str | None = None
    encoding: str | None = None


def check_encoding(name: str) -> str | None:
    """What is wrong with an encoding name, if anything (checked when the job is loaded)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        info = None
    # rot13, base64, zlib...: codecs Python knows, but not ways of writing text in bytes.
    if info is None or not getattr(info, "_is_text_encoding", True):
        return (f"unknown encoding {name!r}; use a name such as utf-8, cp1252 (Excel on "
                "Windows in western Europe) or latin-1")
    return None


def read_csv(path: Path, fmt: CsvFormat, *, missing: str, empty: str | None = None,
             required: tuple[str, str] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) for each row of the CSV file at ``path``; every problem a JobError at
    ``path:line``. ``missing`` is the message for a file that does not exist; ``required``
    a column the header must have, and the key that names it."""
    refuse_special(path)
    try:
        binary = path.open("rb")
    except FileNotFoundError:
        raise JobError(missing, path=str(path)) from None
    except OSError as err:
        raise JobError(f"cannot read: {err.strerror}", path=str(path)) from None
    with binary:
        head = binary.read(4096)
        binary.seek(0)
        bom = next((name for mark, name in _BOMS if head.startswith(mark)), None)
        if bom is None and fmt.encoding is None and b"\0" in head:
            # "e\0m\0a\0i\0l\0": no text file holds NULs, UTF-16 without its mark does
            raise JobError("holds NUL bytes: it looks like UTF-16 saved without a byte-order "
                           "mark; give encoding: utf-16-le (or save the file as UTF-8)",
                           path=str(path), line=1)
        encoding = fmt.encoding or bom or "utf-8"
        if bom == "utf-8-sig" and codecs.lookup(encoding).name == "utf-8":
            encoding = bom  # the BOM is not part of the first column's name
        watch = _Utf8Watch(binary) if codecs.lookup(encoding).name not in _UNICODE else None
        text = io.TextIOWrapper(io.BufferedReader(watch) if watch else binary,
                                encoding=encoding, newline="")
        try:
            first = text.readline()
            offset = 0
            delimiter = fmt.delimiter
            sep = _SEP_LINE.match(first)
            if sep:  # Excel's "sep=;" line names the separator of the rest
                delimiter, offset, first = delimiter or sep.group(1), 1, text.readline()
            guessed = delimiter is None
            delimiter = delimiter or _delimiter(first)
            yield from csv_records(itertools.chain([first], text), path, empty=empty,
                                   delimiter=delimiter, line_offset=offset,
                                   hint=_hint(delimiter, guessed, fmt), required=required)
        except UnicodeDecodeError as err:
            line, column = _bad_byte(path, encoding)
            shown = "UTF-8" if codecs.lookup(encoding).name.startswith("utf-8") else encoding
            at = f" at column {column}" if column else ""
            raise JobError(f"not {shown} ({err.reason}{at}); save the "
                           "file as UTF-8, or give its encoding (e.g. encoding: cp1252 for a "
                           "file saved by Excel on Windows)", path=str(path), line=line) from None
        except UnicodeError as err:  # utf-16 given for a file without its byte-order mark
            raise JobError(f"cannot be read as {encoding} ({err}); check its encoding: "
                           "setting, or save the file as UTF-8", path=str(path)) from None
        if watch is not None and watch.utf8:
            raise JobError(f"the file reads as UTF-8 text, but encoding: {fmt.encoding} is set: "
                           "its names would arrive garbled; remove the encoding setting (or "
                           "set encoding: utf-8)", path=str(path))


def csv_records(lines: IO[str] | Iterator[str], path: Path, empty: str | None = None, *,
                delimiter: str = ",", line_offset: int = 0, hint: str = "",
                required: tuple[str, str] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) for each row of CSV text, streamed; a header that repeats or omits a name
    or lacks the ``required`` (column, key naming it), or a row with more or fewer values
    than the header, is a JobError at its line (``hint`` says what to try then). A field
    larger than the csv module allows (128 KiB) is reported at the line it is on. An empty
    file yields nothing, or is the JobError ``empty``."""
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header:
            if empty:
                raise JobError(empty, path=str(path))
            return
        problem = header_problem(header)
        if not problem and required and required[0] not in header:
            problem = (f"has no {required[0]!r} column (columns: {', '.join(header)}); add it "
                       f"or set {required[1]}{hint if len(header) == 1 else ''}")
        if problem:
            raise JobError(problem, path=str(path), line=reader.line_num + line_offset)
        width = len(header)
        for row in reader:
            if not row:
                continue  # a blank line, as csv.DictReader skips it
            if len(row) != width:
                more = "more" if len(row) > width else "fewer"
                raise JobError(f"row has {more} values ({len(row)}) than the header has "
                               f"columns ({width}){hint}", path=str(path),
                               line=reader.line_num + line_offset)
            yield reader.line_num + line_offset, dict(zip(header, row, strict=True))
    except csv.Error as err:
        # The reader counts the line it was reading when it failed; DictReader would not.
        raise JobError(f"CSV error: {err}", path=str(path),
                       line=reader.line_num + line_offset) from None


def _delimiter(header: str) -> str:
    """The separator that splits the header line into the most fields (``,`` on a tie)."""
    counts = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (counts[d], d == ","))


def _hint(delimiter: str, guessed: bool, fmt: CsvFormat) -> str:
    shown = {"\t": "a tab", ",": "','", ";": "';'", "|": "'|'"}.get(delimiter, repr(delimiter))
    if guessed:
        return (f"; the header line was split at {shown}: if the file uses another separator, "
                "set it with delimiter:")
    return f"; values are split at {shown} (delimiter:): is that the file's separator?"


class _Utf8Watch(io.RawIOBase):
    """Passes a binary file through, noting whether all of it is UTF-8 with some non-ASCII:
    such a file read as cp1252 or latin-1 would turn every accented name into mojibake."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.valid, self.non_ascii = True, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self.raw.read(len(buffer))
        buffer[:len(chunk)] = chunk
        if self.valid and chunk:
            self.non_ascii = self.non_ascii or not chunk.isascii()
            try:
                self.decoder.decode(chunk)
            except UnicodeDecodeError:
                self.valid = False
        return len(chunk)

    @property
    def utf8(self) -> bool:
        """Whether the whole file was UTF-8 with at least one character beyond ASCII."""
        if self.valid:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.valid = False
        return self.valid and self.non_ascii


def _bad_byte(path: Path, encoding: str) -> tuple[int | None, int | None]:
    """Line and column of the first byte that does not decode: the text reader decodes 8 KiB
    ahead, so its own position says nothing about where the bad byte was."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as err:
                return number, err.start + 1
            except UnicodeError:  # punycode and the like: no position to tell
                return number, None
    return None, None
