"""Reading bead files in the exact layout `bead.dump` writes, without a YAML parser.

A cold catalog rebuild parses every bead file, and ruamel's safe loader spends about 350 us a
file, most of it resolving the type of each scalar in Python. Nearly every file in a store was
written by `bead.dump`'s fast emitter, whose layout is narrow: block mappings and lists two
levels deep, holding strings (plain, quoted or literal blocks), ints and bools. `read` parses
that layout line by line and accepts the result only if the emitter writes exactly the same
bytes for it. The emitter's contract (tests/test_bead_yaml.py) is that ruamel loads its output
back to the value it was given, so an accepted value is the value ruamel would have produced;
anything else (hand-written, bd's, odd values, oversized, not UTF-8) returns None and goes
through `bead.load`, with its limits, unchanged. The fast path cannot change a result, only its
cost: tests/test_catalog_rebuild.py compares both on every file it can find.
"""

from __future__ import annotations

import re
from typing import Any

from gc_polecat.beads import bead as beadmod
from gc_polecat.errors import InvalidBead

_INT = re.compile(r"-?[0-9]+", re.ASCII)
_BLOCK_HEADERS = frozenset(("|", "|-", "|+", "|2", "|2-", "|2+"))
_UNESCAPES = {
    "0": "\0", "a": "\x07", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", '"': '"', "\\": "\\",
}  # fmt: skip
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)", re.S)
_NOT_A_KEY = frozenset(('"', "?", " ", ""))
_SPECIAL_START = frozenset("'\"|-0123456789tf")  # what may start anything but a plain string
_QUOTED_KEY = re.compile(r"'((?:[^']|'')*)':(?: (.*)|$)", re.S)


class _Decline(Exception):
    """Not in the emitter's layout: the caller falls back to the YAML parser."""


def load(data: bytes, where: str) -> beadmod.Bead:
    """`bead.load(data, where)`, the same result or the same InvalidBead, usually faster."""
    raw = read(data)
    if raw is None:
        return beadmod.load(data, where)
    try:
        return beadmod.normalize(raw)
    except InvalidBead as exc:  # worded as bead.load words it
        raise InvalidBead(f"{where}: {exc}") from None


def read(data: bytes) -> dict[str, Any] | None:
    """The mapping in `data` if `bead.dump`'s emitter writes exactly `data` for it, else None."""
    if len(data) > beadmod.MAX_FILE_BYTES or not data.endswith(b"\n"):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    lines.pop()  # the empty string after the final newline
    reader = _Reader(lines)
    try:
        value = reader.mapping(0, nested=True)
        if reader.at != len(lines) or beadmod._emit_bead(value) != text:
            return None
    except (_Decline, beadmod._Unsupported, IndexError, ValueError):
        return None
    return value


class _Reader:
    """A cursor over the lines of one file; each method consumes what it reads."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.at = 0

    def mapping(self, indent: int, nested: bool) -> dict[str, Any]:
        """`key: value` lines at column `indent`; with `nested`, `key:` opens a collection."""
        lines, out, pad, count = self.lines, {}, " " * indent, len(self.lines)
        while self.at < count:
            line = lines[self.at]
            if indent and (not line.startswith(pad) or line[indent : indent + 1] in (" ", "")):
                break
            body = line[indent:] if indent else line
            first = body[:1]
            if first in _NOT_A_KEY or body.startswith("- "):
                break
            self.at += 1
            key, sep, rest = body.partition(": ")  # a plain key never holds ": "
            if first == "'" or not sep:
                entry = _entry(body)
                if entry is None:
                    raise _Decline
                key, rest = entry
            if rest is not None:
                out[key] = self.scalar(rest, indent)
            elif nested:
                out[key] = self.collection(indent)
            else:
                raise _Decline
        if not out:
            raise _Decline
        return out

    def collection(self, indent: int) -> Any:
        """The block list or mapping under a `key:` line at column `indent`."""
        following = self.lines[self.at]
        if following.startswith(" " * indent + "- "):
            return self.sequence(indent)
        return self.mapping(indent + 2, nested=False)

    def sequence(self, indent: int) -> list[Any]:
        """`- item` lines at column `indent`; an item may be a one-level mapping."""
        lines, out, dash = self.lines, [], " " * indent + "- "
        while self.at < len(lines) and lines[self.at].startswith(dash):
            item = lines[self.at][indent + 2 :]
            if item[:1] in ('"', "|") or _entry(item) is None:
                self.at += 1
                out.append(self.scalar(item, indent))
            else:  # `- key: value`: read as the mapping it starts, two columns in
                lines[self.at] = " " * (indent + 2) + item
                out.append(self.mapping(indent + 2, nested=False))
        return out

    def scalar(self, text: str, indent: int) -> Any:
        """A value written after `key: ` or `- ` (a literal block continues below)."""
        first = text[:1]
        if first not in _SPECIAL_START:  # the common case: a plain string
            return text
        if first == "'":
            if len(text) < 2 or text[-1] != "'":
                raise _Decline
            return text[1:-1].replace("''", "'")
        if first == '"':
            if len(text) < 2 or text[-1] != '"':
                raise _Decline
            return _ESCAPE.sub(_unescape, text[1:-1])
        if first == "|":
            return self.block(text, indent + 2)
        if text == "true":
            return True
        if text == "false":
            return False
        if _INT.fullmatch(text):
            return int(text)
        return text

    def block(self, header: str, indent: int) -> str:
        """A literal block's text: its lines at column `indent`, blank lines kept."""
        if header not in _BLOCK_HEADERS:
            raise _Decline
        lines, pad, body = self.lines, " " * indent, []
        while self.at < len(lines):
            line = lines[self.at]
            if line and not line.startswith(pad):
                break
            body.append(line[indent:])
            self.at += 1
        text = "\n".join(body)
        return text if header.endswith("-") else text + "\n"


def _entry(body: str) -> tuple[str, str | None] | None:
    """(key, value text) of `key: value`, (key, None) of `key:`; None if not an entry."""
    if body[:1] == "'":
        match = _QUOTED_KEY.match(body)
        return None if match is None else (match.group(1).replace("''", "'"), match.group(2))
    key, sep, rest = body.partition(": ")
    if sep:
        return key, rest
    return (body[:-1], None) if body.endswith(":") else None


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) == 3:
        return chr(int(code[1:], 16))
    if code not in _UNESCAPES:
        raise _Decline
    return _UNESCAPES[code]
