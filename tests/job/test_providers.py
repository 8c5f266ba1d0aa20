"""Provider presets: smtp.provider fills host, port and security; the job's own keys win."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbatch import load_job
from mailbatch.errors import JobError
from mailbatch.job.providers import PROVIDERS
from tests.helpers import write_job

BODY = """
    from: "Reports <reports@example.org>"
    subject: Hello
    text: Hi
    recipients: [{email: anne@example.org}]
    smtp:
"""


def smtp_of(tmp_path, *lines: str):
    return load_job(write_job(tmp_path, BODY + "".join(f"      {line}\n" for line in lines))).smtp


@pytest.mark.parametrize(("provider", "expected"), [
    ("gmail", ("smtp.gmail.com", 465, "tls")),
    ("microsoft365", ("smtp.office365.com", 587, "starttls")),
    ("amazon-ses:eu-west-1", ("email-smtp.eu-west-1.amazonaws.com", 465, "tls")),
    ("Amazon-SES:us-gov-west-1", ("email-smtp.us-gov-west-1.amazonaws.com", 465, "tls")),
])
def test_a_provider_fills_host_port_and_security(tmp_path, provider, expected):
    smtp = smtp_of(tmp_path, f"provider: {provider}")

    assert (smtp.host, smtp.port, smtp.security) == expected


def test_keys_written_in_the_job_win_over_the_preset(tmp_path):
    smtp = smtp_of(tmp_path, "provider: gmail", "host: smtp-relay.gmail.com", "port: 2465")

    assert (smtp.host, smtp.port, smtp.security) == ("smtp-relay.gmail.com", 2465, "tls")


def test_choosing_the_other_security_mode_takes_that_modes_standard_port(tmp_path):
    smtp = smtp_of(tmp_path, "provider: gmail", "security: starttls")

    assert (smtp.host, smtp.port, smtp.security) == ("smtp.gmail.com", 587, "starttls")


@pytest.mark.parametrize(("provider", "reason"), [
    ("gmial", "unknown provider 'gmial'; known: gmail, microsoft365"),
    ("amazon-ses", "amazon-ses needs its region, e.g. amazon-ses:eu-west-1"),
    ("amazon-ses:../../etc", "amazon-ses needs its region"),
    ("gmail:eu", "provider gmail takes no ':eu'"),
])
def test_a_bad_provider_is_an_error_naming_the_line_and_the_known_ones(tmp_path, provider,
                                                                       reason):
    with pytest.raises(JobError) as caught:
        smtp_of(tmp_path, f"provider: {provider!r}")

    assert caught.value.line == 6 and caught.value.field == "smtp.provider"
    assert reason in caught.value.reason


def test_without_a_provider_the_host_is_still_required(tmp_path):
    with pytest.raises(JobError) as caught:
        smtp_of(tmp_path, "port: 465")

    assert caught.value.field == "smtp.host" and "required" in caught.value.reason


def test_every_preset_is_a_submission_port_with_a_known_security_mode():
    for name, preset in PROVIDERS.items():
        assert (preset.port, preset.security) in ((465, "tls"), (587, "starttls")), name
        assert preset.note, name


def test_the_documentation_lists_every_preset():
    root = Path(__file__).resolve().parents[2]
    text = "\n".join(p.read_text(encoding="utf-8") for p in [root / "README.md",
                                                              *root.glob("docs/**/*.md")])
    for name, preset in PROVIDERS.items():
        assert f"`{name}" in text and preset.host.replace("{region}", "REGION") in text, name
