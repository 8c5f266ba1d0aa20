"""A password file's permissions, where the file system can say who may read it (and where not)."""

from __future__ import annotations

import pytest

from mailbatch.errors import JobError
from mailbatch.job.smtpsettings import PasswordSource, SmtpSettings
from mailbatch.smtp import credentials
from mailbatch.smtp.credentials import describe, get_secret


def settings(path: str) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=465, username="mailer",
                        password=PasswordSource(kind="file", value=path))


def test_a_password_file_others_can_read_is_refused_where_modes_say_so(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)

    with pytest.raises(JobError, match="chmod 600"):
        get_secret(settings(str(secret)))
    assert "chmod 600" in (describe(settings(str(secret)))[1] or "")


def test_on_windows_where_modes_say_nothing_a_password_file_is_read(tmp_path, monkeypatch):
    # Windows keeps access in ACLs; os.stat shows every file as 0o666 (or 0o444), which
    # 'chmod 600' cannot change: refusing would make password_file unusable there.
    monkeypatch.setattr(credentials, "_MODE_BITS", False)
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    secret.chmod(0o666)

    assert get_secret(settings(str(secret))) == "s3cret"
    assert describe(settings(str(secret)))[1] is None
