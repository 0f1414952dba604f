"""Gas City's own store conformance suite, ported case by case and run against the real provider
script (`pack/scripts/gc-beads-polecat`) in real processes, with the environment gc sets.

Each test is one `t.Run` case of gascity `internal/beads/beadstest/conformance.go` (mirror HEAD
a46ccb1), named in its docstring: `RunStoreTests`, `RunCreationOrderTests`, `RunMetadataTests`,
and from `RunDepTests` the cases gc's exec store can express on beads that exist. The store under
test is what gc's `newStore` makes: a fresh scope, here a rig of a fresh city whose directory is
a git repository of the user's code, with no `init` run first (gc's own
`TestExecStoreConformance` does not run it either). After every case the rig's repository must
be exactly as it was: the store lives under the city's runtime directory.

The Go client is modelled in `tests/gc_exec_store.py` (it cannot run here).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import git
from .gc_exec_store import (  # noqa: F401 - gc_path is a fixture
    ExecStore,
    ListQuery,
    NotFoundError,
    ScanRequired,
    gc_path,
    scope_env,
    user_repo,
)


def assert_untouched(rig: Path, head: str) -> None:
    assert git(rig, "rev-parse", "HEAD").strip() == head
    assert git(rig, "status", "--porcelain", "--ignored") == ""
    assert sorted(p.name for p in rig.iterdir()) == [".git", "main.go"]


@pytest.fixture
def new_store(tmp_path: Path, gc_path: str) -> Iterator[Callable[[], ExecStore]]:  # noqa: F811
    """beadstest's `newStore`: each call a fresh, empty store (a new rig of a new city)."""
    made: list[tuple[Path, str]] = []

    def make() -> ExecStore:
        city = tmp_path / f"city{len(made)}"
        city.mkdir()
        (city / "city.toml").write_text('[workspace]\nname = "conformance"\n')
        rig = city / "rigs" / "frontend"
        made.append((rig, user_repo(rig)))
        return ExecStore(scope_env(city, rig, "fe", rig="frontend"), gc_path)

    yield make
    for rig, head in made:
        assert_untouched(rig, head)


def titles(beads: list[dict]) -> list[str]:
    return sorted(b["title"] for b in beads)


def created_at(bead: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(bead["created_at"].replace("Z", "+00:00"))


# --- RunStoreTests ---------------------------------------------------------------------------


def test_create_assigns_unique_non_empty_id(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreateAssignsUniqueNonEmptyID."""
    s = new_store()
    b1, b2 = s.create(title="first"), s.create(title="second")
    assert b1["id"] and b2["id"] and b1["id"] != b2["id"]
    assert b1["id"].startswith("fe-")  # the prefix gc gave the rig


def test_create_sets_status_open(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreateSetsStatusOpen."""
    assert new_store().create(title="test")["status"] == "open"


def test_create_defaults_type_to_task(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreateDefaultsTypeToTask (exec.go Create sends type "task" when empty)."""
    assert new_store().create(title="test")["type"] == "task"


def test_create_preserves_explicit_type(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreatePreservesExplicitType."""
    assert new_store().create(title="test", type="bug")["type"] == "bug"


def test_create_sets_created_at(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreateSetsCreatedAt: within an hour of now."""
    b = new_store().create(title="test")
    assert abs(dt.datetime.now(dt.UTC) - created_at(b)) < dt.timedelta(hours=1)


def test_create_preserves_title(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreatePreservesTitle."""
    title = "Build a Tower of Hanoi app"
    assert new_store().create(title=title)["title"] == title


def test_create_assignee_round_trips(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreateAssigneeRoundTrips."""
    s = new_store()
    assert s.get(s.create(title="test", assignee="mayor")["id"])["assignee"] == "mayor"


def test_create_from_round_trips(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CreateFromRoundTrips."""
    s = new_store()
    assert s.get(s.create(title="test", **{"from": "priya"})["id"])["from"] == "priya"


def test_get_existing_bead(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/GetExistingBead."""
    s = new_store()
    created = s.create(title="round trip", type="bug")
    got = s.get(created["id"])
    for key in ("id", "title", "status", "type", "assignee"):
        assert got[key] == created[key], key
    assert abs(created_at(got) - created_at(created)) < dt.timedelta(hours=1)


def test_get_not_found(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/GetNotFound."""
    s = new_store()
    s.create(title="exists")
    with pytest.raises(NotFoundError):
        s.get("nonexistent-999")


def test_get_not_found_empty_store(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/GetNotFoundEmptyStore."""
    with pytest.raises(NotFoundError):
        new_store().get("nonexistent-999")


def test_close_success(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CloseSuccess."""
    s = new_store()
    b = s.create(title="closeable")
    s.close(b["id"])
    assert s.get(b["id"])["status"] == "closed"


def test_close_not_found(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CloseNotFound."""
    with pytest.raises(NotFoundError):
        new_store().close("nonexistent-999")


def test_close_idempotent(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CloseIdempotent."""
    s = new_store()
    b = s.create(title="close twice")
    s.close(b["id"])
    s.close(b["id"])
    assert s.get(b["id"])["status"] == "closed"


def test_close_removes_from_ready(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/CloseRemovesFromReady."""
    s = new_store()
    b1 = s.create(title="first")
    s.create(title="second")
    s.close(b1["id"])
    assert [b["title"] for b in s.ready()] == ["second"]


def test_list_returns_all_beads(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListReturnsAllBeads."""
    s = new_store()
    s.create(title="first")
    s.create(title="second")
    assert titles(s.list_open()) == ["first", "second"]


def test_list_empty_store(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListEmptyStore."""
    assert new_store().list_open() == []


def test_list_count(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListCount."""
    s = new_store()
    for title in ("alpha", "beta", "gamma"):
        s.create(title=title)
    assert titles(s.list_open()) == ["alpha", "beta", "gamma"]


def test_list_rejects_unbounded_query_without_allow_scan(
    new_store: Callable[[], ExecStore],
) -> None:
    """RunStoreTests/ListRejectsUnboundedQueryWithoutAllowScan (decided on gc's side: the
    script is never called)."""
    s = new_store()
    s.create(title="first")
    calls = len(s.calls)
    with pytest.raises(ScanRequired):
        s.list(ListQuery())
    assert len(s.calls) == calls


def test_list_allows_explicit_scan(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListAllowsExplicitScan."""
    s = new_store()
    s.create(title="first")
    s.create(title="second")
    assert len(s.list(ListQuery(allow_scan=True))) == 2


def test_list_filters_by_query_fields(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListFiltersByQueryFields: type, label, parent and metadata together."""
    s = new_store()
    parent = s.create(title="parent", type="epic", labels=["root"], metadata={"scope": "a"})
    match = s.create(
        title="match", type="task", labels=["focus"], parent_id=parent["id"],
        metadata={"scope": "a"},
    )  # fmt: skip
    s.create(title="wrong-parent", type="task", labels=["focus"], metadata={"scope": "a"})
    s.create(
        title="wrong-metadata", type="task", labels=["focus"], parent_id=parent["id"],
        metadata={"scope": "b"},
    )  # fmt: skip
    q = ListQuery(type="task", label="focus", parent_id=parent["id"], metadata={"scope": "a"})
    assert [b["id"] for b in s.list(q)] == [match["id"]]


def test_ready_returns_open_beads(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ReadyReturnsOpenBeads."""
    s = new_store()
    s.create(title="first")
    s.create(title="second")
    assert titles(s.ready()) == ["first", "second"]


def test_update_description(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/UpdateDescription."""
    s = new_store()
    b = s.create(title="updatable", description="original")
    s.update(b["id"], description="updated description")
    assert s.get(b["id"])["description"] == "updated description"


def test_update_not_found(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/UpdateNotFound."""
    with pytest.raises(NotFoundError):
        new_store().update("nonexistent-999", description="whatever")


def test_update_nil_field(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/UpdateNilField: an empty update changes nothing."""
    s = new_store()
    b = s.create(title="keep desc", description="original")
    s.update(b["id"])
    assert s.get(b["id"])["description"] == "original"


def test_children_empty(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ChildrenEmpty: an ID that is not even a bead ID has no children."""
    s = new_store()
    assert s.children("nonexistent") == []
    assert s.run(["children", "nonexistent"]) == "[]"


def test_children_returns_matching(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ChildrenReturnsMatching: in creation order."""
    s = new_store()
    parent = s.create(title="parent", type="molecule")
    c1 = s.create(title="child-1", parent_id=parent["id"])
    c2 = s.create(title="child-2", parent_id=parent["id"])
    s.create(title="other")
    assert [b["id"] for b in s.children(parent["id"])] == [c1["id"], c2["id"]]


def test_children_wrong_parent(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ChildrenWrongParent."""
    s = new_store()
    p1, p2 = s.create(title="parent-1"), s.create(title="parent-2")
    s.create(title="child-of-1", parent_id=p1["id"])
    assert s.children(p2["id"]) == []


def test_ready_empty_store(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ReadyEmptyStore."""
    assert new_store().ready() == []


def test_ready_count(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ReadyCount."""
    s = new_store()
    for title in ("alpha", "beta", "gamma"):
        s.create(title=title)
    assert titles(s.ready()) == ["alpha", "beta", "gamma"]


def test_ready_excludes_infra_types(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ReadyExcludesInfraTypes: excluded by the script itself, not only by gc's
    client-side filter."""
    s = new_store()
    s.create(title="task", type="task")
    for typ in ("molecule", "message", "gate", "merge-request", "session", "agent", "role", "rig"):
        s.create(title=typ, type=typ)
    assert [b["title"] for b in s.ready()] == ["task"]
    assert [b["title"] for b in ExecStore._list(s.run(["ready"]))] == ["task"]


def test_list_by_label_match(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListByLabelMatch."""
    s = new_store()
    s.create(title="no-label")
    b2 = s.create(title="labeled", labels=["role:worker"])
    assert [b["id"] for b in s.list_by_label("role:worker", 0)] == [b2["id"]]


def test_list_by_label_no_match(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListByLabelNoMatch."""
    s = new_store()
    s.create(title="other", labels=["role:worker"])
    assert s.list_by_label("role:mayor", 0) == []


def test_list_by_label_limit(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListByLabelLimit."""
    s = new_store()
    for title in "abc":
        s.create(title=title, labels=["batch:1"])
    assert len(s.list_by_label("batch:1", 2)) == 2


def test_list_by_label_empty(new_store: Callable[[], ExecStore]) -> None:
    """RunStoreTests/ListByLabelEmpty."""
    assert new_store().list_by_label("anything", 0) == []


# --- RunCreationOrderTests -------------------------------------------------------------------


def test_list_order(new_store: Callable[[], ExecStore]) -> None:
    """RunCreationOrderTests/ListOrder: creation order, though all three share one second of
    created_at (bd's precision; the store keeps the nanoseconds beside it)."""
    s = new_store()
    for title in ("alpha", "beta", "gamma"):
        s.create(title=title)
    assert [b["title"] for b in s.list_open()] == ["alpha", "beta", "gamma"]


def test_ready_order(new_store: Callable[[], ExecStore]) -> None:
    """RunCreationOrderTests/ReadyOrder."""
    s = new_store()
    for title in ("alpha", "beta", "gamma"):
        s.create(title=title)
    assert [b["title"] for b in s.ready()] == ["alpha", "beta", "gamma"]


# --- RunMetadataTests ------------------------------------------------------------------------


def test_metadata_absent_vs_empty(new_store: Callable[[], ExecStore]) -> None:
    """RunMetadataTests/MetadataAbsentVsEmpty: '' is a value, distinct from an absent key."""
    s = new_store()
    b = s.create(title="test")
    s.set_metadata(b["id"], "key", "")
    meta = s.get(b["id"])["metadata"]
    assert "key" in meta and meta["key"] == ""
    assert "nonexistent" not in meta


# --- RunDepTests (on beads that exist: gc's exec store has no bead-less edges) ---------------


def test_dep_add_idempotent_and_updates_type(new_store: Callable[[], ExecStore]) -> None:
    """RunDepTests/DepAddAndListDown, DepAddIdempotent, DepAddUpdatesType, DepListUp: one edge
    per pair; adding it again with another type changes its type."""
    s = new_store()
    a, b = s.create(title="a")["id"], s.create(title="b")["id"]
    s.dep_add(a, b, "blocks")
    s.dep_add(a, b, "blocks")
    assert [(d["depends_on_id"], d["type"]) for d in s.dep_list(a, "down")] == [(b, "blocks")]
    assert [b_["title"] for b_ in s.ready()] == ["b"]
    s.dep_add(a, b, "tracks")
    assert [(d["depends_on_id"], d["type"]) for d in s.dep_list(a, "down")] == [(b, "tracks")]
    assert [d["issue_id"] for d in s.dep_list(b, "up")] == [a]
    assert titles(s.ready()) == ["a", "b"]  # `tracks` does not block


def test_dep_remove(new_store: Callable[[], ExecStore]) -> None:
    """RunDepTests/DepRemove."""
    s = new_store()
    a, b, c = (s.create(title=t)["id"] for t in "abc")
    s.dep_add(a, b, "blocks")
    s.dep_add(a, c, "blocks")
    s.dep_remove(a, b)
    assert [d["depends_on_id"] for d in s.dep_list(a, "down")] == [c]


def test_set_metadata_batch_and_ping(new_store: Callable[[], ExecStore]) -> None:
    """RunDepTests/SetMetadataBatch (sequential set-metadata calls, exec.go) and Ping."""
    s = new_store()
    s.ping()
    b = s.create(title="batch-test")
    kvs = {"key1": "value1", "key2": "value2", "key3": "value3"}
    for k, v in kvs.items():
        s.set_metadata(b["id"], k, v)
    assert s.get(b["id"])["metadata"] == kvs


def test_dep_remove_nonexistent_and_dep_list_empty(new_store: Callable[[], ExecStore]) -> None:
    """RunDepTests/DepRemoveNonexistent and DepListEmpty: edges of beads that are not there
    (or of strings that are not IDs) are simply none; nothing is written."""
    s = new_store()
    s.dep_remove("x", "y")
    s.dep_remove("fe-zzzzz", "fe-yyyyy")
    assert s.dep_list("nonexistent", "down") == []
    assert s.dep_list("fe-zzzzz", "down") == [] and s.dep_list("fe-zzzzz", "up") == []
    a = s.create(title="a")["id"]
    s.dep_add(a, "hq-abc", "blocks")  # another scope's bead: what here depends on it, `up`
    assert s.dep_list("hq-abc", "up") == [{"issue_id": a, "depends_on_id": "hq-abc",
                                           "type": "blocks"}]  # fmt: skip
