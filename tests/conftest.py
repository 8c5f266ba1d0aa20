"""Fixtures shared by every test: a test CA and the real local SMTP server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.helpers import PASSWORD_ENV
from tests.smtpserver import PASSWORD, SmtpTestServer


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """One CA per run: issuing the server certificates is what takes time, not this."""
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA certificate as a PEM file, the way a job file's smtp.ca_file names it."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def smtp_server(ca: trustme.CA) -> Iterator[SmtpTestServer]:
    """A running implicit-TLS server with no faults."""
    with SmtpTestServer(ca) as server:
        yield server


@pytest.fixture(scope="module")
def module_smtp_server(ca: trustme.CA) -> Iterator[SmtpTestServer]:
    """One server for every test (or hypothesis example) of a module, each resetting it, with
    the test password in the environment meanwhile (a module's fixture cannot use
    ``monkeypatch``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSWORD_ENV, PASSWORD)
        with SmtpTestServer(ca) as server:
            yield server


@pytest.fixture
def smtp_server_factory(ca: trustme.CA) -> Iterator[Callable[..., SmtpTestServer]]:
    """make(**options) starts a server with those options; all are stopped after the test."""
    servers: list[SmtpTestServer] = []

    def make(**options: Any) -> SmtpTestServer:
        server = SmtpTestServer(ca, **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put the test password where smtp.password_env points; returns the variable's name."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return PASSWORD_ENV


@pytest.fixture(autouse=True)
def chart_cache(tmp_path_factory: pytest.TempPathFactory,
                monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test draws its charts afresh, into a cache of its own (never the user's)."""
    folder = tmp_path_factory.mktemp("chart-cache")
    monkeypatch.setenv("MAILBATCH_CACHE_DIR", str(folder))
    return folder
