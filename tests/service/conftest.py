"""Fixtures of the scheduler's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    """An empty folder of job files, as `mailbatch schedule FOLDER` watches."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    return folder
