"""Reading a composed message back as a mail reader would, and the wire rules it must obey.

The reader is the email package (policy.default), an implementation we did not write. Where
it is itself wrong, the test decodes with its own strict RFC 2047 decoder instead and says so.
Two such places, both in display names:

- CPython gh-128110 keeps the whitespace between two adjacent encoded-words of an address
  header (``=?utf-8?q?Dub?= =?utf-8?q?ois?=`` reads "Dub ois"), which RFC 2047 6.2 says is
  not part of the text. Each such run is decoded here, strictly (UTF-8 only, valid B or Q
  text, at most 75 characters, each word whole characters on its own), and given to the
  parser again as one word.
- Inside a decoded encoded-word it takes a space and any Unicode whitespace after it (a
  no-break space, say) for one folding space (``get_fws`` strips with ``str.lstrip()``).
  Names holding whitespace other than single spaces are compared through strict_addresses,
  a small parser of the address lists the composer writes, with the same strict decoder.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailbatch.job.addresses import Address
from mailbatch.job.recipients import Recipient
from mailbatch.message.attachments import Attachment, content_type_for
from mailbatch.message.render import Rendered

__all__ = ["addresses", "decode_word", "message_parts", "parse", "rendered",
           "strict_addresses", "wire_problems"]

ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([^?\s]*)\?([^?\s]*)\?=")
_RUN = re.compile(rf"{ENCODED_WORD.pattern}(?:\s+{ENCODED_WORD.pattern})+")
_Q_TEXT = re.compile(r"(?:[A-Za-z0-9!*+\-/_]|=[0-9A-F]{2})*")  # RFC 2047 5(3), upper-case hex
_B_TEXT = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def decode_word(word: str) -> bytes:
    """One encoded-word, strictly: anything the composer should never write fails."""
    match = ENCODED_WORD.fullmatch(word)
    assert match and len(word) <= 75, f"not an encoded-word of at most 75 characters: {word!r}"
    charset, encoding, text = match.groups()
    assert charset == "utf-8", word
    if encoding in "bB":
        assert _B_TEXT.fullmatch(text), word
        data = base64.b64decode(text, validate=True)
    else:
        assert encoding in "qQ" and _Q_TEXT.fullmatch(text), word
        data = binascii.a2b_qp(text.encode("ascii"), header=True)
    data.decode("utf-8")  # whole characters: a word split inside one is a fault
    return data


def _joined(value: str) -> str:
    """``value`` with each run of adjacent encoded-words decoded strictly and written again
    as one (longer) word, which the email package reads without inserting spaces."""
    def join(run: re.Match[str]) -> str:
        data = b"".join(decode_word(word[0]) for word in ENCODED_WORD.finditer(run[0]))
        return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="

    return _RUN.sub(join, value)


def addresses(message: EmailMessage, name: str) -> list[tuple[str, str]] | None:
    """The (display name, address) pairs of an address header, as a mail reader shows them."""
    header = message[name]
    if header is None:
        return None
    raw = _raw(message, name)
    if _RUN.search(raw):  # gh-128110: see the module docstring
        header = parse(f"{name}: {_joined(raw)}\r\n\r\n".encode("ascii"))[name]
    assert header.defects == (), (name, raw, header.defects)
    return [(a.display_name, a.addr_spec) for a in header.addresses]


def _raw(message: EmailMessage, name: str) -> str:
    """The field's value as it was on the wire, unfolded."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return re.sub(r"\r?\n(?=[ \t])", "", value)
    raise KeyError(name)


def strict_addresses(message: EmailMessage, name: str) -> list[tuple[str, str]]:
    """The pairs of an address header by a strict reading of exactly what the composer may
    write: atoms, quoted strings, encoded-words (RFC 2047 6.2: no space between two
    adjacent ones), ``<address>`` or a bare address, commas and folding whitespace."""
    raw = _raw(message, name)
    found: list[tuple[str, str]] = []
    words: list[tuple[str, bool]] = []  # (text, was an encoded-word)
    at = 0
    while at <= len(raw):
        char = raw[at] if at < len(raw) else ","
        if char in " \t":
            at += 1
        elif char == ",":
            if words:
                assert len(words) == 1 and not words[0][1], raw
                found.append(("", words[0][0]))
            words, at = [], at + 1
        elif char == "<":
            close = raw.index(">", at)
            display = ""
            for i, (text, encoded) in enumerate(words):
                display += ("" if i == 0 or (encoded and words[i - 1][1]) else " ") + text
            found.append((display, raw[at + 1:close]))
            words, at = [], close + 1
            assert raw[at:at + 1] in (",", ""), raw
        elif char == '"':
            match = re.compile(r'"((?:[^"\\]|\\.)*)"').match(raw, at)
            assert match, raw
            words.append((re.sub(r"\\(.)", r"\1", match[1]), False))
            at = match.end()
        else:
            match = re.compile(r'[^\s"<>,]+').match(raw, at)
            assert match, raw
            word = ENCODED_WORD.fullmatch(match[0])
            words.append((decode_word(match[0]).decode() if word else match[0], bool(word)))
            at = match.end()
    return found


def message_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    """(header block, body) of the message and of every part, as written, depth first, by
    splitting at the boundaries the headers declare: what the wire checks look at."""
    head, _, body = data.partition(b"\r\n\r\n")
    found = [(head, body)]
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", head)
    boundary = re.search(rb'(?im)^Content-Type: multipart/[^\r\n]*boundary="([^"]+)"', unfolded)
    if boundary:
        delimiter = b"\r\n--" + boundary[1]
        inner = (b"\r\n" + body).split(delimiter + b"--\r\n")[0]
        for chunk in inner.split(delimiter)[1:]:
            found.extend(message_parts(chunk.removeprefix(b"\r\n")))
    return found


def wire_problems(data: bytes) -> list[str]:
    """Every wire rule the composed bytes break: 7-bit, CRLF only, lines of at most 998
    octets, quoted-printable lines of at most 76, encoded-words of at most 75 on header lines
    of at most 76, other header lines of at most 78 unless one word is longer."""
    problems = []
    if not data.isascii():
        problems.append("not 7-bit")
    bare = data.replace(b"\r\n", b"")
    if b"\r" in bare or b"\n" in bare:
        problems.append("a bare CR or LF")
    if not data.endswith(b"\r\n"):
        problems.append("no CRLF at the end")
    lines = data.split(b"\r\n")
    if max(map(len, lines)) > 998:
        problems.append(f"a line of {max(map(len, lines))} octets")
    for head, body in message_parts(data):
        text = head.decode("ascii", "replace")
        for line in text.split("\r\n"):
            words = ENCODED_WORD.findall(line)
            for word in ENCODED_WORD.finditer(line):
                if len(word[0]) > 75:
                    problems.append(f"an encoded-word of {len(word[0])}: {word[0]}")
            limit = 76 if words else 78
            if len(line) > limit and len(re.sub(r"^[!-9;-~]+: ", "", line).split()) > 1:
                problems.append(f"a header line of {len(line)} that could be folded: {line!r}")
            first = re.fullmatch(r"[!-9;-~]+: (=\?\S*\?=)", line)
            if first and len(line) > 76 and len(decode_word(first[1]).decode()) > 1:
                problems.append(f"a first encoded-word longer than its line allows: {line!r}")
            if not line.strip():
                problems.append(f"a blank or whitespace-only header line: {text!r}")
        if re.search(r"(?im)^Content-Transfer-Encoding: quoted-printable$", text):
            long = [line for line in body.split(b"\r\n") if len(line) > 76]
            if long:
                problems.append(f"a quoted-printable line of {len(long[0])}: {long[0]!r}")
    return problems


def rendered(tmp_path: Path | None = None, files: dict[str, bytes] | None = None,
             **fields: Any) -> Rendered:
    """A Rendered message with plain defaults; ``files`` become its attachments (type as
    found would give it, unless the name is given as ``(name, type)``)."""
    attachments = []
    for key, data in (files or {}).items():
        name, kind = key if isinstance(key, tuple) else (key, None)
        assert tmp_path is not None
        path = tmp_path / name
        path.write_bytes(data)
        attachments.append(Attachment(path=path, filename=name,
                                      content_type=content_type_for(path, kind),
                                      size=len(data)))
    values: dict[str, Any] = {
        "recipient": Recipient(0, "anne@example.org", "Anne", {}, "people.csv:2"),
        "sender": Address("Sales Reports", "reports@example.org"),
        "to": (Address("Anne", "anne@example.org"),), "cc": (), "bcc": (), "reply_to": (),
        "subject": "Weekly sales", "headers": (), "text": "Hello Anne,\n", "html": None,
        "attachments": tuple(attachments),
        "message_id": "<0123456789abcdef.mailbatch@example.org>",
    }
    values.update(fields)
    return Rendered(**values)
