"""IDs: bd's shape, adaptive length, collision retry, and paths that follow from the ID."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gc_polecat import ids
from gc_polecat.errors import BadInput


@pytest.mark.parametrize(
    "good", ["gc-4f2", "bd-kwro", "bd-beads-polecat-amber", "gc-abc.1", "gc-abc.1.2.3", "bd-1"]
)
def test_valid_ids(good: str) -> None:
    assert ids.validate_id(good) == good
    assert ids.path_id(ids.id_path(good)) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../x",
        "/etc/passwd",
        "gc-../../x",
        "gc-abc/def",
        "GC-ABC",
        "gc-",
        "-abc",
        "gc abc",
        "gc-abc.0",
        "gc-abc.1.2.3.4",
        "gc-abc\n",
        "gc-abc.",
        "gc-ab_c",
        "gc-abc\x00",
        None,
        5,
    ],
)
def test_invalid_ids_are_rejected(bad: object) -> None:
    with pytest.raises(BadInput):
        ids.validate_id(bad)


def test_path_follows_from_id() -> None:
    assert ids.id_path("gc-4f2") == "beads/4/f/gc-4f2.yaml"
    assert ids.id_path("gc-4f2.3") == "beads/4/f/gc-4f2.3.yaml"  # children live beside the parent
    assert ids.id_path("bd-1") == "beads/1/_/bd-1.yaml"
    assert ids.path_id("beads/4/f/gc-4f2.yaml") == "gc-4f2"
    assert ids.path_id("beads/x/f/gc-4f2.yaml") is None  # wrong directory for that ID
    assert ids.path_id("beads/README.md") is None


@given(st.text(max_size=40))
def test_no_text_makes_a_path_outside_beads(text: str) -> None:
    try:
        path = ids.id_path(text)
    except BadInput:
        return
    parts = path.split("/")
    assert parts[0] == "beads" and ".." not in parts and len(parts) == 4


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


@pytest.mark.parametrize("bad", ["", "GC", "-gc", "gc_x", "gc-", "g" * 40, "../x"])
def test_invalid_prefix(bad: str) -> None:
    with pytest.raises(BadInput):
        ids.validate_prefix(bad)


def test_a_prefix_gc_derives_may_start_with_a_digit() -> None:
    """gascity `internal/config/config.go` DeriveBeadsPrefix: "3d-city" gives "3c"."""
    assert ids.validate_prefix("3c") == "3c"
    assert ids.validate_id("3c-a1b") == "3c-a1b" and ids.id_path("3c-a1b").endswith("3c-a1b.yaml")
