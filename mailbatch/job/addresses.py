"""Email address syntax, checked alike for the sender, the recipients and rendered headers."""

from __future__ import annotations

import re

__all__ = ["is_valid_address"]

_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def is_valid_address(address: str) -> bool:
    """A syntax check of ``local@domain``; the server remains the judge of deliverability."""
    if not _ADDRESS.match(address) or len(address) > 254:
        return False
    local = address.rpartition("@")[0]
    return not (local.startswith(".") or local.endswith(".") or ".." in local)
