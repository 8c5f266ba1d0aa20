"""Every example job in configs/ loads and renders every message, with no server and no secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbatch.cli.check import check
from mailbatch.job.model import load_job

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLES = sorted([*CONFIGS.glob("*.yaml"), *CONFIGS.glob("examples/*.yaml")])


def test_there_are_examples_for_the_common_set_ups():
    names = {path.stem for path in EXAMPLES}
    assert {"weekly-sales", "starttls", "gmail-oauth2", "microsoft365-oauth2", "amazon-ses",
            "scheduled-with-notify", "custom-headers"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_an_example_job_passes_check_without_a_server(path):
    job = load_job(path)

    summary = check(job)

    assert summary.recipients > 0
