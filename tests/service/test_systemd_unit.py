"""The systemd unit in configs/ is valid as written and hardened as the docs say.

`systemd-analyze verify` runs where systemd's tools are installed (skipped elsewhere); it needs
the unit's ExecStart program to exist, so the check runs on a copy that points at this
environment's `mailbatch` instead of /opt/mailbatch/venv.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "configs" / "mailbatch-scheduler.service"
INSTALLED = "/opt/mailbatch/venv/bin/mailbatch"


def service_settings() -> dict[str, list[str]]:
    """Each [Service] key with all its values (systemd allows a key more than once)."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_finds_nothing_wrong(tmp_path):
    mailbatch = Path(sys.executable).with_name("mailbatch")
    assert mailbatch.exists()
    unit = tmp_path / "mailbatch-scheduler.service"
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED, str(mailbatch)),
                    encoding="utf-8")

    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    assert "mailbatch-scheduler.service" not in done.stderr, done.stderr


def test_the_unit_makes_its_folders_and_runs_hardened():
    settings = service_settings()

    assert settings["StateDirectory"] == ["mailbatch mailbatch/jobs"]
    assert settings["ExecStart"][0].split()[:2] == [INSTALLED, "schedule"]
    for key, value in {"UMask": "0077", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                       "CapabilityBoundingSet": "", "RestrictNamespaces": "yes"}.items():
        assert settings[key] == [value], key
    assert "@system-service" in settings["SystemCallFilter"]


def test_the_unit_reads_as_an_ini_file_with_its_three_sections():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    assert parser.sections() == ["Unit", "Service", "Install"]
