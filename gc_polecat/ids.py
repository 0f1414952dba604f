"""Bead IDs: bd's `<prefix>-<base36 hash>` scheme and where each ID lives on disk.

The file path is a pure function of the ID, so a person (or a shell one-liner) finds a bead
without searching: `gc-4f2` lives at `beads/4/f/gc-4f2.yaml`, one directory per leading hash
character. Two small levels keep every git tree we rewrite on a commit small (at most 36
entries above the leaf), which is what keeps commit cost flat as the repository grows.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable

from .errors import BadInput

# A prefix may start with a digit: Gas City derives one from a city or rig name's initials
# (gascity `internal/config/config.go` DeriveBeadsPrefix: "3d-city" gives "3c").
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# The hash is the part after the last dash; children append up to three `.N` levels.
ID_RE = re.compile(
    r"^(?P<prefix>[a-z0-9][a-z0-9-]{0,31})-(?P<hash>[0-9a-z]{1,32})(?P<child>(?:\.[1-9][0-9]{0,5}){0,3})$"
)
BEADS_DIR = "beads"
MIN_HASH_LEN, MAX_HASH_LEN = 3, 8
NONCES_PER_LENGTH = 10
COLLISION_BUDGET = 0.25
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix) or prefix.endswith("-"):
        raise BadInput(f"invalid prefix {prefix!r}: use lowercase letters, digits and dashes")
    return prefix


def parse_id(bead_id: object) -> re.Match[str]:
    """Match an ID or raise BadInput; rejects empty, path-like and oversized IDs."""
    if not isinstance(bead_id, str) or not bead_id:
        raise BadInput("invalid bead ID: empty")
    m = ID_RE.fullmatch(bead_id)
    if m is None:
        raise BadInput(f"invalid bead ID {bead_id!r}: expected <prefix>-<base36>[.<n>]")
    return m


def validate_id(bead_id: object) -> str:
    parse_id(bead_id)
    return bead_id  # type: ignore[return-value]


def id_path(bead_id: str) -> str:
    """Repository-relative POSIX path of a bead's file."""
    h = parse_id(bead_id).group("hash")
    first, second = h[0], h[1] if len(h) > 1 else "_"
    return f"{BEADS_DIR}/{first}/{second}/{bead_id}.yaml"


def path_id(path: str) -> str | None:
    """Inverse of id_path for files under beads/; None for anything that is not a bead path."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != BEADS_DIR or not parts[3].endswith(".yaml"):
        return None
    bead_id = parts[3][: -len(".yaml")]
    if ID_RE.fullmatch(bead_id) is None or id_path(bead_id) != path:
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
