"""The text part made from an HTML body: what a reader of the HTML needs, as plain text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailbatch.message.htmltext import html_to_text


def test_headings_paragraphs_and_line_breaks():
    html = ("<h1>Weekly   sales</h1><h2>North</h2><h3>Detail</h3>"
            "<p>Hello <b>Ana</b>,<br>the figures\n   are in.</p><p>Bye</p>")

    assert html_to_text(html) == ("Weekly sales\n============\n\nNorth\n-----\n\nDetail\n\n"
                                  "Hello Ana,\nthe figures are in.\n\nBye\n")


def test_lists_nested_lists_and_numbered_lists_with_a_start():
    html = ("<ul><li>one<li>two<ul><li>two a</li></ul></li></ul>"
            "<ol start=\"3\"><li>three</li><li>four</li></ol>")

    assert html_to_text(html) == "- one\n- two\n\n  - two a\n\n3. three\n4. four\n"


def test_links_show_their_address_once_and_images_their_description():
    html = ('<p><a href="https://example.org/r">the report</a>, '
            '<a href="https://example.org">https://example.org</a>, '
            '<a href="mailto:help@example.org">help@example.org</a>, '
            '<a href="#top">top</a> <img src="cid:x" alt="Revenue chart"><img src="y.png"></p>')

    assert html_to_text(html) == ("the report <https://example.org/r>, https://example.org, "
                                  "help@example.org,\ntop [Revenue chart]\n")  # wrapped at 76


def test_a_data_table_becomes_aligned_columns_with_numbers_on_the_right():
    html = """<table>
      <thead><tr><th>Product</th><th>Units</th><th>Revenue</th></tr></thead>
      <tbody><tr><td>Widget A</td><td>1,234</td><td>€ 12.50</td></tr>
             <tr><td>Gadget</td><td>5</td><td>-1,000.00</td></tr></tbody>
      <tfoot><tr><td colspan="2">Total</td><td>-987.50</td></tr></tfoot></table>"""

    assert html_to_text(html) == ("Product   Units    Revenue\n"
                                  "--------  -----  ---------\n"
                                  "Widget A  1,234    € 12.50\n"
                                  "Gadget        5  -1,000.00\n"
                                  "Total              -987.50\n")


def test_a_layout_table_is_read_cell_by_cell():
    html = ("<table><tr><td><h1>Report</h1><p>Intro text.</p></td></tr>"
            "<tr><td><p>Second cell</p><table><tr><th>a</th></tr><tr><td>1</td></tr></table>"
            "</td></tr></table>")

    assert html_to_text(html) == "Report\n======\n\nIntro text.\n\nSecond cell\n\na\n-\n1\n"


def test_head_style_and_script_are_left_out_and_entities_decoded():
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body>"
            "<script>alert(1)</script><p>Fish &amp; chips&nbsp;&lt;3</p></body></html>")

    assert html_to_text(html) == "Fish & chips <3\n"


def test_long_paragraphs_wrap_at_76_and_pre_keeps_its_lines():
    html = "<p>" + "word " * 40 + "</p><pre>  two\n    spaces</pre><blockquote>quoted</blockquote>"

    text = html_to_text(html)

    paragraph, pre, quote = text.split("\n\n")
    assert max(map(len, paragraph.splitlines())) <= 76 and paragraph.split() == ["word"] * 40
    assert pre == "  two\n    spaces"
    assert quote == "> quoted\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*"<>/=\"' abp&;#\n", "<p>", "</p>", "<br>", "<li>", "<table>",
                                  "<td>", "<tr>", "</tr>", "<ul>", "<a href='x'>", "</a>", "<h1>",
                                  "<pre>", "&amp;", "é", "\0"]), max_size=80).map("".join))
def test_any_html_gives_text_ending_in_one_line_break_and_never_fails(html):
    text = html_to_text(html)

    assert text.endswith("\n") and not text.endswith("\n\n\n")
    assert "\0" not in text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(st.characters(whitelist_categories=("L", "N")), min_size=1,
                        max_size=12), min_size=1, max_size=30))
def test_the_words_of_plain_paragraphs_all_arrive_in_order(words):
    html = "<p>" + " ".join(words) + "</p>"

    assert html_to_text(html).split() == " ".join(words).split()
