"""CSV files as spreadsheets write them: `;` or tabs, cp1252, a BOM, Excel's `sep=` line.

Whatever the file, names arrive exactly as written, or the run stops at a clear error naming
the file: a wrong separator or encoding never turns into garbled names in the mail.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailbatch import load_job
from mailbatch.errors import JobError
from mailbatch.job.csvfiles import DELIMITERS, CsvFormat, read_csv
from mailbatch.job.datafiles import load_data
from mailbatch.job.recipients import iter_recipients
from tests.helpers import write_job

JOB = """
    smtp: {host: 127.0.0.1}
    from: "Reports <reports@example.org>"
    subject: Hi
    text: "Hello {{ name }}"
"""
PEOPLE = [("ana@example.org", "Ana Silva"), ("bjorn@example.org", "Bjørn Larsen"),
          ("chloe@example.org", "Chloé Martin")]


def table(delimiter: str = ",", rows=PEOPLE) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["email", "name"])
    writer.writerows(rows)
    return out.getvalue()


def names(tmp_path, data: bytes, options: str = "") -> list[str]:
    job = write_job(tmp_path, JOB + f"recipients: {{file: people.csv{options}}}\n",
                    {"people.csv": data})
    return [r.name for r in iter_recipients(load_job(job))]


def refusal(tmp_path, data: bytes, options: str = "") -> JobError:
    with pytest.raises(JobError) as caught:
        names(tmp_path, data, options)
    return caught.value


EXPECTED = [name for _, name in PEOPLE]


def test_an_excel_utf8_file_with_a_bom_and_semicolons_needs_no_settings(tmp_path):
    assert names(tmp_path, codecs.BOM_UTF8 + table(";").encode()) == EXPECTED


def test_a_cp1252_file_is_read_when_its_encoding_is_given(tmp_path):
    assert names(tmp_path, table(";").encode("cp1252"), ", encoding: cp1252") == EXPECTED


def test_a_cp1252_file_without_its_encoding_is_refused_naming_the_line_and_the_fix(tmp_path):
    err = refusal(tmp_path, table(";").encode("cp1252"))

    assert err.path.endswith("people.csv") and err.line == 3
    assert "not UTF-8" in err.reason and "encoding: cp1252" in err.reason


def test_a_utf8_file_declared_cp1252_is_refused_rather_than_garbled(tmp_path):
    err = refusal(tmp_path, table().encode(), ", encoding: cp1252")

    assert "reads as UTF-8" in err.reason and "garbled" in err.reason


def test_excels_unicode_text_utf16_with_tabs_is_read(tmp_path):
    assert names(tmp_path, table("\t").encode("utf-16")) == EXPECTED


def test_excels_sep_line_names_the_separator_and_lines_still_count_from_the_file(tmp_path):
    data = ("sep=|\r\n" + table("|")).encode() + b"x@example.org|Extra|3\r\n"

    err = refusal(tmp_path, data)

    assert err.line == 6 and "row has more values (3)" in err.reason


def test_a_wrong_separator_given_in_the_job_is_explained(tmp_path):
    err = refusal(tmp_path, table(";").encode(), ", delimiter: ','")

    assert err.line == 1 and "has no 'email' column (columns: email;name)" in err.reason
    assert "values are split at ',' (delimiter:)" in err.reason


def test_a_row_that_does_not_split_like_the_header_names_the_separator_found(tmp_path):
    data = b"email;name\r\nana@example.org;Ana\r\nbjorn@example.org;Bj\xc3\xb8rn;x\r\n"

    err = refusal(tmp_path, data)

    assert err.line == 3 and "the header line was split at ';'" in err.reason


@pytest.mark.parametrize("written", ["tab", "'\\t'", '"\\t"'])  # tab, '\t' and "\t" in YAML
def test_a_tab_separator_can_be_written_in_words(tmp_path, written):
    assert names(tmp_path, table("\t").encode(), f", delimiter: {written}") == EXPECTED


@pytest.mark.parametrize(("options", "key", "reason"), [
    (", encoding: klingon", "encoding", "unknown encoding 'klingon'"),
    (", delimiter: ';;'", "delimiter", "must be one character"),
    (", delimiter: 'a'", "delimiter", "must be one character"),
])
def test_bad_settings_are_refused_at_their_key(tmp_path, options, key, reason):
    job = write_job(tmp_path, JOB + f"recipients: {{file: people.csv{options}}}\n",
                    {"people.csv": table()})
    with pytest.raises(JobError) as caught:
        load_job(job)

    assert caught.value.field == f"recipients.{key}" and reason in caught.value.reason


def test_a_data_file_takes_the_same_settings(tmp_path):
    job = write_job(tmp_path, JOB + """recipients: [{email: a@example.org}]
data:
  sales: {file: sales.csv, delimiter: ";", encoding: cp1252}
  plain: plain.csv
""", {"sales.csv": "region;total\r\nNord;1 234,50 €\r\n".encode("cp1252"),
      "plain.csv": "a,b\n1,2\n"})

    data = load_data(load_job(job))

    assert data["sales"] == [{"region": "Nord", "total": "1 234,50 €"}]
    assert data["plain"] == [{"a": "1", "b": "2"}]


def test_csv_settings_on_a_json_data_file_are_refused(tmp_path):
    job = write_job(tmp_path, JOB + "recipients: [{email: a@example.org}]\n"
                    "data:\n  sales: {file: sales.json, delimiter: ';'}\n",
                    {"sales.json": "[]"})
    with pytest.raises(JobError) as caught:
        load_job(job)
    assert "delimiter and encoding are for .csv files" in caught.value.reason


# -- generated: exactly the names, or an error --------------------------------------------------

name_text = st.text(st.characters(codec="cp1252", exclude_categories=("Cc", "Cs")),
                    min_size=1, max_size=30).map(str.strip).filter(bool)
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "cp1252"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(name_text, min_size=1, max_size=5), delimiter=st.sampled_from(DELIMITERS),
       encoding=st.sampled_from(ENCODINGS), declared=st.booleans(), sep_line=st.booleans())
def test_any_file_gives_back_exactly_its_names_or_a_clear_error(tmp_path, rows, delimiter,
                                                                 encoding, declared, sep_line):
    text = ("sep=" + delimiter + "\r\n" if sep_line else "") + table(
        delimiter, [(f"p{i}@example.org", name) for i, name in enumerate(rows)])
    data = text.encode(encoding)
    if encoding == "cp1252":
        # Text whose cp1252 bytes are also UTF-8 ("Ã©") cannot be told from UTF-8 by anyone.
        assume((not data.isascii() and _not_utf8(data)) or data.isascii())
    path = tmp_path / f"p-{delimiter!r}-{encoding}-{declared}.csv"
    path.write_bytes(data)
    fmt = CsvFormat(encoding=encoding if declared else None)

    try:
        read = [row["name"] for _, row in read_csv(path, fmt, missing="missing")]
    except JobError as err:
        assert str(err).startswith(str(path))
        assert encoding == "cp1252" and not declared and not data.isascii()
    else:
        assert read == rows


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@pytest.mark.parametrize("codec", ["rot13", "base64", "hex", "zlib", "uu"])
def test_a_codec_that_is_not_a_text_encoding_is_refused_at_its_key(tmp_path, codec):
    error = refusal(tmp_path, table().encode(), f", encoding: {codec}")
    assert error.field == "recipients.encoding" and "unknown encoding" in str(error)


def test_utf16_given_for_a_file_without_its_byte_order_mark_is_a_clear_error(tmp_path):
    error = refusal(tmp_path, table().encode(), ", encoding: utf-16")
    assert "cannot be read as utf-16" in str(error) and "people.csv" in str(error)


def test_utf16_saved_without_a_byte_order_mark_is_recognised_by_its_nul_characters(tmp_path):
    error = refusal(tmp_path, table().encode("utf-16-le"))
    assert error.line == 1 and "encoding: utf-16-le" in str(error)
    assert names(tmp_path, table().encode("utf-16-le"), ", encoding: utf-16-le") == EXPECTED


@given(codec=st.sampled_from(sorted({c for c in (
    "ascii", "latin-1", "cp1252", "utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32",
    "utf-7", "cp437", "mac-roman", "shift_jis", "gb18030", "koi8-r", "idna", "punycode",
    "rot13", "base64", "hex", "quopri", "bz2", "unicode_escape", "raw_unicode_escape",
    "palmos", "cp65001")})), data=st.sampled_from([table().encode("utf-8"),
                                                   table().encode("utf-16"),
                                                   table().encode("utf-16-le")]))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_encoding_name_gives_the_names_or_a_clear_error(tmp_path, codec, data):
    with contextlib.suppress(JobError):  # a clear error is fine; any other exception is not
        names(tmp_path, data, f", encoding: {codec}")
