"""Real batches through a real MTA (opt-in: ``pytest -m mta``), named by the environment.

A server we did not write shows what our own test server cannot: Nagle's algorithm on its
sockets, its own reply timing, its limits and refusals. Set at least MAILBATCH_MTA_HOST,
MAILBATCH_MTA_PORT (implicit TLS), MAILBATCH_MTA_CA_FILE, MAILBATCH_MTA_USER and
MAILBATCH_MTA_PASSWORD; optionally MAILBATCH_MTA_STARTTLS_PORT, MAILBATCH_MTA_DOMAIN (a
domain it delivers, default example.test), MAILBATCH_MTA_DEFER_DOMAIN and
MAILBATCH_MTA_REJECT_DOMAIN (domains it answers 450 and 550 at RCPT) and
MAILBATCH_MTA_MAILDIR (its Maildir, to count what arrived). ``../shared/mta/`` runs Postfix
this way on loopback; the README's Development section lists the values.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from mailbatch.errors import EXIT_FAILURES, EXIT_OK, EXIT_PARTIAL, EXIT_TEMPFAIL
from mailbatch.job.model import load_job
from mailbatch.smtp.transport import SmtpTransport
from tests.batchjobs import newest_report, run_batch, spawn, statuses
from tests.helpers import PASSWORD_ENV, write_job

pytestmark = pytest.mark.mta


@dataclass(frozen=True)
class Mta:
    host: str
    port: int
    starttls_port: int | None
    ca_file: Path
    user: str
    password: str
    domain: str
    defer_domain: str | None
    reject_domain: str | None
    maildir: Path | None

    def received(self, tag: str) -> Counter[str]:
        """Messages in the Maildir per original recipient, for this test's addresses."""
        assert self.maildir is not None
        found: Counter[str] = Counter()
        for folder in ("new", "cur"):
            for path in (self.maildir / folder).glob("*"):
                with path.open("rb") as file:
                    head = BytesHeaderParser().parse(file)
                to = str(head.get("X-Original-To", ""))
                if tag in to:
                    found[to] += 1
        return found


@pytest.fixture(scope="module")
def mta() -> Mta:
    env = os.environ
    if not env.get("MAILBATCH_MTA_HOST"):
        pytest.skip("no MTA: set MAILBATCH_MTA_HOST and the others (see this module)")
    maildir = env.get("MAILBATCH_MTA_MAILDIR")
    starttls = env.get("MAILBATCH_MTA_STARTTLS_PORT")
    return Mta(host=env["MAILBATCH_MTA_HOST"], port=int(env.get("MAILBATCH_MTA_PORT", "465")),
               starttls_port=int(starttls) if starttls else None,
               ca_file=Path(env["MAILBATCH_MTA_CA_FILE"]), user=env["MAILBATCH_MTA_USER"],
               password=env["MAILBATCH_MTA_PASSWORD"],
               domain=env.get("MAILBATCH_MTA_DOMAIN", "example.test"),
               defer_domain=env.get("MAILBATCH_MTA_DEFER_DOMAIN"),
               reject_domain=env.get("MAILBATCH_MTA_REJECT_DOMAIN"),
               maildir=Path(maildir) if maildir else None)


@pytest.fixture
def tag() -> str:
    """A prefix of this test's addresses: the MTA's store is shared, nothing is reset."""
    return f"t{uuid.uuid4().hex[:10]}"


def mta_job(tmp_path: Path, mta: Mta, listed: list[str], *, starttls: bool = False,
            extra: str = "", **smtp: object) -> Path:
    rows = "\n".join(f"  - {{email: {a}, name: Person {i}}}" for i, a in enumerate(listed))
    settings = {"host": mta.host, "port": mta.starttls_port if starttls else mta.port,
                "security": "starttls" if starttls else "tls", "username": mta.user,
                "password_env": PASSWORD_ENV, "ca_file": str(mta.ca_file), "timeout": 30,
                "retry": {"attempts": 3, "backoff": 0.2, "max_backoff": 0.5, "max_time": 30},
                **smtp}
    lines = ["smtp:"] + [f"  {key}: {json.dumps(value)}" for key, value in settings.items()]
    (tmp_path / "files").mkdir(parents=True, exist_ok=True)
    for address in listed:
        (tmp_path / "files" / f"{address}.pdf").write_bytes(os.urandom(30_000))
    return write_job(tmp_path, "\n".join(lines) + "\n"
                     + 'from: "Reports <reports@example.test>"\n'
                     + 'subject: "Report for {{ name }}"\n'
                     + 'text: "Hello {{ name }}"\n'
                     + 'html: "<p>Hello {{ name }}</p>"\n'
                     + "attachments: ['files/{{ recipient_address }}.pdf']\n"
                     + f"recipients:\n{rows}\n" + extra)


class CountingTransport(SmtpTransport):
    opened = 0

    def open(self) -> None:
        super().open()
        CountingTransport.opened += 1


def run_counting(job: Path, **options: object):
    loaded = load_job(job)
    CountingTransport.opened = 0
    transport = CountingTransport(loaded.smtp, lambda: os.environ[PASSWORD_ENV])
    return run_batch(job, transport=transport, **options)


@pytest.fixture
def mta_password(mta: Mta, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, mta.password)


def wait_for(mta: Mta, tag: str, count: int, timeout: float = 60) -> Counter[str]:
    """The MTA delivers after it answered: wait for its Maildir to hold ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        found = mta.received(tag)
        if sum(found.values()) >= count or time.monotonic() > deadline:
            time.sleep(0.5)  # and nothing more comes
            return mta.received(tag)
        time.sleep(0.1)


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit-tls", "starttls"])
def test_a_batch_through_the_mta_arrives_once_each_over_one_session(
        starttls, mta, mta_password, tag, tmp_path):
    if starttls and mta.starttls_port is None:
        pytest.skip("MAILBATCH_MTA_STARTTLS_PORT is not set")
    listed = [f"{tag}-{i}@{mta.domain}" for i in range(40)]
    job = mta_job(tmp_path, mta, listed, starttls=starttls)

    result = run_counting(job)

    assert result.code == EXIT_OK, result.error
    assert result.statuses == dict.fromkeys(listed, "sent")
    assert CountingTransport.opened == 1
    if mta.maildir is not None:
        assert wait_for(mta, tag, len(listed)) == Counter(listed)


def test_recipients_the_mta_defers_cost_no_new_session_and_are_logged_once(
        mta, mta_password, tag, tmp_path, caplog):
    if mta.defer_domain is None:
        pytest.skip("MAILBATCH_MTA_DEFER_DOMAIN is not set")
    good = [f"{tag}-{i}@{mta.domain}" for i in range(30)]
    late = [f"{tag}-late{i}@{mta.defer_domain}" for i in range(2)]
    listed = good[:10] + late[:1] + good[10:] + late[1:]
    job = mta_job(tmp_path, mta, listed)

    with caplog.at_level(logging.INFO, logger="mailbatch"):
        result = run_counting(job)

    assert result.code == EXIT_TEMPFAIL
    assert CountingTransport.opened == 1
    assert result.statuses == {**dict.fromkeys(good, "sent"), **dict.fromkeys(late, "deferred")}
    rows = {r["address"]: r for r in result.report["recipients"]}
    assert rows[late[0]]["code"] == 450 and rows[late[0]]["attempts"] == 3
    for address in late:
        assert [r.levelno for r in caplog.records if address in r.getMessage()] == [
            logging.WARNING]
    if mta.maildir is not None:
        assert wait_for(mta, tag, len(good)) == Counter(good)


def test_recipients_the_mta_refuses_are_refused_and_a_run_of_them_stops_the_batch(
        mta, mta_password, tag, tmp_path):
    if mta.reject_domain is None:
        pytest.skip("MAILBATCH_MTA_REJECT_DOMAIN is not set")
    listed = ([f"{tag}-a@{mta.domain}", f"{tag}-no0@{mta.reject_domain}"]
              + [f"{tag}-{i}@{mta.domain}" for i in range(3)]
              + [f"{tag}-no{i}@{mta.reject_domain}" for i in range(1, 8)])
    job = mta_job(tmp_path, mta, listed, max_failures=4)

    result = run_batch(job)

    assert result.code == EXIT_FAILURES
    assert result.counts == Counter(sent=4, refused=1 + 4, pending=3)
    assert result.report["recipients"][1]["code"] == 550


def test_a_run_killed_mid_batch_and_resumed_delivers_each_message_once(
        mta, mta_password, tag, tmp_path):
    if mta.maildir is None:
        pytest.skip("MAILBATCH_MTA_MAILDIR is not set: deliveries cannot be counted")
    listed = [f"{tag}-{i}@{mta.domain}" for i in range(300)]
    job = mta_job(tmp_path / "job", mta, listed, extra="batch: fixed\n")
    first = spawn(job)
    deadline = time.monotonic() + 60
    while sum(mta.received(tag).values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)

    second = spawn(job)
    _, stderr = second.communicate(timeout=120)

    assert second.returncode in (EXIT_OK, EXIT_PARTIAL), stderr
    final = statuses(newest_report(job.parent))
    assert set(final.values()) <= {"sent", "uncertain"}
    received = wait_for(mta, tag, len(listed))
    assert max(received.values()) == 1
    assert {a for a, s in final.items() if s == "sent"} <= set(received)
    assert len(received) >= len(listed) - list(final.values()).count("uncertain")
