"""Email addresses: the (display name, address) pair and the strict parser of address lists.

The job's ``from:`` and every rendered to, cc, bcc, reply_to and address-type header are read
here, once, into pairs; the message layer writes the header fields from the pairs and never
reads them back. A display name is literal text: one that looks like an encoded-word
(``=?utf-8?q?Bob?=``) stays that text. Only plain mailbox lists are accepted; anything whose
meaning a mail reader could take differently (a comment, a group, a stray quote) is refused
with a hint, never guessed at.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

__all__ = ["ADDRESS_HEADERS", "SINGLE_ADDRESS_HEADERS", "Address", "AddressError",
           "ascii_address", "is_valid_address", "name_problem", "parse_addresses", "tidy_name"]

# Extra header fields (job ``headers:``) that hold mailbox lists: read into pairs like To.
ADDRESS_HEADERS = frozenset({"sender", "resent-from", "resent-to", "resent-cc", "resent-bcc",
                             "resent-sender", "resent-reply-to", "disposition-notification-to",
                             "mail-followup-to", "mail-reply-to"})
SINGLE_ADDRESS_HEADERS = frozenset({"sender", "resent-sender"})  # one mailbox (RFC 5322 3.6.2)

_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_STOP = frozenset('"(),:;<>[]\\')  # what ends an unquoted word
_WORD = re.compile(r'[^"(),:;<>\[\]\\ \t]+')
_SPACE = re.compile(r"[ \t]*")
# The usual value, "Name <addr>" or "addr", read at once (the general parser reads it alike).
_SIMPLE = re.compile(r' *(?:([^"(),:;<>\[\]\\\s]+(?: [^"(),:;<>\[\]\\\s]+)*) *<([^<>\s]+)>'
                     r'|([^"(),:;<>\[\]\\\s]+)) *')
# A name shown without quotes: words of anything but whitespace and RFC 5322 specials.
_PLAIN_NAME = re.compile(r'[^\s()<>\[\]:;@\\,."]+(?: [^\s()<>\[\]:;@\\,."]+)*')
_BAD_IN_NAME = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls (tab too), surrogates, breaks


class Address(NamedTuple):
    """One mailbox: the display name exactly as a reader should see it, and local@domain."""

    name: str
    address: str

    def __str__(self) -> str:
        """For people (preview, check, error lines): ``Name <addr>``, the name quoted where
        it holds specials; parse_addresses reads it back to the same pair."""
        if not self.name:
            return self.address
        if _PLAIN_NAME.fullmatch(self.name):
            return f"{self.name} <{self.address}>"
        escaped = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{self.address}>'


class AddressError(ValueError):
    """Raised for text that is not a plain list of mailboxes; the message says what to write
    instead, and the caller adds where the text came from (a job key, a recipient)."""


def is_valid_address(address: str) -> bool:
    """A syntax check of ``local@domain``; the server remains the judge of deliverability."""
    if not _ADDRESS.match(address) or len(address) > 254:
        return False
    local = address.rpartition("@")[0]
    return not (local.startswith(".") or local.endswith(".") or ".." in local)


def ascii_address(address: str) -> str:
    """``address`` as it can go over the wire: a domain in Unicode (``jose@exämple.com``) in
    its IDNA form (``jose@xn--exmple-cua.com``). Raises AddressError for what cannot be sent
    without SMTPUTF8 (which mailbatch does not use: its messages are 7-bit throughout): a
    name before the ``@`` beyond ASCII. A domain that Python's IDNA rules (2003) would
    read differently from IDNA 2008 (``straße.de`` becoming ``strasse.de``, another domain)
    is refused rather than sent somewhere else."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        return address  # not an address at all: is_valid_address says so
    if not local.isascii():
        raise AddressError(f"{address!r} has characters beyond ASCII before the '@': such an "
                           "address needs SMTPUTF8, which mailbatch does not use (its "
                           "messages are 7-bit); use an ASCII address for this recipient")
    try:
        encoded = domain.encode("idna").decode("ascii")
        back = encoded.encode("ascii").decode("idna")
    except UnicodeError:
        raise AddressError(f"{address!r}: {domain!r} is not a valid internationalised domain "
                           "name") from None
    if back != unicodedata.normalize("NFC", domain).lower():
        raise AddressError(f"{address!r}: the domain {domain!r} would be sent as {back!r}, "
                           "which may be another domain; write it in its xn-- form")
    return f"{local}@{encoded}"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a display name (a control character, a line break, a lone
    surrogate), or None. Such a character is a data error, and no reader shows it alike."""
    if name.isprintable():
        return None
    for char in name:
        if unicodedata.category(char) in _BAD_IN_NAME:
            return (f"the name {name!r} contains the control character {char!r}; remove it "
                    "from the data")
    return None


def tidy_name(name: str) -> str:
    """A display name as mail readers show it: no whitespace around it and single spaces
    inside (a run of spaces between the words of a name reads as one, RFC 5322 3.2.2)."""
    name = name.strip()
    if "  " in name:
        return " ".join(word for word in name.split(" ") if word)
    return name


def parse_addresses(text: str) -> tuple[Address, ...]:
    """The mailboxes in ``text``: comma-separated ``addr@example.com``, ``Name <addr>`` or
    ``"Name, with specials" <addr>`` (backslash escapes a quote inside the quotes); blank
    items are skipped. Names are tidied (tidy_name). Raises AddressError."""
    simple = _SIMPLE.fullmatch(text)
    if simple and is_valid_address(simple[2] or simple[3]) and \
            (not simple[1] or name_problem(simple[1]) is None):
        return (Address(simple[1] or "", simple[2] or simple[3]),)
    return _parse(text)


def _parse(text: str) -> tuple[Address, ...]:
    """parse_addresses without its shortcut for the usual value."""
    found: list[Address] = []
    at, end = 0, len(text)
    while at < end:
        start = at
        words, at = _phrase(text, at)
        if at < end and text[at] == "<":
            close = text.find(">", at)
            if close < 0:
                raise AddressError(f"{text!r}: a '<' without its '>'")
            address = text[at + 1:close].strip(" \t")
            at = _skip_space(text, close + 1)
            if at < end and text[at] != ",":
                raise AddressError(f"{text!r}: {text[at:]!r} after <{address}>; separate "
                                   "addresses with commas")
            name = tidy_name(" ".join(word for word, _ in words))
        elif not words:
            at += 1  # an empty item, as ", ," or a trailing comma leave
            continue
        elif len(words) == 1 and not words[0][1]:
            address, name = words[0][0], ""
        else:
            item = text[start:at].strip()
            if any("@" in word for word, _ in words):
                raise AddressError(f"{item!r}: separate addresses with commas")
            raise AddressError(f"{item!r} has a name but no <address>; write it as "
                               f"{item} <user@example.com>")
        at += 1  # past the comma
        address = ascii_address(address)
        if not is_valid_address(address):
            hint = ("; a name containing a comma must be in double quotes"
                    if "@" not in address and at < end else "")
            within = f" in {text!r}" if address != text.strip() else ""
            raise AddressError(f"{address!r}{within} is not an email address (plain ASCII "
                               f"user@domain){hint}")
        problem = name_problem(name)
        if problem:
            raise AddressError(problem)
        found.append(Address(name, address))
    return tuple(found)


def _skip_space(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # matches empty too


def _phrase(text: str, at: int) -> tuple[list[tuple[str, bool]], int]:
    """The words before a '<', a ',' or the end: (text, was quoted) each, and where it
    stopped. Anything else that RFC 5322 gives a meaning (comments, groups) is refused."""
    words: list[tuple[str, bool]] = []
    end = len(text)
    while True:
        at = _skip_space(text, at)
        if at >= end or text[at] in "<,":
            return words, at
        char = text[at]
        if char == '"':
            word, at = _quoted(text, at)
            words.append((word, True))
        elif char in _STOP:
            raise AddressError(f"{text!r}: {_refusal(char)}")
        else:
            found = _WORD.match(text, at)
            assert found is not None  # char is neither a stop nor whitespace
            words.append((found[0], False))
            at = found.end()


def _quoted(text: str, at: int) -> tuple[str, int]:
    """The content of the quoted string starting at ``at``, and the position after it."""
    out: list[str] = []
    at += 1
    while at < len(text):
        char = text[at]
        if char == '"':
            return "".join(out), at + 1
        if char == "\\" and at + 1 < len(text):
            at += 1
            char = text[at]
        out.append(char)
        at += 1
    raise AddressError(f"{text!r}: a double quote is not closed")


def _refusal(char: str) -> str:
    if char in "()":
        return ('parentheses outside double quotes; put the name in quotes, e.g. '
                '"Smith (Sales)" <smith@example.com>')
    if char == ":":
        return ("a group (name: addresses;) or a ':' outside double quotes; list the "
                "addresses separated by commas, and put a name containing ':' in quotes")
    if char == ";":
        return ("a ';' outside double quotes; separate addresses with commas, and put a name "
                "containing ';' in quotes")
    return f"{char!r} outside double quotes; put the name in quotes"
