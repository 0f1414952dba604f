"""The one place JSON from outside is decoded: JSONL imports, exec-beads input, bd hook payloads.

`json.loads` alone accepts what no other tool accepts and fails in ways that are not bad input:
`NaN` and `Infinity` (not JSON; bd's import refuses them, and `--json` output would carry them
on), `1e999` (a float overflow becomes infinity), integers longer than Python's 4,300-digit
conversion limit (ValueError), arrays nested past the recursion limit (RecursionError) and lone
UTF-16 surrogates such as `"\\udc00"` (a string no file or pipe can hold). Here each of those is
one clear error naming where the text came from; docs/formats.md ("Limits on input") states
the limits, tests/test_untrusted_input.py proves them with real processes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gc_polecat.errors import BadInput

MAX_DEPTH = 64  # arrays and objects nested in one document (a bead record needs about 35)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # Go's int64 and SQLite's INTEGER: what bd can store
_MAX_INT_CHARS = 20  # "-9223372036854775808"; longer digit strings are out of range anyway


class _Refused(Exception):
    """Raised inside json's callbacks; turned into the caller's error class by `loads`."""


def _parse_int(text: str) -> int:
    value = int(text) if len(text) <= _MAX_INT_CHARS else None
    if value is None or not INT_MIN <= value <= INT_MAX:
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"
        raise _Refused(f"integer {shown} is out of range (at most 64 bits)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(text)} characters)"
        raise _Refused(f"number {shown} is out of range (it would become infinity)")
    return value


def _parse_constant(text: str) -> Any:
    raise _Refused(f"{text} is not JSON (NaN and Infinity are refused)")


def _decode(data: str | bytes) -> str:
    """UTF-8 text with no lone surrogates (argv and stdin decoded leniently may carry them)."""
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("not UTF-8 text") from None
    if not data.isascii():
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refused("not UTF-8 text") from None
    return data


def _too_deep(value: Any) -> bool:
    """Whether containers nest deeper than MAX_DEPTH (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if type(item) is dict:
            stack.extend((v, depth + 1) for v in item.values() if type(v) in (dict, list))
        elif type(item) is list:
            stack.extend((v, depth + 1) for v in item if type(v) in (dict, list))
    return False


def _has_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# What `json.loads(text, parse_int=..., ...)` builds on every call, built once (a bulk import
# decodes thousands of lines).
_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def loads(data: str | bytes, where: str, error: type[Exception] = BadInput) -> Any:
    """Decode one JSON document; anything unsafe or not JSON raises `error("<where>: ...")`.

    The fast path is plain `json.loads` plus three callbacks (numbers, constants); the depth
    walk and the surrogate check run only when the text could hold such a thing at all.
    """
    try:
        text = _decode(data)
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise _Refused(
                f"malformed JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
            ) from None
        except RecursionError:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels") from None
        if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(value):
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
        if "\\ud" in text.lower() and _has_surrogate(value):  # only a \u escape makes one
            raise _Refused("a string holds an unpaired surrogate (\\ud800-\\udfff)")
    except _Refused as exc:
        raise error(f"{where}: {exc}") from None
    return value


def dumps(value: Any, **options: Any) -> str:
    """json.dumps that can never write NaN or Infinity (ValueError instead): what we print and
    store must be JSON every other tool reads."""
    return json.dumps(value, allow_nan=False, **options)
