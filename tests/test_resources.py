"""Bounded resources: the bombs of the outside corpus, each run as ``mailbatch check`` in a
subprocess under an address-space limit, end with one clear error line within seconds.

Without the bounds, the alias bomb grows to gigabytes in seconds (here: MemoryError, a
traceback), ``range(10**9)`` or an endless macro runs forever or dies of RecursionError, a
value nested 3,000 deep or a 5,000-digit integer crash the loader, ``.inf`` hangs a socket.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline import offline_job

LIMIT = 1024 * 1024 * 1024  # 1 GiB of address space: mailbatch needs about 100 MiB here
SECONDS = 30  # the endless loop takes the render budget (5 s); everything else well under 1 s

BOMB = "".join(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join(
    [f"*{chr(96 + i)}"] * 9 if i else ['"lol"'] * 9) + "]\n" for i in range(9))
HEAD = "from: r@example.org\nsubject: Hi\n"
ONE = "recipients: [{email: ann@example.org, name: Ann}]\n"


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


CASES = {
    "alias bomb in the job file (as cc)": (HEAD + "text: x\n" + ONE + BOMB + "cc: *i\n", {},
                                           78, "aliases (*name) expand"),
    "alias bomb in a YAML data file": (HEAD + "text: '{{ data.big }}'\n" + ONE +
                                       "data: {big: big.yaml}\n", {"big.yaml": BOMB}, 78,
                                       "aliases (*name) expand"),
    "alias bomb as the recipient list": (HEAD + "text: x\nrecipients: people.yaml\n",
                                         {"people.yaml": BOMB + "recipients: [*i]\n"}, 78,
                                         "aliases (*name) expand"),
    "a value nested 3,000 deep in YAML": (HEAD + "text: x\n" + ONE + "data: {d: d.yaml}\n",
                                          {"d.yaml": "x: " + "[" * 3000 + "]" * 3000}, 78,
                                          "nested more than 100 levels"),
    "a value nested 3,000 deep in JSON": (HEAD + "text: x\n" + ONE + "data: {d: d.json}\n",
                                          {"d.json": "[" * 3000 + "]" * 3000}, 78,
                                          "nested more than 100 levels"),
    "a 5,000-digit integer": (HEAD + "text: x\n" + ONE + "data: {d: d.yaml}\n",
                              {"d.yaml": "n: " + "9" * 5000}, 78, "a number too large"),
    "range(10**9) in a template": (HEAD + "text: '{% for i in range(10**9) %}{% endfor %}'\n"
                                   + ONE, {}, 65, "Range too big"),
    "a macro that calls itself": (HEAD + "text_template: t.j2\n" + ONE,
                                  {"t.j2": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"},
                                  65, "calls nested more than 50 deep"),
    "a template that never ends": (HEAD + "text_template: t.j2\n" + ONE,
                                   {"t.j2": "{% for i in range(100000) %}{% for j in "
                                            "range(100000) %}{% endfor %}{% endfor %}"},
                                   65, "took longer than 5 seconds"),
    "a template building a gigabyte": (HEAD + "text: \"{{ 'x' * 10**9 }}\"\n" + ONE, {}, 65,
                                       "repeating a value"),
    "timeout .inf": (HEAD + "text: x\n" + ONE, {"timeout": ".inf"}, 78, "must be a finite"),
    "timeout .nan": (HEAD + "text: x\n" + ONE, {"timeout": ".nan"}, 78, "must be a finite"),
}


@pytest.mark.parametrize("name", CASES)
def test_a_bomb_ends_in_one_clear_line_within_seconds_under_a_memory_limit(tmp_path, name):
    body, files, code, expect = CASES[name]
    timeout = files.pop("timeout", None) if isinstance(files, dict) else None
    job = offline_job(tmp_path, body, files)
    if timeout:
        job.write_text(job.read_text().replace("  timeout: 2\n", f"  timeout: {timeout}\n"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mailbatch", "check", str(job)],
                          capture_output=True, text=True, timeout=SECONDS,
                          preexec_fn=_limited, cwd=Path(tmp_path), check=False)
    assert time.monotonic() - started < SECONDS
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("mailbatch: error: "), done.stderr
    assert expect in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 3
