"""The ``smtp:`` section of a job file: the server, how to secure the session, where the
secret comes from (never the secret itself), and the limits and retries of sending."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbatch.job.fields import Section
from mailbatch.job.providers import Preset, preset

__all__ = ["SECURITY_MODES", "FailureLimit", "PasswordSource", "Rate", "RetryPolicy",
           "SmtpSettings", "parse_smtp"]

SECURITY_MODES = ("tls", "starttls")
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|s|min|m|h)\s*$")
_RATE_SECONDS = {"second": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600}


@dataclass(frozen=True)
class PasswordSource:
    """Where the secret comes from; the secret itself is never part of the job model."""

    kind: str  # "env", "file", "command", "prompt"
    value: str | tuple[str, ...] = ""
    oauth2: bool = False  # the secret is an XOAUTH2 bearer token, not a password


@dataclass(frozen=True)
class Rate:
    """At most ``count`` messages per ``seconds``."""

    count: int
    seconds: float

    @property
    def interval(self) -> float:
        return self.seconds / self.count


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry transient failures (4xx, drops, timeouts) before giving up on the run."""

    attempts: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_time: float = 300.0


@dataclass(frozen=True)
class FailureLimit:
    """When to stop a batch whose messages keep failing for good: after ``in_a_row``
    permanent failures or uncertain outcomes with no message sent between them, or after
    ``in_all`` of them in the run; 0 turns a limit off. A server that refuses or times out
    on every message (a broken account, a filter, a server slower than ``timeout``) would
    otherwise mark the whole batch refused, failed or uncertain, none of which a resume sends.
    """

    in_a_row: int = 10
    in_all: int = 0


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str = "tls"
    username: str | None = None
    password: PasswordSource | None = None
    timeout: float = 30.0
    ca_file: Path | None = None
    verify: bool = True
    pipelining: bool = True  # used where the server offers it; false for a server that breaks
    max_messages_per_connection: int = 0  # 0: no limit
    rate: Rate | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_failures: FailureLimit = field(default_factory=FailureLimit)

    @property
    def where(self) -> str:
        """``host:port``, as messages about the server name it."""
        return f"{self.host}:{self.port}"


def parse_smtp(sec: Section, base: Path) -> SmtpSettings:
    """The ``smtp:`` section; paths (the CA file, a password file) relative to ``base``."""
    if "password" in sec.mapping:
        raise sec.error("a password must not be written in the job file; use password_env "
                        "(an environment variable), password_file or password_command", "password")
    provider = _provider(sec)
    security = sec.text("security", provider.security if provider else "tls")
    if security not in SECURITY_MODES:
        raise sec.error(f"unknown security mode {security!r}; use tls (implicit TLS, port 465) "
                        "or starttls (port 587)", "security")
    standard = 465 if security == "tls" else 587
    port = sec.number("port", provider.port if provider and provider.security == security
                      else standard, 1, 65535, whole=True)
    username = sec.text("username")
    if username is not None and not username.isprintable():
        raise sec.error("must not contain a line break or control character; write the "
                        "login on one line", "username")
    sources = []
    for kind in ("password_env", "password_file", "password_command", "oauth2_token_command"):
        value = sec.get(kind, (str, list))
        if value:
            sources.append((kind, value))
    if len(sources) > 1:
        raise sec.error("give only one of password_env, password_file, password_command, "
                        "oauth2_token_command", sources[1][0])
    password = None
    if sources:
        kind, value = sources[0]
        if kind.endswith("command"):
            value = _command(sec, kind, value)
        elif isinstance(value, list):
            raise sec.error("must be text, not a list", kind)
        if kind == "password_file":
            value = str(sec.checked_path(kind, value, base))
        password = PasswordSource(kind=kind.removeprefix("password_").replace(
            "oauth2_token_command", "command"), value=value,
            oauth2=kind == "oauth2_token_command")
        if not username:
            raise sec.error(f"{kind} is set but username is missing", "username")
    elif username:
        password = PasswordSource(kind="prompt")
    timeout = float(sec.number("timeout", 30, 0, 3600, unit=" seconds"))
    if timeout <= 0:
        raise sec.error("must be a positive number of seconds", "timeout")
    verify = sec.get("verify_certificate", bool, True)
    pipelining = sec.get("pipelining", bool, True)
    limit = sec.number("max_messages_per_connection", 0, 0, 10**9, whole=True)
    settings = SmtpSettings(
        host=_host(sec, sec.text("host", provider.host if provider else None,
                                 required=not provider)),
        port=port,
        security=security,
        username=username,
        password=password,
        timeout=timeout,
        ca_file=_ca_file(sec, base),
        verify=verify,
        pipelining=pipelining,
        max_messages_per_connection=limit,
        rate=_rate(sec),
        retry=_retry(sec.sub("retry")),
        max_failures=_max_failures(sec),
    )
    sec.done()
    return settings


def _ca_file(sec: Section, base: Path) -> Path | None:
    """The CA bundle, found now: ``check`` says a missing one is a job error (78), where the
    first connection would call it a server problem (69) to retry."""
    path = sec.path_("ca_file", base)
    if path is not None and not path.is_file():
        raise sec.error(f"{path} is not a file (no such file, or a folder); give the path of "
                        "the PEM file of the server's CA", "ca_file")
    return path


def _provider(sec: Section) -> Preset | None:
    """The preset named by ``smtp.provider``; the job's own host, port and security win."""
    name = sec.text("provider")
    if name is None:
        return None
    try:
        return preset(name)
    except ValueError as err:
        raise sec.error(str(err), "provider") from None


def _rate(sec: Section) -> Rate | None:
    value = sec.text("rate")
    if value is None:
        return None
    match = _RATE.match(value)
    if not match or int(match.group(1)) == 0:
        raise sec.error(f"{value!r} is not a rate; write it like '30/minute', '2/second' "
                        "or '500/hour'", "rate")
    return Rate(int(match.group(1)), _RATE_SECONDS[match.group(2)])


def _retry(sec: Section) -> RetryPolicy:
    default = RetryPolicy()
    policy = RetryPolicy(
        attempts=sec.number("attempts", default.attempts, 1, 1000, whole=True),
        backoff=float(sec.number("backoff", default.backoff, 0, 3600, unit=" seconds")),
        max_backoff=float(sec.number("max_backoff", default.max_backoff, 0, 86400,
                                     unit=" seconds")),
        max_time=float(sec.number("max_time", default.max_time, 0, 7 * 86400,
                                  unit=" seconds")),
    )
    sec.done()
    return policy


def _max_failures(sec: Section) -> FailureLimit:
    """``max_failures: N`` (in a row; 0: never stop) or ``{in_a_row: N, in_all: M}``."""
    value = sec.get("max_failures", (int, Mapping))
    if value is None:
        return FailureLimit()
    if isinstance(value, int):
        if value < 0:
            raise sec.error("must be 0 (never stop) or more", "max_failures")
        return FailureLimit(in_a_row=value, in_all=0)
    sub = sec.sub("max_failures")
    default = FailureLimit()
    limit = FailureLimit(in_a_row=sub.get("in_a_row", int, default.in_a_row),
                         in_all=sub.get("in_all", int, 0))
    for name in ("in_a_row", "in_all"):
        if getattr(limit, name) < 0:
            raise sub.error("must be 0 (no limit) or more", name)
    sub.done()
    return limit


def _host(sec: Section, host: str) -> str:
    """A host name or address: smtplib takes an empty one as "do not connect yet", and then
    fails on the socket it never made."""
    if not host.strip() or len(host) > 253 or any(c.isspace() or not c.isprintable()
                                                  for c in host):
        raise sec.error("must be a host name or address, such as smtp.example.com", "host")
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and name and ":" not in name:  # mail.example.org:587
        raise sec.error(f"{host!r} holds a port; write the host alone and the port as "
                        f"smtp.port: {port}", "host")
    try:
        host.encode("idna")  # what the socket layer does with it; it fails there otherwise
    except UnicodeError:
        raise sec.error(f"{host!r} is not a host name: a part between dots is empty or "
                        "longer than 63 characters; write it like smtp.example.com",
                        "host") from None
    return host


def _command(sec: Section, kind: str, value: str | list[Any]) -> tuple[str, ...]:
    """The command as an argument list. The value is never shown in an error: it may be the
    password itself, written in the wrong key."""
    if isinstance(value, list) and any(isinstance(v, Mapping | list | bool) or v is None
                                       for v in value):
        raise sec.error("must be a list of words (text or numbers); the value is not shown, "
                        "in case it is the password itself", kind)
    try:
        argv = shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    except ValueError:
        raise sec.error("is not a command line (unbalanced quotes; the value is not shown, "
                        "in case it is the password itself)", kind) from None
    if not argv or not argv[0].strip():
        raise sec.error("names no command", kind)
    return tuple(argv)
