"""`mailbatch init`: a starter job that works at once, without a mail server."""

from __future__ import annotations

import email
import email.policy
import glob
import re
import tomllib
from pathlib import Path

import pytest

from mailbatch.cli.main import main
from mailbatch.cli.starter import starter_files
from mailbatch.job.model import load_job

ROOT = Path(__file__).resolve().parents[2]
STARTER = {"job.yaml", "recipients.csv", "data/figures.csv", "templates/message.html.j2",
           "attachments/common/terms.txt"}


def test_init_writes_the_starter_job_into_a_new_folder(tmp_path, capsys):
    folder = tmp_path / "monthly"

    assert main(["init", str(folder)]) == 0

    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert written == {name for name, _ in starter_files()} >= STARTER
    out = capsys.readouterr().out
    assert f"mailbatch check {folder / 'job.yaml'}" in out
    assert f"mailbatch run --dry-run {folder / 'job.yaml'}" in out
    job = load_job(folder / "job.yaml")
    assert job.smtp.password is not None and job.smtp.password.kind == "env"


def test_init_without_a_folder_writes_into_the_current_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    assert main(["init"]) == 0

    assert (tmp_path / "job.yaml").is_file()


def test_the_starter_job_passes_check_and_previews_without_a_server(tmp_path, capsys):
    assert main(["init", "-q", str(tmp_path)]) == 0
    job = str(tmp_path / "job.yaml")

    assert main(["check", job]) == 0
    assert "OK, nothing sent: 3 recipient(s)" in capsys.readouterr().out
    assert main(["preview", job, "--recipient", "2"]) == 0
    out = capsys.readouterr().out
    assert "To: Bjørn Larsen <bjorn.larsen@example.com>" in out
    assert "terms.txt" in out and "south-figures.csv" in out


def test_the_starter_job_dry_run_writes_a_parseable_message_per_recipient(tmp_path, capsys):
    assert main(["init", "-q", str(tmp_path)]) == 0

    assert main(["run", "--dry-run", str(tmp_path / "job.yaml")]) == 0

    messages = sorted(tmp_path.glob("outbox/*/*.eml"))
    assert len(messages) == 3
    parsed = email.message_from_bytes(messages[0].read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "Ana Silva <ana.silva@example.com>"
    assert parsed.get_body(("html",)) is not None
    assert [p.get_filename() for p in parsed.iter_attachments()] == \
        ["terms.txt", "north-figures.csv"]


def test_init_never_overwrites_and_writes_nothing_when_a_file_exists(tmp_path, capsys):
    (tmp_path / "recipients.csv").write_text("mine\n")

    assert main(["init", str(tmp_path)]) == 2

    err = capsys.readouterr().err
    assert "already has recipients.csv" in err and "never overwrites" in err
    assert (tmp_path / "recipients.csv").read_text() == "mine\n"
    assert not (tmp_path / "job.yaml").exists()


def test_every_starter_file_is_declared_as_package_data():
    """A non-editable install (wheel or sdist) ships exactly what package-data matches."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["mailbatch"]
    shipped = {Path(p).relative_to(ROOT / "mailbatch" / "cli" / "starter").as_posix()
               for pattern in patterns
               for p in glob.glob(str(ROOT / "mailbatch" / pattern), recursive=True)
               if Path(p).is_file() and "starter" in Path(p).parts}
    assert {name for name, _ in starter_files()} == shipped


@pytest.mark.parametrize("name", sorted(STARTER))
def test_starter_files_are_utf8_text_without_secrets(name):
    data = dict(starter_files())[name].decode("utf-8")
    assert not re.search(r"(?im)^\s*password\s*:", data)
