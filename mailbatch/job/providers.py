"""Provider presets for ``smtp.provider``: the host, port and security of well-known services.

A preset only fills in what the job leaves out; ``host``, ``port`` and ``security`` written in the
job file win. Values are the providers' documented submission endpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PROVIDERS", "Preset", "preset"]


@dataclass(frozen=True)
class Preset:
    host: str
    port: int
    security: str  # "tls" (implicit TLS) or "starttls"
    note: str = ""  # what the README's table says about logging in


PROVIDERS: dict[str, Preset] = {
    "gmail": Preset("smtp.gmail.com", 465, "tls",
                    "an app password, or oauth2_token_command for XOAUTH2"),
    "microsoft365": Preset("smtp.office365.com", 587, "starttls",
                           "oauth2_token_command (XOAUTH2); basic auth is being retired"),
    "outlook": Preset("smtp-mail.outlook.com", 587, "starttls",
                      "personal Outlook.com accounts; oauth2_token_command"),
    "amazon-ses": Preset("email-smtp.{region}.amazonaws.com", 465, "tls",
                         "SES SMTP credentials (not the AWS access key); amazon-ses:REGION"),
    "fastmail": Preset("smtp.fastmail.com", 465, "tls", "an app password"),
    "icloud": Preset("smtp.mail.me.com", 587, "starttls", "an app-specific password"),
    "yahoo": Preset("smtp.mail.yahoo.com", 465, "tls", "an app password"),
    "zoho": Preset("smtp.zoho.com", 465, "tls", "an app password where 2FA is on"),
    "sendgrid": Preset("smtp.sendgrid.net", 465, "tls", "username apikey, an API key as password"),
    "mailgun": Preset("smtp.mailgun.org", 465, "tls", "SMTP credentials of the sending domain"),
    "mailgun-eu": Preset("smtp.eu.mailgun.org", 465, "tls", "as mailgun, for EU domains"),
}
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d")


def preset(name: str) -> Preset:
    """The preset for ``name`` (``amazon-ses:eu-west-1`` for a region); ValueError says why not."""
    key, _, argument = name.strip().lower().partition(":")
    found = PROVIDERS.get(key)
    if found is None:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(_names())} (or give "
                         "smtp.host instead)")
    if "{region}" in found.host:
        if not _REGION.fullmatch(argument):
            raise ValueError(f"{key} needs its region, e.g. {key}:eu-west-1")
        return Preset(found.host.format(region=argument), found.port, found.security, found.note)
    if argument:
        raise ValueError(f"provider {key} takes no ':{argument}'")
    return found


def _names() -> list[str]:
    return [f"{key}:REGION" if "{region}" in p.host else key for key, p in PROVIDERS.items()]
