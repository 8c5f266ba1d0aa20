"""A message's rendered address fields read into (name, address) pairs, once, for compose.

to, cc, bcc, reply_to and the address-type extra headers are rendered as text like any
template, then read here with the job layer's strict parser (job/addresses.py). Each to, cc
and bcc template is also counted for the addresses it names in its own text: a recipient
field holding "a@x, b@y" gives more, which is allowed and shown (``widened``, see check).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jinja2

from mailbatch.job.addresses import (
    ADDRESS_HEADERS,
    SINGLE_ADDRESS_HEADERS,
    Address,
    AddressError,
    name_problem,
    parse_addresses,
    tidy_name,
)
from mailbatch.job.model import Job
from mailbatch.job.recipients import Recipient

__all__ = ["AddressFields", "AddressProblem", "Addressed", "Mailboxes", "Widened", "mailbox"]

Mailboxes = tuple[Address, ...]


def mailbox(name: Any, address: Any) -> str:
    """The template helper ``mailbox(name, email)``: ``Name <address>``, the name quoted as it
    needs, so a name from the data holding a comma, a quote or parentheses stays one name
    (``to: "{{ mailbox(manager_name, manager_email) }}"``)."""
    return str(Address(tidy_name(str(name)), str(address).strip()))
# (job key, how many addresses its template names, the addresses it rendered to)
Widened = tuple[tuple[str, int, tuple[str, ...]], ...]


class AddressProblem(Exception):
    """Raised for an address field of one recipient; the renderer adds who it is."""


class Addressed(NamedTuple):
    """One message's addresses as pairs; extra headers with address-type ones as pairs."""

    to: Mailboxes
    cc: Mailboxes
    bcc: Mailboxes
    reply_to: Mailboxes
    headers: tuple[tuple[str, str | Mailboxes], ...]
    widened: Widened


class AddressFields:
    """Reads a recipient's rendered address fields; knows what each template names."""

    def __init__(self, env: jinja2.Environment, job: Job) -> None:
        self._named = {"to": _named(env, job.to) if job.to else None,
                       **{_key("cc", i, job.cc): _named(env, v) for i, v in enumerate(job.cc)},
                       **{_key("bcc", i, job.bcc): _named(env, v)
                          for i, v in enumerate(job.bcc)}}

    def read(self, recipient: Recipient, to: str | None, reply_to: str, cc: list[str],
             bcc: list[str], headers: list[tuple[str, str]]) -> Addressed:
        """The pairs of each field (``to`` None: the recipient's own name and address, a
        pair already). Raises AddressProblem for a value that does not read as addresses,
        an empty To, or a Sender of more than one address."""
        widened: list[tuple[str, int, tuple[str, ...]]] = []

        def mailboxes(field: str, value: str) -> Mailboxes:
            try:
                found = parse_addresses(value)
            except AddressError as err:
                raise AddressProblem(f"{field}: {err}") from None
            if len(found) > 1 and field.lower().removeprefix("headers.") in \
                    SINGLE_ADDRESS_HEADERS:
                raise AddressProblem(f"{field}: must be one address, not {len(found)}")
            named = self._named.get(field)
            if named is not None and len(found) > named:
                widened.append((field, named, tuple(m.address for m in found)))
            return found

        if to is None:
            problem = name_problem(recipient.name)
            if problem:
                raise AddressProblem(problem)
            to_list: Mailboxes = (Address(tidy_name(recipient.name), recipient.address),)
        else:
            to_list = mailboxes("to", to)
            if not to_list:
                raise AddressProblem("to renders empty; every message needs a To address "
                                     "(check the to: template and this recipient's data)")
        extra = tuple((name, value if name.lower() not in ADDRESS_HEADERS
                       else mailboxes(f"headers.{name}", value)) for name, value in headers)
        return Addressed(
            to=to_list,
            cc=tuple(m for i, v in enumerate(cc) for m in mailboxes(_key("cc", i, cc), v)),
            bcc=tuple(m for i, v in enumerate(bcc) for m in mailboxes(_key("bcc", i, bcc), v)),
            reply_to=mailboxes("reply_to", reply_to),
            headers=tuple((name, value) for name, value in extra if value != ()),
            widened=tuple(widened))


def _key(name: str, index: int, values: Any) -> str:
    """The job key of one cc or bcc template, as errors and check show it."""
    return name if len(values) == 1 else f"{name}[{index}]"


def _named(env: jinja2.Environment, source: str) -> int | None:
    """How many addresses a to, cc or bcc template names in its own text, each ``{{ ... }}``
    counted as one word (None if that text is no address list)."""
    try:
        text = "".join("x@x.x" if kind == "variable_begin" else value
                       for _, kind, value in env.lex(source) if kind in ("data",
                                                                          "variable_begin"))
        return len(parse_addresses(text))
    except (AddressError, jinja2.TemplateSyntaxError):
        return None
