"""Bead IDs: bd's `<prefix>-<hash>` scheme and where each ID lives on disk.

The file path is a pure function of the ID, so a person (or a shell one-liner) finds a bead
without searching: `gc-4f2` lives at `beads/4/f/gc-4f2.yaml`, one directory per leading hash
character. Two small levels keep every git tree we rewrite on a commit small (at most 37
entries above the leaf), which is what keeps commit cost flat as the repository grows.

IDs we make are lowercase base36, but bd's import takes any ID (bd: `cmd/bd/import.go` imports
with `SkipPrefixValidation`), so we accept what real bd projects hold: upper case
(`sonpoGPT-05o`), `_` (`deep_space_relay-024`), named children (`mol-polecat-arm.assess`), long
prefixes. File names must still be distinct on a case-insensitive file system (macOS, Windows),
so each upper-case letter is written as `+` and its lower-case form (`sonpo+g+p+t-05o.yaml`) and
shard directories are always lower case. Lowercase IDs keep exactly the paths they always had.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

from gc_polecat.errors import BadInput

# Every prefix bd or Gas City makes: `bd init` keeps letters of either case, digits, `_` and `-`
# (bd: cmd/bd/init.go normalizes the name, internal/storage/dolt/history.go caps the database name
# at 64), Gas City derives lowercase ones that may start with a digit (`3d-city` -> `3c`; gascity:
# internal/config/config.go `DeriveBeadsPrefix`). ASCII only: no `.`, `/`, space or control
# character, so a prefix can never turn an ID into a path.
PREFIX_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", re.ASCII)
# ASCII letters, digits and `_` in segments joined by dashes; the hash is the segment after the
# last dash of the top-level part, and children append `.name` parts (bd's `.N`, or the named
# steps of a molecule). No `/`, backslash, `..`, whitespace, control or non-ASCII character can
# pass, so an ID is always one file name, never a path, and folds to one case in one way only.
ID_RE = re.compile(
    r"^(?P<prefix>[A-Za-z0-9_]+(?:-+[A-Za-z0-9_]+)*?)-+(?P<hash>[A-Za-z0-9_]+)"
    r"(?P<child>(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*)$"
)
MAX_ID_LEN = 120  # even all upper case, `<id>.yaml` stays under the 255-byte file name limit
BEADS_DIR = "beads"
BEAD_SUFFIX = ".yaml"
UPPER_MARK = "+"  # `+x` in a file name is the upper-case letter X of the ID
MEMORIES_PATH = f"{BEADS_DIR}/memories.jsonl"  # bd's memories (gc_polecat/interop/bd_jsonl.py)
# Files under beads/ that are not beads (the catalog and export skip them).
SIDE_FILES = frozenset((f"{BEADS_DIR}/README.md", MEMORIES_PATH))
MIN_HASH_LEN, MAX_HASH_LEN = 3, 8
NONCES_PER_LENGTH = 10
COLLISION_BUDGET = 0.25
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_TO_NAME = {c: UPPER_MARK + c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
_FROM_NAME = re.compile(r"\+([a-z])")


def validate_prefix(prefix: object) -> str:
    """A prefix bd or Gas City could have made (PREFIX_RE), without a trailing dash."""
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix) or prefix.endswith("-"):
        raise BadInput(
            f"invalid prefix {prefix!r}: use up to 64 ASCII letters, digits, '_' and '-' "
            "(not first or last)"
        )
    return prefix


def parse_id(bead_id: object) -> re.Match[str]:
    """Match an ID or raise BadInput; rejects empty, path-like and oversized IDs."""
    if not isinstance(bead_id, str) or not bead_id:
        raise BadInput("invalid bead ID: empty")
    m = ID_RE.fullmatch(bead_id) if len(bead_id) <= MAX_ID_LEN else None
    if m is None:
        raise BadInput(
            f"invalid bead ID {bead_id!r}: expected <prefix>-<hash>[.<child>] of ASCII letters, "
            f"digits, '_', '-' and '.' (at most {MAX_ID_LEN} characters)"
        )
    return m


def validate_id(bead_id: object) -> str:
    parse_id(bead_id)
    return bead_id  # type: ignore[return-value]


def file_name(bead_id: str) -> str:
    """The bead's file name: the ID with each upper-case letter as `+` and its lower case."""
    if bead_id.lower() == bead_id:
        return bead_id + BEAD_SUFFIX
    return "".join(_TO_NAME.get(c, c) for c in bead_id) + BEAD_SUFFIX


def name_id(name: str) -> str | None:
    """Inverse of file_name: the ID a file name encodes, or None when it is not a bead name."""
    if not name.endswith(BEAD_SUFFIX):
        return None
    stem = name[: -len(BEAD_SUFFIX)]
    bead_id = _FROM_NAME.sub(lambda m: m.group(1).upper(), stem) if UPPER_MARK in stem else stem
    if len(bead_id) > MAX_ID_LEN or ID_RE.fullmatch(bead_id) is None:
        return None
    return bead_id if file_name(bead_id) == name else None


@functools.lru_cache(maxsize=65536)
def id_path(bead_id: str) -> str:
    """Repository-relative POSIX path of a bead's file (cached: a write asks several times)."""
    h = parse_id(bead_id).group("hash").lower()
    first, second = h[0], h[1] if len(h) > 1 else "_"
    return f"{BEADS_DIR}/{first}/{second}/{file_name(bead_id)}"


def path_id(path: str) -> str | None:
    """Inverse of id_path for files under beads/; None for anything that is not a bead path."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != BEADS_DIR:
        return None
    bead_id = name_id(parts[3])
    if bead_id is None or id_path(bead_id) != path:
        return None
    return bead_id


def parent_id(bead_id: str) -> str | None:
    """`gc-abc.1.2` -> `gc-abc.1`; top-level IDs have no parent."""
    head, dot, _ = bead_id.rpartition(".")
    return head if dot else None


def child_depth(bead_id: str) -> int:
    return bead_id.count(".")


def base36(n: int, length: int) -> str:
    """The low `length` base36 digits of n, zero-padded (uniform, so shards fill evenly)."""
    out = []
    for _ in range(length):
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def hash_length(existing_top_level: int) -> int:
    """Shortest length whose birthday-collision chance over the existing IDs stays under 25%."""
    for length in range(MIN_HASH_LEN, MAX_HASH_LEN + 1):
        space = 36**length
        p = 1.0 - math.exp(-(existing_top_level**2) / (2.0 * space))
        if p < COLLISION_BUDGET:
            return length
    return MAX_HASH_LEN


def generate_id(
    prefix: str,
    seed: str,
    existing_top_level: int,
    exists: Callable[[str], bool],
) -> str:
    """bd's scheme: sha256(seed + nonce) in base36, growing the length after 10 collisions."""
    import hashlib  # lazy: start-up

    for length in range(hash_length(existing_top_level), MAX_HASH_LEN + 1):
        for nonce in range(NONCES_PER_LENGTH):
            digest = hashlib.sha256(f"{seed}|{nonce}".encode()).digest()
            candidate = f"{prefix}-{base36(int.from_bytes(digest, 'big'), length)}"
            if not exists(candidate):
                return candidate
    raise BadInput(f"could not find a free ID for prefix {prefix!r}")


# --- git names carried in beads (branches, targets, commits) ---------------------------------

SHA_CHARS = set("0123456789abcdef")


def check_sha(value: str, what: str) -> str:
    if not 4 <= len(value) <= 64 or not set(value) <= SHA_CHARS:
        raise BadInput(f"{what} must be a hexadecimal commit id, not {value!r}")
    return value


def check_ref(value: str, what: str) -> str:
    """Branch and target names: git's rules, plus nothing a shell or YAML could misread."""
    bad = (" ", "~", "^", ":", "?", "*", "[", "\\", "..", "@{", "//")
    if (
        not value
        or value.startswith(("-", "/"))
        or value.endswith(("/", ".lock", "."))
        or any(b in value for b in bad)
        or not value.isprintable()
    ):
        raise BadInput(f"invalid {what} {value!r}")
    return value
