"""Reports that look right in every mail client: CSS inlined, images inline, a text part always,
Markdown bodies, generated attachments. Every check parses the composed message back with the
email package (policy.default), as a mail client would."""

from __future__ import annotations

import csv
import io
import re
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbatch.cli.main import main
from mailbatch.errors import EXIT_DATA
from tests.pipeline import offline_job
from tests.reportfiles import dry_run, html_of, png, related_images, structure, text_of

PEOPLE = [
    "email,name,region",
    "ana@example.org,Ana,north",
    "bob@example.org,Bob,south",
    "cy@example.org,Cy,north",
]
SALES = ("region,week,units,revenue\n"
         "north,W1,1200,1234.5\nnorth,W2,1300,2234.25\nsouth,W1,3,99.5\nsouth,W2,5,1999\n")
LOGO = png(8, 4, (200, 30, 30))


def job(body: str, html: str | None = None, **keys: str) -> str:
    """A job for PEOPLE with an HTML template (``page.html``) and extra top-level keys."""
    extra = "".join(f"    {key}: {value}\n" for key, value in keys.items())
    return f"""
    from: "Reports <reports@example.org>"
    subject: "Sales {{{{ region }}}}"
    {body}
    recipients: people.csv
    data:
      sales: sales.csv
{extra}"""


def files(**more: str | bytes) -> dict[str, str | bytes]:
    return {"people.csv": "\n".join(PEOPLE) + "\n", "sales.csv": SALES,
            "img/logo.png": LOGO, **more}


STYLED = """<!DOCTYPE html>
<html><head><style>
p.note { color: #c00; font-weight: bold; }
td { padding: 4px; }
@media (max-width: 600px) { p.note { font-size: 18px; } }
</style></head>
<body><p class="note">Hello {{ name }}</p><table><tr><td>1</td></tr></table></body></html>
"""


# -- CSS ---------------------------------------------------------------------------------------


def test_style_rules_are_inlined_into_style_attributes_and_media_rules_stay_in_a_style_block(
        tmp_path):
    ana = dry_run(tmp_path, job("html_template: page.html"), files(**{"page.html": STYLED}))[0]

    html = html_of(ana)
    assert re.search(r'<p class="note" style="color: #c00;\s*font-weight: bold;?">Hello Ana',
                     html)
    assert re.search(r'<td style="padding: 4px;?">1</td>', html)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(styles) == 1 and "@media (max-width: 600px)" in styles[0]
    assert "p.note { color" not in styles[0]  # inlined rules leave the block


def test_a_job_stylesheet_is_inlined_too_and_inline_css_false_sends_it_as_a_style_block(
        tmp_path):
    page = "<html><head></head><body><p>Hello {{ name }}</p></body></html>"
    css = "p { margin: 0; color: #123456; }\n"

    inlined = dry_run(tmp_path / "a", job("html_template: page.html", stylesheet="style.css"),
                      files(**{"page.html": page, "style.css": css}))[0]
    kept = dry_run(tmp_path / "b", job("html_template: page.html", stylesheet="style.css",
                                       inline_css="false"),
                   files(**{"page.html": page, "style.css": css}))[0]

    assert re.search(r'<p style="margin: 0;\s*color: #123456;?">Hello Ana</p>',
                     html_of(inlined))
    html = html_of(kept)
    assert "<p>Hello Ana</p>" in html and "<style>\np { margin: 0; color: #123456; }" in html


def test_html_without_style_or_stylesheet_is_sent_exactly_as_rendered(tmp_path):
    page = "<p>Hello {{ name }} &amp; co</p>\n"

    ana = dry_run(tmp_path, job("html_template: page.html"), files(**{"page.html": page}))[0]

    assert html_of(ana) == \
        "<p>Hello Ana &amp; co</p>\n"


# -- inline images -----------------------------------------------------------------------------


def test_an_inline_image_becomes_a_related_part_whose_content_id_is_the_src(tmp_path):
    page = '<p>Hi {{ name }}</p><img src="{{ inline_image("img/logo.png") }}" alt="Logo">\n'

    ana = dry_run(tmp_path, job("text: 'Hi {{ name }}\\n'\n    html_template: page.html"),
                  files(**{"page.html": page}))[0]

    assert structure(ana) == [(0, "multipart/alternative"), (1, "text/plain"),
                              (1, "multipart/related"), (2, "text/html"), (2, "image/png")]
    assert all(part.defects == [] for part in ana.walk())
    related = ana.get_body(("html",))  # the related part: its root is the HTML
    assert next(p for p in ana.walk() if p.get_content_type() == "multipart/related") \
        .get_param("type") == "text/html"
    src = re.search(r'src="cid:([^"]+)"', related.get_content())[1]
    assert related_images(ana) == {src: ("image/png", LOGO, "inline")}
    assert list(ana.iter_attachments()) == []


def test_images_named_by_the_job_are_sent_only_when_the_html_refers_to_them(tmp_path):
    page = ('{% if region == "north" %}<img src="cid:logo">{% endif %}'
            '<img src="cid:map" alt="Map of {{ region }}">\n')
    messages = dry_run(tmp_path, job("html_template: page.html",
                                     inline_images="{logo: img/logo.png, map: "
                                                   "'maps/{{ region }}.png'}"),
                       files(**{"page.html": page, "maps/north.png": png(2, 2, (0, 0, 9)),
                                "maps/south.png": png(3, 3, (9, 0, 0))}))

    ana, bob = messages[0], messages[1]
    assert related_images(ana) == {"logo": ("image/png", LOGO, "inline"),
                                   "map": ("image/png", png(2, 2, (0, 0, 9)), "inline")}
    assert related_images(bob) == {"map": ("image/png", png(3, 3, (9, 0, 0)), "inline")}


def test_a_cid_with_no_image_fails_that_recipient_and_nothing_is_sent(tmp_path, capsys):
    page = '{% if region == "south" %}<img src="cid:chart-south">{% endif %}<p>x</p>\n'
    path = offline_job(tmp_path, job("html_template: page.html"), files(**{"page.html": page}))

    code = main(["run", "--dry-run", str(path)])

    err = capsys.readouterr().err
    assert code == EXIT_DATA
    assert "1 message(s) could not be rendered; nothing was sent" in err
    assert "(bob@example.org): page.html: the HTML refers to cid:chart-south, which is no " \
           "inline image" in err
    assert not list(tmp_path.glob("outbox/*/*.eml"))


@pytest.mark.parametrize("path, problem", [
    ("../outside.png", "is outside the attachments root"),
    ("img/missing.png", "inline image 'img/missing.png' not found"),
    ("notes.txt", "is text/plain, not an image"),
])
def test_an_inline_image_outside_the_root_missing_or_not_an_image_is_a_render_error(
        tmp_path, capsys, path, problem):
    folder = tmp_path / "job"
    (tmp_path / "outside.png").write_bytes(LOGO)
    page = f'<img src="{{{{ inline_image("{path}") }}}}">\n'
    job_path = offline_job(folder, job("html_template: page.html"),
                           files(**{"page.html": page, "notes.txt": "x"}))

    assert main(["check", str(job_path)]) == EXIT_DATA

    err = capsys.readouterr().err
    assert "3 message(s) could not be rendered" in err and problem in err
    assert "(ana@example.org)" in err


def test_an_image_shared_by_the_batch_is_read_and_encoded_once(tmp_path, monkeypatch):
    from mailbatch.message import parts

    encoded = []
    real = parts.base64_lines
    monkeypatch.setattr(parts, "base64_lines",
                        lambda data: encoded.append(len(data)) or real(data))
    page = '<img src="{{ inline_image("img/logo.png") }}">\n'

    messages = dry_run(tmp_path, job("html_template: page.html"), files(**{"page.html": page}))

    assert len(messages) == 3 and all(
        list(related_images(m).values()) == [("image/png", LOGO, "inline")] for m in messages)
    assert encoded == [len(LOGO)]


def test_image_helpers_in_the_text_body_are_a_clear_render_error(tmp_path, capsys):
    path = offline_job(tmp_path, job("text: '{{ inline_image(\"img/logo.png\") }}'"), files())

    assert main(["check", str(path)]) == EXIT_DATA

    assert "only the HTML or Markdown body can show" in capsys.readouterr().err


# -- a text part always -----------------------------------------------------------------------


def test_an_html_only_job_gets_a_text_part_made_from_its_html(tmp_path):
    page = """<html><head><title>x</title><style>p { color: red }</style></head><body>
    <h1>Sales for {{ region }}</h1><p>Hello {{ name }}, see the
    <a href="https://example.org/{{ region }}">dashboard</a>.</p>
    <ul><li>one</li><li>two</li></ul>
    {{ data.sales | where(region=region) | table(columns=["week", "units"]) }}
    </body></html>"""

    ana = dry_run(tmp_path, job("html_template: page.html"), files(**{"page.html": page}))[0]

    assert structure(ana) == [(0, "multipart/alternative"), (1, "text/plain"),
                              (1, "text/html")]
    assert text_of(ana) == (
        "Sales for north\n===============\n\n"
        "Hello Ana, see the dashboard <https://example.org/north>.\n\n"
        "- one\n- two\n\n"
        "Week  Units\n----  -----\nW1     1200\nW2     1300\n")


# -- Markdown ----------------------------------------------------------------------------------


MARKDOWN = """\
# Sales for {{ region | title }}

Hello **{{ name }}**, <b>not markup</b>.

{{ data.sales | where(region=region) | table(columns=["week", "revenue"],
                                            formats={"revenue": ",.2f"}) }}

![Logo]({{ inline_image("img/logo.png") }})
"""


def test_a_markdown_body_sends_html_made_from_it_and_the_markdown_as_the_text_part(tmp_path):
    ana = dry_run(tmp_path, job("markdown_template: report.md"),
                  files(**{"report.md": MARKDOWN}))[0]

    assert structure(ana) == [(0, "multipart/alternative"), (1, "text/plain"),
                              (1, "multipart/related"), (2, "text/html"), (2, "image/png")]
    text = text_of(ana)
    assert text == ("# Sales for North\n\nHello **Ana**, <b>not markup</b>.\n\n"
                    "| Week |  Revenue |\n|------|---------:|\n| W1   | 1,234.50 |\n"
                    "| W2   | 2,234.25 |\n\n[Logo]\n")
    html = html_of(ana)
    assert re.search(r"<h1 style=\"[^\"]+\">Sales for North</h1>", html)  # default CSS
    assert "<strong>Ana</strong>" in html and "&lt;b&gt;not markup&lt;/b&gt;" in html
    assert re.search(r'<td style="[^"]*text-align: ?right[^"]*">2,234.25</td>', html)
    src = re.search(r'<img src="cid:([^"]+)" alt="Logo"', html)[1]
    assert list(related_images(ana)) == [src]


def test_markdown_with_text_or_html_is_refused(tmp_path, capsys):
    path = offline_job(tmp_path, job("markdown: '# Hi'\n    text: 'Hi'"), files())

    assert main(["check", str(path)]) == 78

    assert "a Markdown body makes both the HTML and the text part; remove text" in \
        capsys.readouterr().err


# -- generated attachments --------------------------------------------------------------------


CSV_JOB = """text: "Hi {{ name }}\\n"
    attachments:
      - "img/logo.png"
      - csv: "data.sales | where(region=region)"
        filename: "sales-{{ region }}.csv"
        columns: [week, revenue]"""


def test_a_csv_attachment_holds_the_recipients_rows_under_a_jinja_name(tmp_path):
    ana, bob, _ = dry_run(tmp_path, job(CSV_JOB), files())

    for message, rows in ((ana, [["W1", "1234.5"], ["W2", "2234.25"]]),
                          (bob, [["W1", "99.5"], ["W2", "1999"]])):
        logo, table = message.iter_attachments()
        assert (logo.get_filename(), logo.get_payload(decode=True)) == ("logo.png", LOGO)
        region = "north" if message is ana else "south"
        assert (table.get_filename(), table.get_content_type()) == (f"sales-{region}.csv",
                                                                    "text/csv")
        data = table.get_payload(decode=True).decode("utf-8")
        assert list(csv.reader(io.StringIO(data))) == [["week", "revenue"], *rows]


def test_zip_attachments_sends_one_archive_of_every_attachment(tmp_path):
    ana = dry_run(tmp_path, job(CSV_JOB, zip_attachments="'report-{{ region }}.zip'"),
                  files())[0]

    (archive,) = ana.iter_attachments()
    assert (archive.get_filename(), archive.get_content_type()) == ("report-north.zip",
                                                                    "application/zip")
    with zipfile.ZipFile(io.BytesIO(archive.get_payload(decode=True))) as opened:
        assert opened.testzip() is None
        assert opened.namelist() == ["logo.png", "sales-north.csv"]
        assert opened.read("logo.png") == LOGO
        assert opened.read("sales-north.csv").startswith(b"week,revenue\r\nW1,1234.5")


def test_generated_attachments_are_counted_by_check_and_listed_in_the_report(tmp_path,
                                                                             capsys):
    path = offline_job(tmp_path, job(CSV_JOB), files())

    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    # logo.png once, and the two regions' CSVs (Ana's and Cy's are the same file)
    assert "attachments: 2 per recipient (6 in all), 3 distinct file(s)" in out
    assert main(["run", "-q", "--dry-run", str(path)]) == 0
    report = next(tmp_path.glob("reports/*.json")).read_text()
    assert '"name": "sales-north.csv"' in report


def test_a_csv_expression_that_is_not_rows_fails_naming_the_recipient(tmp_path, capsys):
    path = offline_job(tmp_path, job("""text: x
    attachments:
      - csv: "name"
        filename: "x.csv\""""), files())

    assert main(["check", str(path)]) == EXIT_DATA

    assert "(ana@example.org): attachments[0]: csv: must give a list of rows, not str" in \
        capsys.readouterr().err


# -- the rules behind the features, for any input ----------------------------------------------


cid_names = st.from_regex(r"[a-z]{1,6}(\.[0-9a-f]{4}@example\.org)?", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(known=st.sets(cid_names, max_size=4), used=st.lists(cid_names, max_size=6),
       filler=st.lists(st.sampled_from(["<p>x</p>", "cid:", "src=", " ", "<img>", "url("]),
                       max_size=6))
def test_the_images_sent_are_exactly_the_ones_the_html_refers_to(tmp_path_factory, known,
                                                                 used, filler):
    from mailbatch.message.attachments import AttachmentProblem
    from mailbatch.message.inline import ImageSet, InlineImage

    folder = tmp_path_factory.mktemp("images")
    images = ImageSet(folder, "example.org", lambda cid: InlineImage(
        folder / f"{cid}.png", f"{cid}.png", "image/png", 1, cid) if cid in known else None)
    html = "".join(f'{filler[i % len(filler)] if filler else ""}<img src="cid:{cid}">'
                   for i, cid in enumerate(used))

    if set(used) <= known:
        assert [i.cid for i in images.resolve(html, "page.html")] == list(dict.fromkeys(used))
    else:
        with pytest.raises(AttachmentProblem, match=r"page\.html: the HTML refers to cid:"):
            images.resolve(html, "page.html")


def test_attachments_of_the_same_name_keep_both_in_the_archive(tmp_path):
    ana = dry_run(tmp_path, job("""text: x
    attachments: ["a/report.pdf", "b/report.pdf"]""", zip_attachments="all.zip"),
                  files(**{"a/report.pdf": b"%PDF a", "b/report.pdf": b"%PDF b"}))[0]

    (archive,) = ana.iter_attachments()
    with zipfile.ZipFile(io.BytesIO(archive.get_payload(decode=True))) as opened:
        assert [(n, opened.read(n)) for n in opened.namelist()] == [
            ("report.pdf", b"%PDF a"), ("report (2).pdf", b"%PDF b")]
