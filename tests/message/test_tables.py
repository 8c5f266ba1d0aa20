"""The ``table``, ``number`` and ``where`` filters: one table, written for the body it is in."""

from __future__ import annotations

import html.parser

import jinja2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailbatch.message import tables

ROWS = [{"product": "Widget <A>", "units": 1200, "revenue": 12345.5, "margin": 0.125},
        {"product": "Gadget", "units": 5, "revenue": 99.0, "margin": -0.02}]
OPTIONS = {"formats": {"revenue": ",.2f", "margin": ".1%"}, "totals": ["units", "revenue"],
           "labels": {"revenue": "Revenue (€)"}}


def env(kind: str) -> jinja2.Environment:
    environment = jinja2.Environment(autoescape=kind == "html", undefined=jinja2.StrictUndefined)
    tables.install(environment, kind)
    return environment


def render(kind: str, source: str, **context) -> str:
    return env(kind).from_string(source).render(rows=ROWS, options=OPTIONS, **context)


def test_in_a_text_body_a_table_is_aligned_columns_with_numbers_right_aligned_and_totals():
    text = render("text", "{{ rows | table(**options) }}")

    assert text == ("Product     Units  Revenue (€)  Margin\n"
                    "----------  -----  -----------  ------\n"
                    "Widget <A>  1,200    12,345.50   12.5%\n"
                    "Gadget          5        99.00   -2.0%\n"
                    "----------  -----  -----------  ------\n"
                    "Total       1,205    12,444.50")


def test_numbers_written_as_text_in_the_data_are_totalled_the_way_they_are_written():
    rows = [{"region": "north", "revenue": "25.5", "units": "12"},
            {"region": "south", "revenue": "12", "units": "3"}]  # as a CSV file gives them

    _, body, footer, _ = tables.layout(rows, totals=["revenue", "units"])

    assert [row[1:] for row in body] == [["25.5", "12"], ["12", "3"]]
    assert footer == ["Total", "37.5", "15"]


class Cells(html.parser.HTMLParser):
    """The cells of an HTML table as (tag, align, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str | None, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self.cells.append((tag, dict(attrs).get("align"), ""))

    def handle_data(self, data):
        if self.cells and data.strip():
            tag, align, text = self.cells[-1]
            self.cells[-1] = (tag, align, text + data)


def test_in_an_html_body_it_is_an_html_table_with_escaped_cells():
    page = render("html", "<p>{{ rows | table(**options) }}</p>")
    cells = Cells()
    cells.feed(page)

    assert "Widget &lt;A&gt;" in page and page.count("<tfoot>") == 1
    assert cells.cells[:4] == [("th", "left", "Product"), ("th", "right", "Units"),
                               ("th", "right", "Revenue (€)"), ("th", "right", "Margin")]
    assert cells.cells[4:8] == [("td", "left", "Widget <A>"), ("td", "right", "1,200"),
                                ("td", "right", "12,345.50"), ("td", "right", "12.5%")]
    assert cells.cells[-4:-2] == [("th", "left", "Total"), ("th", "right", "1,205")]


def test_in_a_markdown_body_it_is_a_pipe_table_aligned_by_column():
    text = render("markdown", "{{ rows | table(columns=['product', 'units']) }}",)

    assert text == ("| Product     | Units |\n"
                    "|-------------|------:|\n"
                    "| Widget \\<A> | 1,200 |\n"  # escaped: not an HTML tag or autolink
                    "| Gadget      |     5 |")


@pytest.mark.parametrize("value, spec, shown", [
    (1234567.891, None, "1,234,567.89"),
    (1234567, None, "1,234,567"),
    ("1234.5", ",.1f", "1,234.5"),  # CSV fields are text
    ("1,234.5", ",.0f", "1,234"),
    (0.1234, ".1%", "12.3%"),
    (12.3, "{:.1f} %", "12.3 %"),
    (7, ",.2f", "7.00"),
    (7.6, ",d", "8"),
    ("n/a", ",.2f", "n/a"),
    (None, None, ""),
])
def test_number_formats_thousands_decimals_and_percentages(value, spec, shown):
    assert tables.format_number(value, spec) == shown


def test_where_keeps_the_rows_whose_fields_equal_the_values_also_as_text():
    rows = [{"region": "north", "week": "1"}, {"region": "south", "week": 1},
            {"region": "north", "week": 2}]

    assert tables.where(rows, region="north") == [rows[0], rows[2]]
    assert tables.where(rows, week=1) == [rows[0], rows[1]]


@pytest.mark.parametrize("source, problem", [
    ("{{ 'text' | table }}", "table() needs a list of rows, not str"),
    ("{{ {'a': 1} | table }}", "not a mapping"),
    ("{{ rows | table(totals=['nope']) }}", "totals names 'nope'"),
    ("{{ 3 | number('.q') }}", "number format '.q'"),
])
def test_bad_table_input_is_a_template_error_saying_what_is_wrong(source, problem):
    with pytest.raises(jinja2.TemplateRuntimeError, match=problem.replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[")):
        render("text", source)


def test_rows_of_lists_need_columns_for_a_header():
    assert render("text", "{{ [['a', 1], ['bb', 22]] | table }}") == "a    1\nbb  22"
    assert render("text", "{{ [['a', 1]] | table(columns=['name', 'n']) }}") == \
        "name  n\n----  -\na     1"


cell = st.one_of(st.integers(-10**9, 10**9), st.floats(-1e9, 1e9, allow_nan=False),
                 st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": cell, "b": cell}), max_size=8))
def test_any_rows_make_a_text_table_of_equal_width_lines_and_a_pipe_table_per_row(rows):
    text = tables.text_table(rows)
    markdown = tables.markdown_table(rows)

    assert len(text.split("\n")) == (len(rows) + 2 if rows else 1)
    assert len(markdown.split("\n")) == (len(rows) + 2 if rows else 1)
    assert all(line.startswith("| ") and line.endswith(" |")
               for line in markdown.split("\n")[2:])


class TableCells(html.parser.HTMLParser):
    """The text of each body cell of the first table, as a browser shows it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[str] = []
        self.inside = False

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self.inside = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.cells[-1] += data


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
       .filter(lambda text: text.strip()))
@example("*em* _em_ __b__ `code` [l](u) ![i](u)")
@example("AT&amp;T &#65; &copy")
@example("<http://example.org> <b@example.org> <i>x</i>")
@example("~~gone~~ a\\b c\\*d x|y")
def test_any_cell_text_in_a_markdown_table_reaches_the_html_as_written(text):
    from mailbatch.message import markdown

    page = markdown.to_html(tables.markdown_table([{"cell": text, "n": 1}]))
    cells = TableCells()
    cells.feed(page)

    assert " ".join(cells.cells[0].split()) == " ".join(text.split())
