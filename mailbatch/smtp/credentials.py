"""Secrets: fetch the SMTP password or OAuth2 token from where the job says, never from the file."""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from mailbatch.errors import JobError
from mailbatch.job.smtpsettings import PasswordSource, SmtpSettings

__all__ = ["describe", "get_secret"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MODE_BITS = os.name != "nt"  # whether a file's mode bits say who may read it


def get_secret(smtp: SmtpSettings, job_file: str | Path | None = None) -> str:
    """The secret for ``smtp.username``; errors say which setting to fix, never the secret.

    ``job_file`` only makes the error messages start with the job file's path.
    """
    try:
        return _get_secret(smtp)
    except JobError as err:
        if job_file is None or err.path is not None:
            raise
        raise JobError(err.reason, path=str(job_file), field=err.field) from None


def _get_secret(smtp: SmtpSettings) -> str:
    source = smtp.password or PasswordSource(kind="prompt")
    if source.kind == "env":
        name = str(source.value)
        if not _ENV_NAME.fullmatch(name):
            # Never echo the value: it is likely the password itself, written in the wrong key.
            raise JobError("must be the NAME of an environment variable (letters, digits, _), "
                           "not the password itself; export the password in a variable and "
                           "name that variable here", field="smtp.password_env")
        value = os.environ.get(name)
        if not value:
            state = "is empty" if value == "" else "is not set"
            raise JobError(f"environment variable {name} {state}; export it with the "
                           "password before running (or choose another smtp.password_* source)",
                           field="smtp.password_env")
        return value
    if source.kind == "file":
        return _from_file(Path(str(source.value)))
    if source.kind == "command":
        return _from_command(source.value, "smtp.oauth2_token_command" if source.oauth2
                             else "smtp.password_command")
    if not sys.stdin or not sys.stdin.isatty():
        raise JobError("no password source and no terminal to ask on; set smtp.password_env, "
                       "password_file or password_command", field="smtp")
    return getpass.getpass(f"Password for {smtp.username} at {smtp.host}: ")


def describe(smtp: SmtpSettings) -> tuple[str, str | None]:
    """Where the secret will come from, and a problem already visible without reading it.

    Used by ``mailbatch check``: nothing is read, no command is run, nobody is prompted.
    """
    source = smtp.password
    if not smtp.username or source is None:
        return "no login (smtp.username is not set)", None
    what = "OAuth2 token" if source.oauth2 else "password"
    if source.kind == "env":
        name = str(source.value)
        if not _ENV_NAME.fullmatch(name):
            return (f"{what} from an environment variable",
                    "smtp.password_env must be the NAME of a variable, not the password")
        # Not set yet is no problem for a check: only run and check --connect read it, and
        # say so themselves. A newcomer without a server is not warned about it.
        unset = "" if os.environ.get(name) else " (not set in this shell: run and check " \
            "--connect need it)"
        return f"{what} from environment variable {name}{unset}", None
    if source.kind == "file":
        path = Path(str(source.value))
        try:
            mode = path.stat().st_mode
        except OSError as err:
            return f"{what} from file {path}", f"{path}: {err.strerror}"
        problem = (f"{path} is readable by group or others; run: chmod 600 {path}"
                   if _shared(mode) else None)
        return f"{what} from file {path}", problem
    if source.kind == "command":
        argv = _argv(source.value)
        if not argv or shutil.which(argv[0]) is None:
            return (f"{what} from a command", "the command in smtp.password_command (or "
                    "oauth2_token_command) is not found (not shown: it may be the password)")
        return f"{what} from command {argv[0]!r}", None
    if sys.stdin and sys.stdin.isatty():
        return f"{what} asked on the terminal", None
    return (f"{what} asked on the terminal", "no terminal to ask on (cron, a pipe): set "
            "smtp.password_env, password_file or password_command")


def _shared(mode: int) -> bool:
    """Whether a file's mode lets group or others at it. Windows keeps access in ACLs, not in
    these bits (every file there shows as 0o666 or 0o444), so nothing can be told from them."""
    return _MODE_BITS and bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def _from_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if _shared(mode):
            raise JobError("password file is readable or writable by group or others; "
                           f"run: chmod 600 {path}", path=str(path), field="smtp.password_file")
        value = _text(path.read_bytes(), "the password file").rstrip("\r\n")
    except FileNotFoundError:
        raise JobError("password file not found; check smtp.password_file", path=str(path)) \
            from None
    except OSError as err:
        raise JobError(f"cannot read password file: {err.strerror}", path=str(path)) from None
    except JobError as err:
        raise JobError(err.reason, path=str(path), field="smtp.password_file") from None
    if not value:
        raise JobError("password file is empty", path=str(path), field="smtp.password_file")
    return value


def _from_command(command: str | tuple[str, ...], field: str) -> str:
    argv = _argv(command)
    try:
        if not argv:
            raise FileNotFoundError
        done = subprocess.run(argv, capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
    except OSError as err:
        # Never echo the command: like password_env, it may be the password pasted there.
        why = "is not found" if isinstance(err, FileNotFoundError) else \
            f"cannot be run ({err.strerror})"
        raise JobError(f"the command {why} (it is not shown here, in case it is the "
                       "password itself); check the command", field=field) from None
    except subprocess.TimeoutExpired:
        raise JobError("command did not finish within 60 seconds", field=field) from None
    if done.returncode != 0:
        # stderr is not shown: a failing secret command may print part of the secret.
        raise JobError(f"command {argv[0]!r} failed with exit status {done.returncode}; run it "
                       "by hand to see why", field=field)
    try:
        value = _text(done.stdout, f"the output of command {argv[0]!r}").strip()
    except JobError as err:
        raise JobError(err.reason, field=field) from None
    if not value:
        raise JobError(f"command {argv[0]!r} printed nothing; it must print the secret",
                       field=field)
    return value


def _text(data: bytes, what: str) -> str:
    """A secret as text: UTF-8, as a terminal or an editor writes it. What is not UTF-8 is
    refused by its position only (the bytes may be the secret)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JobError(f"{what} is not UTF-8 text (byte {err.start + 1} is not); save or "
                       "print the secret as UTF-8") from None


def _argv(command: str | tuple[str, ...]) -> list[str]:
    """The command's arguments; a job loaded by load_job already holds them as a tuple."""
    if isinstance(command, str):
        try:
            return shlex.split(command)
        except ValueError:
            return []
    return list(command)
