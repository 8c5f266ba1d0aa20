"""``check`` and ``preview`` show a report's content: HTML size, inline images, generated files;
``preview --html-out`` writes a page that looks in a browser as the message will."""

from __future__ import annotations

import re

from mailbatch.cli.main import main
from tests.pipeline import offline_job
from tests.reportfiles import png

JOB = """
    from: reports@example.org
    subject: "Sales {{ region }}"
    html_template: page.html
    recipients: people.csv
    inline_images:
      logo: img/logo.png
    attachments:
      - csv: "[{'region': region, 'n': 1}]"
        filename: "n-{{ region }}.csv"
"""
PAGE = """<html><head><style>p { color: #c00 }</style></head><body>
<img src="cid:logo" alt="Logo"><p>Hi {{ name }}</p>
{% if region == "north" %}<img src="{{ inline_image('img/map-' ~ region ~ '.png') }}">{% endif %}
</body></html>
"""
FILES = {"page.html": PAGE, "people.csv": "email,name,region\na@example.org,A,north\n"
                                          "b@example.org,B,south\n",
         "img/logo.png": png(10, 10), "img/map-north.png": png(20, 20, (0, 0, 0))}


def test_check_reports_html_size_and_inline_images_per_message(tmp_path, capsys):
    path = offline_job(tmp_path, JOB, FILES)

    assert main(["check", "-v", str(path)]) == 0

    captured = capsys.readouterr()
    assert re.search(r"  html:        \d+ bytes to \d+ bytes per message, as sent\n",
                     captured.out)
    images = len(png(10, 10)) + len(png(20, 20, (0, 0, 0)))
    assert f"  images:      1 to 2 inline per message (3 in all), 2 distinct file(s), " \
           f"{images} bytes\n" in captured.out
    assert "attachments: 1 per recipient (2 in all), 2 distinct file(s)" in captured.out
    assert re.search(rf"a@example.org: html \d+ bytes, 2 inline image\(s\) of {images} bytes",
                     captured.err)


def test_preview_lists_the_inline_images_and_marks_generated_attachments(tmp_path, capsys):
    path = offline_job(tmp_path, JOB, FILES)

    assert main(["preview", str(path)]) == 0

    out = capsys.readouterr().out
    assert "# 2 inline image(s) in the HTML:\n  logo.png  image/png" in out
    assert "(cid:logo)" in out and "map-north.png  image/png" in out
    assert "  n-north.csv  text/csv  19 bytes  (generated)" in out


def test_preview_html_out_writes_the_images_beside_the_page_and_points_the_page_at_them(
        tmp_path, capsys):
    path = offline_job(tmp_path / "job", JOB, FILES)
    page = tmp_path / "look.html"

    assert main(["preview", str(path), "--html-out", str(page)]) == 0

    html = page.read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources == ["look_files/logo.png", "look_files/map-north.png"]
    assert (tmp_path / sources[0]).read_bytes() == png(10, 10)
    assert (tmp_path / sources[1]).read_bytes() == png(20, 20, (0, 0, 0))
    assert re.search(r'<p style="color: #c00;?">Hi A</p>', html)  # as the message has it
    assert "cid:" not in html
    assert f"# HTML body written to {page}" in capsys.readouterr().out


def test_the_preview_server_shows_the_inline_images_of_the_html_part(tmp_path):
    import threading
    import urllib.request

    from mailbatch.cli.serve import PreviewServer

    offline_job(tmp_path, JOB, FILES)
    server = PreviewServer(tmp_path / "job.yaml")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(server.url + "html?r=1", timeout=10) as response:
            html = response.read().decode("utf-8")
        sources = re.findall(r'src="([^"]+)"', html)
        images = []
        for source in sources:
            with urllib.request.urlopen(server.url + source.lstrip("/").replace("&amp;", "&"),
                                        timeout=10) as response:
                images.append((response.headers["Content-Type"], response.read()))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

    assert "cid:" not in html and all(s.startswith("/image?r=1&") for s in sources)
    assert images == [("image/png", png(10, 10)), ("image/png", png(20, 20, (0, 0, 0)))]
