"""The Python API: `import mailbatch` runs a job without the command line, as docs/api.md says."""

from __future__ import annotations

import shutil
from pathlib import Path

import mailbatch
from mailbatch import errors

ROOT = Path(__file__).resolve().parents[1]


def test_every_error_class_a_caller_may_catch_is_exported():
    public = {name for name in errors.__all__ if not name.startswith("EXIT_")}
    assert public <= set(mailbatch.__all__)
    for name in mailbatch.__all__:
        assert getattr(mailbatch, name) is not None


def test_the_documented_example_runs_the_demo_job_as_a_dry_run(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    monkeypatch.chdir(tmp_path)

    job = mailbatch.load_job("configs/weekly-sales.yaml")
    report = mailbatch.run(job, mailbatch.RunOptions(dry_run=True))

    assert report.summary().startswith("weekly-sales: dry run ")
    assert report.counts["dry-run"] == 3 and report.json_path.is_file()
    assert report.exit_code == 0  # what `mailbatch run` would exit with
    assert sorted(Path(report.outbox).glob("*.eml"))
