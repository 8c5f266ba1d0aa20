"""``chart()``: a PNG per recipient's data, inline in the HTML, drawn once per distinct input,
and a clear job error when matplotlib (the ``charts`` extra) is not installed."""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import sys
import time

import pytest

from mailbatch.cli.main import main
from mailbatch.errors import EXIT_CONFIG, EXIT_DATA
from mailbatch.job.model import load_job
from mailbatch.job.recipients import iter_recipients
from mailbatch.message import charts
from mailbatch.message.compose import compose
from mailbatch.message.parts import AttachmentCache
from mailbatch.message.render import Renderer
from mailbatch.message.renderpool import CHUNK, START_AT, RenderPool
from tests.helpers import write_job
from tests.pipeline import offline_job, parse
from tests.reportfiles import dry_run, html_of, related_images

pytest.importorskip("matplotlib")

REGIONS = ["north", "south", "east", "west"]
SALES = "region,week,revenue\n" + "".join(
    f"{region},W{week},{(i + 1) * 1000 + week * 37}\n"
    for i, region in enumerate(REGIONS) for week in range(1, 6))
PAGE = """<p>Hello {{ name }}</p>
<img src="{{ chart(data.sales | where(region=region), x="week", y="revenue", kind=kind,
                   title="Revenue, " ~ region) }}" width="600" alt="Revenue">
"""


JOB = """
    from: reports@example.org
    subject: "Sales {{ region }}"
    html_template: page.html
    recipients: people.csv
    data:
      sales: sales.csv
    """


def people(count: int) -> str:
    return "email,name,region,kind\n" + "".join(
        f"p{i}@example.org,P {i},{REGIONS[i % 4]},bar\n" for i in range(count))


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


def test_each_recipient_gets_the_chart_of_their_own_rows_as_an_inline_png(tmp_path):
    messages = dry_run(tmp_path, JOB, {"page.html": PAGE, "people.csv": people(8),
                                             "sales.csv": SALES})

    charts_by_region: dict[str, set[bytes]] = {}
    for i, message in enumerate(messages):
        (cid, (content_type, data, disposition)), = related_images(message).items()
        assert f'src="cid:{cid}"' in html_of(message)
        assert (content_type, disposition) == ("image/png", "inline")
        assert png_size(data) == (1200, 600)  # 600 x 300 at scale 2
        charts_by_region.setdefault(REGIONS[i % 4], set()).add(data)
    assert all(len(found) == 1 for found in charts_by_region.values())  # same data, same PNG
    assert len({next(iter(found)) for found in charts_by_region.values()}) == 4


def test_a_large_batch_draws_one_chart_per_region_once_beside_two_render_processes(
        tmp_path, monkeypatch):
    count = START_AT + CHUNK * 3
    job = load_job(write_job(tmp_path, JOB + "smtp: {host: 127.0.0.1}\n",
                             {"page.html": PAGE, "people.csv": people(count),
                              "sales.csv": SALES}))
    drawn = []
    real = charts.draw
    monkeypatch.setattr(charts, "draw", lambda spec: drawn.append(spec) or real(spec))
    renderer = Renderer(job, dt.datetime(2026, 3, 2, tzinfo=dt.UTC))

    results = []
    with RenderPool(renderer, worker=True) as pool:
        for recipient in iter_recipients(job):
            results += pool.add(recipient)
        results += pool.finish()

    assert pool.by_worker > 0
    assert drawn == []  # the drawer process drew them, while this one rendered
    folder = renderer.scratch.path
    assert len(list(folder.glob("chart-*.json"))) == 4  # each claimed (and drawn) once
    assert len(list(folder.glob("chart-*.png"))) == 4
    assert not list(folder.glob("*.error"))
    cache = AttachmentCache()
    images = {m.inline_images[0].path for _, m, _ in results}
    assert len(images) == 4
    message = parse(compose(results[-1][1], cache))
    assert all(part.defects == [] for part in message.walk())


@pytest.mark.parametrize("kind", ["line", "hbar"])
def test_line_and_horizontal_bar_charts_draw_too(tmp_path, kind):
    page = PAGE.replace("kind=kind", f"kind={kind!r}")
    (message,) = dry_run(tmp_path, JOB, {"page.html": page, "people.csv": people(1),
                                                    "sales.csv": SALES})

    (_, data, _), = related_images(message).values()
    assert png_size(data) == (1200, 600)


@pytest.mark.parametrize("call, problem", [
    ('chart(data.sales, x="week", y="region")', "chart() region 'north' (row 1) is not a "
                                                 "number"),
    ('chart(data.sales, x="week", y="revenue", kind="pie")', "chart kind 'pie' is not one of"),
    ('chart(data.sales, x="day", y="revenue")', "chart() row 1 has no field 'day'"),
    ('chart(data.sales)', "chart() needs x= and y="),
])
def test_a_chart_that_cannot_be_drawn_is_a_render_error_naming_the_recipient(
        tmp_path, capsys, call, problem):
    path = offline_job(tmp_path, JOB, {"page.html": f'<img src="{{{{ {call} }}}}">',
                                              "people.csv": people(1), "sales.csv": SALES})

    assert main(["check", str(path)]) == EXIT_DATA

    err = capsys.readouterr().err
    assert "(p0@example.org): page.html: " in err and problem in err


def test_a_mapping_of_labels_to_values_is_a_chart_too(tmp_path):
    page = '<img src="{{ chart({"north": 3, "south": "1,250.5"}, title="Totals") }}">'

    (message,) = dry_run(tmp_path, JOB, {"page.html": page, "people.csv": people(1),
                                                "sales.csv": SALES})

    assert len(related_images(message)) == 1


def test_without_matplotlib_chart_is_a_job_error_saying_what_to_install(tmp_path):
    path = offline_job(tmp_path, JOB, {"page.html": PAGE, "people.csv": people(2),
                                              "sales.csv": SALES})

    done = without_matplotlib(["check", str(path)])

    assert done.returncode == EXIT_CONFIG
    assert done.stderr.strip().splitlines() == [
        f"mailbatch: error: {tmp_path / 'page.html'}: chart() needs matplotlib, which is not "
        "installed; install it with pip install 'mailbatch[charts]', or show an image with "
        "inline_image() instead"]


def test_without_matplotlib_a_template_can_fall_back_on_charts_available(tmp_path):
    page = ('{% if charts_available %}<img src="{{ chart({"a": 1}) }}">'
            '{% else %}<p>no chart</p>{% endif %}')
    path = offline_job(tmp_path, JOB, {"page.html": page, "people.csv": people(1),
                                              "sales.csv": SALES})

    done = without_matplotlib(["run", "-q", "--dry-run", str(path)])

    assert done.returncode == 0, done.stderr
    (eml,) = tmp_path.glob("outbox/*/*.eml")
    assert "<p>no chart</p>" in html_of(parse(eml.read_bytes()))


def without_matplotlib(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``mailbatch ARGV`` in a Python where ``import matplotlib`` fails, as without the
    extra."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from mailbatch.cli.main import main\n"
            f"sys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def render_one(job_path, now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC)):
    """One recipient rendered and its charts settled; (renderer, message)."""
    renderer = Renderer(load_job(job_path), now)
    message = renderer.render(next(iter_recipients(renderer.job)))
    renderer.settle()
    return renderer, message


def test_a_chart_drawn_by_an_earlier_run_comes_from_the_cache_without_drawing(
        tmp_path, chart_cache):
    path = offline_job(tmp_path, JOB, {"page.html": PAGE, "people.csv": people(1),
                                       "sales.csv": SALES})

    first, drawn = render_one(path)
    second, cached = render_one(path)

    assert len(list(first.scratch.path.glob("chart-*.json"))) == 1  # claimed and drawn
    assert list(second.scratch.path.glob("chart-*.json")) == []  # not drawn again
    (png,) = second.scratch.path.glob("chart-*.png")
    assert png.read_bytes() == drawn.inline_images[0].path.read_bytes()
    assert cached.inline_images[0].size == png.stat().st_size
    assert (chart_cache / png.name).read_bytes() == png.read_bytes()


def test_with_the_cache_off_every_run_draws_its_charts(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILBATCH_CACHE_DIR", "off")
    path = offline_job(tmp_path, JOB, {"page.html": PAGE, "people.csv": people(1),
                                       "sales.csv": SALES})

    render_one(path)
    second, _ = render_one(path)

    assert len(list(second.scratch.path.glob("chart-*.json"))) == 1


def test_charts_unused_for_30_days_leave_the_cache_when_a_new_one_is_drawn(tmp_path,
                                                                          chart_cache):
    stale, fresh = chart_cache / "chart-old.png", chart_cache / "chart-recent.png"
    for file in (stale, fresh):
        file.write_bytes(b"png")
    month_ago = time.time() - 31 * 86400
    os.utime(stale, (month_ago, month_ago))
    path = offline_job(tmp_path, JOB, {"page.html": PAGE, "people.csv": people(1),
                                       "sales.csv": SALES})

    render_one(path)

    assert not stale.exists() and fresh.exists()
    assert len(list(chart_cache.glob("chart-*.png"))) == 2


def test_without_a_drawer_process_charts_are_drawn_in_the_render_process(tmp_path,
                                                                        monkeypatch):
    from mailbatch.message import drawer

    def no_process(*args, **kwargs):
        raise OSError("no processes left")

    monkeypatch.setattr(drawer.subprocess, "Popen", no_process)
    messages = dry_run(tmp_path, JOB, {"page.html": PAGE, "people.csv": people(4),
                                       "sales.csv": SALES})

    assert [png_size(next(iter(related_images(m).values()))[1]) for m in messages] == \
        [(1200, 600)] * 4


def test_a_chart_that_fails_to_draw_fails_its_messages_and_nothing_is_sent(
        tmp_path, monkeypatch, capsys):
    from mailbatch.message import drawer

    def no_process(*args, **kwargs):
        raise OSError("no processes left")

    def broken(spec):
        raise RuntimeError("the font cache is broken")

    monkeypatch.setattr(drawer.subprocess, "Popen", no_process)
    monkeypatch.setattr(drawer, "draw", broken)
    path = offline_job(tmp_path, JOB, {"page.html": PAGE, "people.csv": people(2),
                                       "sales.csv": SALES})

    assert main(["run", "--dry-run", str(path)]) == EXIT_DATA

    err = capsys.readouterr().err
    assert "message(s) could not be rendered; nothing was sent" in err
    assert "could not be drawn: RuntimeError: the font cache is broken; the messages that " \
           "show it cannot be sent" in err
    assert not list(tmp_path.glob("outbox/*/*.eml"))
