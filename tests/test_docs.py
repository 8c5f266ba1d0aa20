"""The documentation builds with no broken link, and the README's links and job example hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mailbatch.cli.check import check
from mailbatch.job.model import load_job

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_docs_build_in_strict_mode(tmp_path):
    """A broken link or anchor, or a page missing from the navigation, fails the build."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_every_link_in_the_readme_points_at_a_file_of_the_repository():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target


def test_the_readme_is_a_short_introduction():
    assert len(README.splitlines()) <= 170


def test_the_job_example_in_the_readme_passes_check(tmp_path, monkeypatch):
    example = re.search(r"```yaml\n(.*?)```", README, re.S)
    assert example is not None
    job = tmp_path / "weekly.yaml"
    job.write_text(example.group(1), encoding="utf-8")
    (tmp_path / "people.csv").write_text("email,name,region\nana@example.com,Ana,north\n",
                                         encoding="utf-8")
    monkeypatch.delenv("MAILBATCH_PASSWORD", raising=False)

    summary = check(load_job(job))

    assert summary.recipients == 1
