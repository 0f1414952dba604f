"""The bead record: bd's keys and value rules, and the YAML file form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gc_polecat.beads import bead
from gc_polecat.errors import InvalidBead

T = "2026-11-21T14:00:00Z"


def minimal(**extra: object) -> dict:
    return {"id": "gc-abc", "title": "A bead", "created_at": T, "updated_at": T, **extra}


def test_defaults_and_key_order() -> None:
    b = bead.normalize(minimal(labels=[], description=""))
    assert b == {
        "id": "gc-abc",
        "title": "A bead",
        "status": "open",
        "priority": 2,
        "issue_type": "task",
        "created_at": T,
        "updated_at": T,
    }
    assert list(b) == [
        "id",
        "title",
        "status",
        "priority",
        "issue_type",
        "created_at",
        "updated_at",
    ]


def test_priority_zero_is_kept_and_always_written() -> None:
    b = bead.normalize(minimal(priority=0))
    assert b["priority"] == 0
    assert b"priority: 0" in bead.dump(b)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("status", "In review", "status must be a status name"),  # custom ones are kept
        ("issue_type", "a b", "issue_type must be a type name"),
        ("priority", 5, "priority must be 0..4"),
        ("priority", "2", "priority must be an integer"),
        ("priority", True, "priority must be an integer"),
        ("title", "", "title is required"),
        ("title", "x" * 501, "longer than 500"),
        ("created_at", "2026-11-21 14:00:00", "RFC 3339"),
        ("created_at", "2026-13-21T14:00:00Z", "not a real time"),
        ("labels", "a,b", "labels must be a list"),
        ("metadata", {"n": 3}, "metadata.n must be a string"),
        ("timeout", -1, "timeout must be >= 0"),
        ("await_type", "email", "await_type must be one of"),
        ("assignee", 7, "assignee must be a string"),
        (
            "dependencies",
            [{"issue_id": "gc-abc", "depends_on_id": "../x", "type": "blocks", "created_at": T}],
            "depends_on_id",
        ),
        (
            "dependencies",
            [{"issue_id": "gc-other", "depends_on_id": "gc-x", "type": "blocks", "created_at": T}],
            "issue_id must be gc-abc",
        ),
    ],
)
def test_bad_values_name_the_problem(field: str, value: object, needle: str) -> None:
    with pytest.raises(InvalidBead) as err:
        bead.normalize(minimal(**{field: value}))
    assert needle in str(err.value)
    assert "gc-abc" in str(err.value)


def test_closed_at_exactly_when_closed() -> None:
    with pytest.raises(InvalidBead, match="closed_at"):
        bead.normalize(minimal(status="closed"))
    with pytest.raises(InvalidBead, match="closed_at"):
        bead.normalize(minimal(status="open", closed_at=T))
    assert bead.normalize(minimal(status="closed", closed_at=T))["closed_at"] == T


def test_gate_fields_and_unknown_bd_fields_round_trip() -> None:
    gate = minimal(
        issue_type="gate",
        await_type="bead",
        await_id="gc-mr1",
        timeout=7_200_000_000_000,
        waiters=["gastown/polecats/furiosa"],
        agent_state="idle",
        ephemeral=True,
    )
    b = bead.normalize(gate)
    assert b["timeout"] == 7_200_000_000_000 and b["agent_state"] == "idle"
    assert bead.load(bead.dump(b), "x") == b


def test_multiline_text_is_a_literal_block() -> None:
    text = bead.dump(bead.normalize(minimal(description="line one\nline two\n")))
    assert b"description: |\n  line one\n  line two\n" in text


def test_malformed_yaml_and_wrong_shapes() -> None:
    with pytest.raises(InvalidBead, match="f.yaml: malformed YAML"):
        bead.load(b"id: [unclosed\n", "f.yaml")
    with pytest.raises(InvalidBead, match="must be a mapping"):
        bead.load(b"- just\n- a list\n", "f.yaml")
    with pytest.raises(InvalidBead, match="not UTF-8"):
        bead.load(b"\xff\xfe\x00", "f.yaml")


def test_unquoted_timestamp_in_a_hand_edited_file_is_normalised() -> None:
    raw = (
        b"id: gc-abc\ntitle: t\ncreated_at: 2026-11-21T14:00:00Z\n"
        b"updated_at: '2026-11-21T14:00:00Z'\n"
    )
    assert bead.load(raw, "x")["created_at"] == T


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(
    title=texts.filter(lambda s: s.strip()),
    description=texts,
    notes=texts,
    labels=st.lists(texts.filter(bool), max_size=5),
    metadata=st.dictionaries(texts.filter(bool), texts, max_size=5),
)
def test_any_text_round_trips_through_yaml(
    title: str, description: str, notes: str, labels: list[str], metadata: dict[str, str]
) -> None:
    try:
        b = bead.normalize(
            minimal(
                title=title[:500],
                description=description,
                notes=notes,
                labels=labels,
                metadata=metadata,
            )
        )
    except InvalidBead:
        return
    assert bead.load(bead.dump(b), "x") == b
