"""The documentation builds with no broken link, and what it states that a program can check
holds: its job examples run, and its option, key and exit-code lists match the program."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import mailbatch
from mailbatch import errors
from mailbatch.cli.check import check
from mailbatch.cli.main import EXIT_BROKEN_PIPE, build_parser
from mailbatch.errors import JobError
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


# --- every YAML example in the docs is a job, or a part of one, that mailbatch accepts ---------

DOCS = sorted((ROOT / "docs").glob("*.md"))
# The files the complete jobs of the docs name, as the text beside each example describes them.
EXAMPLE_FILES = {
    "people.csv": "email,name,region\nana@example.com,Ana,north\n",
    "managers.csv": "email;name;region\nana@example.com;Ana Silva;north\n"
                    "bjorn@example.com;Bjorn Larsen;south\n",
    "data/sales.csv": "region,product,units,revenue\nnorth,tea,10,25.5\nsouth,tea,3,7.5\n",
}
# A fragment (a key or two, such as `notify:` or `schedule:`) is tried inside this job.
BASE_JOB = {"smtp": {"host": "smtp.example.com"}, "from": "Reports <reports@example.com>",
            "subject": "Figures for {{ region }}", "recipients": "people.csv",
            "text": "Hello {{ name }}"}


def _yaml_examples() -> list[Any]:
    found = []
    for page in [ROOT / "README.md", *DOCS]:
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"^( *)```yaml\n(.*?)^\1```", text, re.S | re.M):
            line = text.count("\n", 0, block.start()) + 1
            body = textwrap.dedent(block.group(2))
            found.append(pytest.param(body, id=f"{page.name}:{line}"))
    return found


@pytest.mark.parametrize("example", _yaml_examples())
def test_every_yaml_example_in_the_docs_is_accepted_as_written(example, tmp_path, monkeypatch):
    """A block with `smtp:` is a complete job: it passes `check` and runs as a dry run. Any
    other block is part of a job: with the keys it sets, a small job loads."""
    for name, content in EXAMPLE_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content, encoding="utf-8")
    monkeypatch.delenv("MAILBATCH_PASSWORD", raising=False)
    job_file = tmp_path / "example.yaml"
    keys = yaml.safe_load(example)
    assert isinstance(keys, dict), "a YAML example must be a mapping of job keys"
    if "smtp" in keys:
        job_file.write_text(example, encoding="utf-8")
    else:
        job_file.write_text(yaml.safe_dump({**BASE_JOB, **keys}), encoding="utf-8")

    job = load_job(job_file)
    summary = check(job)
    report = mailbatch.run(job, mailbatch.RunOptions(dry_run=True))

    assert report.counts["dry-run"] == summary.recipients > 0


# --- the reference pages name what the program has, and the program has what they name -------

COMMANDS_PAGE = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*[a-z]")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}


def test_every_option_of_every_command_is_in_the_commands_page():
    for name, parser in _subcommands().items():
        for option in _long_options(parser) - {"--help", "--quiet", "--verbose"}:
            assert option in OPTION.findall(COMMANDS_PAGE), \
                f"mailbatch {name} {option} is not in docs/commands.md"


def test_every_option_a_command_row_names_is_an_option_of_that_command():
    commands = _subcommands()
    rows = re.findall(r"^\| `mailbatch (\w+)[ `].*$", COMMANDS_PAGE, re.M)
    assert set(rows) == set(commands), "docs/commands.md has a row for every command"
    for row in re.finditer(r"^\| `mailbatch (\w+)[ `].*$", COMMANDS_PAGE, re.M):
        name = row.group(1)
        # Another command named in passing (`run --dry-run` in the row of init) is not this one.
        others = "|".join(c for c in commands if c != name)
        named = set(OPTION.findall(re.sub(rf"`(?:{others}) [^`]*`", "", row.group(0))))
        assert named <= _long_options(commands[name]), \
            f"docs/commands.md: mailbatch {name} has no {named - _long_options(commands[name])}"


def test_every_option_the_readme_names_exists():
    known = set().union(*(_long_options(p) for p in _subcommands().values())) | {"--version"}
    assert set(OPTION.findall(README)) <= known


def _known_keys(tmp_path: Path, where: str) -> set[str]:
    """The keys the loader knows at the top level or under `smtp:`, as its error lists them."""
    job = {**BASE_JOB, "smtp": {**BASE_JOB["smtp"]}}
    (job["smtp"] if where == "smtp" else job)["no_such_key"] = 1
    (tmp_path / "people.csv").write_text(EXAMPLE_FILES["people.csv"], encoding="utf-8")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job), encoding="utf-8")
    with pytest.raises(JobError) as caught:
        load_job(tmp_path / "job.yaml")
    listed = re.search(r"known keys here: ([^)]*)\)", str(caught.value))
    assert listed is not None, str(caught.value)
    return set(listed.group(1).split(", "))


def test_the_job_file_page_has_a_row_for_every_key_the_loader_knows(tmp_path):
    page = (ROOT / "docs" / "job-file.md").read_text(encoding="utf-8")
    table = page.split("## Keys", 1)[1].split("\n## ", 1)[0]
    documented = {key for cell in re.findall(r"^\| ([^|]+) \|", table, re.M)
                  for key in re.findall(r"`([\w.]+)`", cell)}

    top = {k for k in documented if not k.startswith("smtp.")}
    smtp = {k.removeprefix("smtp.") for k in documented if k.startswith("smtp.")}

    assert top == _known_keys(tmp_path, "top") - {"smtp"}
    assert smtp == _known_keys(tmp_path, "smtp")


def test_the_exit_code_table_lists_every_exit_code_and_no_other():
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    table = page.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    codes = {getattr(errors, name) for name in errors.__all__ if name.startswith("EXIT_")}

    assert documented == codes | {EXIT_BROKEN_PIPE}
