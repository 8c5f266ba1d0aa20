"""The demo job (configs/weekly-sales.yaml) and the starter job (mailbatch init) show a report
off: styled HTML, a table, inline images, a text part made from the HTML, a generated CSV; with
a chart when matplotlib is installed, and working without it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailbatch.cli.main import main
from tests.pipeline import parse
from tests.reportfiles import structure, text_of

ROOT = Path(__file__).resolve().parents[2]
HAS_CHARTS = importlib.util.find_spec("matplotlib") is not None


def demo(tmp_path: Path) -> Path:
    """A copy of the demo job (configs/ and the templates/ it names), to run anywhere."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs",
                    ignore=shutil.ignore_patterns("outbox", "reports", ".mailbatch"))
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path / "configs" / "weekly-sales.yaml"


def run(argv: list[str], charts: bool) -> None:
    """``mailbatch ARGV``, in a Python without matplotlib when ``charts`` is false."""
    if charts:
        assert main(argv) == 0
        return
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            f"from mailbatch.cli.main import main\nsys.exit(main({argv!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def report_tree(images: int, attachments: list[str]) -> list[tuple[int, str]]:
    return [(0, "multipart/mixed"), (1, "multipart/alternative"), (2, "text/plain"),
            (2, "multipart/related"), (3, "text/html"), *[(3, "image/png")] * images,
            *((1, kind) for kind in attachments)]


@pytest.mark.parametrize("charts", [
    pytest.param(True, marks=pytest.mark.skipif(not HAS_CHARTS, reason="needs matplotlib")),
    False], ids=["with charts", "without the charts extra"])
def test_the_demo_dry_run_sends_a_styled_report_with_its_images_table_and_csv(tmp_path,
                                                                              charts):
    job = demo(tmp_path)

    run(["run", "-q", "--dry-run", str(job)], charts)

    messages = [parse(p.read_bytes()) for p in sorted(job.parent.glob("outbox/*/*.eml"))]
    assert len(messages) == 3
    for message in messages:
        assert all(part.defects == [] for part in message.walk())
        assert structure(message) == report_tree(2 if charts else 1,
                                                 ["application/pdf", "text/plain", "text/csv"])
        html = message.get_body(("html",)).get_content()
        assert "<style>" in html and "@media" in html  # what could not be inlined
        assert 'class="report-table"' in html and "style=" in html
    ana = messages[0]
    assert "Product    Units    Revenue\n---------  -----  ---------\n" \
           "Product 1     46   8,536.00\n" in text_of(ana)
    csv_part = list(ana.iter_attachments())[-1]
    assert csv_part.get_filename().startswith("sales-north-")
    assert csv_part.get_payload(decode=True).startswith(b"product,units,revenue\r\n")


@pytest.mark.parametrize("charts", [
    pytest.param(True, marks=pytest.mark.skipif(not HAS_CHARTS, reason="needs matplotlib")),
    False], ids=["with charts", "without the charts extra"])
def test_the_starter_job_sends_a_styled_report_with_a_logo_table_and_generated_csv(
        tmp_path, capsys, charts):
    assert main(["init", "-q", str(tmp_path)]) == 0

    run(["run", "-q", "--dry-run", str(tmp_path / "job.yaml")], charts)

    ana = parse(sorted(tmp_path.glob("outbox/*/*.eml"))[0].read_bytes())
    assert structure(ana) == report_tree(2 if charts else 1, ["text/plain", "text/csv"])
    assert "Week   Orders  Revenue\n" in text_of(ana)
    assert [p.get_filename() for p in ana.iter_attachments()] == ["terms.txt",
                                                                   "north-figures.csv"]
