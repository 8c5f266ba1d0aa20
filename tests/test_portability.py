"""mailbatch without the POSIX-only modules: what a Windows interpreter lacks, hidden here.

Windows itself cannot be tested on this machine. These tests take away what a Windows Python
does not have (``fcntl``, ``resource``, ``termios``, ``pwd``, ``grp``): every module must still
import, and with a stand-in for ``msvcrt`` (tests/fakewindows.py) a whole batch must run,
locked through the msvcrt branch, against the real test server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.batchjobs import addresses, batch_job, newest_report, statuses

ROOT = Path(__file__).resolve().parents[1]
POSIX_ONLY = ("fcntl", "resource", "termios", "pwd", "grp")

PRELUDE = f"""
import importlib, pkgutil, sys
for name in {POSIX_ONLY!r}:
    sys.modules[name] = None  # "import NAME" now raises ImportError, as on Windows
import mailbatch
names = [m.name for m in pkgutil.walk_packages(mailbatch.__path__, "mailbatch.")]
for name in names:
    importlib.import_module(name)
"""


def python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=120,
                          check=False)


def test_every_module_imports_without_fcntl_or_any_other_posix_only_module(tmp_path):
    done = python("print(len(names))", tmp_path)

    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 50  # every module, not an empty walk


def test_a_whole_batch_runs_without_fcntl_locked_through_msvcrt(
        smtp_server, ca_file, tmp_path, password_env):
    job = batch_job(tmp_path / "job", smtp_server, ca_file, 3, extra="batch: fixed\n")

    # msvcrt's stand-in comes last: the standard library takes a msvcrt module as a sign of
    # Windows (subprocess would look for _winapi), mailbatch only looks for it when it locks.
    done = python(f"""
        import json
        from mailbatch.cli.main import main
        from tests.fakewindows import install
        fake = install()
        code = main(["run", {str(job)!r}])
        print(json.dumps(fake.calls))
        raise SystemExit(code)
        """, tmp_path)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(smtp_server.received_count_by_rcpt()) == addresses(3)
    assert set(statuses(newest_report(job.parent)).values()) == {"sent"}
    calls = json.loads(done.stdout)
    assert [mode for mode, _, _ in calls] == [2, 0]  # LK_NBLCK, then LK_UNLCK at the end
