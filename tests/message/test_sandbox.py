"""Templates run sandboxed and bounded: a typo cannot hang the render pass or exhaust memory,
and whatever goes wrong in a template is that recipient's render failure, naming the template
and its line."""

from __future__ import annotations

import threading
import time

import pytest

from mailbatch import load_job
from mailbatch.errors import JobError
from mailbatch.job.recipients import iter_recipients
from mailbatch.message.render import Renderer, RenderFailure
from mailbatch.message.renderpool import RenderPool, Stop
from mailbatch.message.sandbox import Budget, BudgetExceeded
from tests.pipeline import offline_job


def _failure(tmp_path, body: str, fields: str = "count: 0") -> RenderFailure:
    job = offline_job(tmp_path, "from: r@example.org\nsubject: Hi\ntext_template: body.j2\n"
                      f"recipients: [{{email: ann@example.org, {fields}}}]\n",
                      {"body.j2": body})
    renderer = Renderer(load_job(job))
    with pytest.raises(RenderFailure) as caught:
        renderer.render(next(iter_recipients(renderer.job)))
    return caught.value


@pytest.mark.parametrize(("body", "expect"), [
    ("Hi\n{{ 100 // count }}\n", "body.j2 line 2: integer division or modulo by zero "
                                 "(ZeroDivisionError)"),
    ("Hi\n\n{{ 'a' + count }}\n", "body.j2 line 3: "),
    ("{% for i in range(10**9) %}{% endfor %}", "body.j2 line 1: Range too big"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}",
     "body.j2 line 1: calls nested more than 50 deep"),
    ("{{ 'x' * 10**9 }}", "repeating a value 1,000,000,000 times"),
    ("{{ [1, 2] * 10**9 }}", "repeating a value"),
    ("{{ 7 ** 100000000 }}", "too large a number"),
    ("{{ 'x'.ljust(10**9) }}", "too large an argument for ljust()"),
    ("{{ 'x' | center(10**9) }}", "center width 1,000,000,000"),
    ("{{ 'x' | indent(10**9) }}", "indent width 1,000,000,000"),
    ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
     "output is over 50,000,000 characters"),
    ("{{ ''.__class__.__mro__ }}", "unsafe"),
    ("{{ '%1000000000d' % 1 }}", "a width in the format"),
    ("{{ '%*d' % (10**9, 1) }}", "a width in the format"),
    ("{{ '%(a)1000000000s' % {'a': 1} }}", "a width in the format"),
    ("{{ fmt|format(1) }}", "a width in the format"),
    ("{{ '{:>1000000000}'.format(1) }}", "a width in the format"),
    ("{{ '{0:{1}}'.format(1, 10**9) }}", "a width in the format"),
])
def test_a_template_error_is_a_render_failure_naming_recipient_template_and_line(
        tmp_path, body, expect):
    failure = _failure(tmp_path, body, "count: 0, fmt: '%.1000000000f'")
    assert str(failure).startswith(f"{tmp_path / 'job.yaml'}:")
    assert "(ann@example.org)" in str(failure)
    assert expect in str(failure)
    assert not failure.stop


def test_a_format_too_wide_written_in_a_template_is_refused_when_it_is_read(tmp_path):
    job = offline_job(tmp_path, "from: r@example.org\nsubject: Hi\ntext_template: body.j2\n"
                      "recipients: [{email: ann@example.org}]\n",
                      {"body.j2": "Hi\n{{ '%1000000000d'|format(1) }}\n"})
    with pytest.raises(JobError, match=r"body.j2:2: template syntax error: a width"):
        Renderer(load_job(job))


def test_a_template_error_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "footer.j2").write_text("Bye\n{{ 1 / count }}\n")
    failure = _failure(tmp_path, "Hi\n{% include 'footer.j2' %}\n")
    assert "footer.j2 line 2: division by zero" in str(failure)


def test_a_render_over_its_time_budget_stops_the_pass_naming_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr("mailbatch.message.sandbox.RENDER_SECONDS", 0.3)
    monkeypatch.setattr(Budget.__init__, "__defaults__", (0.3,))
    started = time.monotonic()
    failure = _failure(tmp_path, "Hi\n{% for i in range(100000) %}{% for j in range(100000) %}"
                                 "{% endfor %}{% endfor %}\n")
    assert time.monotonic() - started < 5
    assert failure.stop
    assert "body.j2 line 2: took longer than 0.3 seconds to render" in str(failure)


def test_the_budget_interrupts_any_thread_and_never_fires_after_the_render(tmp_path):
    budget = Budget(0.2)
    outcome: list[str] = []

    def spin() -> None:
        try:
            with budget:
                while True:
                    pass
        except BudgetExceeded:
            outcome.append("stopped")

    worker = threading.Thread(target=spin)
    worker.start()
    worker.join(5)
    assert outcome == ["stopped"]
    for _ in range(2000):  # quick renders: none of them, nor the code after, is interrupted
        with budget:
            sum(range(100))
    time.sleep(0.5)


def test_ordinary_formats_and_remainders_still_work(tmp_path):
    job = offline_job(tmp_path, "from: r@example.org\nsubject: Hi\n"
                      "text: \"{{ '%5.1f|%-4s|%d%%' % (2.25, 'ab', 7) }} {{ 17 % 5 }} "
                      "{{ '%03d'|format(7) }} {{ '{:>6,}'.format(12345) }} {{ 'x' * 3 }} "
                      "{{ '{} {}'.format(10**12, '%d' % 10**12) }}\"\n"
                      "recipients: [{email: ann@example.org}]\n")
    renderer = Renderer(load_job(job))
    message = renderer.render(next(iter_recipients(renderer.job)))
    assert message.text == "  2.2|ab  |7% 2 007 12,345 xxx 1000000000000 1000000000000"


def test_dict_rows_still_read_as_attributes_under_the_sandbox(tmp_path):
    job = offline_job(tmp_path, "from: r@example.org\nsubject: Hi\n"
                      "text: \"{% for row in data.sales %}{{ row.units }};{% endfor %}"
                      "{{ recipient.name }} {{ data.sales[0]['units'] }}\"\n"
                      "recipients: [{email: ann@example.org, name: Ann}]\n"
                      "data: {sales: sales.json}\n",
                      {"sales.json": '[{"units": 3, "items": 1}, {"units": 4, "items": 2}]'})
    renderer = Renderer(load_job(job))
    message = renderer.render(next(iter_recipients(renderer.job)))
    assert message.text == "3;4;Ann 3"


def test_a_stop_ends_the_render_pass_and_nothing_after_it_is_rendered(tmp_path, monkeypatch):
    monkeypatch.setattr(Budget.__init__, "__defaults__", (0.3,))
    people = "".join(f"  - {{email: p{i}@example.org, spin: {str(i == 2).lower()}}}\n"
                     for i in range(6))
    job = offline_job(tmp_path, "from: r@example.org\nsubject: Hi\ntext_template: body.j2\n"
                      f"recipients:\n{people}", {"body.j2": "{% if spin %}{% for i in "
                      "range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                      "{% endif %}Hi\n"})
    renderer = Renderer(load_job(job))
    with RenderPool(renderer, worker=False) as pool:
        results = [r for recipient in iter_recipients(renderer.job) for r in pool.add(recipient)]
        results += pool.finish()
        assert pool.stopped
    assert [r.address for r, _, _ in results] == [f"p{i}@example.org" for i in range(3)]
    assert isinstance(results[2][1], Stop) and "took longer than 0.3 seconds" in results[2][1]


@pytest.mark.parametrize("name", ["'../../etc/hostname'", "'/etc/hostname'", "'foot' ~ 'er.j2'"])
def test_an_included_template_that_cannot_be_found_says_where_templates_are_looked_up(
        tmp_path, name):
    failure = _failure(tmp_path, f"Hi\n{{% include {name} %}}\n")
    assert "not found; templates are looked up inside the job's folder" in str(failure)
    assert "(ann@example.org)" in str(failure)


def test_a_template_included_by_a_computed_name_that_is_not_utf8_says_so(tmp_path):
    (tmp_path / "footer.j2").write_bytes(b"Gr\xfc\xdfe\n")
    failure = _failure(tmp_path, "Hi\n{% include 'foot' ~ 'er.j2' %}\n")
    assert "not UTF-8 (invalid start byte at byte 3); save the template" in str(failure)
