"""The store against real git: one commit per change, clean status and fsck, linear history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gc_polecat.beads import bead as beadmod
from gc_polecat.beads.store import Store
from gc_polecat.errors import BadInput, NotFound
from gc_polecat.plugins import make_plugin_manager

from .conftest import ROOT, assert_clean, git


def count_commits(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD"))


def test_init_makes_a_clean_repository(repo: Path) -> None:
    assert (repo / ".beads" / "config.yaml").read_text().endswith("prefix: gc\n")
    assert count_commits(repo) == 1
    assert git(repo, "config", "core.splitIndex").strip() == "true"
    assert_clean(repo)


def test_init_is_idempotent_and_refuses_another_prefix(repo: Path) -> None:
    Store.init(repo, prefix="gc")
    assert count_commits(repo) == 1
    with pytest.raises(BadInput, match="already a beads repository"):
        Store.init(repo, prefix="other")


def test_init_inside_an_existing_git_repository_keeps_its_history(tmp_path: Path) -> None:
    root = tmp_path / "existing"
    root.mkdir()
    git(root, "init", "-q")
    (root / "notes.txt").write_text("hello\n")
    git(root, "add", "notes.txt")
    git(root, "commit", "-qm", "first")
    Store.init(root, prefix="ex")
    assert count_commits(root) == 2
    assert (root / "notes.txt").read_text() == "hello\n"
    assert_clean(root)


def test_create_update_close_each_one_commit(store: Store, repo: Path) -> None:
    with store.transaction() as tx:
        b = tx.create({"title": "First", "priority": 1})
    bid = b["id"]
    assert count_commits(repo) == 2
    path = repo / "beads" / bid[3] / bid[4] / f"{bid}.yaml"
    assert path.is_file() and f"id: {bid}" in path.read_text()
    assert git(repo, "log", "-1", "--format=%s") == f"{bid}: created (task) 'First'\n"
    assert_clean(repo)

    with store.transaction() as tx:
        tx.update(bid, {"status": "in_progress", "assignee": "furiosa"})
    assert git(repo, "log", "-1", "--format=%s").startswith(f"{bid}: status open -> in_progress")
    with store.transaction() as tx:
        tx.close(bid, "done")
    assert (
        git(repo, "log", "-1", "--format=%s")
        == f"{bid}: status in_progress -> closed; close_reason set\n"
    )
    closed = store.get(bid)
    assert closed["status"] == "closed" and closed["closed_at"] and closed["started_at"]
    assert count_commits(repo) == 4
    assert_clean(repo)
    # `git diff` of the last change shows the human-readable YAML lines.
    diff = git(repo, "diff", "HEAD~1", "HEAD")
    assert "-status: in_progress" in diff and "+status: closed" in diff


def test_author_is_the_acting_agent(
    store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BD_ACTOR", "bd-actor")
    with Store(repo).transaction() as tx:
        tx.create({"title": "by bd actor"})
    # an agent gets an address of its own, so `git log` tells agents apart (docs/formats.md)
    assert git(repo, "log", "-1", "--format=%an <%ae>") == (
        "bd-actor <bd-actor@agents.gc-polecat.invalid>\n"
    )
    monkeypatch.setenv("GC_AGENT", "gastown/polecats/furiosa")
    with Store(repo).transaction() as tx:
        tx.create({"title": "by agent"})
    assert git(repo, "log", "-1", "--format=%an <%ae> %cn <%ce>") == (
        "gastown/polecats/furiosa <gastown-polecats-furiosa@agents.gc-polecat.invalid> "
        "gastown/polecats/furiosa <gastown-polecats-furiosa@agents.gc-polecat.invalid>\n"
    )
    monkeypatch.setenv("GC_AGENT_EMAIL", "furiosa@city.example")
    monkeypatch.setenv("GC_AGENT", "fur<iosa>\nX")  # no forged ident, no extra header line
    with Store(repo).transaction() as tx:
        tx.create({"title": "named address"})
    assert git(repo, "log", "-1", "--format=%an <%ae>") == "furiosa X <furiosa@city.example>\n"
    monkeypatch.delenv("GC_AGENT_EMAIL")
    monkeypatch.setenv("GC_AGENT", "gastown/polecats/furiosa")
    monkeypatch.delenv("GC_AGENT")
    monkeypatch.delenv("BD_ACTOR")
    with Store(repo).transaction() as tx:
        tx.create({"title": "by git user"})
    assert git(repo, "log", "-1", "--format=%an") == "Test User\n"
    # The bead records the same identity the commit does.
    created_by = {b["title"]: b["created_by"] for b in (store.get(i) for i in _ids(store))}
    assert created_by == {
        "by bd actor": "bd-actor",
        "by agent": "gastown/polecats/furiosa",
        "named address": "fur<iosa>\nX",  # the bead keeps the name as given
        "by git user": "Test User",
    }


def _ids(store: Store) -> list[str]:
    from gc_polecat.beads.catalog import Query

    store.catalog.refresh()
    return [b["id"] for b in store.catalog.list(Query())]


def test_transaction_is_all_or_nothing(store: Store, repo: Path) -> None:
    before = git(repo, "rev-parse", "HEAD")
    with pytest.raises(NotFound), store.transaction() as tx:
        tx.create({"title": "would be created"})
        tx.update("gc-zzz", {"status": "closed"})  # unknown: the whole transaction fails
    assert git(repo, "rev-parse", "HEAD") == before
    assert not list((repo / "beads").glob("*/*/*.yaml"))
    assert_clean(repo)

    with store.transaction("gc: three at once") as tx:
        made = [tx.create({"title": f"bead {i}"}) for i in range(3)]
        tx.add_dependency(made[0]["id"], made[1]["id"])
    assert count_commits(repo) == 2
    assert git(repo, "log", "-1", "--format=%s") == "gc: three at once\n"
    assert store.get(made[0]["id"])["dependencies"][0]["depends_on_id"] == made[1]["id"]
    assert_clean(repo)


def test_no_change_makes_no_commit(store: Store, repo: Path) -> None:
    with store.transaction() as tx:
        bid = tx.create({"title": "x"})["id"]
    head = git(repo, "rev-parse", "HEAD")
    with store.transaction() as tx:
        tx.update(bid, {"title": "x"})
    assert git(repo, "rev-parse", "HEAD") == head


def test_child_ids(store: Store) -> None:
    with store.transaction() as tx:
        parent = tx.create({"title": "epic", "issue_type": "epic"})["id"]
        c1 = tx.create({"title": "one"}, parent=parent)
        c2 = tx.create({"title": "two"}, parent=parent)
    assert (c1["id"], c2["id"]) == (f"{parent}.1", f"{parent}.2")
    assert c1["dependencies"][0] == {
        "issue_id": c1["id"],
        "depends_on_id": parent,
        "type": "parent-child",
        "created_at": c1["created_at"],
    }
    with store.transaction() as tx:
        grandchild = tx.create({"title": "deeper"}, parent=c2["id"])
        great = tx.create({"title": "deepest"}, parent=grandchild["id"])
        assert great["id"] == f"{parent}.2.1.1"
        with pytest.raises(BadInput, match="three levels"):
            tx.create({"title": "too deep"}, parent=great["id"])


def test_reopen_clears_closed_fields(store: Store) -> None:
    with store.transaction() as tx:
        bid = tx.create({"title": "x"})["id"]
        tx.close(bid, "because")
    with store.transaction() as tx:
        reopened = tx.update(bid, {"status": "open"})
    assert "closed_at" not in reopened and "close_reason" not in reopened


def test_a_person_commit_in_between_is_rebased_not_lost(store: Store, repo: Path) -> None:
    """A commit made with plain git between two of ours is kept; ours goes on top of it."""
    with store.transaction() as tx:
        bid = tx.create({"title": "x"})["id"]
    (repo / "NOTES.md").write_text("by hand\n")
    git(repo, "add", "NOTES.md")
    git(repo, "commit", "-qm", "a person's commit")
    with store.transaction() as tx:
        tx.update(bid, {"priority": 0})
    assert git(repo, "log", "-2", "--format=%s").splitlines()[1] == "a person's commit"
    assert_clean(repo)


def test_hand_edited_bead_committed_with_git_is_read(store: Store, repo: Path) -> None:
    with store.transaction() as tx:
        bid = tx.create({"title": "x"})["id"]
    path = next((repo / "beads").glob(f"*/*/{bid}.yaml"))
    path.write_text(path.read_text().replace("title: x", "title: edited by hand"))
    git(repo, "commit", "-qam", "hand edit")
    assert store.get(bid)["title"] == "edited by hand"
    from gc_polecat.beads.catalog import Query

    store.catalog.refresh()
    assert store.catalog.list(Query())[0]["title"] == "edited by hand"


def test_observers_see_each_commit(repo: Path) -> None:
    seen = []

    class Observer:
        @staticmethod
        def gc_polecat_bead_committed(store: Store, result) -> None:  # noqa: ANN001
            seen.append((result.commit, [(c.id, c.event) for c in result.changes]))

    from gc_polecat.hookspecs import hookimpl

    Observer.gc_polecat_bead_committed = hookimpl(Observer.gc_polecat_bead_committed)

    class ResultOnly:
        """pluggy lets an implementation take a subset of the hook's arguments."""

        @hookimpl
        def gc_polecat_bead_committed(self, result) -> None:  # noqa: ANN001
            seen_subset.append(result.commit)

    seen_subset: list[str] = []
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Observer())
    pm.register(ResultOnly())
    store = Store(repo, pm=pm)
    with store.transaction() as tx:
        bid = tx.create({"title": "x"})["id"]
    with store.transaction() as tx:
        tx.update(bid, {"priority": 1})
        tx.close(bid)
    assert [events for _, events in seen] == [[(bid, "create")], [(bid, "close")]]
    assert seen[-1][0] == git(repo, "rev-parse", "HEAD").strip()
    assert seen_subset == [commit for commit, _ in seen]


def test_catalog_is_derived_and_rebuildable(store: Store, repo: Path) -> None:
    from gc_polecat.beads.catalog import Query

    with store.transaction() as tx:
        for i in range(5):
            tx.create({"title": f"b{i}", "issue_type": "gate" if i % 2 else "task"})
    assert len(store.catalog.list(Query(types=("gate",)))) == 2
    store.catalog.close()
    (repo / ".git" / "gc-polecat" / "catalog.sqlite").unlink()
    fresh = Store(repo)
    fresh.catalog.refresh()
    assert len(fresh.catalog.list(Query(types=("gate",)))) == 2
    # A corrupt catalog file is replaced, not trusted.
    fresh.catalog.close()
    (repo / ".git" / "gc-polecat" / "catalog.sqlite").write_bytes(b"garbage" * 100)
    again = Store(repo)
    again.catalog.refresh()
    assert len(again.catalog.list(Query())) == 5


def test_a_busy_catalog_is_reported_not_removed(
    store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a bad catalog file is removed and rebuilt. One that another process holds locked
    past SQLite's busy timeout ("database is locked", an OperationalError) is sound: removing
    it from under that process made every reader rebuild. It is reported as a conflict to
    retry (exit 1, one line), and the file stays, with everything another process put in it."""
    import sqlite3

    from gc_polecat.beads import catalog
    from gc_polecat.beads.catalog import Query
    from gc_polecat.errors import Conflict

    with store.transaction() as tx:
        for i in range(3):
            tx.create({"title": f"b{i}"})
    path = repo / ".git" / "gc-polecat" / "catalog.sqlite"
    inode = path.stat().st_ino
    monkeypatch.setattr(catalog, "BUSY_TIMEOUT", 0.2)
    reader = Store(repo)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("DELETE FROM meta WHERE key='commit'")  # the reader must catch up
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Conflict, match="database is locked"):
            reader.catalog.refresh()
        assert path.stat().st_ino == inode  # neither removed nor replaced under `other`
        other.execute("INSERT OR REPLACE INTO meta VALUES ('marker', 'kept')")
    finally:
        other.execute("COMMIT")
        other.close()
    reader.catalog.refresh()  # the lock gone, the same file catches up
    assert path.stat().st_ino == inode
    assert reader.catalog.db.execute("SELECT value FROM meta WHERE key='marker'").fetchone()
    assert len(reader.catalog.list(Query())) == 3


def test_json_payload_is_bd_shape(store: Store) -> None:
    with store.transaction() as tx:
        b = tx.create(
            {
                "title": "gate",
                "issue_type": "gate",
                "await_type": "bead",
                "await_id": "gc-x",
                "timeout": 7_200_000_000_000,
                "waiters": ["a/b"],
                "labels": ["gc:wait"],
                "metadata": {"state": "pending"},
            }
        )
    data = json.loads(json.dumps(store.get(b["id"])))
    assert data["timeout"] == 7_200_000_000_000 and data["priority"] == 2
    assert beadmod.normalize(data) == data


def test_top_level_count_is_maintained_exactly(store: Store, repo: Path) -> None:
    """ID length depends on this count; it must equal a real count however the beads changed."""

    def real_count() -> int:
        return sum(1 for p in (repo / "beads").glob("*/*/*.yaml") if "." not in p.stem)

    with store.transaction() as tx:
        made = [tx.create({"title": f"b{i}"})["id"] for i in range(6)]
        tx.create({"title": "child"}, parent=made[0])
    assert store.catalog.count_top_level() == real_count() == 6
    with store.transaction() as tx:
        tx.delete(made[1])
    assert store.catalog.count_top_level() == real_count() == 5
    victim = next((repo / "beads").glob(f"*/*/{made[2]}.yaml"))
    git(repo, "rm", "-q", str(victim))
    git(repo, "commit", "-qm", "a person deletes a bead")
    assert store.catalog.count_top_level() == real_count() == 4  # caught up by tree diff
    store.catalog.invalidate()
    assert store.catalog.count_top_level() == real_count() == 4  # full rebuild


def test_a_stale_catalog_never_feeds_stale_content_into_a_write(store: Store, repo: Path) -> None:
    """Writers take parsed beads from the catalog only when its blob SHA matches git's."""
    with store.transaction() as tx:
        bid = tx.create({"title": "original"})["id"]
    path = next((repo / "beads").glob(f"*/*/{bid}.yaml"))
    path.write_text(path.read_text().replace("title: original", "title: edited by a person"))
    git(repo, "commit", "-qam", "hand edit; the catalog still holds the old blob")
    with store.transaction() as tx:
        tx.update(bid, {"priority": 0})
    after = store.get(bid)
    assert after["title"] == "edited by a person" and after["priority"] == 0


_SHORT_WRITE = """
import os, resource, signal, sys
from pathlib import Path
from gc_polecat.beads.git import atomic_write
from gc_polecat.beads.gitindex import _atomic_write
where = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: a short write, then EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
for write in (lambda: atomic_write(where / "obj", b"x" * 10000, where / "tmp"),
              lambda: _atomic_write(where / "index", b"y" * 10000)):
    try:
        write()
    except OSError as exc:
        print(exc.errno)
"""


@pytest.mark.parametrize("existing", [False, True])
def test_a_short_write_never_puts_a_short_file_in_place(tmp_path: Path, existing: bool) -> None:
    """os.write may write less than asked (here a real file size limit, RLIMIT_FSIZE, as a full
    disk does) and reports it only in its return value. An object or index file cut short must
    never be renamed into place: the write fails, what was there stays, no temp file remains."""
    import errno

    where = tmp_path / "w"
    where.mkdir()
    if existing:
        (where / "obj").write_bytes(b"old object")
        (where / "index").write_bytes(b"old index")
    proc = subprocess.run(
        [sys.executable, "-c", _SHORT_WRITE, str(where)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(errno.EFBIG)] * 2
    if existing:
        assert (where / "obj").read_bytes() == b"old object"
        assert (where / "index").read_bytes() == b"old index"
    else:
        assert not (where / "obj").exists() and not (where / "index").exists()
    leftovers = [p.name for p in where.rglob("*") if p.is_file()]
    assert sorted(leftovers) == (["index", "obj"] if existing else [])
