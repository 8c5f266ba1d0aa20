"""The job keys of report content: each mistake is one line naming the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbatch import load_job
from mailbatch.errors import JobError
from mailbatch.job.content import GeneratedSpec
from tests.pipeline import offline_job

BASE = """
    from: reports@example.org
    subject: Sales
    recipients: [{email: a@example.org}]
"""


def job_error(tmp_path: Path, body: str, files=None) -> JobError:
    with pytest.raises(JobError) as caught:
        load_job(offline_job(tmp_path, BASE + body, files))
    return caught.value


def test_the_content_keys_load_into_the_job(tmp_path):
    job = load_job(offline_job(tmp_path, BASE + """
    markdown_template: report.md
    stylesheet: style.css
    inline_css: false
    inline_images: {logo: img/logo.png, map.v2: "maps/{{ region }}.png"}
    zip_attachments: "report-{{ region }}.zip"
    attachments:
      - "files/*.pdf"
      - csv: "{{ data.sales | where(region=region) }}"
        filename: "sales-{{ region }}.csv"
        columns: [week, revenue]
    """, {"report.md": "# Hi\n", "style.css": "p {}\n"}))

    assert job.markdown.path == tmp_path / "report.md"
    assert job.content.stylesheet == tmp_path / "style.css"
    assert job.content.inline_css is False
    assert job.content.inline_images == (("logo", "img/logo.png"),
                                         ("map.v2", "maps/{{ region }}.png"))
    assert job.content.zip_attachments == "report-{{ region }}.zip"
    assert job.attachments[1] == GeneratedSpec(csv="data.sales | where(region=region)",
                                               filename="sales-{{ region }}.csv",
                                               columns=("week", "revenue"), line=12)


@pytest.mark.parametrize("body, files, line, field, message", [
    ("    text: x\n    stylesheet: nope.css\n", None, 5, "stylesheet",
     "stylesheet 'nope.css' not found"),
    ("    text: x\n    inline_css: maybe\n", None, 5, "inline_css",
     "must be true or false, not text"),
    ("    text: x\n    inline_images: {'cid:logo': a.png}\n", None, 5, "inline_images.cid:logo",
     "an inline image name is what the HTML writes after cid:"),
    ("    text: x\n    zip_attachments: ' '\n", None, 5, "zip_attachments",
     "must be a file name"),
    ("    text: x\n    attachments:\n      - csv: data.x\n", None, 6, "attachments[0].filename",
     "is required but missing"),
    ("    text: x\n    attachments:\n      - {csv: 'data.x', filename: a.csv, sep: ';'}\n",
     None, 6, "attachments[0].sep", "unknown key"),
    ("    html: x\n    markdown: '# x'\n", None, 5, "markdown",
     "a Markdown body makes both the HTML and the text part; remove html"),
])
def test_a_wrong_content_key_is_one_error_naming_its_line_and_key(tmp_path, body, files, line,
                                                                  field, message):
    err = job_error(tmp_path, body, files)

    assert (err.line, err.field) == (line, field)
    assert message in str(err)


def test_an_expression_that_does_not_compile_is_found_before_anything_renders(tmp_path):
    from mailbatch.message.render import Renderer

    job = load_job(offline_job(tmp_path, BASE + """
    text: x
    attachments:
      - {csv: 'data.x |', filename: a.csv}
    """))

    with pytest.raises(JobError) as caught:
        Renderer(job)

    assert (caught.value.line, caught.value.field) == (7, "attachments[0].csv")
    assert "template syntax error" in str(caught.value)
