"""Header fields: RFC 5322 folding and RFC 2047 encoded-words, written without the email package.

Printable ASCII goes out as given; other text as UTF-8 encoded-words of at most 75 characters,
split between characters and between words, so that a mail reader shows exactly the text.
Lines are folded at whitespace to 78 characters where the words allow, never beyond 998.
Address syntax beyond name-and-address pairs (groups, comments) goes through the email package.
"""

from __future__ import annotations

import binascii
import re
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from email.policy import EmailPolicy

__all__ = ["MAX_LINE", "encoded_words", "header", "policy", "unstructured"]

MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD; 998 is the MUST, which no line here can reach
_LONG_WORD = 900  # an unbreakable run this long is encoded instead, so it can be split
# The only characters an encoded-word may show unencoded in any header (RFC 2047 5(3)).
_Q_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_ESCAPES = re.compile(r'[\\"]')
_TOKENS = re.compile(r"[ \t]*[^ \t]+(?:[ \t]+$)?")
# "Display Name <local@domain>" needing no quoting or encoding: written as it was given.
_ATOMS = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/^_`{|}~-]+)*"
_ADDR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+"
_PLAIN_ADDRESS = re.compile(f"{_ATOMS} <{_ADDR}>|{_ADDR}")
_GROUP_OR_COMMENT = re.compile(r"[:;()]")  # beyond name-and-address pairs: see _fallback

_cache: dict[tuple[str, str, bool], bytes] = {}
_CACHE_SIZE = 256


def header(name: str, value: str, addresses: bool = False) -> bytes:
    """One header field, folded, CRLF-terminated; ``addresses`` for an address list.
    Repeated values (From, Reply-To, extra headers) are formatted once."""
    key = (name, value, addresses)
    line = _cache.get(key)
    if line is None:
        line = _address_header(name, value) if addresses else unstructured(name, value)
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[key] = line
    return line


def _needs_encoding(value: str) -> bool:
    """Whether text cannot go into a header as it is: not printable ASCII, or it would read
    as encoded-words, or leading whitespace a parser would drop."""
    return not (value.isascii() and value.isprintable()) or "=?" in value or \
        value[:1] == " "


def _must_encode(word: str, phrase: bool) -> bool:
    """Whether one word of a header must become (part of) an encoded-word."""
    return not (word.isascii() and word.isprintable()) or "=?" in word or \
        len(word) > _LONG_WORD or (phrase and _SPECIALS.search(word) is not None)


def unstructured(name: str, value: str) -> bytes:
    """A free-text field (Subject, Message-ID, extra headers), uncached."""
    room = MAX_LINE - len(name) - 2
    if len(value) <= room and not _needs_encoding(value):
        return f"{name}: {value}\r\n".encode("ascii")
    if value[:1] in (" ", "\t") or not value.strip():
        return _fold(name, _spaced(encoded_words(value, room)))
    return _fold(name, _words(_TOKENS.findall(value), room, phrase=False))


def _address_header(name: str, value: str) -> bytes:
    """An address list, each display name as atoms, quoted, or encoded, as it needs."""
    if len(name) + 2 + len(value) <= MAX_LINE and _PLAIN_ADDRESS.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    if _GROUP_OR_COMMENT.search(value):
        return _fallback(name, value)
    tokens: list[str] = []
    for display, address in getaddresses([value]):
        if not address or not address.isascii() or not address.isprintable():
            return _fallback(name, value)
        if "=?" in display:
            display = _decode_words(display)
        regular = display == " ".join(display.split())  # single spaces between words only
        room = MAX_LINE - len(name) - 2 if not tokens else MAX_LINE - 1
        if not display:
            words = []
        elif not _needs_encoding(display) and len(display) <= _LONG_WORD:
            if _SPECIALS.search(display) or not regular:
                words = ['"' + _ESCAPES.sub(r"\\\g<0>", display) + '"']
            else:
                words = _spaced(display.split(" "))
        elif regular:
            words = _words(_spaced(display.split(" ")), room, phrase=True)
        else:
            words = _spaced(encoded_words(display, room))
        words.append(f" <{address}>" if words else address)
        if tokens:
            tokens[-1] += ","
            words[0] = " " + words[0]
        tokens.extend(words)
    if not tokens:
        return _fallback(name, value)
    return _fold(name, tokens)


def _spaced(words: list[str]) -> list[str]:
    return [words[0], *(" " + word for word in words[1:])]


def _words(tokens: list[str], room: int, phrase: bool) -> list[str]:
    """Header tokens (each after the first starting with whitespace) kept as they are where
    they can be; each run of tokens that cannot becomes encoded-words, the whitespace before
    the run staying outside. Separate runs keep a mail reader showing exactly the text: the
    space between two adjacent encoded-words is not part of it (RFC 2047 6.2)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        word = token.lstrip(" \t")
        if not _must_encode(word, phrase):
            out.append(token)
            i += 1
            continue
        j = i + 1
        while j < len(tokens) and _must_encode(tokens[j].lstrip(" \t"), phrase):
            j += 1
        lead = token[:len(token) - len(word)]
        words = encoded_words(word + "".join(tokens[i + 1:j]),
                              (room if not out else MAX_LINE - 1) - len(lead))
        out.append(lead + words[0])
        out.extend(" " + word for word in words[1:])
        i = j
    return out


def _fold(name: str, tokens: list[str]) -> bytes:
    """``name: tokens`` with a line break before any token (each after the first starts with
    whitespace) that would take the line past 78 characters."""
    lines = []
    line = f"{name}: {tokens[0]}"
    for token in tokens[1:]:
        if len(line) + len(token) > MAX_LINE:
            lines.append(line)
            line = token
        else:
            line += token
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def encoded_words(text: str, room: int = 75) -> list[str]:
    """``text`` as RFC 2047 UTF-8 encoded-words of at most 75 characters (the first at most
    ``room``, when that leaves space for some text), split between characters, in Q or B
    encoding, whichever is shorter. Adjacent encoded-words decode as one run of text, and
    the Q alphabet used is the strictest, valid in display names and in free text alike."""
    data = text.encode("utf-8")
    pieces: list[Any] = [_q(char) for char in text]
    if sum(map(len, pieces)) <= (len(data) + 2) // 3 * 4:
        mode, limit, first = "q", 63, room - 12  # 12: "=?utf-8?q?" and "?="
    else:
        mode, limit, first = "b", 45, (room - 12) // 4 * 3  # 45 bytes: 60 base64 characters
        pieces = [char.encode("utf-8") for char in text]
    budget = min(first, limit) if first >= 12 else limit
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


def _decode_words(display: str) -> str:
    """A display name that already holds encoded-words (as ``formataddr`` writes them), as
    the text they stand for; left as it is if they do not decode."""
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(display)))
    except (ValueError, LookupError, UnicodeError):
        return display


def _fallback(name: str, value: str) -> bytes:
    """Address syntax beyond name-and-address pairs (groups, comments): the email package
    parses and folds it."""
    from email.message import EmailMessage

    holder = EmailMessage(policy=policy())
    holder[name] = value
    return b"".join(policy().fold_binary(n, v) for n, v in holder.items())


def policy() -> EmailPolicy:
    """The email package's policy for 7-bit SMTP, imported only when needed."""
    from email.policy import SMTP

    return SMTP.clone(cte_type="7bit")
