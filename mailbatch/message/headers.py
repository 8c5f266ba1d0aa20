"""Header fields: RFC 5322 folding and RFC 2047 encoded-words, written without the email package.

Free text (Subject, extra headers): printable ASCII goes out as given; other text as UTF-8
encoded-words of at most 75 characters, split between characters and between words, so that
a mail reader shows exactly the text. Address lists are written from (display name, address)
pairs, never parsed here: each name as atoms, a quoted string or encoded-words, as it needs,
so a name reads back as the literal text it is (``=?utf-8?q?Bob?=`` included). Lines are
folded at whitespace to 78 characters where the words allow, 76 where a line holds an
encoded-word (RFC 2047 2); no line can reach 998 octets (compose checks the final bytes).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from typing import Any

from mailbatch.job.addresses import Address

__all__ = ["MAX_LINE", "MAX_OCTETS", "address_list", "encoded_words", "header", "unstructured"]

MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD
MAX_OCTETS = 998  # RFC 5322 2.1.1: MUST, without the CRLF
_EW_LINE = 76  # RFC 2047 2: a line holding an encoded-word
_LONG_WORD = 900  # an unbreakable run this long is encoded instead, so it can be split
# The only characters an encoded-word may show unencoded in any header (RFC 2047 5(3)).
_Q_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_ESCAPES = re.compile(r'[\\"]')
_TOKENS = re.compile(r"[ \t]*[^ \t]+(?:[ \t]+$)?")
_QUOTED_TOKENS = re.compile(r" *[^ ]+")
# A display name of atoms with single spaces: written as it is.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")

_cache: dict[tuple[str, Any], bytes] = {}
_CACHE_SIZE = 256


def header(name: str, value: str | Sequence[Address]) -> bytes:
    """One header field, folded, CRLF-terminated: free text for a string, an address list
    for (name, address) pairs. Repeated values (From, Reply-To, extra headers) are
    formatted once."""
    key = (name, value)
    line = _cache.get(key)
    if line is None:
        line = unstructured(name, value) if isinstance(value, str) else \
            address_list(name, value)
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = line
    return line


def _needs_encoding(value: str) -> bool:
    """Whether text cannot go into a header as it is: not printable ASCII, or it would read
    as encoded-words, or leading whitespace a parser would drop."""
    return not (value.isascii() and value.isprintable()) or "=?" in value or \
        value[:1] == " "


def _must_encode(token: str, phrase: bool) -> bool:
    """Whether one token (a word and the whitespace before it) must become (part of) an
    encoded-word: text that cannot be written as it is, or too long to fit any line."""
    word = token.lstrip(" \t")
    return not (word.isascii() and word.isprintable()) or "=?" in word or \
        len(token) > _LONG_WORD or (len(token) - len(word) > 1 and len(token) >= MAX_LINE) \
        or (phrase and _SPECIALS.search(word) is not None)


def unstructured(name: str, value: str) -> bytes:
    """A free-text field (Subject, Message-ID, extra headers), uncached."""
    room = MAX_LINE - len(name) - 2
    if len(value) <= room and not _needs_encoding(value):
        return f"{name}: {value}\r\n".encode("ascii")
    if value[:1] in (" ", "\t") or not value.strip():
        return _fold(name, _spaced(encoded_words(value, _EW_LINE - len(name) - 2)))
    return _fold(name, _words(_TOKENS.findall(value), _EW_LINE - len(name) - 2,
                              phrase=False))


def address_list(name: str, mailboxes: Sequence[Address]) -> bytes:
    """An address-list field from (display name, address) pairs, uncached."""
    if len(mailboxes) == 1:  # the usual case: one plain mailbox on one line
        display, address = mailboxes[0]
        if not display:
            line = f"{name}: {address}\r\n"
        elif _ATOMS.fullmatch(display) and "=?" not in display:
            line = f"{name}: {display} <{address}>\r\n"
        else:
            line = ""
        if line and len(line) <= MAX_LINE + 2:
            return line.encode("ascii")
    tokens: list[str] = []
    for display, address in mailboxes:
        room = _EW_LINE - len(name) - 2 if not tokens else _EW_LINE - 2
        words = _display_name(display, room)
        words.append(f" <{address}>" if words else address)
        if tokens:
            tokens[-1] += ","
            words[0] = " " + words[0]
        tokens.extend(words)
    return _fold(name, tokens, structured=True)


def _display_name(display: str, room: int) -> list[str]:
    """A display name as header tokens (each after the first starting with a space): atoms
    as they are; other printable ASCII as a quoted string, folded at its spaces where needed;
    the rest (and a quoted string with a part too long for a line) as encoded-words."""
    if not display:
        return []
    if display.isascii() and display.isprintable() and "=?" not in display:
        if _ATOMS.fullmatch(display) and len(display) <= _LONG_WORD:
            return _spaced(display.split(" "))
        tokens = _QUOTED_TOKENS.findall('"' + _ESCAPES.sub(r"\\\g<0>", display) + '"')
        if max(map(len, tokens)) < MAX_LINE:
            return tokens
    if display == " ".join(display.split()):  # single spaces between words only
        return _words(_spaced(display.split(" ")), room, phrase=True)
    return _spaced(encoded_words(display, room))


def _spaced(words: list[str]) -> list[str]:
    return [words[0], *(" " + word for word in words[1:])]


def _words(tokens: list[str], room: int, phrase: bool) -> list[str]:
    """Header tokens (each after the first starting with whitespace) kept as they are where
    they can be; each run of tokens that cannot becomes encoded-words, one whitespace
    character before the run staying outside. Separate runs keep a mail reader showing
    exactly the text: the space between two adjacent encoded-words is not part of it
    (RFC 2047 6.2)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not _must_encode(token, phrase):
            out.append(token)
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and _must_encode(tokens[j], phrase):
            j += 1
        lead = token[:1] if out and token[:1] in (" ", "\t") else ""
        words = encoded_words(token[len(lead):] + "".join(tokens[i + 1:j]),
                              (room if not out else _EW_LINE - 1) - len(lead))
        out.append(lead + words[0])
        out.extend(" " + word for word in words[1:])
        i = j
    return out


def _fold(name: str, tokens: list[str], structured: bool = False) -> bytes:
    """``name: tokens`` with a line break before any token (each after the first starts with
    whitespace) that would take the line past 78 characters, or 76 for a line that holds an
    encoded-word. In a structured field, a first encoded-word that does not fit after the
    name goes on the next line (in free text that whitespace would read as part of it)."""
    lines = []
    first = tokens[0]
    encoded = "=?" in first
    if structured and encoded and len(name) + 2 + len(first) > _EW_LINE:
        lines.append(f"{name}:")
        line = " " + first
    else:
        line = f"{name}: {first}"
    for token in tokens[1:]:
        has_word = "=?" in token
        if len(line) + len(token) > (_EW_LINE if encoded or has_word else MAX_LINE):
            lines.append(line)
            line, encoded = token, has_word
        else:
            line += token
            encoded = encoded or has_word
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def encoded_words(text: str, room: int = 75) -> list[str]:
    """``text`` as RFC 2047 UTF-8 encoded-words of at most 75 characters (the first at most
    ``room``, if one character fits), split between characters, in Q or B
    encoding, whichever is shorter. Adjacent encoded-words decode as one run of text, and
    the Q alphabet used is the strictest, valid in display names and in free text alike."""
    data = text.encode("utf-8")
    pieces: list[Any] = [_q(char) for char in text]
    if sum(map(len, pieces)) <= (len(data) + 2) // 3 * 4:
        mode, limit, first = "q", 63, room - 12  # 12: "=?utf-8?q?" and "?="
    else:
        mode, limit, first = "b", 45, (room - 12) // 4 * 3  # 45 bytes: 60 base64 characters
        pieces = [char.encode("utf-8") for char in text]
    budget = min(max(first, 1), limit)  # the first word holds one character at least
    words: list[str] = []
    current: list[Any] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > budget and current:
            words.append(_word(mode, current))
            current, size, budget = [], 0, limit
        current.append(piece)
        size += len(piece)
    if current or not words:
        words.append(_word(mode, current))
    return words


def _word(mode: str, chunks: list[Any]) -> str:
    if mode == "q":
        return "=?utf-8?q?" + "".join(chunks) + "?="
    return "=?utf-8?b?" + binascii.b2a_base64(b"".join(chunks), newline=False).decode() + "?="


_q_cache: dict[str, str] = {" ": "_"}


def _q(char: str) -> str:
    encoded = _q_cache.get(char)
    if encoded is None:
        encoded = char if char in _Q_SAFE else "".join(f"={byte:02X}" for byte in
                                                       char.encode("utf-8"))
        if len(_q_cache) < 4096:
            _q_cache[char] = encoded
    return encoded
