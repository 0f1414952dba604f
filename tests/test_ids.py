"""IDs: bd's shape, adaptive length, collision retry, and paths that follow from the ID.

Which IDs are accepted follows bd's import, which takes any ID (bd: `cmd/bd/import.go` imports
with `SkipPrefixValidation`; `internal/validation/bead.go`, ValidateIDFormat, asks only for a
dash): upper case, `_`, named children and long prefixes all occur in real bd exports.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gc_polecat.beads import ids
from gc_polecat.errors import BadInput

BD_IDS = [
    "sonpoGPT-05o",  # upper-case prefix (a real bd project)
    "Aurum-0at.1.2",  # upper-case prefix with children
    "gt-group-test-groupY",  # upper case in the hash
    "deep_space_relay-024",  # `_` in the prefix
    "mol-polecat-arm.assess",  # a named child (molecule step)
    "bd-abc.step-1",  # a named child with a dash
    "a-very-long-project-name-that-goes-beyond-thirty-two-characters-x1z",  # long prefix
    "gc-abc.0",
    "gc-abc.1.2.3.4",  # bd's import does not limit the depth
    "2048-abc",  # a prefix starting with a digit
    "X" * 60 + "-" + "Y" * 59,  # the longest ID, all upper case
]


@pytest.mark.parametrize(
    "good",
    ["gc-4f2", "bd-kwro", "bd-beads-polecat-amber", "gc-abc.1", "gc-abc.1.2.3", "bd-1", *BD_IDS],
)
def test_valid_ids(good: str) -> None:
    assert ids.validate_id(good) == good
    path = ids.id_path(good)
    assert ids.path_id(path) == good
    name = path.rsplit("/", 1)[1]
    assert len(name.encode()) <= 255 and name == name.lower()  # case-safe file name
    assert path == path.lower()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../x",
        "/etc/passwd",
        "gc-../../x",
        "gc-abc/def",
        "gc-abc\\def",
        "..-abc",
        "gc-abc..x",
        "gc-",
        "-abc",
        "abc",  # no dash: not <prefix>-<hash>
        "gc abc",
        "gc-abc\n",
        "gc-abc.",
        "gc-abc\x00",
        "gc-\x1b[2J",
        "gc-ab+c",
        "gc-abc:x",
        "gc-ab\u00e9",  # non-ASCII: case folding is not portable across file systems
        "gc-\u212a",  # the Kelvin sign folds to k on some systems
        "X" * 60 + "-" + "Y" * 60,  # one over MAX_ID_LEN
        None,
        5,
    ],
)
def test_invalid_ids_are_rejected(bad: object) -> None:
    with pytest.raises(BadInput):
        ids.validate_id(bad)


def test_path_follows_from_id() -> None:
    """Our own IDs keep the paths they always had; upper case is `+` and the lower case."""
    assert ids.id_path("gc-4f2") == "beads/4/f/gc-4f2.yaml"
    assert ids.id_path("gc-4f2.3") == "beads/4/f/gc-4f2.3.yaml"  # children live beside the parent
    assert ids.id_path("bd-1") == "beads/1/_/bd-1.yaml"
    assert ids.id_path("sonpoGPT-05o") == "beads/0/5/sonpo+g+p+t-05o.yaml"
    assert ids.id_path("gt-group-test-groupY") == "beads/g/r/gt-group-test-group+y.yaml"
    assert ids.id_path("gt-AB1") == "beads/a/b/gt-+a+b1.yaml"  # shard directories are lower case
    assert ids.id_path("mol-polecat-arm.assess") == "beads/a/r/mol-polecat-arm.assess.yaml"
    assert ids.path_id("beads/4/f/gc-4f2.yaml") == "gc-4f2"
    assert ids.path_id("beads/x/f/gc-4f2.yaml") is None  # wrong directory for that ID
    assert ids.path_id("beads/README.md") is None
    assert ids.path_id("beads/memories.jsonl") is None
    assert ids.path_id("beads/A/B/gt-+a+b1.yaml") is None  # not the one spelling id_path makes
    assert ids.path_id("beads/a/b/gt-AB1.yaml") is None  # an upper-case name is never a bead
    assert ids.path_id("beads/a/b/gt-+ab1+.yaml") is None  # a `+` not before a letter


def test_ids_differing_only_in_case_get_different_files() -> None:
    """macOS and Windows fold case in file names: the two must still be two files there."""
    variants = ["gt-group-test-groupY", "gt-group-test-groupy", "GT-group-test-groupy"]
    names = {ids.id_path(v).lower() for v in variants}
    assert len(names) == len(variants)


@given(st.text(alphabet="aAbBzZ09_-.+/", max_size=30))
def test_path_id_is_the_exact_inverse_of_id_path(text: str) -> None:
    """Every ID has exactly one path and every bead path exactly one ID."""
    bead_id = ids.path_id(f"beads/{text[:1].lower() or 'x'}/{text[1:2].lower() or '_'}/{text}")
    if bead_id is not None:
        assert ids.id_path(bead_id).rsplit("/", 1)[1] == text
    try:
        path = ids.id_path(text)
    except BadInput:
        return
    assert ids.path_id(path) == text


@given(st.text(max_size=40))
def test_no_text_makes_a_path_outside_beads(text: str) -> None:
    try:
        path = ids.id_path(text)
    except BadInput:
        return
    parts = path.split("/")
    assert parts[0] == "beads" and ".." not in parts and len(parts) == 4
    assert parts[3].isascii() and parts[3].isprintable() and parts[3] == parts[3].lower()


def test_hash_length_adapts_to_repository_size() -> None:
    assert ids.hash_length(0) == 3
    assert ids.hash_length(100) == 3
    assert ids.hash_length(500) == 4
    assert ids.hash_length(5_000) == 5
    assert ids.hash_length(30_000) == 6
    assert ids.hash_length(10**9) == 8


def test_collisions_retry_then_grow() -> None:
    taken: set[str] = set()
    first = ids.generate_id("gc", "seed", 0, taken.__contains__)
    assert len(first.split("-")[1]) == 3
    # Every 3-character candidate taken: the generator must move to 4 characters.
    taken_all3 = lambda candidate: len(candidate) == len("gc-abc")  # noqa: E731
    grown = ids.generate_id("gc", "seed", 0, taken_all3)
    assert len(grown.split("-")[1]) == 4


def test_generation_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    none: set[str] = set()
    assert ids.generate_id("gc", "a", 0, none.__contains__) == ids.generate_id(
        "gc", "a", 0, none.__contains__
    )
    made = {ids.generate_id("gc", str(i), 0, none.__contains__) for i in range(50)}
    assert len(made) > 40


@pytest.mark.parametrize(
    "bad", ["", "gc-", "-gc", "g" * 65, "../x", "a.b", "a/b", "a b", "gc\n", "gc\x00", "gé"]
)  # upper case, `_` and a leading digit are bd's and Gas City's: tests/test_config.py
def test_invalid_prefix(bad: str) -> None:
    with pytest.raises(BadInput):
        ids.validate_prefix(bad)


def test_a_prefix_gc_derives_may_start_with_a_digit() -> None:
    """gascity `internal/config/config.go` DeriveBeadsPrefix: "3d-city" gives "3c"."""
    assert ids.validate_prefix("3c") == "3c"
    assert ids.validate_id("3c-a1b") == "3c-a1b" and ids.id_path("3c-a1b").endswith("3c-a1b.yaml")
