"""Helpers for the scheduler's tests: scheduled job files, and the service as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.helpers import smtp_block

__all__ = ["OWNER", "ServiceProcess", "runs_seen", "subjects", "wait_for_status",
           "write_scheduled"]

OWNER = "owner@example.org"


def write_scheduled(folder: Path, name: str, server, ca_file, schedule: str = "every 10 minutes",
                    *, recipients: tuple[str, ...] = ("ann", "bob"), text: str = "Hello {{ name }}",
                    extra: str = "", smtp: dict[str, Any] | None = None) -> Path:
    """A job file `folder/name.yaml` sending to `recipients`@example.org on `schedule`
    (`smtp` adds or overrides keys of its smtp: section)."""
    people = "\n".join(f"  - {{email: {r}@example.org, name: {r.title()}}}" for r in recipients)
    path = folder / f"{name}.yaml"
    content = (smtp_block(server, ca_file, **(smtp or {})) + "from: Reports <reports@example.org>\n"
               f"subject: '{name} for {{{{ name }}}}'\ntext: '{text}'\nrecipients:\n{people}\n"
               f"schedule: {schedule}\n{extra}")
    old = path.stat().st_mtime if path.exists() else None
    path.write_text(content, encoding="utf-8")
    if old is not None:  # a rewrite is always seen as a change, however coarse the clock
        os.utime(path, (old + 1, old + 1))
    return path


def subjects(server) -> list[str]:
    return sorted(m.message["Subject"] for m in server.messages)


def wait_for_status(path: Path, ready: Callable[[dict], Any], timeout: float = 20) -> dict:
    """The status file once ``ready(status)`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = None
    while True:
        try:
            status = json.loads(path.read_text())
            if ready(status):
                return status
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"status file not ready within {timeout}s: {status}")
        time.sleep(0.05)


def runs_seen(status: dict, name: str, seen: dict[str, set[str]]) -> int:
    """Add job ``name``'s last run start to ``seen``; how many different runs were seen."""
    job = next((j for j in status["jobs"] if j["name"] == name), None)
    if job and job["last_run"]:
        seen.setdefault(name, set()).add(job["last_run"]["started"] + job["last_run"]["finished"])
    return len(seen.get(name, ()))


class ServiceProcess:
    """``python -m mailbatch schedule TARGETS --status-file STATUS`` as a real process, its
    output in files (stderr's device and inode can then stand for systemd's journal)."""

    def __init__(self, targets: Sequence[Path], status_file: Path, *, args: Sequence[str] = (),
                 env: dict[str, str] | None = None, journal: bool = False) -> None:
        self.targets, self.status_file = list(targets), status_file
        folder = status_file.parent
        folder.mkdir(parents=True, exist_ok=True)
        n = len(list(folder.glob("service-*.err")))
        self.out_path, self.err_path = folder / f"service-{n}.out", folder / f"service-{n}.err"
        self.args, self.env, self.journal = list(args), env, journal
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServiceProcess:
        env = {**os.environ, **(self.env or {})}
        env.pop("JOURNAL_STREAM", None)
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            if self.journal:
                stat = os.fstat(err.fileno())
                env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailbatch", "schedule", *map(str, self.targets),
                 "--status-file", str(self.status_file), *self.args],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int = signal.SIGHUP) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def status(self, ready: Callable[[dict], Any], timeout: float = 20) -> dict:
        """The status file of this process once ``ready(status)``; fails early if it died."""
        def check(status: dict) -> Any:
            assert self.alive(), f"the service died:\n{self.err()}"
            return status["service"]["pid"] == self.pid and ready(status)
        return wait_for_status(self.status_file, check, timeout)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def out(self) -> str:
        return self.out_path.read_text()

    def err(self) -> str:
        return self.err_path.read_text()
